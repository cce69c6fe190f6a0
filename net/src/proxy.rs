//! The PROXY protocol version 2 header (haproxy.org, "The PROXY protocol",
//! section 2.2): what a TCP load balancer sends first on each connection it
//! opens to a server, naming the client it relays. Parsing only; the reactor
//! decides what to do with the address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes every version 2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part: signature, version and command, family, length.
const FIXED: usize = 16;

/// The longest address block accepted (a Unix socket pair is 216 bytes, TLVs
/// may follow): a bigger length is a broken or hostile peer.
pub const MAX_BLOCK: usize = 1024;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A relayed connection from this client (TCP over IPv4 or IPv6).
    Proxied(SocketAddr),
    /// The proxy's own connection (a health check), or a relayed one whose
    /// address is not IP: the socket's peer is the one to use.
    Local,
}

/// Why a connection's first bytes are not a version 2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// Not the signature: a client that spoke directly to a port that expects
    /// a proxy.
    NotProxy,
    /// Version other than 2, an unknown command, or an address block too short
    /// for its family or longer than [`MAX_BLOCK`].
    Malformed(&'static str),
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::NotProxy => f.write_str("no PROXY protocol v2 header"),
            ProxyError::Malformed(why) => write!(f, "malformed PROXY protocol v2 header: {why}"),
        }
    }
}

/// Parses a header at the start of `buf`: `Ok(None)` when more bytes are
/// needed, else the header and how many bytes it took. Checks the signature
/// as soon as the bytes present allow, so a direct client is refused on its
/// first bytes rather than after 16.
///
/// # Errors
/// [`ProxyError`] when the bytes cannot begin a valid header.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyError> {
    let seen = buf.len().min(SIGNATURE.len());
    if buf[..seen] != SIGNATURE[..seen] {
        return Err(ProxyError::NotProxy);
    }
    if buf.len() < FIXED {
        return Ok(None);
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err(ProxyError::Malformed("version is not 2"));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::Malformed("unknown command")),
    };
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > MAX_BLOCK {
        return Err(ProxyError::Malformed("address block too long"));
    }
    let total = FIXED + len;
    if buf.len() < total {
        return Ok(None);
    }
    if local {
        return Ok(Some((Header::Local, total)));
    }
    let block = &buf[FIXED..total];
    let header = match family {
        // TCP over IPv4: source, destination, source port, destination port.
        0x11 => {
            if block.len() < 12 {
                return Err(ProxyError::Malformed("IPv4 block too short"));
            }
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            let port = u16::from_be_bytes([block[8], block[9]]);
            Header::Proxied(SocketAddr::new(IpAddr::V4(ip), port))
        }
        // TCP over IPv6.
        0x21 => {
            if block.len() < 36 {
                return Err(ProxyError::Malformed("IPv6 block too short"));
            }
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&block[..16]);
            let port = u16::from_be_bytes([block[32], block[33]]);
            Header::Proxied(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        // UNSPEC, UDP, Unix sockets: no IP client to name.
        _ => Header::Local,
    };
    Ok(Some((header, total)))
}

/// A version 2 header for `client` as a proxy sends it (PROXY command, TCP),
/// for tests and tools.
pub fn encode(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(0x21);
    match (client, server) {
        (SocketAddr::V4(c), SocketAddr::V4(s)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&c.ip().octets());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&s.port().to_be_bytes());
        }
        (c, s) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(ip) => ip.to_ipv6_mapped(),
                IpAddr::V6(ip) => ip,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(c).octets());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&s.port().to_be_bytes());
        }
    }
    out
}

/// A LOCAL header (the proxy speaking for itself, e.g. a health check).
pub fn encode_local() -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_and_ipv6_clients_are_read_with_their_ports() {
        let v4 = encode(addr("203.0.113.7:40000"), addr("10.0.0.2:5001"));
        assert_eq!(v4.len(), 28);
        assert_eq!(
            parse(&v4),
            Ok(Some((Header::Proxied(addr("203.0.113.7:40000")), 28)))
        );
        let v6 = encode(addr("[2001:db8::1]:5"), addr("[2001:db8::2]:6001"));
        assert_eq!(
            parse(&v6),
            Ok(Some((Header::Proxied(addr("[2001:db8::1]:5")), 52)))
        );
    }

    #[test]
    fn a_header_split_at_every_byte_waits_for_the_rest_then_leaves_the_frame() {
        let mut bytes = encode(addr("198.51.100.1:1"), addr("10.0.0.2:5001"));
        let header_len = bytes.len();
        bytes.extend_from_slice(b"\x00\x00\x00\x02{}");
        for cut in 0..header_len {
            assert_eq!(parse(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        let (_, used) = parse(&bytes).unwrap().unwrap();
        assert_eq!(&bytes[used..], b"\x00\x00\x00\x02{}");
    }

    #[test]
    fn local_and_non_ip_headers_name_no_client() {
        assert_eq!(parse(&encode_local()), Ok(Some((Header::Local, 16))));
        let mut unix = SIGNATURE.to_vec();
        unix.extend_from_slice(&[0x21, 0x31, 0x00, 0xd8]);
        unix.extend_from_slice(&[0u8; 216]);
        assert_eq!(parse(&unix), Ok(Some((Header::Local, 232))));
    }

    #[test]
    fn a_direct_client_is_told_apart_on_its_first_bytes() {
        assert_eq!(parse(b"\x00\x00\x00\x10"), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"\r\n\r\nX"), Err(ProxyError::NotProxy));
        // PROXY protocol version 1 (text) is not accepted.
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Err(ProxyError::NotProxy));
    }

    #[test]
    fn bad_versions_commands_and_lengths_are_refused() {
        let mut h = encode(addr("1.2.3.4:5"), addr("5.6.7.8:9"));
        h[12] = 0x11;
        assert!(matches!(parse(&h), Err(ProxyError::Malformed(_))));
        h[12] = 0x2f;
        assert!(matches!(parse(&h), Err(ProxyError::Malformed(_))));
        let mut long = encode_local();
        long[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert!(matches!(parse(&long), Err(ProxyError::Malformed(_))));
        let mut short = SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert!(matches!(parse(&short), Err(ProxyError::Malformed(_))));
    }
}

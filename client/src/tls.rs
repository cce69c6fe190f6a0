//! TLS for the clients (rustls): the CLIs and loadgen can reach a server
//! through a TLS-terminating proxy (HAProxy's TLS ports in the scale-out
//! topology), trusting the certificate authorities of a PEM file and checking
//! the server's name. The servers themselves speak plain TCP.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

/// What a client needs to open TLS connections to one server.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("name", &self.name).finish()
    }
}

impl Tls {
    /// Trusts the certificates of the PEM file `ca` and expects the server to
    /// prove the name `server` (a DNS name or an IP address).
    ///
    /// # Errors
    /// A message when the file cannot be read, holds no certificate, or
    /// `server` is not a valid name.
    pub fn from_ca_file(ca: &Path, server: &str) -> Result<Tls, String> {
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("cannot read the CA file {}: {e}", ca.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: not a usable certificate: {e}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("{} holds no certificate", ca.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(server.to_owned())
            .map_err(|_| format!("{server:?} is not a server name for TLS"))?;
        Ok(Tls {
            config: Arc::new(config),
            name,
        })
    }

    /// The rustls settings (for async clients, e.g. loadgen's).
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The name the server must prove.
    pub fn server_name(&self) -> ServerName<'static> {
        self.name.clone()
    }

    /// Runs the handshake on `tcp` (its timeouts apply) and returns the
    /// stream.
    ///
    /// # Errors
    /// An `InvalidData` error when the server's certificate is not trusted
    /// for the name (or TLS fails otherwise), an I/O error when the
    /// connection does.
    pub fn connect(
        &self,
        mut tcp: TcpStream,
    ) -> io::Result<StreamOwned<ClientConnection, TcpStream>> {
        let mut conn = ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(StreamOwned::new(conn, tcp))
    }
}

/// The host part of `HOST:PORT` (`[v6]:port` too), the name a TLS server is
/// checked against.
pub fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address_is_what_the_certificate_must_name() {
        assert_eq!(host_of("localhost:5443"), "localhost");
        assert_eq!(host_of("127.0.0.1:6443"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6443"), "::1");
        assert_eq!(host_of("market.example"), "market.example");
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_refused_with_its_name() {
        let e = Tls::from_ca_file(Path::new("/nonexistent/ca.pem"), "localhost").unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let empty = std::env::temp_dir().join(format!("empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = Tls::from_ca_file(&empty, "localhost").unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let _ = std::fs::remove_file(&empty);
    }
}

/// A TLS front for tests: a certificate authority and a server certificate
/// made on the spot (nothing stored but the CA's certificate, for clients to
/// trust), terminating TLS and relaying each request frame to a plain server
/// and its reply back, one at a time.
#[cfg(feature = "test-tls")]
pub mod testing {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{ServerConfig, ServerConnection, StreamOwned};
    use std::io::{self, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    /// A running front.
    #[derive(Debug, Clone)]
    pub struct Front {
        /// Where it listens (127.0.0.1).
        pub addr: SocketAddr,
        /// The PEM file of the CA that signed its certificate.
        pub ca: PathBuf,
    }

    /// Starts a front for `backend` whose certificate names `names` (DNS
    /// names or IP addresses), writing the CA certificate into `dir`.
    ///
    /// # Panics
    /// When the certificates cannot be made or the port bound (a test setup
    /// failure).
    pub fn front(backend: SocketAddr, names: &[&str], dir: &Path) -> Front {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "marketplace test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let key = rcgen::KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .expect("server names")
            .signed_by(&key, &ca, &ca_key)
            .expect("server certificate");
        std::fs::create_dir_all(dir).expect("certificate directory");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write the CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the front");
        let addr = listener.local_addr().expect("front address");
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let config = config.clone();
                std::thread::spawn(move || {
                    let _ = relay(tcp, config, backend);
                });
            }
        });
        Front { addr, ca: ca_file }
    }

    fn read_frame(from: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
        let mut header = [0u8; 4];
        match from.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        from.read_exact(&mut body)?;
        let mut frame = header.to_vec();
        frame.extend_from_slice(&body);
        Ok(Some(frame))
    }

    fn relay(tcp: TcpStream, config: Arc<ServerConfig>, backend: SocketAddr) -> io::Result<()> {
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut client = StreamOwned::new(conn, tcp);
        let mut server = TcpStream::connect(backend)?;
        while let Some(request) = read_frame(&mut client)? {
            server.write_all(&request)?;
            let Some(reply) = read_frame(&mut server)? else {
                return Ok(());
            };
            client.write_all(&reply)?;
            client.flush()?;
        }
        Ok(())
    }
}

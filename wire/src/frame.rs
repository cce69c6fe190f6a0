//! The frame codec: a 4-byte unsigned big-endian length, then that many bytes of JSON.
//!
//! The decoder works incrementally over a reusable [`BytesMut`]: it answers `Ok(None)`
//! until a whole frame is buffered, and judges the announced length from the 4-byte
//! header alone, before anything is allocated for the body. A frame is split off the
//! buffer without copying.

use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use std::fmt;

/// Length of the frame header in bytes.
pub const HEADER_LEN: usize = 4;

/// The default largest frame body a server accepts (1 MiB).
pub const DEFAULT_FRAME_LIMIT: usize = 1 << 20;

/// Why a frame header was refused. Either way the stream can no longer be trusted:
/// the server answers `BAD_FRAME` and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The header announced a body of zero bytes.
    Empty,
    /// The header announced more bytes than the limit.
    TooLarge { len: u32, limit: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Empty => f.write_str("frame length is 0"),
            FrameError::TooLarge { len, limit } => {
                write!(f, "frame length {len} is over the limit of {limit} bytes")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Splits frames out of a byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    limit: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_FRAME_LIMIT)
    }
}

impl FrameDecoder {
    /// A decoder that refuses bodies longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        FrameDecoder { limit }
    }

    /// The largest body this decoder accepts.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Checks the header at the front of `buf`, if there is one.
    ///
    /// Returns the announced body length once 4 bytes are there.
    ///
    /// # Errors
    /// [`FrameError`] when the announced length is 0 or over the limit.
    pub fn peek_len(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len as usize > self.limit {
            return Err(FrameError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        Ok(Some(len as usize))
    }

    /// Whether `buf` holds at least one complete frame (or a bad header).
    pub fn has_frame(&self, buf: &[u8]) -> bool {
        match self.peek_len(buf) {
            Ok(Some(len)) => buf.len() >= HEADER_LEN + len,
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Splits the next complete frame body off the front of `buf`.
    ///
    /// `Ok(None)` means "not enough bytes yet"; `buf` is left untouched and nothing is
    /// reserved for the announced body.
    ///
    /// # Errors
    /// [`FrameError`] when the header announces 0 bytes or more than the limit.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.peek_len(buf)? {
            Some(len) if buf.len() >= HEADER_LEN + len => {
                buf.advance(HEADER_LEN);
                Ok(Some(buf.split_to(len)))
            }
            _ => Ok(None),
        }
    }
}

/// Appends one frame holding `value` as JSON to `out`.
///
/// The header is reserved first and patched once the body's length is known, so the
/// JSON is written straight into `out` with no intermediate buffer.
pub fn encode<T: Serialize + ?Sized>(out: &mut BytesMut, value: &T) {
    let start = out.len();
    out.put_u32(0);
    let mut writer = out.writer();
    // Serialising our own types into memory cannot fail: they hold no maps with
    // non-string keys and writing to a BytesMut is infallible.
    if let Err(e) = simd_json::to_writer(&mut writer, value) {
        unreachable!("serialising a protocol message failed: {e}");
    }
    let out = writer.into_inner();
    let len = out.len() - start - HEADER_LEN;
    debug_assert!(u32::try_from(len).is_ok(), "frame body over 4 GiB");
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
}

/// Appends one frame holding the raw `body` bytes to `out`.
pub fn encode_raw(out: &mut BytesMut, body: &[u8]) {
    out.reserve(HEADER_LEN + body.len());
    out.put_u32(body.len() as u32);
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for body in bodies {
            encode_raw(&mut out, body);
        }
        out.to_vec()
    }

    #[test]
    fn a_frame_split_at_every_byte_boundary_decodes_once_whole() {
        let body = br#"{"operation":"Ping","request_id":7}"#;
        let wire = framed(&[body, b"{}"]);
        for cut in 0..=wire.len() {
            let decoder = FrameDecoder::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                buf.extend_from_slice(part);
                while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                    got.push(frame.to_vec());
                }
            }
            assert_eq!(got, vec![body.to_vec(), b"{}".to_vec()], "cut at {cut}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_frame_fed_one_byte_at_a_time_is_not_returned_early() {
        let body = br#"{"operation":"Ping"}"#;
        let wire = framed(&[body]);
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let frame = decoder.decode(&mut buf).unwrap();
            if i + 1 < wire.len() {
                assert!(frame.is_none(), "frame returned after {} bytes", i + 1);
            } else {
                assert_eq!(frame.unwrap().as_ref(), body);
            }
        }
    }

    #[test]
    fn a_hundred_frames_in_one_read_all_come_out_in_order() {
        let bodies: Vec<String> = (0..100).map(|i| format!("{{\"n\":{i}}}")).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_bytes()).collect();
        let mut buf = BytesMut::from(&framed(&refs)[..]);
        let decoder = FrameDecoder::default();
        for body in &bodies {
            assert_eq!(
                decoder.decode(&mut buf).unwrap().unwrap().as_ref(),
                body.as_bytes()
            );
        }
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn length_zero_is_a_bad_frame() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0, b'{'][..]);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::Empty)
        );
    }

    #[test]
    fn length_two_to_the_31_is_refused_from_the_header_without_allocating() {
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(&(1u32 << 31).to_be_bytes());
        buf.extend_from_slice(b"{\"operation\"");
        let before = buf.capacity();
        let err = FrameDecoder::default().decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                len: 1 << 31,
                limit: DEFAULT_FRAME_LIMIT
            }
        );
        assert_eq!(buf.capacity(), before, "decoder grew the buffer");
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn a_partial_large_frame_reserves_nothing_for_its_announced_body() {
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&(DEFAULT_FRAME_LIMIT as u32).to_be_bytes());
        buf.extend_from_slice(b"{}");
        let before = buf.capacity();
        assert_eq!(FrameDecoder::default().decode(&mut buf).unwrap(), None);
        assert_eq!(buf.capacity(), before);
    }

    #[test]
    fn the_limit_is_inclusive() {
        let decoder = FrameDecoder::new(8);
        let mut ok = BytesMut::from(&framed(&[b"12345678"])[..]);
        assert_eq!(
            decoder.decode(&mut ok).unwrap().unwrap().as_ref(),
            b"12345678"
        );
        let mut over = BytesMut::from(&framed(&[b"123456789"])[..]);
        assert!(matches!(
            decoder.decode(&mut over),
            Err(FrameError::TooLarge { len: 9, limit: 8 })
        ));
    }

    #[test]
    fn encode_writes_header_and_json_into_the_reused_buffer() {
        let mut out = BytesMut::new();
        encode(&mut out, &[1, 2, 3]);
        encode(&mut out, "x");
        assert_eq!(&out[..], b"\0\0\0\x07[1,2,3]\0\0\0\x03\"x\"");
        assert!(FrameDecoder::default().has_frame(&out));
    }
}

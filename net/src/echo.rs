//! A trivial service for reactor tests and the benchmark: no database, no JSON.
//!
//! It answers every frame with a frame holding the same bytes, except:
//! `panic` panics (the reactor must answer `INTERNAL`), `sleep:<ms>...` sleeps
//! that long before echoing (an in-flight request that takes time), and
//! `slow:<ms>...` does the same on the slow lane, and `peer` is answered with
//! the client's address as the reactor knows it (after a PROXY header).

use crate::metrics::Outcome;
use crate::reactor::Service;
use bytes::BytesMut;
use std::time::Duration;

/// The echo service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Service for Echo {
    fn call(&self, peer: std::net::IpAddr, body: &mut [u8], out: &mut BytesMut) -> Outcome {
        if body == b"peer" {
            wire::frame::encode_raw(out, peer.to_string().as_bytes());
            return Outcome {
                operation: Some("Echo"),
                code: None,
            };
        }
        if body == b"panic" {
            panic!("the echo service was asked to panic");
        }
        if let Some(rest) = body
            .strip_prefix(b"sleep:")
            .or_else(|| body.strip_prefix(b"slow:"))
        {
            let digits: Vec<u8> = rest
                .iter()
                .copied()
                .take_while(u8::is_ascii_digit)
                .collect();
            let ms = std::str::from_utf8(&digits)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms));
        }
        wire::frame::encode_raw(out, body);
        Outcome {
            operation: Some("Echo"),
            code: None,
        }
    }

    fn is_slow(&self, body: &[u8]) -> bool {
        body.starts_with(b"slow:")
    }
}

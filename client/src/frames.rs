//! A client connection's frames, whatever its I/O (blocking or async): the
//! request being sent, encoded into a reused buffer, and the replies read so
//! far, split off by the same decoder the servers use (its frame limit
//! checked before anything is allocated).

use crate::rules::ClientError;
use bytes::BytesMut;
use serde::Serialize;
use wire::frame::{self, FrameDecoder};
use wire::request::Envelope;
use wire::RequestId;

/// How much room a read asks for at a time.
pub const READ_CHUNK: usize = 8192;

/// The frame buffers of one connection.
#[derive(Debug)]
pub struct Frames {
    decoder: FrameDecoder,
    /// Bytes read and not yet split into replies.
    pub incoming: BytesMut,
    /// The frame (or frames) to send.
    pub outgoing: BytesMut,
}

impl Frames {
    /// Buffers whose replies may be at most `frame_limit` bytes.
    pub fn new(frame_limit: usize) -> Frames {
        Frames {
            decoder: FrameDecoder::new(frame_limit),
            incoming: BytesMut::with_capacity(4096),
            outgoing: BytesMut::with_capacity(512),
        }
    }

    /// Replaces the outgoing bytes with `request` in its envelope.
    pub fn encode<R: Serialize>(
        &mut self,
        request: &R,
        request_id: Option<&RequestId>,
        idempotency_key: Option<&str>,
    ) {
        self.outgoing.clear();
        frame::encode(
            &mut self.outgoing,
            &Envelope {
                request_id,
                idempotency_key,
                request,
            },
        );
    }

    /// Replaces the outgoing bytes with one frame holding `body` as it is.
    pub fn encode_raw(&mut self, body: &[u8]) {
        self.outgoing.clear();
        frame::encode_raw(&mut self.outgoing, body);
    }

    /// The next whole reply read so far, if any.
    ///
    /// # Errors
    /// [`ClientError::Frame`] when its header is refused (empty, over the
    /// limit).
    pub fn next_reply(&mut self) -> Result<Option<BytesMut>, ClientError> {
        self.decoder
            .decode(&mut self.incoming)
            .map_err(ClientError::Frame)
    }

    /// Forgets what was read (a new connection starts with nothing).
    pub fn reconnected(&mut self) {
        self.incoming.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_split_at_any_byte_and_a_refused_header_is_an_error() {
        let mut frames = Frames::new(64);
        frames.encode_raw(b"one");
        let one = frames.outgoing.clone();
        frames.encode_raw(b"two");
        let mut both = one.to_vec();
        both.extend_from_slice(&frames.outgoing);
        for (i, byte) in both.iter().enumerate() {
            frames.incoming.extend_from_slice(&[*byte]);
            let reply = frames.next_reply().unwrap();
            match i {
                6 => assert_eq!(reply.as_deref(), Some(&b"one"[..])),
                13 => assert_eq!(reply.as_deref(), Some(&b"two"[..])),
                _ => assert_eq!(reply, None, "byte {i}"),
            }
        }
        frames.incoming.extend_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(frames.next_reply(), Err(ClientError::Frame(_))));
        frames.reconnected();
        assert_eq!(frames.next_reply().unwrap(), None);
    }
}

//! Fuzzes the frame decoder and request decoding of both servers together: the input
//! is fed to the decoder in two chunks (the first byte says where to cut), and every
//! frame that comes out is decoded as a seller and as a buyer request.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wire::{buyer, seller, ErrorCode, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(rest.len());
    let decoder = FrameDecoder::new(4096);
    let mut buf = BytesMut::new();
    for part in [&rest[..cut], &rest[cut..]] {
        buf.extend_from_slice(part);
        while let Ok(Some(body)) = decoder.decode(&mut buf) {
            assert!(!body.is_empty() && body.len() <= 4096);
            if let Err(r) = seller::Request::decode(&mut body.to_vec()) {
                assert!(matches!(r.code, ErrorCode::BadRequest | ErrorCode::UnknownOperation));
            }
            if let Err(r) = buyer::Request::decode(&mut body.to_vec()) {
                assert!(matches!(r.code, ErrorCode::BadRequest | ErrorCode::UnknownOperation));
            }
        }
    }
});

//! Property tests: random bytes and random frame splits never panic the decoder and
//! only ever produce the protocol's own errors.

use bytes::BytesMut;
use proptest::prelude::*;
use wire::frame::{self, FrameDecoder, FrameError};
use wire::{buyer, seller, ErrorCode};

/// Feeds `wire` to a decoder in chunks cut at `cuts`, decoding every frame as a
/// request of both sides. Returns the frame bodies, or the framing error that stopped.
fn feed(wire: &[u8], cuts: &[usize], limit: usize) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let decoder = FrameDecoder::new(limit);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.push(wire.len());
    points.sort_unstable();
    let mut at = 0;
    for point in points {
        buf.extend_from_slice(&wire[at..point]);
        at = point;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(body)) => {
                    assert!(!body.is_empty() && body.len() <= limit);
                    for result in [
                        seller::Request::decode(&mut body.to_vec()).map(|_| ()),
                        buyer::Request::decode(&mut body.to_vec()).map(|_| ()),
                    ] {
                        if let Err(rejection) = result {
                            assert!(matches!(
                                rejection.code,
                                ErrorCode::BadRequest | ErrorCode::UnknownOperation
                            ));
                            assert!(!rejection.message.is_empty());
                        }
                    }
                    frames.push(body.to_vec());
                }
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
        // Nothing is ever reserved for an announced body beyond what arrived.
        assert!(buf.capacity() <= wire.len().max(64) * 2 + 64);
    }
    (frames, None)
}

fn json_fragment() -> impl Strategy<Value = String> {
    let ops = prop::sample::select(vec![
        "Ping",
        "Login",
        "CreateAccount",
        "GetItem",
        "SearchItemsForSale",
        "RegisterItemForSale",
        "ProvideFeedback",
        "MakePurchase",
        "Nope",
    ]);
    let value = prop_oneof![
        Just("1".to_owned()),
        Just("-1.5e3".to_owned()),
        Just("\"x\"".to_owned()),
        Just("null".to_owned()),
        Just("[\"a\",\"b\"]".to_owned()),
        Just("{\"k\":[]}".to_owned()),
        "\"[^\"\\\\]{0,12}\"".prop_map(|s| s),
    ];
    let field = prop::sample::select(vec![
        "session_id",
        "item_id",
        "category",
        "keywords",
        "quantity",
        "feedback",
        "username",
        "password",
        "request_id",
        "limit",
    ]);
    (ops, prop::collection::vec((field, value), 0..6)).prop_map(|(op, fields)| {
        let mut s = format!("{{\"operation\":\"{op}\"");
        for (k, v) in fields {
            s.push_str(&format!(",\"{k}\":{v}"));
        }
        s.push('}');
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_and_fail_only_with_framing_errors(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        limit in 1usize..256,
    ) {
        let (_, err) = feed(&bytes, &cuts, limit);
        if let Some(e) = err {
            let framing = matches!(e, FrameError::Empty | FrameError::TooLarge { .. });
            prop_assert!(framing, "unexpected error {:?}", e);
        }
    }

    #[test]
    fn random_requests_split_anywhere_come_out_whole_and_in_order(
        bodies in prop::collection::vec(json_fragment(), 1..10),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire = BytesMut::new();
        for body in &bodies {
            frame::encode_raw(&mut wire, body.as_bytes());
        }
        let (frames, err) = feed(&wire, &cuts, frame::DEFAULT_FRAME_LIMIT);
        prop_assert_eq!(err, None);
        let expected: Vec<Vec<u8>> = bodies.iter().map(|b| b.as_bytes().to_vec()).collect();
        prop_assert_eq!(frames, expected);
    }

    #[test]
    fn random_text_as_a_frame_body_is_a_bad_request_or_unknown_operation(
        text in "\\PC{0,80}",
    ) {
        if let Err(r) = buyer::Request::decode(&mut text.clone().into_bytes()) {
            let expected = matches!(r.code, ErrorCode::BadRequest | ErrorCode::UnknownOperation);
            prop_assert!(expected, "unexpected code {:?}", r.code);
        }
    }
}

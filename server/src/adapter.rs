//! The request path every server shares, between the reactor and its
//! handler: decode the frame, hand the request to its handler method, answer
//! exactly once, log faults.

use bytes::BytesMut;
use net::log;
use net::metrics::Outcome;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use wire::response::encode_error;
use wire::{Decoded, ErrorCode, Operation, Refusal, RequestId};

/// A side's handler as the reactor's service: requests of type `R` decoded,
/// handed to their method of the handler, answered.
pub struct Served<R: Operation> {
    handler: Arc<R::Handler>,
    /// The name in logs.
    name: &'static str,
    /// Log one line per request.
    trace: bool,
    /// Operations for the slow lane (see [`net::Service::is_slow`]).
    slow: &'static [&'static str],
}

impl<R: Operation> Served<R> {
    pub fn new(
        handler: Arc<R::Handler>,
        name: &'static str,
        trace: bool,
        slow: &'static [&'static str],
    ) -> Self {
        Served {
            handler,
            name,
            trace,
            slow,
        }
    }
}

impl<R> net::Service for Served<R>
where
    R: Operation + 'static,
    R::Handler: Send + Sync + 'static,
{
    fn call(&self, peer: IpAddr, body: &mut [u8], out: &mut BytesMut) -> Outcome {
        serve::<R>(self.name, self.trace, peer, body, out, &*self.handler)
    }

    /// A look at the bytes for the quoted name of a slow operation.
    fn is_slow(&self, body: &[u8]) -> bool {
        mentions_operation(body, self.slow)
    }
}

/// Whether the frame `body` names one of `operations` as a JSON string
/// (`"Login"`): the cheap look at the bytes that sorts password-hashing
/// requests into the slow lane without decoding them on the reactor thread.
/// A body that merely mentions the name elsewhere only changes its lane.
pub fn mentions_operation(body: &[u8], operations: &[&str]) -> bool {
    operations.iter().any(|op| {
        let quoted = op.len() + 2;
        body.windows(quoted)
            .any(|w| w[0] == b'"' && w[quoted - 1] == b'"' && &w[1..quoted - 1] == op.as_bytes())
    })
}

/// Decodes one request of type `R` from `body`, hands it to its method of
/// `handler` with what applying it at most once takes (for a state-changing
/// request that carries an `idempotency_key`), and appends exactly one
/// response to `out`. A refusal is answered with its code; one with a detail
/// (a server-side fault) is logged with a fault reference that the client's
/// message also carries, and the client's request id. Returns what the
/// request came to.
pub fn serve<R: Operation>(
    component: &str,
    trace: bool,
    peer: IpAddr,
    body: &mut [u8],
    out: &mut BytesMut,
    handler: &R::Handler,
) -> Outcome {
    let started = Instant::now();
    let Decoded {
        request_id,
        idempotency_key,
        request,
    } = match R::decode_frame(body) {
        Ok(decoded) => decoded,
        Err(r) => {
            encode_error(out, r.request_id.as_ref(), r.code, &r.message);
            if trace {
                log::line(
                    component,
                    "TRACE",
                    &format!("rejected: {} {} peer={peer}", r.code, r.message),
                );
            }
            return Outcome {
                operation: None,
                code: Some(r.code),
            };
        }
    };
    let operation = request.name();
    let once = request.idempotency(idempotency_key.as_deref());
    let start = out.len();
    let code = match request.answer(handler, once.as_ref(), out, request_id.as_ref()) {
        Ok(()) => None,
        Err(refusal) => {
            out.truncate(start);
            let code = refusal.code;
            if refusal.detail.is_some() {
                fault(
                    component,
                    operation,
                    request_id.as_ref(),
                    peer,
                    out,
                    refusal,
                );
            } else {
                encode_error(out, request_id.as_ref(), code, &refusal.message);
            }
            Some(code)
        }
    };
    debug_assert!(out.len() > start, "a request answered with nothing");
    if trace {
        let id = request_id.map_or_else(|| "-".to_owned(), |id| id.to_string());
        let shown = code.map_or("OK", ErrorCode::as_str);
        log::line(
            component,
            "TRACE",
            &format!(
                "{operation} request_id={id} peer={peer} -> {shown} in {} µs",
                started.elapsed().as_micros()
            ),
        );
    }
    Outcome {
        operation: Some(operation),
        code,
    }
}

fn fault(
    component: &str,
    operation: &str,
    request_id: Option<&RequestId>,
    peer: IpAddr,
    out: &mut BytesMut,
    refusal: Refusal,
) {
    let reference = log::next_fault_ref();
    let id = request_id.map_or_else(|| "-".to_owned(), |id| id.to_string());
    log::line(
        component,
        "ERROR",
        &format!(
            "{operation} request_id={id} peer={peer} fault_ref={reference} {}: {}",
            refusal.code,
            refusal.detail.as_deref().unwrap_or("")
        ),
    );
    let message = format!("{} (fault ref {reference})", refusal.message);
    encode_error(out, request_id, refusal.code, &message);
}

#[cfg(test)]
mod tests {
    use super::mentions_operation;

    #[test]
    fn the_slow_lane_sees_account_operations_by_their_quoted_name() {
        let ops = ["CreateAccount", "Login"];
        assert!(mentions_operation(
            br#"{"operation":"Login","username":"a"}"#,
            &ops
        ));
        assert!(mentions_operation(
            br#"{"username":"a", "operation" : "CreateAccount"}"#,
            &ops
        ));
        assert!(!mentions_operation(
            br#"{"operation":"Logout","session_id":"x"}"#,
            &ops
        ));
        assert!(!mentions_operation(
            br#"{"operation":"GetItem","item_id":1}"#,
            &ops
        ));
        assert!(!mentions_operation(b"Login", &ops), "only a quoted name");
        assert!(!mentions_operation(b"", &ops));
    }
}

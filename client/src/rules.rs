//! The rules every marketplace client follows, whatever its I/O: how long to
//! wait before reconnecting ([`Retry`]), which requests carry an idempotency
//! key and may be resent ([`Call`]), and whether a failed attempt is tried
//! again ([`Attempts`]).
//!
//! A request whose connection broke after it was sent may have been carried
//! out already. A state-changing request therefore goes out with a fresh
//! idempotency key, and every resend of it with the same key: the server
//! applies it once and answers the resend with the first result
//! (PROTOCOL.md, "Retries"). Which operations change state comes from the
//! operation list itself ([`wire::Operation::changes_state`]), so no caller
//! can forget the key. A client told to send no keys (to measure what they
//! cost) sends a write once and never resends it.

use std::fmt;
use std::io;
use std::time::Duration;
use wire::frame::FrameError;
use wire::Operation;

/// Reconnect policy: `attempts` tries in all, waiting `base * 2^n` (at most `max`),
/// each wait jittered to between half and all of it.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// Client settings.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    /// Longest wait for a reply (or for a write to go out).
    pub io_timeout: Duration,
    pub frame_limit: usize,
    pub retry: Retry,
    /// Attach an idempotency key to every state-changing request (the default).
    /// Off only to measure what keys cost; a client without keys must not
    /// resend writes.
    pub idempotency_keys: bool,
    /// Retry connecting to a server this client never reached (the
    /// default: a program may start before its server). Off for a person at
    /// a CLI: a server never reached is reported at once, and the retries
    /// are kept for a connection that was up and broke.
    pub retry_unreached: bool,
    /// Retry a request the server answered `UNAVAILABLE` or `OVERLOADED`
    /// (the default, as PROTOCOL.md says: "retry with backoff"), with the
    /// same key. Off for tests of what the server itself answers.
    pub retry_refused: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(30),
            frame_limit: wire::DEFAULT_FRAME_LIMIT,
            retry: Retry::default(),
            idempotency_keys: true,
            retry_unreached: true,
            retry_refused: true,
        }
    }
}

/// Why a call failed.
#[derive(Debug)]
pub enum ClientError {
    /// Connecting, reading or writing failed (including timeouts).
    Io(io::Error),
    /// The server closed the connection before answering.
    Closed,
    /// The server sent a frame header this client refuses.
    Frame(FrameError),
    /// The response frame was not a well-formed response.
    Decode(String),
    /// Every reconnect attempt failed; the last error is kept.
    GaveUp {
        attempts: u32,
        last: Box<ClientError>,
    },
    /// The retry callback asked to stop retrying (e.g. the user pressed Ctrl-C).
    Cancelled,
    /// The server answered `UNAVAILABLE` or `OVERLOADED` (a database away,
    /// as in a failover, or load shed): retried like a lost connection,
    /// with the same key; when the attempts are spent, the reply (kept
    /// here) is the call's answer.
    Refused(bytes::BytesMut),
}

impl ClientError {
    /// Whether reconnecting and resending may help. Not for a TLS failure
    /// (an untrusted certificate, a wrong name: `InvalidData`), which would
    /// fail the same way again.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            ClientError::Io(e) => e.kind() != io::ErrorKind::InvalidData,
            ClientError::Closed => true,
            _ => false,
        }
    }

    /// Whether another attempt may help: a lost connection, or an answer
    /// that says "retry" ([`ClientError::Refused`]).
    pub fn is_retryable(&self) -> bool {
        self.is_connection_lost() || matches!(self, ClientError::Refused(_))
    }

    /// The call's result when it ends with this error: a refusal's reply is
    /// an answer like any other (the caller reads its code); anything else
    /// stays an error.
    ///
    /// # Errors
    /// `self`, unless it is (or gave up on) a [`ClientError::Refused`].
    pub fn into_reply(self) -> Result<bytes::BytesMut, ClientError> {
        match self {
            ClientError::Refused(reply) => Ok(reply),
            ClientError::GaveUp { last, .. } if matches!(*last, ClientError::Refused(_)) => {
                last.into_reply()
            }
            e => Err(e),
        }
    }
}

/// `Err(ClientError::Refused)` for a reply whose code says "retry"
/// (`UNAVAILABLE`, `OVERLOADED`: nothing was changed, or the request's key
/// settles what was) when `config` retries them, `Ok` with the reply
/// otherwise. Only a reply that holds one of the two words is decoded here.
///
/// # Errors
/// [`ClientError::Refused`].
pub fn refused_or(
    config: &ClientConfig,
    reply: bytes::BytesMut,
) -> Result<bytes::BytesMut, ClientError> {
    if !config.retry_refused {
        return Ok(reply);
    }
    let holds = |word: &[u8]| reply.windows(word.len()).any(|w| w == word);
    if !holds(b"UNAVAILABLE") && !holds(b"OVERLOADED") {
        return Ok(reply);
    }
    let mut copy = reply.to_vec();
    match wire::response::Response::<serde::de::IgnoredAny>::decode(&mut copy) {
        Ok(response)
            if matches!(
                response.code,
                Some(wire::ErrorCode::Unavailable | wire::ErrorCode::Overloaded)
            ) =>
        {
            Err(ClientError::Refused(reply))
        }
        _ => Ok(reply),
    }
}

/// The servers a client may use, from `a:5001,b:5001` (one or more,
/// comma-separated): it talks to one at a time and moves to the next when a
/// connection to it fails, as the predecessor's clients did, so a deployment
/// without a proxy has no single entry point.
#[derive(Debug, Clone)]
pub struct Servers {
    list: Vec<String>,
    at: usize,
}

impl Servers {
    /// Parses a comma-separated list of `host:port`.
    ///
    /// # Errors
    /// A sentence naming what is wrong: an empty list or entry.
    pub fn parse(list: &str) -> Result<Servers, String> {
        let list: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
        if list.iter().any(String::is_empty) {
            return Err(
                "a server address is empty (give host:port, or several separated by commas)".into(),
            );
        }
        Ok(Servers { list, at: 0 })
    }

    /// Starts at the `n`th (modulo their number): clients started together
    /// spread over the servers.
    pub fn starting_at(mut self, n: usize) -> Servers {
        self.at = n % self.list.len();
        self
    }

    /// The one in use.
    pub fn current(&self) -> &str {
        &self.list[self.at]
    }

    /// Moves to the next (after a failed connection).
    pub fn advance(&mut self) {
        self.at = (self.at + 1) % self.list.len();
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Always false: a list holds at least one.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// All of them, in order.
    pub fn all(&self) -> &[String] {
        &self.list
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "connection error: {e}"),
            ClientError::Closed => f.write_str("the server closed the connection"),
            ClientError::Frame(e) => write!(f, "bad frame from the server: {e}"),
            ClientError::Decode(e) => write!(f, "bad response from the server: {e}"),
            ClientError::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} attempts: {last}")
            }
            ClientError::Cancelled => f.write_str("cancelled"),
            ClientError::Refused(_) => {
                f.write_str("the server is unavailable for the moment (a database failing over?)")
            }
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl Retry {
    /// The wait before retry `n` (from 1): `base * 2^(n-1)`, at most `max`,
    /// jittered to 50-100% of that by `state` (a xorshift64 state, never 0).
    pub fn delay(&self, n: u32, state: &mut u64) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32.checked_shl(n.max(1) - 1).unwrap_or(u32::MAX))
            .min(self.max);
        // xorshift64: jitter needs spread, not cryptographic quality.
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let fraction = 0.5 + (*state % 1000) as f64 / 2000.0;
        full.mul_f64(fraction)
    }
}

/// How one logical request is sent: its idempotency key, if any, and the
/// attempts it may take.
#[derive(Debug)]
pub struct Call {
    /// The key every attempt carries (`None` for reads, and for writes when
    /// keys are off).
    pub key: Option<String>,
    /// Counts the attempts and says whether another may follow.
    pub attempts: Attempts,
}

impl Call {
    /// The plan for sending `request` under `config`: a write gets a fresh
    /// key and the policy's retries; a write without a key gets one attempt
    /// (a resend could apply it twice); a read gets the retries and no key.
    pub fn new<R: Operation>(request: &R, config: &ClientConfig) -> Call {
        let writes = request.changes_state();
        let keyed = writes && config.idempotency_keys;
        Call {
            key: keyed.then(|| uuid::Uuid::new_v4().to_string()),
            attempts: if writes && !keyed {
                Attempts::once()
            } else {
                Attempts::new(config.retry)
            },
        }
    }
}

/// A retry about to be made: its number (from 1), how many there will be at
/// most, the wait before it, and the error that made it necessary.
#[derive(Debug)]
pub struct Retrying {
    pub attempt: u32,
    pub of: u32,
    pub delay: Duration,
    pub error: ClientError,
}

/// The attempts of one call (or one connect): after each failure, either the
/// next retry with its wait, or the error the call ends with.
#[derive(Debug, Clone)]
pub struct Attempts {
    retry: Retry,
    /// Retries allowed after the first attempt; `None`: one attempt, and its
    /// error is returned as it is.
    retries: Option<u32>,
    failed: u32,
}

impl Attempts {
    /// Up to `retry.attempts` attempts in all.
    pub fn new(retry: Retry) -> Attempts {
        Attempts {
            retry,
            retries: Some(retry.attempts.saturating_sub(1)),
            failed: 0,
        }
    }

    /// A single attempt whose failure is final.
    pub fn once() -> Attempts {
        Attempts {
            retry: Retry::default(),
            retries: None,
            failed: 0,
        }
    }

    /// After an attempt failed with `e`: the retry to make, with its wait
    /// jittered by `jitter` (a xorshift64 state, never 0), when `e` is a lost
    /// connection and the policy allows another attempt.
    ///
    /// # Errors
    /// The error the call ends with: `e` itself when it is not a lost
    /// connection (or the call has one attempt), [`ClientError::GaveUp`]
    /// when the attempts are spent.
    pub fn after_failure(
        &mut self,
        e: ClientError,
        jitter: &mut u64,
    ) -> Result<Retrying, ClientError> {
        let Some(retries) = self.retries else {
            return Err(e);
        };
        if !e.is_retryable() {
            return Err(e);
        }
        if self.failed >= retries {
            return Err(ClientError::GaveUp {
                attempts: self.failed + 1,
                last: Box::new(e),
            });
        }
        self.failed += 1;
        Ok(Retrying {
            attempt: self.failed,
            of: retries,
            delay: self.retry.delay(self.failed, jitter),
            error: e,
        })
    }
}

/// A seed for [`Retry::delay`]'s jitter: the clock's nanoseconds mixed with
/// `salt` (so clients started together spread out), never 0.
pub fn jitter_seed(salt: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9E37_79B9, |d| d.as_nanos() as u64);
    (nanos ^ salt) | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::request::{NoFields, SessionOnly};

    fn fast(attempts: u32) -> ClientConfig {
        ClientConfig {
            retry: Retry {
                attempts,
                base: Duration::from_millis(1),
                max: Duration::from_millis(2),
            },
            ..ClientConfig::default()
        }
    }

    fn lost() -> ClientError {
        ClientError::Closed
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_half_to_full() {
        let retry = Retry {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let mut state = 12345;
        for (n, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            let d = retry.delay(n, &mut state).as_millis() as u64;
            assert!(d >= full / 2 && d <= full, "retry {n}: {d} ms of {full}");
        }
    }

    #[test]
    fn a_write_gets_a_key_and_retries_a_read_retries_without_one() {
        let write = wire::seller::Request::Logout(SessionOnly {
            session_id: "s".into(),
        });
        let read = wire::seller::Request::Ping(NoFields {});
        let call = Call::new(&write, &fast(3));
        assert_eq!(call.key.as_ref().map(String::len), Some(36), "a UUID");
        assert_ne!(Call::new(&write, &fast(3)).key, call.key, "fresh per call");
        let call = Call::new(&read, &fast(3));
        assert_eq!(call.key, None);
        let mut attempts = call.attempts;
        let mut jitter = 1;
        let first = attempts.after_failure(lost(), &mut jitter).unwrap();
        assert_eq!((first.attempt, first.of), (1, 2));
        let second = attempts.after_failure(lost(), &mut jitter).unwrap();
        assert_eq!((second.attempt, second.of), (2, 2));
        match attempts.after_failure(lost(), &mut jitter) {
            Err(ClientError::GaveUp { attempts, .. }) => assert_eq!(attempts, 3),
            other => panic!("expected GaveUp, got {other:?}"),
        }
    }

    #[test]
    fn a_write_without_keys_is_sent_once_and_its_error_is_final() {
        let write = wire::seller::Request::Logout(SessionOnly {
            session_id: "s".into(),
        });
        let config = ClientConfig {
            idempotency_keys: false,
            ..fast(5)
        };
        let call = Call::new(&write, &config);
        assert_eq!(call.key, None);
        let mut attempts = call.attempts;
        assert!(matches!(
            attempts.after_failure(lost(), &mut 1),
            Err(ClientError::Closed)
        ));
    }

    #[test]
    fn an_error_other_than_a_lost_connection_is_never_retried() {
        let mut attempts = Attempts::new(fast(5).retry);
        let bad = ClientError::Decode("not JSON".into());
        assert!(matches!(
            attempts.after_failure(bad, &mut 1),
            Err(ClientError::Decode(_))
        ));
        let tls = ClientError::Io(io::Error::new(io::ErrorKind::InvalidData, "certificate"));
        assert!(matches!(
            attempts.after_failure(tls, &mut 1),
            Err(ClientError::Io(_))
        ));
    }
}

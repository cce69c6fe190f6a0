//! The workers' side of the reactor: lanes of bounded job channels, the
//! threads that run the service on each job, and what they hand back.

use super::Service;
use crate::log;
use crate::metrics::{Outcome, ServerMetrics};
use bytes::BytesMut;
use mio::Waker;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;
use wire::response::encode_error;
use wire::ErrorCode;

/// The main lane; the slow lane, when there is one, is the second.
pub(super) const MAIN: usize = 0;
pub(super) const SLOW: usize = 1;

/// A worker's output buffer holds this much; each answer is split off it,
/// and its room is reclaimed once the reactor has copied the answers into
/// their connections' own buffers (see `Reactor::take_done`).
const OUT_CAPACITY: usize = 16 * 1024;
/// Room made before each answer: while the buffer has it, no allocation.
const ANSWER_ROOM: usize = 1024;

/// One request on its way to a worker.
pub(super) struct Job {
    pub key: usize,
    pub generation: u64,
    /// The client (see `Connection::peer`).
    pub peer: IpAddr,
    pub body: BytesMut,
    /// When its whole frame was read.
    pub arrived: Instant,
}

/// A job done: the framed answer for the connection it came from.
pub(super) struct Done {
    pub key: usize,
    pub generation: u64,
    pub out: BytesMut,
}

/// A job channel and the connections whose frame waits for room in it.
pub(super) struct Lane {
    pub jobs: Option<flume::Sender<Job>>,
    pub stalled: VecDeque<(usize, u64)>,
}

/// Runs the service on one request, turning a panic into an `INTERNAL` reply.
pub(super) fn call_service(
    service: &dyn Service,
    peer: IpAddr,
    body: &mut [u8],
    out: &mut BytesMut,
    name: &str,
) -> Outcome {
    let start = out.len();
    let outcome = catch_unwind(AssertUnwindSafe(|| service.call(peer, body, out)));
    let outcome = outcome.unwrap_or_else(|_| {
        let reference = log::next_fault_ref();
        out.truncate(start);
        log::line(
            name,
            "ERROR",
            &format!("request handler panicked (fault ref {reference})"),
        );
        encode_error(
            out,
            None,
            ErrorCode::Internal,
            &format!("internal error (fault ref {reference})"),
        );
        Outcome {
            operation: None,
            code: Some(ErrorCode::Internal),
        }
    });
    debug_assert!(out.len() > start, "a service must answer every request");
    outcome
}

/// One thread of a lane.
pub(super) struct Worker {
    pub service: Arc<dyn Service>,
    pub jobs: flume::Receiver<Job>,
    pub done: flume::Sender<Done>,
    pub waker: Arc<Waker>,
    pub name: String,
    pub metrics: Arc<ServerMetrics>,
    /// Of the password lane.
    pub slow: bool,
}

impl Worker {
    pub fn work(self) {
        let mut out = BytesMut::with_capacity(OUT_CAPACITY);
        for mut job in self.jobs.iter() {
            self.metrics.queued(self.slow, -1);
            if !self.slow {
                self.metrics.busy(1);
            }
            // Below ANSWER_ROOM left, takes back the room of the answers the
            // reactor has taken (in place; a new buffer only while one of
            // them is still on its way).
            out.reserve(ANSWER_ROOM);
            let outcome = call_service(
                &*self.service,
                job.peer,
                &mut job.body,
                &mut out,
                &self.name,
            );
            self.metrics.request(outcome, job.arrived.elapsed());
            if !self.slow {
                self.metrics.busy(-1);
            }
            let done = Done {
                key: job.key,
                generation: job.generation,
                out: out.split(),
            };
            if self.done.send(done).is_err() {
                return;
            }
            if let Err(e) = self.waker.wake() {
                log::line(
                    &self.name,
                    "ERROR",
                    &format!("waking the reactor failed: {e}"),
                );
            }
        }
    }
}

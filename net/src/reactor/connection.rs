//! One client connection: its buffers, where it is in its life ([`Stage`]),
//! its request in flight ([`InFlight`]), and the non-blocking steps that move
//! bytes between its socket and its buffers. Every step that ends a
//! connection says why ([`Closed`]); a peer that hangs up after its answers
//! is [`Closed::Finished`], not an error.

use super::lane::call_service;
use super::lane::{Job, Lane, MAIN, SLOW};
use super::Shared;
use crate::metrics::{Closed, FrameRejected};
use bytes::{Buf, BytesMut};
use mio::net::TcpStream;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;
use wire::response::encode_error;
use wire::ErrorCode;

/// Room made in a read buffer before each `read` (it reads into all the
/// buffer's spare room, which is at least this).
const READ_CHUNK: usize = 4096;
/// Stop reading a connection that has a whole frame waiting and this much buffered.
pub(super) const READ_HIGH_WATER: usize = 64 * 1024;
/// Stop dispatching a connection's requests while this much output is unsent.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// On the PROXY listener, before the header that names the client.
    AwaitingProxy,
    /// Reading frames and answering them.
    Open,
    /// The peer ended its side: frames it sent before are answered, then the
    /// connection closes ([`Closed::Finished`]).
    PeerEnded,
    /// Nothing more is read or dispatched; it closes, for this reason, once
    /// its output is flushed (after `BAD_FRAME` or `OVERLOADED`).
    Closing(Closed),
}

/// The request of a connection that is not answered yet (at most one, so
/// answers go out in request order; later frames wait in the read buffer).
pub(super) enum InFlight {
    None,
    /// Its frame waits for room in the lane's job channel.
    Stalled {
        job: Job,
        lane: usize,
    },
    /// Queued for a worker or running on one.
    Submitted,
}

pub(super) struct Connection {
    pub stream: TcpStream,
    pub generation: u64,
    /// The client: the socket's peer, or the one a PROXY header named.
    pub peer: IpAddr,
    /// Counted in `Reactor::peers` (not while its PROXY header is awaited,
    /// nor when that header named an address over its limit).
    pub counted: bool,
    pub stage: Stage,
    pub in_flight: InFlight,
    /// When the partial frame in `read_buf` began (None: no partial frame).
    pub frame_started: Option<Instant>,
    pub read_buf: BytesMut,
    pub write_buf: BytesMut,
    pub last_active: Instant,
    /// WRITABLE interest is registered.
    pub writable: bool,
}

/// What one [`fill`] read.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Filled {
    /// Bytes arrived.
    pub got: bool,
    /// The peer ended its side.
    pub ended: bool,
}

impl Connection {
    pub fn new(stream: TcpStream, generation: u64, peer: IpAddr, awaiting_proxy: bool) -> Self {
        Connection {
            stream,
            generation,
            peer,
            counted: !awaiting_proxy,
            stage: if awaiting_proxy {
                Stage::AwaitingProxy
            } else {
                Stage::Open
            },
            in_flight: InFlight::None,
            frame_started: None,
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            last_active: Instant::now(),
            writable: false,
        }
    }

    /// A request of this connection is queued, stalled or running.
    pub fn busy(&self) -> bool {
        !matches!(self.in_flight, InFlight::None)
    }

    pub fn is_closing(&self) -> bool {
        matches!(self.stage, Stage::Closing(_))
    }

    /// Nothing is left to answer or to send.
    pub fn is_quiet(&self) -> bool {
        !self.busy() && self.write_buf.is_empty()
    }

    /// Answers with `message` as `code`, reads nothing more, and closes for
    /// `why` once the answer is out.
    pub fn answer_and_close(&mut self, code: ErrorCode, message: &str, why: Closed) {
        encode_error(&mut self.write_buf, None, code, message);
        self.stage = Stage::Closing(why);
        self.read_buf = BytesMut::new();
    }
}

/// Writes, dispatches and reads until nothing more can happen without waiting.
///
/// # Errors
/// Why the connection must close now.
pub(super) fn step(conn: &mut Connection, key: usize, shared: &mut Shared) -> Result<(), Closed> {
    loop {
        let mut progressed = flush(conn)?;
        if let Stage::Closing(why) = conn.stage {
            if conn.write_buf.is_empty() {
                return Err(why);
            }
        }
        let answering = matches!(conn.stage, Stage::Open | Stage::PeerEnded);
        if answering && !conn.busy() && !shared.draining && conn.write_buf.len() < WRITE_HIGH_WATER
        {
            match shared.decoder.decode(&mut conn.read_buf) {
                Ok(Some(body)) => {
                    conn.last_active = Instant::now();
                    dispatch(conn, key, body, shared);
                    progressed = true;
                }
                Ok(None) => {}
                Err(e) => {
                    shared.metrics.count_frame_rejected(match e {
                        wire::FrameError::Empty => FrameRejected::Empty,
                        wire::FrameError::TooLarge { .. } => FrameRejected::TooLarge,
                    });
                    conn.answer_and_close(ErrorCode::BadFrame, &e.to_string(), Closed::BadFrame);
                    continue;
                }
            }
        }
        let want_read = conn.stage == Stage::Open
            && (conn.read_buf.len() < READ_HIGH_WATER || !shared.decoder.has_frame(&conn.read_buf));
        if want_read {
            let filled = fill(conn)?;
            if filled.ended {
                conn.stage = Stage::PeerEnded;
            }
            progressed |= filled.got;
        }
        if !progressed {
            break;
        }
    }
    let finished = conn.stage == Stage::PeerEnded
        && conn.is_quiet()
        && !shared.decoder.has_frame(&conn.read_buf);
    if finished {
        return Err(Closed::Finished);
    }
    Ok(())
}

/// Writes pending output until done or the socket is full; true if bytes went out.
///
/// # Errors
/// `Closed::Io` when the socket fails.
pub(super) fn flush(conn: &mut Connection) -> Result<bool, Closed> {
    let mut wrote = false;
    while !conn.write_buf.is_empty() {
        match conn.stream.write(&conn.write_buf) {
            Ok(0) => return Err(Closed::Io),
            Ok(n) => {
                conn.write_buf.advance(n);
                wrote = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Closed::Io),
        }
    }
    Ok(wrote)
}

/// Reads until the socket is drained, the peer ends its side, or the buffer
/// is full enough.
///
/// # Errors
/// `Closed::Io` when the socket fails.
pub(super) fn fill(conn: &mut Connection) -> Result<Filled, Closed> {
    let mut filled = Filled::default();
    loop {
        if conn.read_buf.len() >= READ_HIGH_WATER {
            // The caller re-checks whether a whole frame is waiting.
            return Ok(filled);
        }
        match read_into_spare(&conn.stream, &mut conn.read_buf) {
            Ok(0) => {
                filled.ended = true;
                return Ok(filled);
            }
            Ok(_) => filled.got = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(filled),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Closed::Io),
        }
    }
}

/// Reads into the spare room of `buf` (at least [`READ_CHUNK`]) without
/// zero-filling it first, as `Read::read` would need; returns the bytes read.
fn read_into_spare(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    buf.reserve(READ_CHUNK);
    let spare = buf.spare_capacity_mut();
    // SAFETY: read(2) writes at most `spare.len()` bytes into `spare`, memory
    // that `buf` owns and nothing else references; the descriptor is the
    // stream's, open for as long as `stream` is borrowed.
    let n = unsafe { libc::read(stream.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the first `n` bytes of the spare room were just written by read(2).
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Hands a whole frame that arrived at `conn.last_active` to its lane (or, for
/// the inline measurement, runs it here).
fn dispatch(conn: &mut Connection, key: usize, mut body: BytesMut, shared: &mut Shared) {
    let arrived = conn.last_active;
    if let Some(service) = &shared.inline {
        let outcome = call_service(
            &**service,
            conn.peer,
            &mut body,
            &mut conn.write_buf,
            &shared.name,
        );
        shared.metrics.request(outcome, arrived.elapsed());
        return;
    }
    let lane = match &shared.classify {
        Some(service) if service.is_slow(&body) => SLOW,
        _ => MAIN,
    };
    let Lane { jobs, stalled } = &mut shared.lanes[lane];
    let Some(jobs) = jobs else {
        return;
    };
    shared.metrics.queued(lane == SLOW, 1);
    let job = Job {
        key,
        generation: conn.generation,
        peer: conn.peer,
        body,
        arrived,
    };
    conn.in_flight = match jobs.try_send(job) {
        Ok(()) => InFlight::Submitted,
        Err(flume::TrySendError::Full(job)) => {
            stalled.push_back((key, conn.generation));
            InFlight::Stalled { job, lane }
        }
        Err(flume::TrySendError::Disconnected(_)) => {
            shared.metrics.queued(lane == SLOW, -1);
            encode_error(
                &mut conn.write_buf,
                None,
                ErrorCode::Unavailable,
                "the server is stopping",
            );
            InFlight::None
        }
    };
}

/// Answers a connection over a limit with one `OVERLOADED` frame and closes it.
pub(super) fn turn_away(mut stream: TcpStream, message: &str) {
    let mut out = BytesMut::new();
    encode_error(&mut out, None, ErrorCode::Overloaded, message);
    // Best effort: a fresh socket's send buffer takes this small frame whole.
    let _ = stream.write(&out);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

//! The server reactor: one mio `Poll` thread and a pool of blocking workers.
//!
//! ```text
//!  socket ──read──▶ Connection.read_buf ──split frame──▶ Job ──flume (bounded)──▶ worker
//!                                                                                   │
//!  socket ◀─write── Connection.write_buf ◀── Done ◀──flume + Waker────────────────────┘
//! ```
//!
//! This file holds the server and its event loop; [`connection`] one
//! connection's state and socket steps; [`lane`] the job channels and the
//! worker threads.
//!
//! Invariants:
//! - A connection has at most one request queued or running (`InFlight`), so answers
//!   go out in request order; later frames wait in its read buffer.
//! - Every job carries the connection's slab key AND generation; an answer whose
//!   generation does not match the slot's current connection is dropped, because the
//!   slot may have been reused.
//! - Memory per connection is bounded: reading stops once a whole frame is waiting and
//!   the read buffer is over its high-water mark, and dispatching stops while unsent
//!   replies are over theirs, so a client that never reads its replies is pushed back
//!   on by TCP instead of growing the server.
//! - When the job channel is full a frame waits in its connection (`InFlight::Stalled`) and the
//!   connection stops reading; it is retried as workers hand replies back.
//! - Requests the service calls slow ([`Service::is_slow`]: password hashing)
//!   go to a lane of their own, a bounded channel and `slow_workers` threads,
//!   so a storm of them waits in its own queue and never holds the workers
//!   that serve everyone else.
//! - No peer address takes the server's capacity from others: each address holds
//!   at most `max_per_peer` connections; a peer that begins a frame must finish it
//!   within `frame_deadline`; and at `max_connections` an idle or stalled
//!   connection (a partial frame first, then the address holding the most, then
//!   the longest idle) is closed to admit a newcomer before anyone is refused.
//! - An accept that fails (EMFILE, ENFILE) is retried on a timer: the listener is
//!   edge-triggered, so connections already waiting would otherwise sit until
//!   another one arrives.

mod connection;
mod lane;

use crate::log;
use crate::metrics::{Closed, FrameRejected, Outcome, Refused, ServerMetrics};
use crate::proxy;
use bytes::{Buf, BytesMut};
use connection::{fill, step, turn_away, Connection, InFlight, Stage};
use lane::{Done, Job, Lane, Worker, SLOW};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wire::{ErrorCode, FrameDecoder};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// The listener whose connections start with a PROXY protocol v2 header.
const PROXY_LISTENER: Token = Token(usize::MAX - 3);

/// How soon an accept that failed (EMFILE, ENFILE) is tried again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// What a server does with one request.
///
/// Runs on a worker thread (never the reactor), may block on a database, and must
/// append exactly one framed response to `out`. A panic is caught and answered
/// with `INTERNAL`.
pub trait Service: Send + Sync + 'static {
    /// Handles the frame body `body` (which it may decode in place) from the
    /// client at `peer` and says what the request came to, for the metrics.
    fn call(&self, peer: IpAddr, body: &mut [u8], out: &mut BytesMut) -> Outcome;

    /// Whether `body` asks for slow work (e.g. a password hash), served by the
    /// slow lane when the server has one. Runs on the reactor thread: it must
    /// be a cheap look at the bytes, and a wrong guess only changes the lane.
    fn is_slow(&self, body: &[u8]) -> bool {
        let _ = body;
        false
    }
}

/// Reactor settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Name used in logs and thread names.
    pub name: String,
    /// Largest frame body accepted.
    pub frame_limit: usize,
    /// A connection without a complete frame for this long is closed.
    pub idle_timeout: Duration,
    /// At this many connections an idle or stalled one gives way to a newcomer;
    /// when none can, the newcomer is answered `OVERLOADED` and closed.
    pub max_connections: usize,
    /// Connections from one peer address beyond this many are answered
    /// `OVERLOADED` and closed.
    pub max_per_peer: usize,
    /// A peer that has begun a frame must finish it within this long.
    pub frame_deadline: Duration,
    /// Worker threads.
    pub workers: usize,
    /// Threads of the slow lane (0: slow requests share the workers).
    pub slow_workers: usize,
    /// Capacity of the slow lane's channel.
    pub slow_queue_depth: usize,
    /// Capacity of the job channel between the reactor and the workers.
    pub queue_depth: usize,
    /// Run the service on the reactor thread instead of the workers. Only for
    /// measuring the cost of the worker hop; a blocking service would stall every
    /// connection.
    pub inline: bool,
    /// How long a shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "server".into(),
            frame_limit: wire::DEFAULT_FRAME_LIMIT,
            idle_timeout: Duration::from_secs(15 * 60),
            max_connections: 10_000,
            max_per_peer: 2_000,
            frame_deadline: Duration::from_secs(30),
            workers: 4,
            slow_workers: 0,
            slow_queue_depth: 256,
            queue_depth: 1024,
            inline: false,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Asks a running server to stop: no new connections or requests, in-flight
/// requests finish and are answered, then [`Server::run`] returns.
#[derive(Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Starts the shutdown; returns at once.
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // A failed wake only delays the shutdown to the next poll tick.
        let _ = self.waker.wake();
    }
}

/// A bound, not yet running server.
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    /// The listener for a TCP load balancer, if any (see
    /// [`Server::with_proxy_listener`]).
    proxy_listener: Option<TcpListener>,
    waker: Arc<Waker>,
    shutdown: Arc<AtomicBool>,
    config: Config,
    local_addr: SocketAddr,
    metrics: Arc<ServerMetrics>,
}

impl Server {
    /// Binds the listening socket.
    ///
    /// # Errors
    /// When the address cannot be bound or the poller cannot be created.
    pub fn bind(addr: SocketAddr, config: Config) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Server {
            poll,
            listener,
            proxy_listener: None,
            waker,
            shutdown: Arc::new(AtomicBool::new(false)),
            config,
            local_addr,
            metrics: Arc::new(ServerMetrics::new("server", &[])),
        })
    }

    /// Also listens on `addr` for a TCP load balancer: every connection there
    /// starts with a PROXY protocol v2 header, and the client it names, not
    /// the balancer, is the peer that the per-address limit, the service and
    /// the logs see. Since the header is believed, only the balancer may be
    /// able to reach `addr`. Returns the address bound.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn with_proxy_listener(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        let mut listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        self.poll
            .registry()
            .register(&mut listener, PROXY_LISTENER, Interest::READABLE)?;
        self.proxy_listener = Some(listener);
        Ok(bound)
    }

    /// Counts into `metrics` (by default, metrics nobody reads).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<ServerMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops this server from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: self.shutdown.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Serves until shut down, then drains in-flight work, joins the workers and
    /// returns.
    ///
    /// # Errors
    /// Only when polling itself fails; errors of single connections close them.
    pub fn run(self, service: Arc<dyn Service>) -> io::Result<()> {
        let Server {
            poll,
            listener,
            proxy_listener,
            waker,
            shutdown,
            config,
            local_addr: _,
            metrics,
        } = self;
        metrics.set_workers(config.workers.max(1));
        let (done_tx, done_rx) = flume::unbounded::<Done>();
        let mut workers: Vec<JoinHandle<()>> = Vec::new();
        let slow = config.slow_workers > 0 && !config.inline;
        let mut lanes = Vec::new();
        for (threads, depth, label) in [
            (config.workers.max(1), config.queue_depth, "worker"),
            (config.slow_workers, config.slow_queue_depth, "slow"),
        ] {
            if label == "slow" && !slow {
                break;
            }
            let (job_tx, job_rx) = flume::bounded::<Job>(depth.max(1));
            if !config.inline {
                for i in 0..threads {
                    let lane = Worker {
                        service: service.clone(),
                        jobs: job_rx.clone(),
                        done: done_tx.clone(),
                        waker: waker.clone(),
                        name: config.name.clone(),
                        metrics: metrics.clone(),
                        slow: label == "slow",
                    };
                    workers.push(
                        std::thread::Builder::new()
                            .name(format!("{}-{label}-{i}", config.name))
                            .spawn(move || lane.work())?,
                    );
                }
            }
            lanes.push(Lane {
                jobs: Some(job_tx),
                stalled: VecDeque::new(),
            });
        }
        drop(done_tx);
        let mut reactor = Reactor {
            poll,
            listener: Some(listener),
            proxy_listener,
            connections: Slab::new(),
            shared: Shared {
                decoder: FrameDecoder::new(config.frame_limit),
                lanes,
                classify: slow.then(|| service.clone()),
                inline: config.inline.then_some(service),
                draining: false,
                name: config.name.clone(),
                metrics,
            },
            done: done_rx,
            shutdown,
            next_generation: 0,
            peers: HashMap::new(),
            accept_retry: None,
            config,
        };
        let result = reactor.run();
        reactor.close_all();
        // Dropping the senders lets the workers see the channels close and exit.
        for lane in &mut reactor.shared.lanes {
            lane.jobs = None;
        }
        for thread in workers {
            if thread.join().is_err() {
                log::line(&reactor.config.name, "ERROR", "a worker thread panicked");
            }
        }
        result
    }
}

/// Reactor state that connection handling needs beside the connection itself.
struct Shared {
    decoder: FrameDecoder,
    lanes: Vec<Lane>,
    /// The service, to sort requests into lanes (only with a slow lane).
    classify: Option<Arc<dyn Service>>,
    inline: Option<Arc<dyn Service>>,
    draining: bool,
    name: String,
    metrics: Arc<ServerMetrics>,
}

struct Reactor {
    poll: Poll,
    listener: Option<TcpListener>,
    proxy_listener: Option<TcpListener>,
    connections: Slab<Connection>,
    shared: Shared,
    /// Answers the workers hand back.
    done: flume::Receiver<Done>,
    shutdown: Arc<AtomicBool>,
    next_generation: u64,
    /// Open connections per peer address.
    peers: HashMap<IpAddr, usize>,
    /// When to try accepting again after an accept error.
    accept_retry: Option<Instant>,
    config: Config,
}

impl Reactor {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let tick = (self.config.idle_timeout.min(self.config.frame_deadline) / 4)
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        let mut next_sweep = Instant::now() + tick;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let wake_at = self
                .accept_retry
                .map_or(next_sweep, |at| at.min(next_sweep));
            let timeout = wake_at.saturating_duration_since(Instant::now());
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(false),
                    PROXY_LISTENER => self.accept(true),
                    // A wake only says "replies are queued"; they are taken below.
                    WAKER => {}
                    Token(key) => self.drive(key),
                }
            }
            self.take_done();
            if self.accept_retry.is_some_and(|at| Instant::now() >= at) {
                self.accept_retry = None;
                self.accept(false);
                self.accept(true);
            }
            if drain_deadline.is_none() && self.shutdown.load(Ordering::SeqCst) {
                self.begin_drain();
                drain_deadline = Some(Instant::now() + self.config.drain_timeout);
            }
            if let Some(deadline) = drain_deadline {
                let drained = self.connections.iter().all(|(_, c)| c.is_quiet());
                if drained || Instant::now() >= deadline {
                    return Ok(());
                }
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.close_idle(now);
                next_sweep = now + tick;
            }
        }
    }

    /// Accepts what waits on the plain listener, or on the PROXY one.
    fn accept(&mut self, proxied: bool) {
        loop {
            let listener = if proxied {
                &self.proxy_listener
            } else {
                &self.listener
            };
            let Some(listener) = listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer.ip(), proxied),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Typically EMFILE: the waiting connections stay in the
                    // backlog. Edge-triggered readiness will not report them
                    // again, so a timer (or the next close) retries.
                    if self.accept_retry.is_none() {
                        log::line(&self.config.name, "ERROR", &format!("accept failed: {e}"));
                    }
                    self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, peer: IpAddr, awaiting_proxy: bool) {
        // Behind a proxy every connection comes from the proxy's address: the
        // per-address limit waits for the client's, in the PROXY header.
        if !awaiting_proxy && self.over_peer_limit(peer) {
            turn_away(
                stream,
                "too many connections from your address; retry later",
            );
            self.shared.metrics.count_refused(Refused::PerPeer);
            return;
        }
        if self.connections.len() >= self.config.max_connections {
            match self.victim() {
                Some(key) => self.close(key, Closed::Evicted),
                None => {
                    turn_away(stream, "too many connections; retry later");
                    self.shared.metrics.count_refused(Refused::Capacity);
                    return;
                }
            }
        }
        // Replies are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        debug_assert!(key < WAKER.0, "slab key collides with a reserved token");
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            log::line(&self.config.name, "ERROR", &format!("register failed: {e}"));
            return;
        }
        self.next_generation += 1;
        if !awaiting_proxy {
            *self.peers.entry(peer).or_insert(0) += 1;
        }
        self.shared.metrics.connection_opened();
        entry.insert(Connection::new(
            stream,
            self.next_generation,
            peer,
            awaiting_proxy,
        ));
    }

    fn over_peer_limit(&self, peer: IpAddr) -> bool {
        self.peers.get(&peer).copied().unwrap_or(0) >= self.config.max_per_peer
    }

    /// Reads a connection's PROXY header: true once it is known (the client
    /// then counts against its own address, or is refused), false while its
    /// bytes are still coming.
    ///
    /// # Errors
    /// Why the connection must close: not a PROXY v2 header (a direct client
    /// on a port that expects a proxy) or ended before the header
    /// ([`Closed::ProxyHeader`]), or its socket failed.
    fn read_proxy_header(&mut self, key: usize) -> Result<bool, Closed> {
        let Some(conn) = self.connections.get_mut(key) else {
            return Ok(false);
        };
        let filled = fill(conn)?;
        let header = match proxy::parse(&conn.read_buf) {
            Ok(Some(header)) => header,
            Ok(None) => {
                if filled.ended {
                    return Err(Closed::ProxyHeader);
                }
                if !conn.read_buf.is_empty() && conn.frame_started.is_none() {
                    conn.frame_started = Some(Instant::now());
                }
                return Ok(false);
            }
            Err(e) => {
                log::line(
                    &self.config.name,
                    "WARN",
                    &format!("closing a connection from {}: {e}", conn.peer),
                );
                return Err(Closed::ProxyHeader);
            }
        };
        let (header, used) = header;
        conn.read_buf.advance(used);
        conn.frame_started = None;
        conn.stage = if filled.ended {
            Stage::PeerEnded
        } else {
            Stage::Open
        };
        conn.last_active = Instant::now();
        if let proxy::Header::Proxied(client) = header {
            conn.peer = client.ip();
        }
        let peer = conn.peer;
        if self.over_peer_limit(peer) {
            self.connections[key].answer_and_close(
                ErrorCode::Overloaded,
                "too many connections from your address; retry later",
                Closed::PeerLimit,
            );
            self.shared.metrics.count_refused(Refused::PerPeer);
        } else {
            self.connections[key].counted = true;
            *self.peers.entry(peer).or_insert(0) += 1;
        }
        Ok(true)
    }

    /// The connection to close for a newcomer at the connection limit: one with
    /// nothing in flight, preferring a partial frame (a stalled sender), then the
    /// address holding the most connections, then the longest idle.
    fn victim(&self) -> Option<usize> {
        self.connections
            .iter()
            .filter(|(_, c)| c.is_quiet() && !c.is_closing())
            .max_by_key(|(_, c)| {
                (
                    c.frame_started.is_some(),
                    self.peers.get(&c.peer).copied().unwrap_or(0),
                    std::cmp::Reverse(c.frame_started.unwrap_or(c.last_active)),
                )
            })
            .map(|(key, _)| key)
    }

    /// Makes all the progress a connection can make now, or closes it.
    fn drive(&mut self, key: usize) {
        let awaiting = self
            .connections
            .get(key)
            .is_some_and(|c| c.stage == Stage::AwaitingProxy);
        if awaiting {
            match self.read_proxy_header(key) {
                Ok(true) => {}
                Ok(false) => return,
                Err(why) => {
                    self.close(key, why);
                    return;
                }
            }
        }
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        let keep = step(conn, key, &mut self.shared).and_then(|()| {
            if conn.read_buf.is_empty() || self.shared.decoder.has_frame(&conn.read_buf) {
                conn.frame_started = None;
            } else if conn.frame_started.is_none() {
                conn.frame_started = Some(Instant::now());
            }
            let want_write = !conn.write_buf.is_empty();
            if want_write != conn.writable {
                let interest = if want_write {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                self.poll
                    .registry()
                    .reregister(&mut conn.stream, Token(key), interest)
                    .map_err(|_| Closed::Io)?;
                conn.writable = want_write;
            }
            Ok(())
        });
        if let Err(why) = keep {
            self.close(key, why);
        }
    }

    /// Takes the answers the workers handed back, each to its connection (an
    /// answer for a closed connection, or for an earlier one in a reused
    /// slot, is dropped). The answer is copied into the connection's own
    /// write buffer, so the worker's buffer is free for its next answer.
    fn take_done(&mut self) {
        while let Ok(done) = self.done.try_recv() {
            // A worker is free again: stalled frames may fit in the channel now.
            self.submit_stalled();
            let Some(conn) = self.connections.get_mut(done.key) else {
                continue;
            };
            if conn.generation != done.generation {
                continue;
            }
            conn.in_flight = InFlight::None;
            conn.last_active = Instant::now();
            conn.write_buf.extend_from_slice(&done.out);
            drop(done.out);
            self.drive(done.key);
        }
    }

    fn submit_stalled(&mut self) {
        for lane in 0..self.shared.lanes.len() {
            self.submit_stalled_in(lane);
        }
    }

    fn submit_stalled_in(&mut self, lane: usize) {
        let Lane { jobs, stalled } = &mut self.shared.lanes[lane];
        let Some(jobs) = jobs else {
            return;
        };
        while let Some((key, generation)) = stalled.pop_front() {
            let Some(conn) = self.connections.get_mut(key) else {
                continue;
            };
            if conn.generation != generation {
                continue;
            }
            let job = match std::mem::replace(&mut conn.in_flight, InFlight::Submitted) {
                InFlight::Stalled { job, .. } => job,
                other => {
                    conn.in_flight = other;
                    continue;
                }
            };
            match jobs.try_send(job) {
                Ok(()) => {}
                Err(flume::TrySendError::Full(job)) => {
                    conn.in_flight = InFlight::Stalled { job, lane };
                    stalled.push_front((key, generation));
                    return;
                }
                Err(flume::TrySendError::Disconnected(_)) => return,
            }
        }
    }

    fn begin_drain(&mut self) {
        log::line(
            &self.config.name,
            "INFO",
            &format!(
                "shutting down: {} connections, finishing in-flight requests",
                self.connections.len()
            ),
        );
        self.shared.draining = true;
        for mut listener in [self.listener.take(), self.proxy_listener.take()]
            .into_iter()
            .flatten()
        {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let idle: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, c)| c.is_quiet())
            .map(|(key, _)| key)
            .collect();
        for key in idle {
            self.close(key, Closed::Draining);
        }
    }

    fn close_idle(&mut self, now: Instant) {
        let limit = self.config.idle_timeout;
        let deadline = self.config.frame_deadline;
        let idle: Vec<(usize, Closed)> = self
            .connections
            .iter()
            .filter(|(_, c)| !c.busy())
            .filter_map(|(key, c)| {
                if c.frame_started
                    .is_some_and(|t| now.duration_since(t) > deadline)
                {
                    Some((key, Closed::FrameDeadline))
                } else {
                    (now.duration_since(c.last_active) > limit).then_some((key, Closed::Idle))
                }
            })
            .collect();
        for (key, why) in idle {
            if why == Closed::FrameDeadline {
                self.shared
                    .metrics
                    .count_frame_rejected(FrameRejected::Deadline);
            }
            self.close(key, why);
        }
    }

    fn close(&mut self, key: usize, why: Closed) {
        if let Some(mut conn) = self.connections.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.shared.metrics.connection_closed(why);
            if let InFlight::Stalled { lane, .. } = conn.in_flight {
                // Its frame leaves the queue unserved.
                self.shared.metrics.queued(lane == SLOW, -1);
            }
            if conn.counted {
                if let Some(n) = self.peers.get_mut(&conn.peer) {
                    *n -= 1;
                    if *n == 0 {
                        self.peers.remove(&conn.peer);
                    }
                }
            }
            // A descriptor is free again: connections left waiting by a failed
            // accept can be taken now.
            if self.accept_retry.is_some() {
                self.accept_retry = Some(Instant::now());
            }
        }
    }

    /// Closes what is left when the loop ends (drained, or the drain timed out).
    fn close_all(&mut self) {
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key, Closed::Draining);
        }
    }
}

//! The server reactor: one mio `Poll` thread and a pool of blocking workers.
//!
//! ```text
//!  socket ──read──▶ Connection.read_buf ──split frame──▶ Job ──flume (bounded)──▶ worker
//!                                                                                   │
//!  socket ◀─write── Connection.write_buf ◀── Reply ◀──flume + Waker───────────────────┘
//! ```
//!
//! Invariants:
//! - A connection has at most one request queued or running (`busy`), so replies go
//!   out in request order; later frames wait in its read buffer.
//! - Every job carries the connection's slab key AND generation; a reply whose
//!   generation does not match the slot's current connection is dropped, because the
//!   slot may have been reused.
//! - Memory per connection is bounded: reading stops once a whole frame is waiting and
//!   the read buffer is over its high-water mark, and dispatching stops while unsent
//!   replies are over theirs, so a client that never reads its replies is pushed back
//!   on by TCP instead of growing the server.
//! - When the job channel is full a frame waits in its connection (`stalled`) and the
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

use crate::log;
use crate::metrics::{FrameRejected, Outcome, Refused, ServerMetrics};
use crate::proxy;
use bytes::{Buf, BytesMut};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wire::response::encode_error;
use wire::{ErrorCode, FrameDecoder};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// The listener whose connections start with a PROXY protocol v2 header.
const PROXY_LISTENER: Token = Token(usize::MAX - 3);

/// Bytes read from a socket per `read` call.
const READ_CHUNK: usize = 4096;
/// Stop reading a connection that has a whole frame waiting and this much buffered.
const READ_HIGH_WATER: usize = 64 * 1024;
/// Stop dispatching a connection's requests while this much output is unsent.
const WRITE_HIGH_WATER: usize = 64 * 1024;
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

/// A periodic task that runs beside a server (e.g. sweeping expired sessions).
type Housekeeping = (Duration, Box<dyn FnMut() + Send>);

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
    service: Option<Arc<dyn Service>>,
    housekeeping: Option<Housekeeping>,
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
            service: None,
            housekeeping: None,
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

    /// Sets the service [`Server::run_prepared`] runs.
    #[must_use]
    pub fn with_service(mut self, service: Arc<dyn Service>) -> Self {
        self.service = Some(service);
        self
    }

    /// Counts into `metrics` (by default, metrics nobody reads).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<ServerMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs `task` every `every` on a thread of its own while the server runs.
    #[must_use]
    pub fn with_housekeeping(
        mut self,
        every: Duration,
        task: impl FnMut() + Send + 'static,
    ) -> Self {
        self.housekeeping = Some((every, Box::new(task)));
        self
    }

    /// Serves with the service set by [`Server::with_service`].
    ///
    /// # Errors
    /// As [`Server::run`]; `InvalidInput` when no service was set.
    pub fn run_prepared(mut self) -> io::Result<()> {
        match self.service.take() {
            Some(service) => self.run(service),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the server has no service",
            )),
        }
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
            service: _,
            housekeeping,
            metrics,
        } = self;
        metrics.set_workers(config.workers.max(1));
        let (stop_housekeeping, stopped) = flume::bounded::<()>(0);
        let housekeeper = match housekeeping {
            Some((every, mut task)) => Some(
                std::thread::Builder::new()
                    .name(format!("{}-housekeeping", config.name))
                    .spawn(move || {
                        while let Err(flume::RecvTimeoutError::Timeout) =
                            stopped.recv_timeout(every)
                        {
                            task();
                        }
                    })?,
            ),
            None => None,
        };
        let (reply_tx, reply_rx) = flume::unbounded::<Reply>();
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
                        replies: reply_tx.clone(),
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
        drop(reply_tx);
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
            replies: reply_rx,
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
        drop(stop_housekeeping);
        for thread in workers.into_iter().chain(housekeeper) {
            if thread.join().is_err() {
                log::line(&reactor.config.name, "ERROR", "a worker thread panicked");
            }
        }
        result
    }
}

struct Job {
    key: usize,
    generation: u64,
    /// The client (see `Connection::peer`).
    peer: IpAddr,
    body: BytesMut,
    /// When its whole frame was read.
    arrived: Instant,
}

struct Reply {
    key: usize,
    generation: u64,
    out: BytesMut,
}

/// Runs the service on one request, turning a panic into an `INTERNAL` reply.
fn call_service(
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
struct Worker {
    service: Arc<dyn Service>,
    jobs: flume::Receiver<Job>,
    replies: flume::Sender<Reply>,
    waker: Arc<Waker>,
    name: String,
    metrics: Arc<ServerMetrics>,
    /// Of the password lane.
    slow: bool,
}

impl Worker {
    fn work(self) {
        for mut job in self.jobs.iter() {
            self.metrics.queued(self.slow, -1);
            if !self.slow {
                self.metrics.busy(1);
            }
            let mut out = BytesMut::with_capacity(256);
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
            let reply = Reply {
                key: job.key,
                generation: job.generation,
                out,
            };
            if self.replies.send(reply).is_err() {
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

struct Connection {
    stream: TcpStream,
    generation: u64,
    /// The client: the socket's peer, or the one a PROXY header named.
    peer: IpAddr,
    /// Counted in `Reactor::peers` (not while its PROXY header is awaited).
    counted: bool,
    /// Its PROXY protocol header has not arrived yet.
    awaiting_proxy: bool,
    /// When the partial frame in `read_buf` began (None: no partial frame).
    frame_started: Option<Instant>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// A request of this connection is queued, stalled or running.
    busy: bool,
    /// A job waiting for room in its lane's channel, and the lane.
    stalled: Option<(Job, usize)>,
    last_active: Instant,
    peer_closed: bool,
    /// Close as soon as `write_buf` is flushed (after `BAD_FRAME`).
    closing: bool,
    /// WRITABLE interest is registered.
    writable: bool,
}

/// A job channel and the connections whose frame waits for room in it.
struct Lane {
    jobs: Option<flume::Sender<Job>>,
    stalled: VecDeque<(usize, u64)>,
}

/// The main lane; the slow lane, when there is one, is the second.
const MAIN: usize = 0;
const SLOW: usize = 1;

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
    replies: flume::Receiver<Reply>,
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
            self.take_replies();
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
                let drained = self
                    .connections
                    .iter()
                    .all(|(_, c)| !c.busy && c.write_buf.is_empty());
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
            refuse(
                stream,
                "too many connections from your address; retry later",
            );
            self.shared.metrics.refused(Refused::PerPeer);
            return;
        }
        if self.connections.len() >= self.config.max_connections {
            match self.victim() {
                Some(key) => self.close(key),
                None => {
                    refuse(stream, "too many connections; retry later");
                    self.shared.metrics.refused(Refused::Capacity);
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
        entry.insert(Connection {
            stream,
            generation: self.next_generation,
            peer,
            counted: !awaiting_proxy,
            awaiting_proxy,
            frame_started: None,
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            busy: false,
            stalled: None,
            last_active: Instant::now(),
            peer_closed: false,
            closing: false,
            writable: false,
        });
    }

    fn over_peer_limit(&self, peer: IpAddr) -> bool {
        self.peers.get(&peer).copied().unwrap_or(0) >= self.config.max_per_peer
    }

    /// Reads a connection's PROXY header: true once it is known (the client
    /// then counts against its own address, or is refused), false while its
    /// bytes are still coming.
    ///
    /// # Errors
    /// When the connection must be closed: not a PROXY v2 header (a direct
    /// client on a port that expects a proxy), or closed before the header.
    fn read_proxy_header(&mut self, key: usize) -> io::Result<bool> {
        let Some(conn) = self.connections.get_mut(key) else {
            return Ok(false);
        };
        fill(conn)?;
        let header = match proxy::parse(&conn.read_buf) {
            Ok(Some(header)) => header,
            Ok(None) => {
                if conn.peer_closed {
                    return Err(io::ErrorKind::UnexpectedEof.into());
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
                return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
            }
        };
        let (header, used) = header;
        conn.read_buf.advance(used);
        conn.frame_started = None;
        conn.awaiting_proxy = false;
        conn.last_active = Instant::now();
        if let proxy::Header::Proxied(client) = header {
            conn.peer = client.ip();
        }
        let peer = conn.peer;
        if self.over_peer_limit(peer) {
            let conn = &mut self.connections[key];
            encode_error(
                &mut conn.write_buf,
                None,
                ErrorCode::Overloaded,
                "too many connections from your address; retry later",
            );
            conn.closing = true;
            conn.read_buf.clear();
            self.shared.metrics.refused(Refused::PerPeer);
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
            .filter(|(_, c)| !c.busy && c.write_buf.is_empty() && !c.closing)
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
        if self.connections.get(key).is_some_and(|c| c.awaiting_proxy) {
            match self.read_proxy_header(key) {
                Ok(true) => {}
                Ok(false) => return,
                Err(_) => {
                    self.close(key);
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
                    .reregister(&mut conn.stream, Token(key), interest)?;
                conn.writable = want_write;
            }
            Ok(())
        });
        if keep.is_err() {
            self.close(key);
        }
    }

    fn take_replies(&mut self) {
        while let Ok(reply) = self.replies.try_recv() {
            // A worker is free again: stalled frames may fit in the channel now.
            self.submit_stalled();
            let Some(conn) = self.connections.get_mut(reply.key) else {
                continue;
            };
            if conn.generation != reply.generation {
                continue;
            }
            conn.busy = false;
            conn.last_active = Instant::now();
            if conn.write_buf.is_empty() {
                conn.write_buf = reply.out;
            } else {
                conn.write_buf.extend_from_slice(&reply.out);
            }
            self.drive(reply.key);
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
            let Some((job, _)) = conn.stalled.take() else {
                continue;
            };
            match jobs.try_send(job) {
                Ok(()) => {}
                Err(flume::TrySendError::Full(job)) => {
                    conn.stalled = Some((job, lane));
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
            .filter(|(_, c)| !c.busy && c.write_buf.is_empty())
            .map(|(key, _)| key)
            .collect();
        for key in idle {
            self.close(key);
        }
    }

    fn close_idle(&mut self, now: Instant) {
        let limit = self.config.idle_timeout;
        let deadline = self.config.frame_deadline;
        let idle: Vec<(usize, bool)> = self
            .connections
            .iter()
            .filter_map(|(key, c)| {
                let late = c
                    .frame_started
                    .is_some_and(|t| now.duration_since(t) > deadline);
                (!c.busy && (now.duration_since(c.last_active) > limit || late))
                    .then_some((key, late))
            })
            .collect();
        for (key, late) in idle {
            if late {
                self.shared.metrics.frame_rejected(FrameRejected::Deadline);
            }
            self.close(key);
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(mut conn) = self.connections.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.shared.metrics.connection_closed();
            if let Some((_, lane)) = conn.stalled {
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

    fn close_all(&mut self) {
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key);
        }
    }
}

/// Writes, dispatches and reads until nothing more can happen without waiting.
///
/// # Errors
/// When the connection must be closed: an I/O error, the peer gone, or a bad frame
/// answered.
fn step(conn: &mut Connection, key: usize, shared: &mut Shared) -> io::Result<()> {
    loop {
        let mut progressed = flush(conn)?;
        if conn.closing && conn.write_buf.is_empty() {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        if !conn.busy
            && !conn.closing
            && !shared.draining
            && conn.write_buf.len() < WRITE_HIGH_WATER
        {
            match shared.decoder.decode(&mut conn.read_buf) {
                Ok(Some(body)) => {
                    conn.last_active = Instant::now();
                    dispatch(conn, key, body, shared);
                    progressed = true;
                }
                Ok(None) => {}
                Err(e) => {
                    shared.metrics.frame_rejected(match e {
                        wire::FrameError::Empty => FrameRejected::Empty,
                        wire::FrameError::TooLarge { .. } => FrameRejected::TooLarge,
                    });
                    encode_error(
                        &mut conn.write_buf,
                        None,
                        ErrorCode::BadFrame,
                        &e.to_string(),
                    );
                    conn.closing = true;
                    conn.read_buf = BytesMut::new();
                    continue;
                }
            }
        }
        let want_read = !conn.peer_closed
            && !conn.closing
            && (conn.read_buf.len() < READ_HIGH_WATER || !shared.decoder.has_frame(&conn.read_buf));
        if want_read && fill(conn)? {
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    let finished = conn.peer_closed
        && !conn.busy
        && conn.write_buf.is_empty()
        && !shared.decoder.has_frame(&conn.read_buf);
    if finished {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Writes pending output until done or the socket is full; true if bytes went out.
fn flush(conn: &mut Connection) -> io::Result<bool> {
    let mut wrote = false;
    while !conn.write_buf.is_empty() {
        match conn.stream.write(&conn.write_buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.write_buf.advance(n);
                wrote = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(wrote)
}

/// Reads until the socket is drained or the buffer is full enough; true if bytes
/// arrived. End of stream sets `peer_closed`.
fn fill(conn: &mut Connection) -> io::Result<bool> {
    let mut got = false;
    loop {
        let len = conn.read_buf.len();
        if len >= READ_HIGH_WATER {
            // The caller re-checks whether a whole frame is waiting.
            return Ok(got);
        }
        conn.read_buf.resize(len + READ_CHUNK, 0);
        let result = conn.stream.read(&mut conn.read_buf[len..]);
        let n = *result.as_ref().unwrap_or(&0);
        conn.read_buf.truncate(len + n);
        match result {
            Ok(0) => {
                conn.peer_closed = true;
                return Ok(got);
            }
            Ok(_) => got = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(got),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
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
    conn.busy = true;
    shared.metrics.queued(lane == SLOW, 1);
    let job = Job {
        key,
        generation: conn.generation,
        peer: conn.peer,
        body,
        arrived,
    };
    match jobs.try_send(job) {
        Ok(()) => {}
        Err(flume::TrySendError::Full(job)) => {
            conn.stalled = Some((job, lane));
            stalled.push_back((key, conn.generation));
        }
        Err(flume::TrySendError::Disconnected(_)) => {
            shared.metrics.queued(lane == SLOW, -1);
            conn.busy = false;
            encode_error(
                &mut conn.write_buf,
                None,
                ErrorCode::Unavailable,
                "the server is stopping",
            );
        }
    }
}

/// Answers a connection over a limit with one `OVERLOADED` frame and closes it.
fn refuse(mut stream: TcpStream, message: &str) {
    let mut out = BytesMut::new();
    encode_error(&mut out, None, ErrorCode::Overloaded, message);
    // Best effort: a fresh socket's send buffer takes this small frame whole.
    let _ = stream.write(&out);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

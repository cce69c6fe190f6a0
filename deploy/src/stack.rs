//! The whole marketplace in one process: a private PostgreSQL cluster (or two
//! existing databases) and both servers on threads of their own.

use crate::pg::{Cluster, Durability};
use net::ShutdownHandle;
use server::ServerSettings;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use store::DbSettings;

/// Where the servers run.
#[derive(Debug, Clone)]
pub enum ServerMode {
    /// On threads of this process (what `marketplace up` and the tests use).
    Threads,
    /// Each in a child process: `exe prefix.. seller|buyer --listen ..`, where
    /// `exe` answers those subcommands with [`crate::serve_subcommand`]. Gives
    /// each server its own CPU time and memory, as the load generator reports.
    Processes { exe: PathBuf, prefix: Vec<String> },
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Where the private cluster lives (created on first use, reused after).
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// PostgreSQL's port; 0 picks a free one.
    pub pg_port: u16,
    pub seller_listen: SocketAddr,
    pub buyer_listen: SocketAddr,
    pub session_timeout: Duration,
    pub workers: usize,
    /// Use these databases instead of a private cluster: (customer, product).
    pub external: Option<(String, String)>,
    /// Log one line per request.
    pub trace: bool,
    pub servers: ServerMode,
    /// Serve both servers' metrics here (with [`ServerMode::Processes`],
    /// each server serves its own, on free ports of this address's host).
    pub metrics_listen: Option<SocketAddr>,
}

impl StackConfig {
    /// Both servers on free loopback ports, a throwaway cluster in `data_dir`.
    pub fn local(data_dir: PathBuf) -> Self {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        StackConfig {
            data_dir,
            durability: Durability::Throwaway,
            pg_port: 0,
            seller_listen: any,
            buyer_listen: any,
            session_timeout: Duration::from_secs(300),
            workers: 8,
            external: None,
            trace: false,
            servers: ServerMode::Threads,
            metrics_listen: None,
        }
    }
}

enum Running {
    Thread {
        handle: ShutdownHandle,
        thread: JoinHandle<io::Result<()>>,
    },
    Process {
        name: &'static str,
        child: Child,
    },
}

/// A started stack. Dropping it (or [`Stack::stop`]) stops everything it
/// started, PostgreSQL included.
pub struct Stack {
    cluster: Mutex<Option<Cluster>>,
    /// Held while the stack runs its own cluster.
    _lock: Option<crate::pg::DirLock>,
    db: DbSettings,
    seller: ServerSettings,
    buyer: ServerSettings,
    mode: ServerMode,
    running: Mutex<Vec<Running>>,
    /// The metrics of the servers that run in this process (both share it,
    /// as one exposition), and its listener when asked for one.
    exporter: server::metrics::Exporter,
    endpoint: Option<server::metrics::Endpoint>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere (a failed test) must not keep the stack from stopping.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stack {
    /// Starts PostgreSQL (unless external databases are given), creates and
    /// migrates both databases, and starts both servers.
    ///
    /// # Errors
    /// A message saying what could not be started.
    pub fn start(config: &StackConfig) -> Result<Stack, String> {
        let (lock, cluster, customer_url, product_url) = match &config.external {
            Some((customer, product)) => (None, None, customer.clone(), product.clone()),
            None => {
                let lock = crate::pg::DirLock::take(&config.data_dir)?;
                let mut cluster = Cluster::init(&config.data_dir, config.durability)?;
                cluster.start(config.pg_port)?;
                cluster.create_database("customer_db")?;
                cluster.create_database("product_db")?;
                let urls = (cluster.url("customer_db"), cluster.url("product_db"));
                (Some(lock), Some(cluster), urls.0, urls.1)
            }
        };
        let db = DbSettings {
            customer_url,
            product_url,
            pool_size: u32::try_from(config.workers + server::settings::hash_lane())
                .unwrap_or(u32::MAX),
            session_timeout: config.session_timeout,
            ..DbSettings::default()
        };
        let exporter = server::metrics::Exporter::default();
        let processes = matches!(config.servers, ServerMode::Processes { .. });
        let own_metrics = |addr: Option<SocketAddr>| -> Result<Option<SocketAddr>, String> {
            match addr {
                Some(a) if processes => Ok(Some(SocketAddr::new(a.ip(), crate::pg::free_port()?))),
                _ => Ok(None),
            }
        };
        let settings = |name: &str, listen: SocketAddr| -> Result<ServerSettings, String> {
            Ok(ServerSettings {
                listen,
                proxy_listen: None,
                reactor: net::Config {
                    name: name.to_owned(),
                    workers: config.workers,
                    slow_workers: server::settings::hash_lane(),
                    ..net::Config::default()
                },
                trace: config.trace,
                metrics_listen: own_metrics(config.metrics_listen)?,
            })
        };
        let fixed = |addr: SocketAddr| -> Result<SocketAddr, String> {
            // Child processes cannot report a port 0 back: pick one now.
            match (&config.servers, addr.port()) {
                (ServerMode::Processes { .. }, 0) => {
                    Ok(SocketAddr::new(addr.ip(), crate::pg::free_port()?))
                }
                _ => Ok(addr),
            }
        };
        let mut stack = Stack {
            cluster: Mutex::new(cluster),
            _lock: lock,
            db,
            seller: settings(seller_srv::NAME, fixed(config.seller_listen)?)?,
            buyer: settings(buyer_srv::NAME, fixed(config.buyer_listen)?)?,
            mode: config.servers.clone(),
            running: Mutex::new(Vec::new()),
            exporter: exporter.clone(),
            endpoint: None,
        };
        if let (Some(addr), false) = (config.metrics_listen, processes) {
            let endpoint = exporter
                .serve(addr)
                .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
            stack.endpoint = Some(endpoint);
        }
        // A port picked here for a child process can be taken before the child
        // binds it (another program's connection gets it as its ephemeral
        // port): the child then exits, and the ports are picked again.
        let picked = processes
            && (config.seller_listen.port() == 0
                || config.buyer_listen.port() == 0
                || config.metrics_listen.is_some());
        let mut attempts = 1;
        let (seller, buyer) = loop {
            match stack.launch() {
                Ok(addrs) => break addrs,
                Err(e) if picked && attempts < 3 && e.contains("process exited") => {
                    attempts += 1;
                    stack.stop_servers();
                    stack.seller.listen = fixed(config.seller_listen)?;
                    stack.buyer.listen = fixed(config.buyer_listen)?;
                    stack.seller.metrics_listen = own_metrics(config.metrics_listen)?;
                    stack.buyer.metrics_listen = own_metrics(config.metrics_listen)?;
                }
                Err(e) => return Err(e),
            }
        };
        // A port 0 is now fixed, so a restart comes back where clients expect it.
        stack.seller.listen = seller;
        stack.buyer.listen = buyer;
        Ok(stack)
    }

    /// A stack started elsewhere (containers, another host): its two servers and
    /// databases. Nothing is started or stopped through it.
    pub fn attach(seller: SocketAddr, buyer: SocketAddr, db: DbSettings) -> Stack {
        let settings = |name: &str, listen: SocketAddr| ServerSettings {
            listen,
            proxy_listen: None,
            reactor: net::Config {
                name: name.to_owned(),
                ..net::Config::default()
            },
            trace: false,
            metrics_listen: None,
        };
        Stack {
            cluster: Mutex::new(None),
            _lock: None,
            db,
            seller: settings(seller_srv::NAME, seller),
            buyer: settings(buyer_srv::NAME, buyer),
            mode: ServerMode::Threads,
            running: Mutex::new(Vec::new()),
            exporter: server::metrics::Exporter::default(),
            endpoint: None,
        }
    }

    /// Starts both servers again on their addresses (after `stop_servers`).
    ///
    /// # Errors
    /// When a database is unreachable or an address cannot be bound.
    pub fn start_servers(&self) -> Result<(), String> {
        self.launch().map(|_| ())
    }

    fn launch(&self) -> Result<(SocketAddr, SocketAddr), String> {
        if let ServerMode::Processes { exe, prefix } = &self.mode {
            let mut running = lock(&self.running);
            for (name, settings) in [("seller", &self.seller), ("buyer", &self.buyer)] {
                let child = self.spawn(exe, prefix, name, settings)?;
                running.push(Running::Process { name, child });
            }
            return Ok((self.seller.listen, self.buyer.listen));
        }
        let wait = Duration::from_secs(10);
        let seller = server::prepare(
            &seller_srv::SIDE,
            &self.seller,
            &self.db,
            wait,
            &self.exporter,
        )?;
        let buyer = server::prepare(
            &buyer_srv::SIDE,
            &self.buyer,
            &self.db,
            wait,
            &self.exporter,
        )?;
        let addrs = (seller.local_addr(), buyer.local_addr());
        let mut running = lock(&self.running);
        for server in [seller, buyer] {
            let handle = server.shutdown_handle();
            let thread = std::thread::Builder::new()
                .name("server".into())
                .spawn(move || server.run())
                .map_err(|e| format!("cannot start a server thread: {e}"))?;
            running.push(Running::Thread { handle, thread });
        }
        Ok(addrs)
    }

    fn spawn(
        &self,
        exe: &PathBuf,
        prefix: &[String],
        side: &str,
        settings: &ServerSettings,
    ) -> Result<Child, String> {
        let mut command = Command::new(exe);
        command
            .args(prefix)
            .arg(side)
            .args(["--listen", &settings.listen.to_string()])
            .args(["--customer-db", &self.db.customer_url])
            .args(["--product-db", &self.db.product_url])
            .args(["--workers", &settings.reactor.workers.to_string()])
            .args(["--pool-size", &self.db.pool_size.to_string()])
            .args([
                "--session-timeout",
                &self.db.session_timeout.as_secs_f64().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if settings.trace {
            command.arg("--log-requests");
        }
        if let Some(addr) = settings.metrics_listen {
            command.args(["--metrics-listen", &addr.to_string()]);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start the {side} server process: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(settings.listen).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the {side} server process exited: {status}"));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                return Err(format!("the {side} server process did not start listening"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(child)
    }

    /// The process ids of the servers, by name, when they run as processes.
    pub fn server_pids(&self) -> Vec<(&'static str, u32)> {
        lock(&self.running)
            .iter()
            .filter_map(|r| match r {
                Running::Process { name, child } => Some((*name, child.id())),
                Running::Thread { .. } => None,
            })
            .collect()
    }

    /// Stops both servers, letting in-flight requests finish.
    pub fn stop_servers(&self) {
        let running: Vec<Running> = lock(&self.running).drain(..).collect();
        for r in &running {
            match r {
                Running::Thread { handle, .. } => handle.shutdown(),
                // SAFETY: kill(2) on our own child; SIGTERM starts its drain.
                Running::Process { child, .. } => unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
                },
            }
        }
        for r in running {
            match r {
                Running::Thread { thread, .. } => {
                    if let Ok(Err(e)) = thread.join() {
                        net::log::line(
                            "marketplace",
                            "ERROR",
                            &format!("a server stopped on: {e}"),
                        );
                    }
                }
                Running::Process { name, mut child } => {
                    if let Err(e) = child.wait() {
                        net::log::line("marketplace", "ERROR", &format!("{name} server: {e}"));
                    }
                }
            }
        }
    }

    /// Stops PostgreSQL, leaving the servers running (for fault tests).
    ///
    /// # Errors
    /// When pg_ctl fails or there is no private cluster.
    pub fn stop_postgres(&self) -> Result<(), String> {
        match &*lock(&self.cluster) {
            Some(cluster) => cluster.stop(),
            None => Err("the stack uses external databases".into()),
        }
    }

    /// Starts PostgreSQL again on the same port.
    ///
    /// # Errors
    /// When pg_ctl fails or there is no private cluster.
    pub fn start_postgres(&self) -> Result<(), String> {
        match &mut *lock(&self.cluster) {
            Some(cluster) => {
                let port = cluster.port();
                cluster.start(port)
            }
            None => Err("the stack uses external databases".into()),
        }
    }

    /// Creates (if needed) database `name` in the private cluster and returns
    /// its URL: for tests that need a database of their own.
    ///
    /// # Errors
    /// When there is no private cluster or it cannot be reached.
    pub fn create_database(&self, name: &str) -> Result<String, String> {
        match &*lock(&self.cluster) {
            Some(cluster) => cluster.create_database(name).map(|()| cluster.url(name)),
            None => Err("the stack uses external databases".into()),
        }
    }

    /// The seller server's address.
    pub fn seller_addr(&self) -> SocketAddr {
        self.seller.listen
    }

    /// The buyer server's address.
    pub fn buyer_addr(&self) -> SocketAddr {
        self.buyer.listen
    }

    /// Where the servers' metrics are served: one endpoint for both servers
    /// on threads, one per server process; none unless asked for.
    pub fn metrics_addrs(&self) -> Vec<SocketAddr> {
        match &self.endpoint {
            Some(endpoint) => vec![endpoint.local_addr()],
            None => [&self.seller, &self.buyer]
                .iter()
                .filter_map(|s| s.metrics_listen)
                .collect(),
        }
    }

    /// The database settings the servers use.
    pub fn db(&self) -> &DbSettings {
        &self.db
    }

    /// Stops the servers, then PostgreSQL.
    pub fn stop(&self) {
        self.stop_servers();
        if let Some(cluster) = lock(&self.cluster).take() {
            if let Err(e) = cluster.stop() {
                net::log::line("marketplace", "ERROR", &format!("stopping PostgreSQL: {e}"));
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}

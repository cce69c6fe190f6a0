//! Reactor benchmark: requests/s and latency through the worker pool, against the
//! same reactor answering inline (no worker hop) as the baseline, at 1, 10, 100 and
//! 1,000 connections with one request in flight each; then the server's RSS with
//! 10,000 idle connections.
//!
//! The server is the `net-echo` binary in its own process (so its memory is its
//! own); the load is one mio loop in this process. Run with
//! `cargo bench -p net --bench reactor -- [--secs S] [--conns 1,10,100,1000]
//! [--idle N] [--workers N]`.

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BODY: &[u8] = br#"{"operation":"Ping","request_id":1234567}"#;

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn spawn(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_net-echo"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn net-echo");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read listening line");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .expect("listening line")
            .parse()
            .expect("address");
        Server { child, addr }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("proc stat");
        let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after_comm.split(' ').collect();
        let ticks: f64 =
            fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
        // SAFETY: sysconf has no preconditions.
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    sent_at: Instant,
    waiting: bool,
}

fn frame() -> Vec<u8> {
    let mut out = (BODY.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(BODY);
    out
}

fn send(conn: &mut Conn, request: &[u8]) -> io::Result<()> {
    let mut written = 0;
    while written < request.len() {
        match conn.stream.write(&request[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
    conn.sent_at = Instant::now();
    conn.waiting = true;
    Ok(())
}

struct Outcome {
    completed: u64,
    secs: f64,
    latency: Histogram<u64>,
    server_cpu: f64,
}

/// `conns` connections, one request in flight each, for `warmup + secs`.
fn load(server: &Server, conns: usize, warmup: Duration, secs: Duration) -> io::Result<Outcome> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let request = frame();
    let mut all = Vec::with_capacity(conns);
    for i in 0..conns {
        let std_stream = std::net::TcpStream::connect(server.addr)?;
        std_stream.set_nodelay(true)?;
        std_stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)?;
        all.push(Conn {
            stream,
            buf: Vec::with_capacity(256),
            sent_at: Instant::now(),
            waiting: false,
        });
    }
    for conn in &mut all {
        send(conn, &request)?;
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + secs;
    let mut cpu_at_start = None;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut completed = 0u64;
    let mut outstanding = conns;
    let mut chunk = [0u8; 16 * 1024];
    while outstanding > 0 {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        let now = Instant::now();
        if cpu_at_start.is_none() && now >= measure_from {
            cpu_at_start = Some(server.cpu_secs());
        }
        if now > end + Duration::from_secs(5) {
            break;
        }
        for event in events.iter() {
            let conn = &mut all[event.token().0];
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            while conn.buf.len() >= 4 {
                let len = u32::from_be_bytes([conn.buf[0], conn.buf[1], conn.buf[2], conn.buf[3]])
                    as usize;
                if conn.buf.len() < 4 + len {
                    break;
                }
                assert_eq!(&conn.buf[4..4 + len], BODY, "wrong reply");
                conn.buf.drain(..4 + len);
                let done = Instant::now();
                conn.waiting = false;
                if done >= measure_from && done < end {
                    completed += 1;
                    let _ =
                        latency.record(done.duration_since(conn.sent_at).as_micros().max(1) as u64);
                }
                if done < end {
                    send(conn, &request)?;
                } else {
                    outstanding -= 1;
                }
            }
        }
    }
    let server_cpu = server.cpu_secs() - cpu_at_start.unwrap_or(0.0);
    Ok(Outcome {
        completed,
        secs: secs.as_secs_f64(),
        latency,
        server_cpu,
    })
}

fn idle_rss(count: usize) -> io::Result<(u64, u64)> {
    let server = Server::spawn(&[
        "--workers",
        "2",
        "--max-connections",
        &(count + 100).to_string(),
    ]);
    std::thread::sleep(Duration::from_millis(200));
    let before = server.rss_kib();
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        held.push(std::net::TcpStream::connect(server.addr)?);
    }
    // Prove they are all served: a request on every hundredth connection.
    for conn in held.iter_mut().step_by(100) {
        conn.write_all(&frame())?;
        let mut reply = vec![0u8; 4 + BODY.len()];
        conn.read_exact(&mut reply)?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = server.rss_kib();
    drop(held);
    Ok((before, after))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = pico_args::Arguments::from_env();
    let _ = args.contains("--bench");
    let secs: f64 = args.opt_value_from_str("--secs")?.unwrap_or(3.0);
    let conns: String = args
        .opt_value_from_str("--conns")?
        .unwrap_or_else(|| "1,10,100,1000".into());
    let idle: usize = args.opt_value_from_str("--idle")?.unwrap_or(10_000);
    let workers: String = args
        .opt_value_from_str("--workers")?
        .unwrap_or_else(|| "2".into());
    let conns: Vec<usize> = conns.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "reactor benchmark: {cpus} CPUs, echo service, {} B requests, one in flight per connection, {secs} s per point after 0.5 s warm-up, server workers = {workers}",
        BODY.len()
    );
    println!(
        "{:<8} {:>6} {:>12} {:>9} {:>9} {:>9} {:>12}",
        "mode", "conns", "requests/s", "p50 µs", "p99 µs", "max µs", "srv CPU s"
    );
    let mut ratio_at: Vec<(usize, f64, f64)> = Vec::new();
    for &n in &conns {
        let mut rates = [0.0; 2];
        for (i, (mode, extra)) in [
            ("workers", &["--workers", workers.as_str()][..]),
            ("inline", &["--inline"][..]),
        ]
        .into_iter()
        .enumerate()
        {
            let mut server_args = vec!["--max-connections", "20000"];
            server_args.extend_from_slice(extra);
            let server = Server::spawn(&server_args);
            let o = load(
                &server,
                n,
                Duration::from_millis(500),
                Duration::from_secs_f64(secs),
            )?;
            let rate = o.completed as f64 / o.secs;
            rates[i] = rate;
            println!(
                "{:<8} {:>6} {:>12.0} {:>9} {:>9} {:>9} {:>12.2}",
                mode,
                n,
                rate,
                o.latency.value_at_quantile(0.50),
                o.latency.value_at_quantile(0.99),
                o.latency.max(),
                o.server_cpu
            );
        }
        ratio_at.push((n, rates[0], rates[1]));
    }
    for (n, w, i) in ratio_at {
        println!("workers/inline at {n:>5} connections: {:.2}", w / i);
    }
    if idle > 0 {
        let (before, after) = idle_rss(idle)?;
        println!(
            "server RSS: {:.1} MiB before, {:.1} MiB with {idle} idle connections",
            before as f64 / 1024.0,
            after as f64 / 1024.0
        );
    }
    Ok(())
}

//! Helpers shared by the reactor tests: an in-process server, a server in a child
//! process, and raw frame I/O on plain sockets.
#![allow(dead_code)]

use net::metrics::ServerMetrics;
use net::Config;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub use net::echo::Running;

pub fn start(config: Config) -> Running {
    net::echo::start(config, false, None)
}

/// A server with a PROXY protocol listener beside its plain one.
pub fn start_behind_proxy(config: Config) -> Running {
    net::echo::start(config, true, None)
}

/// A server that counts into `metrics`.
pub fn start_counted(config: Config, metrics: Arc<ServerMetrics>) -> Running {
    net::echo::start(config, false, Some(metrics))
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

pub fn write_frame(stream: &mut TcpStream, body: &[u8]) {
    stream.write_all(&frame(body)).expect("write frame");
}

pub fn read_frame(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// Reads until the server closes: Ok(()) on a clean end of stream or a reset.
pub fn expect_closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected the server to close, got {e}"),
    }
}

/// The echo server as a child process (for signals and memory measurements).
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Process {
    pub fn spawn(args: &[&str]) -> Process {
        Process::start(Command::new(env!("CARGO_BIN_EXE_net-echo")).args(args))
    }

    /// Like `spawn`, with the process allowed at most `fds` open descriptors.
    pub fn spawn_limited(args: &[&str], fds: u64) -> Process {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_net-echo"));
        command.args(args);
        // SAFETY: setrlimit is async-signal-safe and touches only this child.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: fds,
                    rlim_max: fds,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            });
        }
        Process::start(&mut command)
    }

    fn start(command: &mut Command) -> Process {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn net-echo");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Process { child, addr }
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill failed");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a socket send a reset instead of a FIN when dropped.
pub fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid fd and a correctly sized, initialised option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// The code of an error response body.
pub fn error_code(mut body: Vec<u8>) -> wire::ErrorCode {
    let response =
        wire::Response::<wire::response::Empty>::decode(&mut body).expect("an error response");
    assert_ne!(response.status, wire::Status::Ok);
    response.code.expect("a code")
}

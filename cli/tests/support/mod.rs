//! Running the CLI binaries against this test binary's stack.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

pub fn stack() -> &'static deploy::Stack {
    deploy::testing::shared_stack(|_| {})
}

pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
}

fn finish(out: Output) -> Run {
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

/// Runs `bin` (seller-cli or buyer-cli) with `script` on stdin.
pub fn piped(bin: &str, server: std::net::SocketAddr, args: &[&str], script: &str) -> Run {
    let mut child = Command::new(bin)
        .arg("--server")
        .arg(server.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the cli");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    finish(child.wait_with_output().unwrap())
}

pub fn seller(script: &str) -> Run {
    piped(
        env!("CARGO_BIN_EXE_seller-cli"),
        stack().seller_addr(),
        &[],
        script,
    )
}

pub fn buyer(script: &str) -> Run {
    piped(
        env!("CARGO_BIN_EXE_buyer-cli"),
        stack().buyer_addr(),
        &[],
        script,
    )
}

#[allow(unused_imports)]
pub use deploy::testing::{unique_category, unique_name as unique};

/// The number in a line like "item 12 registered in category 3".
pub fn id_after(text: &str, prefix: &str) -> i64 {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
        + prefix.len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {prefix:?} in {text}"))
}

/// A new seller with one item listed: (seller name, category, item id).
pub fn list_item(name: &str, price: &str, qty: i64) -> (String, i64, i64) {
    let owner = unique("shop");
    let category = unique_category();
    let run = seller(&format!(
        "create-account {owner} pw\nlogin {owner} pw\n\
         register \"{name}\" --category {category} --price {price} --qty {qty} --keywords tea\n"
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    (owner, category, id_after(&run.stdout, "item "))
}

/// An address nothing listens on.
pub fn dead_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `bin` under a pseudo-terminal, talking to `server`, with its history in a
/// fresh directory (returned).
pub fn spawn_pty(
    bin: &str,
    server: std::net::SocketAddr,
    label: &str,
) -> (rexpect::session::PtySession, deploy::testing::TempDir) {
    let home = deploy::testing::scratch_dir(label);
    // A terminal of 100x40, as a person's has (a pty starts at 0x0, where the
    // line editor cannot lay out a list of completions).
    let mut command = Command::new("sh");
    command
        .args(["-c", "stty cols 100 rows 40 && exec \"$0\" \"$@\"", bin])
        .args(["--server", &server.to_string()])
        .env("XDG_STATE_HOME", &*home)
        .env("TERM", "xterm");
    let session =
        rexpect::session::spawn_command(command, Some(20_000)).expect("spawn under a pty");
    (session, home)
}

/// A relay to `backend` that can be cut: its connections closed and its
/// listener gone, as a server that went away.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    pub fn start(backend: std::net::SocketAddr) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>> =
            std::sync::Arc::default();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (kept, stopped) = (streams.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let server = std::net::TcpStream::connect(backend).unwrap();
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 8192];
                        while let Ok(n) = std::io::Read::read(&mut from, &mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                kept.lock().unwrap().extend([client, server]);
            }
            // Dropping the listener here refuses every later connection.
        });
        Relay {
            addr,
            streams,
            stop,
        }
    }

    pub fn cut(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(50));
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// `bin` (seller-cli or buyer-cli) for `server` as a child with piped stdin,
/// stdout and stderr, for a test that talks to it command by command.
pub fn spawn_cli(bin: &str, server: std::net::SocketAddr) -> std::process::Child {
    Command::new(bin)
        .arg("--server")
        .arg(server.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the cli")
}

//! Runs the reactor with the trivial echo service: for reactor tests and the
//! benchmark, never for production.
//!
//! Prints `listening ADDR` once bound; stops cleanly on SIGINT/SIGTERM.

use net::echo::Echo;
use net::{Config, Server};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    if let Err(e) = run() {
        eprintln!("net-echo: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = pico_args::Arguments::from_env();
    let defaults = Config::default();
    let listen: std::net::SocketAddr = args
        .opt_value_from_str("--listen")?
        .unwrap_or_else(|| "127.0.0.1:0".parse().expect("literal address"));
    let config = Config {
        name: "net-echo".into(),
        workers: args.opt_value_from_str("--workers")?.unwrap_or(2),
        max_connections: args
            .opt_value_from_str("--max-connections")?
            .unwrap_or(defaults.max_connections),
        idle_timeout: args
            .opt_value_from_str("--idle-ms")?
            .map_or(defaults.idle_timeout, Duration::from_millis),
        inline: args.contains("--inline"),
        ..defaults
    };
    let proxy_listen: Option<std::net::SocketAddr> = args.opt_value_from_str("--proxy-listen")?;
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!("unexpected arguments: {rest:?}").into());
    }
    let mut server = Server::bind(listen, config)?;
    if let Some(addr) = proxy_listen {
        println!("proxy listening {}", server.with_proxy_listener(addr)?);
    }
    net::signals::shutdown_on_signals(vec![server.shutdown_handle()])?;
    println!("listening {}", server.local_addr());
    server.run(Arc::new(Echo))?;
    net::log::line("net-echo", "INFO", "stopped");
    Ok(())
}

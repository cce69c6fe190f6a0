//! The server the client tests talk to: the reactor with its echo service
//! (it answers each frame with the frame itself, and `sleep:N ...` after N ms),
//! on a thread of this process.

pub use net::echo::Running;
use net::Config;

/// An echo server on a free loopback port.
pub fn start(config: Config) -> Running {
    net::echo::start(config, false, None)
}

//! SIGINT and SIGTERM start a clean shutdown of a server.

use crate::reactor::ShutdownHandle;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io;

/// Starts a thread that calls [`ShutdownHandle::shutdown`] on every handle when the
/// process gets SIGINT or SIGTERM. A second signal while draining exits at once
/// with status 130, for an operator who does not want to wait.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn shutdown_on_signals(handles: Vec<ShutdownHandle>) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for _ in signals.forever() {
                seen += 1;
                if seen > 1 {
                    std::process::exit(130);
                }
                for handle in &handles {
                    handle.shutdown();
                }
            }
        })?;
    Ok(())
}

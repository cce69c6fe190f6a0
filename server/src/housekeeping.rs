//! Housekeeping: the chores a server runs beside its requests, on a thread
//! of its own, every tick while it runs (folding the search counts, logging a
//! change of the standby's state) and once per sweep interval (expired
//! sessions, interrupted purchases, old idempotency keys). What the chores are
//! is `prepare`'s business; here, only when they run and how they stop.

use std::time::{Duration, Instant};

/// Runs `task` every `every` on a thread named `name` until the returned
/// guard is dropped (which waits for a running `task` to end).
///
/// # Errors
/// When the thread cannot be started.
pub fn start(
    name: &str,
    every: Duration,
    mut task: impl FnMut() + Send + 'static,
) -> std::io::Result<Running> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("{name}-housekeeping"))
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every)
            {
                task();
            }
        })?;
    Ok(Running {
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Housekeeping that runs; dropping it stops it.
#[derive(Debug)]
pub struct Running {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A chore run at most once per period, from a loop that ticks more often.
#[derive(Debug)]
pub struct Every {
    period: Duration,
    last: Option<Instant>,
}

impl Every {
    /// Due at once, then once per `period`.
    pub fn new(period: Duration) -> Self {
        Every { period, last: None }
    }

    /// Whether the chore is due now; if so, the period starts again.
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        let due = self.last.is_none_or(|last| now - last >= self.period);
        if due {
            self.last = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chore_is_due_at_once_then_once_per_period() {
        let mut every = Every::new(Duration::from_millis(50));
        assert!(every.due());
        assert!(!every.due());
        std::thread::sleep(Duration::from_millis(60));
        assert!(every.due());
        assert!(!every.due());
    }
}

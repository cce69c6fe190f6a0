//! Password hashing: argon2id with a random salt per password, PHC strings stored.
//!
//! Slow on purpose; call only from worker threads. Each hash or verification
//! takes 19 MiB of working memory for ~15 ms of CPU, so at most one per core
//! runs at once (more would only share the cores and multiply the memory):
//! the gate bounds the working memory a process holds at once, whatever its
//! allocator keeps for reuse (with glibc's per-thread arenas and no gate, a
//! burst of logins on 16 workers grew a server past 2 GiB of RSS, measured
//! with loadgen, 100x100; the servers now allocate with mimalloc, see
//! `server`).

use crate::StoreError;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use std::sync::{Condvar, Mutex, OnceLock};

/// A counting semaphore: at most one hash per core at a time.
struct Gate {
    free: Mutex<usize>,
    freed: Condvar,
}

fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| Gate {
        free: Mutex::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
        freed: Condvar::new(),
    })
}

/// Runs `f` holding one of the gate's places.
fn gated<T>(f: impl FnOnce() -> T) -> T {
    let gate = gate();
    {
        let mut free = gate
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *free == 0 {
            free = gate
                .freed
                .wait(free)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *free -= 1;
    }
    struct Release(&'static Gate);
    impl Drop for Release {
        fn drop(&mut self) {
            *self
                .0
                .free
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
            self.0.freed.notify_one();
        }
    }
    let _release = Release(gate);
    f()
}

/// Hashes `password` with a fresh salt into a PHC string (`$argon2id$v=19$...`).
///
/// # Errors
/// `Internal` if the OS random source fails.
pub fn hash(password: &str) -> Result<String, StoreError> {
    let hashed: PasswordHash = gated(|| Argon2::default().hash_password(password.as_bytes()))
        .map_err(|e| StoreError::Internal(format!("password hashing failed: {e}")))?;
    Ok(hashed.to_string())
}

/// Whether `password` matches the stored PHC string. A malformed stored hash
/// never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        gated(|| Argon2::default().verify_password(password.as_bytes(), &parsed)).is_ok()
    })
}

/// Spends the time of one verification for an unknown username, so a login
/// failure takes as long whether or not the username exists.
pub fn verify_nobody(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash("not a real password").unwrap_or_default());
    let _ = verify(password, stored);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_is_salted() {
        let a = hash("hunter2").unwrap();
        let b = hash("hunter2").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "two hashes of one password must differ (salt)");
        assert!(!a.contains("hunter2"));
        assert!(verify("hunter2", &a));
        assert!(!verify("hunter3", &a));
        assert!(!verify("hunter2", "not a phc string"));
    }

    #[test]
    fn concurrent_hashing_is_gated_and_every_caller_gets_through() {
        let threads: Vec<_> = (0..8)
            .map(|i| std::thread::spawn(move || hash(&format!("pw{i}")).unwrap()))
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            assert!(verify(&format!("pw{i}"), &t.join().unwrap()));
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert_eq!(
            *gate().free.lock().unwrap(),
            cores,
            "every place was given back"
        );
    }
}

//! Password hashing: argon2id with a random salt per password, PHC strings stored.
//!
//! Slow on purpose; call only from worker threads.

use crate::StoreError;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use std::sync::OnceLock;

/// Hashes `password` with a fresh salt into a PHC string (`$argon2id$v=19$...`).
///
/// # Errors
/// `Internal` if the OS random source fails.
pub fn hash(password: &str) -> Result<String, StoreError> {
    let hashed: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| StoreError::Internal(format!("password hashing failed: {e}")))?;
    Ok(hashed.to_string())
}

/// Whether `password` matches the stored PHC string. A malformed stored hash
/// never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
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
}

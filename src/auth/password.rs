//! argon2id password hashes. Hashing is deliberately slow: callers run it off the async workers.

use std::sync::OnceLock;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use super::AuthError;

pub fn hash(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

pub fn verify(password: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of the same algorithm and cost as real ones. Login verifies the password against it
/// when the email is unknown, so that answer takes the same argon2 work as a wrong password
/// and timing does not reveal which accounts exist.
pub fn stand_in_hash() -> &'static str {
    static STAND_IN: OnceLock<String> = OnceLock::new();
    STAND_IN.get_or_init(|| {
        hash("chatnode-timing-equaliser").expect("argon2 hashes with its default parameters")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = super::hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("correct horse", &h));
        assert!(!super::verify("wrong horse", &h));
        assert!(!super::verify("anything", "not a hash"));
    }

    #[test]
    fn the_stand_in_hash_costs_what_a_real_one_does() {
        use argon2::password_hash::PasswordHash;
        let real = super::hash("correct horse").unwrap();
        let real = PasswordHash::new(&real).unwrap();
        // Parsed, so verifying against it runs argon2 rather than failing fast.
        let stand_in = PasswordHash::new(super::stand_in_hash()).unwrap();
        assert_eq!(stand_in.algorithm, real.algorithm);
        assert_eq!(stand_in.version, real.version);
        assert_eq!(stand_in.params, real.params);
        assert_eq!(stand_in.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
        assert!(!super::verify("correct horse", super::stand_in_hash()));
    }
}

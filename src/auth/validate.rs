//! Registration rules beyond the domain's values: Django's default password checks, names,
//! and the generated username.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

/// Field name -> message, as the original's `{"validations": {...}}`.
pub type FieldErrors = BTreeMap<String, String>;

pub const REQUIRED: &str = "This field is required.";
const MAX_NAME_CHARS: usize = 150;
const MAX_PASSWORD_CHARS: usize = 1024;
const MIN_PASSWORD_CHARS: usize = 8;

/// Django's list of 20,000 common passwords (django/contrib/auth/common-passwords.txt).
static COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

pub fn password(raw: &str) -> Result<(), &'static str> {
    let chars = raw.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err("This password is too short. It must contain at least 8 characters.");
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err("This password is too long.");
    }
    if raw.chars().all(|c| c.is_ascii_digit()) {
        return Err("This password is entirely numeric.");
    }
    if common_passwords().contains(raw.trim().to_lowercase().as_str()) {
        return Err("This password is too common.");
    }
    Ok(())
}

pub fn name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(REQUIRED);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("Ensure this field has no more than 150 characters.");
    }
    Ok(name.to_string())
}

fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| COMMON_PASSWORDS.lines().map(str::trim).collect())
}

/// `local-part_` plus 12 random hex digits, as the original generated.
pub fn username_for(email: &str) -> String {
    let local = email.split('@').next().unwrap_or("user");
    let suffix = hex::encode(rand::random::<[u8; 6]>());
    format!("{local}_{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_follow_djangos_default_validators() {
        assert!(password("short1").is_err());
        assert!(password("1234567890").is_err());
        assert!(password("password").is_err());
        assert!(password("Password").is_err());
        assert!(password("tr0ub4dor&3-horse").is_ok());
    }

    #[test]
    fn usernames_have_a_12_hex_suffix() {
        let name = username_for("bob@example.com");
        let (local, suffix) = name.split_once('_').unwrap();
        assert_eq!(local, "bob");
        assert_eq!(suffix.len(), 12);
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()));
    }
}

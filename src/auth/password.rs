//! argon2id password hashes in PHC form (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`), computed
//! into memory the caller owns so a hashing worker reuses one buffer for every job. Hashing is
//! deliberately slow: only the workers of [`super::hasher`] call these.

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::AuthError;

/// argon2id cost; OWASP's password storage cheat sheet sets the floor (see [`Cost::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub memory_kib: u32,
    pub iterations: u32,
}

/// OWASP's argon2id minimums (memory KiB, iterations), all with parallelism 1: less memory
/// is acceptable only with more iterations.
pub const OWASP_FLOOR: [(u32, u32); 5] = [
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
];

impl Default for Cost {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
        }
    }
}

impl Cost {
    /// Refuses parameters weaker than every OWASP minimum, naming them.
    pub fn check(self) -> Result<Params, AuthError> {
        let strong_enough = OWASP_FLOOR
            .iter()
            .any(|&(m, t)| self.memory_kib >= m && self.iterations >= t);
        if !strong_enough {
            return Err(AuthError::Hash(format!(
                "argon2id with {} KiB and {} iterations is below OWASP's minimum; use at least \
                 --argon2-memory-kib 19456 with --argon2-iterations 2 (or 12288/3, 9216/4, 7168/5)",
                self.memory_kib, self.iterations
            )));
        }
        Params::new(self.memory_kib, self.iterations, 1, None)
            .map_err(|e| AuthError::Hash(format!("invalid argon2 parameters: {e}")))
    }
}

/// Memory for one argon2 computation of `params`; a worker keeps it for its lifetime.
pub fn memory_for(params: &Params) -> Vec<Block> {
    vec![Block::default(); params.block_count()]
}

/// A new PHC string for `password` with a random salt, computed in `memory`.
pub fn hash(params: &Params, memory: &mut [Block], password: &str) -> Result<String, AuthError> {
    let fail = |e: &dyn std::fmt::Display| AuthError::Hash(e.to_string());
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| fail(&e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, memory)
        .map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| fail(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches `stored`, recomputed with the stored algorithm and parameters.
/// `memory` is used when it is large enough; a stored hash of a higher memory cost (written
/// under older settings) gets a buffer of its own for this one check, so it still verifies.
pub fn verify(memory: &mut [Block], password: &str, stored: &str) -> bool {
    recompute(memory, password, stored).unwrap_or(false)
}

fn recompute(memory: &mut [Block], password: &str, stored: &str) -> Option<bool> {
    let parsed = PasswordHash::new(stored).ok()?;
    let expected = parsed.hash?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .ok()?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).ok()?;
    let mut salt = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let computed = if params.block_count() <= memory.len() {
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory)
    } else {
        argon2.hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            memory_for(&params),
        )
    };
    computed.ok()?;
    // `Output` compares in constant time.
    Some(Output::new(&out).ok()? == expected)
}

/// A PHC string of the given cost that no password matches (its output is random). Login
/// verifies against it when the email is unknown, so that answer costs the same argon2 work
/// as a wrong password and timing does not reveal which accounts exist.
pub fn stand_in(params: &Params) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let output = rand::random::<[u8; Params::DEFAULT_OUTPUT_LEN]>();
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).expect("checked argon2 parameters encode"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).expect("32 bytes is a valid output")),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    fn cost() -> Params {
        Cost::default().check().unwrap()
    }

    #[test]
    fn hashes_are_argon2id_in_phc_form_and_verify() {
        let params = cost();
        let mut memory = memory_for(&params);
        let h = hash(&params, &mut memory, "correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify(&mut memory, "correct horse", &h));
        assert!(!verify(&mut memory, "wrong horse", &h));
        assert!(!verify(&mut memory, "anything", "not a hash"));
        // The stock verifier agrees, so other tools can check these hashes.
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
    }

    #[test]
    fn hashes_written_before_and_of_a_higher_cost_still_verify() {
        let params = cost();
        let mut memory = memory_for(&params);
        // What `Argon2::default().hash_password` stored before the worker pool.
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify(&mut memory, "correct horse", &old));
        let bigger = Params::new(32 * 1024, 2, 1, None).unwrap();
        let big = Argon2::new(Algorithm::Argon2id, Version::V0x13, bigger)
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify(&mut memory, "correct horse", &big));
        assert!(!verify(&mut memory, "wrong horse", &big));
    }

    #[test]
    fn the_stand_in_costs_what_a_real_hash_does_and_matches_nothing() {
        let params = cost();
        let mut memory = memory_for(&params);
        let real = hash(&params, &mut memory, "correct horse").unwrap();
        let real = PasswordHash::new(&real).unwrap();
        let stand_in = stand_in(&params);
        // Parsed, so verifying against it runs argon2 rather than failing fast.
        let parsed = PasswordHash::new(&stand_in).unwrap();
        assert_eq!(parsed.algorithm, real.algorithm);
        assert_eq!(parsed.version, real.version);
        assert_eq!(parsed.params, real.params);
        assert_eq!(parsed.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
        assert!(!verify(&mut memory, "correct horse", &stand_in));
    }

    #[test]
    fn costs_below_the_owasp_floor_are_refused() {
        for (m, t) in [(19_455, 2), (12_288, 2), (7_167, 5), (65_536, 0)] {
            let refused = Cost {
                memory_kib: m,
                iterations: t,
            }
            .check();
            assert!(refused.is_err(), "{m}/{t}");
        }
        for (m, t) in OWASP_FLOOR {
            let cost = Cost {
                memory_kib: m,
                iterations: t,
            };
            assert!(cost.check().is_ok(), "{m}/{t}");
        }
    }
}

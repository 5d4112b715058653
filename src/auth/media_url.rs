//! Capability URLs for attachments: `/media/<file>?exp=<unix seconds>&sig=<HMAC>`, so an
//! `<img src>` or `<video src>` works without an `Authorization` header. The HMAC-SHA256 of
//! the file name and expiry is keyed by a key derived from each JWT secret, so every node
//! mints URLs the others accept, and rotating the secret rotates these keys too. URLs are
//! minted fresh in every answer and frame, for members only, and checked in constant time.

use jsonwebtoken::{crypto, Algorithm, EncodingKey};

use super::Tokens;

/// What the derived keys are for: never the input of a JWT signature.
const LABEL: &[u8] = b"chatnode media URL key v1";
const PREFIX: &str = "/media/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MediaUrlRefusal {
    #[error("This media URL has expired; ask for the message again for a fresh one")]
    Expired,
    #[error("This media URL is not valid: its signature does not match")]
    Invalid,
}

pub struct MediaUrls {
    /// Newest first: the first mints, every one verifies.
    keys: Vec<EncodingKey>,
    ttl_secs: i64,
}

impl MediaUrls {
    pub fn new(tokens: &Tokens, ttl_secs: u64) -> Self {
        Self {
            keys: tokens.derived_keys(LABEL),
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2),
        }
    }

    /// `path` (`/media/<file>`) as a URL valid for the configured time; any other path is
    /// returned as it is.
    pub fn mint(&self, path: &str) -> String {
        let Some(file) = path.strip_prefix(PREFIX) else {
            return path.to_string();
        };
        let exp = now() + self.ttl_secs;
        let sig = signature(&self.keys[0], file, exp);
        format!("{path}?exp={exp}&sig={sig}")
    }

    /// Whether `exp` and `sig` are a URL this cluster minted for `file`, still valid.
    pub fn check(&self, file: &str, exp: &str, sig: &str) -> Result<(), MediaUrlRefusal> {
        let exp: i64 = exp.parse().map_err(|_| MediaUrlRefusal::Invalid)?;
        let genuine = self
            .keys
            .iter()
            .any(|key| same(signature(key, file, exp).as_bytes(), sig.as_bytes()));
        if !genuine {
            return Err(MediaUrlRefusal::Invalid);
        }
        if exp < now() {
            return Err(MediaUrlRefusal::Expired);
        }
        Ok(())
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn signature(key: &EncodingKey, file: &str, exp: i64) -> String {
    crypto::sign(format!("{file}\n{exp}").as_bytes(), key, Algorithm::HS256)
        .expect("HMAC-SHA256 accepts any key")
}

/// Equal bytes, in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (&str, &str, &str) {
        let (path, query) = url.split_once('?').unwrap();
        let (exp, sig) = query.split_once('&').unwrap();
        let file = path.strip_prefix(PREFIX).unwrap();
        (
            file,
            exp.strip_prefix("exp=").unwrap(),
            sig.strip_prefix("sig=").unwrap(),
        )
    }

    #[test]
    fn a_minted_url_checks_and_any_change_to_it_does_not() {
        let urls = MediaUrls::new(&Tokens::new(b"secret"), 60);
        let url = urls.mint("/media/abc.png");
        let (file, exp, sig) = split(&url);
        assert_eq!(urls.check(file, exp, sig), Ok(()));
        assert_eq!(
            urls.check("abd.png", exp, sig),
            Err(MediaUrlRefusal::Invalid)
        );
        let later = (exp.parse::<i64>().unwrap() + 1).to_string();
        assert_eq!(urls.check(file, &later, sig), Err(MediaUrlRefusal::Invalid));
        assert_eq!(
            urls.check(file, exp, &sig[1..]),
            Err(MediaUrlRefusal::Invalid)
        );
        let other = MediaUrls::new(&Tokens::new(b"another secret"), 60);
        assert_eq!(other.check(file, exp, sig), Err(MediaUrlRefusal::Invalid));
        assert_eq!(urls.mint("https://elsewhere/x"), "https://elsewhere/x");
    }

    #[test]
    fn an_expired_url_is_refused_as_expired() {
        let urls = MediaUrls::new(&Tokens::new(b"secret"), 0);
        let exp = now() - 1;
        let sig = signature(&urls.keys[0], "abc.png", exp);
        let refused = urls.check("abc.png", &exp.to_string(), &sig);
        assert_eq!(refused, Err(MediaUrlRefusal::Expired));
    }
}

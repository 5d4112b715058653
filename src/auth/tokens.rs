//! HS256 JWTs with the original's claims (djangorestframework-simplejwt's layout).

use std::path::Path;

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AuthError;

pub const ACCESS_LIFETIME_SECS: i64 = 60 * 60;
pub const REFRESH_LIFETIME_SECS: i64 = 30 * 24 * 60 * 60;
const SECRET_FILE: &str = "jwt-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }

    fn lifetime(self) -> i64 {
        match self {
            TokenKind::Access => ACCESS_LIFETIME_SECS,
            TokenKind::Refresh => REFRESH_LIFETIME_SECS,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub token_type: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub user_id: i64,
}

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    pub fn new(secret: &[u8]) -> Self {
        // Only HS256 is accepted: `none` and asymmetric algorithms are refused by decode.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The configured secret, or the one generated on first start and kept in `data_dir`.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<Self, AuthError> {
        if let Some(secret) = configured {
            if secret.len() < 16 {
                return Err(AuthError::Secret(
                    "the JWT secret must be at least 16 characters".into(),
                ));
            }
            return Ok(Self::new(secret.as_bytes()));
        }
        let path = data_dir.join(SECRET_FILE);
        match std::fs::read_to_string(&path) {
            Ok(secret) if !secret.trim().is_empty() => {
                return Ok(Self::new(secret.trim().as_bytes()))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AuthError::Secret(format!("{}: {e}", path.display()))),
        }
        let secret = hex::encode(rand::random::<[u8; 32]>());
        write_private(&path, &secret)
            .map_err(|e| AuthError::Secret(format!("{}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), "generated a new JWT signing secret");
        Ok(Self::new(secret.as_bytes()))
    }

    pub fn issue(&self, user_id: i64, kind: TokenKind) -> Result<String, AuthError> {
        let iat = chrono::Utc::now().timestamp();
        let claims = Claims {
            token_type: kind.as_str().to_string(),
            exp: iat + kind.lifetime(),
            iat,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            user_id,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Secret(e.to_string()))
    }

    /// Checks signature, expiry and that the token is of the `expected` kind.
    pub fn verify(&self, token: &str, expected: TokenKind) -> Result<Claims, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::ExpiredToken,
                _ => AuthError::InvalidToken,
            })?;
        if data.claims.token_type != expected.as_str() {
            return Err(AuthError::WrongTokenType(expected.as_str()));
        }
        Ok(data.claims)
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_and_refresh_are_not_interchangeable() {
        let tokens = Tokens::new(b"0123456789abcdef0123456789abcdef");
        let access = tokens.issue(7, TokenKind::Access).unwrap();
        let refresh = tokens.issue(7, TokenKind::Refresh).unwrap();
        assert_eq!(
            tokens.verify(&access, TokenKind::Access).unwrap().user_id,
            7
        );
        assert!(matches!(
            tokens.verify(&refresh, TokenKind::Access),
            Err(AuthError::WrongTokenType("access"))
        ));
        assert!(tokens.verify(&refresh, TokenKind::Refresh).is_ok());
        let other = Tokens::new(b"another-secret-another-secret!!");
        assert!(matches!(
            other.verify(&access, TokenKind::Access),
            Err(AuthError::InvalidToken)
        ));
    }

    #[test]
    fn generated_secret_is_kept_in_the_data_dir() {
        let dir = std::env::temp_dir().join(format!("chatnode-secret-{}", uuid::Uuid::new_v4()));
        let first = Tokens::load(None, &dir).unwrap();
        let token = first.issue(1, TokenKind::Access).unwrap();
        let second = Tokens::load(None, &dir).unwrap();
        assert!(second.verify(&token, TokenKind::Access).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

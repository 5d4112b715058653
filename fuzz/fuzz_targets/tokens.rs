//! Access and refresh tokens as clients send them: in `Authorization` headers and `?token=`.
//! Nothing panics; a token that was not issued by this secret never verifies; an issued
//! token, however it was altered, verifies only as its own kind with its own claims.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use chatnode::auth::tokens::{ACCESS_LIFETIME_SECS, REFRESH_LIFETIME_SECS};
use chatnode::auth::{AuthError, TokenKind, Tokens};
use chatnode::http::bearer;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    user_id: i64,
    refresh: bool,
    /// Applied to an issued token, in order.
    edits: Vec<Edit>,
    /// A token from nowhere.
    forged: String,
    /// An `Authorization` header value.
    header: String,
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Set { at: u16, byte: u8 },
    Insert { at: u16, byte: u8 },
    Remove { at: u16 },
    Truncate { at: u16 },
    Append(String),
}

fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| Tokens::new(b"fuzzing-secret-0123456789abcdef"))
}

fn kinds(refresh: bool) -> (TokenKind, TokenKind) {
    if refresh {
        (TokenKind::Refresh, TokenKind::Access)
    } else {
        (TokenKind::Access, TokenKind::Refresh)
    }
}

fuzz_target!(|input: Input| {
    let tokens = tokens();
    let (kind, other) = kinds(input.refresh);

    let issued = tokens.issue(input.user_id, kind).expect("issuing works");
    let mut altered = issued.clone().into_bytes();
    for edit in &input.edits {
        apply(&mut altered, edit);
    }
    if let Ok(altered) = String::from_utf8(altered) {
        match tokens.verify(&altered, kind) {
            Ok(claims) => {
                assert_eq!(claims.user_id, input.user_id);
                assert_eq!(claims.token_type, kind.as_str());
                let lifetime = match kind {
                    TokenKind::Access => ACCESS_LIFETIME_SECS,
                    TokenKind::Refresh => REFRESH_LIFETIME_SECS,
                };
                assert_eq!(claims.exp - claims.iat, lifetime);
                assert!(matches!(
                    tokens.verify(&altered, other),
                    Err(AuthError::WrongTokenType(_))
                ));
            }
            Err(error) => {
                assert!(altered != issued, "an issued token was refused: {error}");
                assert!(matches!(
                    error,
                    AuthError::InvalidToken | AuthError::WrongTokenType(_)
                ));
            }
        }
    }

    for kind in [TokenKind::Access, TokenKind::Refresh] {
        assert!(tokens.verify(&input.forged, kind).is_err());
    }

    match bearer(Some(&input.header)) {
        Ok(Some(token)) => {
            assert!(!token.is_empty() && token == token.trim());
            let (scheme, rest) = input.header.trim().split_once(' ').expect("a scheme");
            assert!(scheme.eq_ignore_ascii_case("bearer") || scheme == "JWT");
            assert_eq!(rest.trim(), token);
        }
        Ok(None) => panic!("a header always yields a token or an error"),
        Err(error) => assert!(matches!(
            error,
            AuthError::InvalidToken | AuthError::MissingToken
        )),
    }
});

fn apply(token: &mut Vec<u8>, edit: &Edit) {
    let at = |at: u16, len: usize| usize::from(at) % (len + 1);
    match edit {
        Edit::Set { at: i, byte } if !token.is_empty() => {
            let i = usize::from(*i) % token.len();
            token[i] = *byte;
        }
        Edit::Set { .. } => {}
        Edit::Insert { at: i, byte } => {
            let i = at(*i, token.len());
            token.insert(i, *byte);
        }
        Edit::Remove { at: i } if !token.is_empty() => {
            let i = usize::from(*i) % token.len();
            token.remove(i);
        }
        Edit::Remove { .. } => {}
        Edit::Truncate { at: i } => {
            let i = at(*i, token.len());
            token.truncate(i);
        }
        Edit::Append(more) => token.extend_from_slice(more.as_bytes()),
    }
}

//! The JSON bodies the HTTP handlers read, with their validation: registration, login,
//! refresh/logout, room creation and sends. A bad body is a 400 with the error envelope's
//! `detail` or per-field `validations`, never a panic; an accepted registration is
//! normalised (validating it again changes nothing).
#![no_main]

use std::collections::BTreeSet;

use arbitrary::{Arbitrary, Unstructured};
use chatnode::auth::validate;
use chatnode::domain::values::{is_blank, Content, Email, PhoneNumber, MAX_CONTENT_CHARS};
use chatnode::http::auth::{LoginRequest, RefreshRequest, RegisterRequest};
use chatnode::http::messages::SendRequest;
use chatnode::http::rooms::CreateRoomRequest;
use chatnode::http::{parse_json, ApiError};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const REGISTER_FIELDS: [&str; 5] = [
    "email",
    "phone_number",
    "password",
    "first_name",
    "last_name",
];

#[derive(Arbitrary, Debug)]
enum Field {
    Missing,
    Null,
    Number(i64),
    Text(String),
}

// The first byte picks the body's route, the rest is the body (seeds are plain JSON).
fuzz_target!(|data: &[u8]| {
    let Some((route, body)) = data.split_first() else {
        return;
    };
    match route % 6 {
        0 => register(body, None),
        1 => {
            // A registration object whose fields the fuzzer picks one by one.
            let Ok(fields) = <[Field; 5]>::arbitrary_take_rest(Unstructured::new(body)) else {
                return;
            };
            let mut object = Map::new();
            for (name, field) in REGISTER_FIELDS.iter().zip(&fields) {
                let value = match field {
                    Field::Missing => continue,
                    Field::Null => Value::Null,
                    Field::Number(n) => json!(n),
                    Field::Text(s) => json!(s),
                };
                object.insert(name.to_string(), value);
            }
            let body = serde_json::to_vec(&object).expect("serialises");
            register(&body, Some(&fields));
        }
        2 => match LoginRequest::parse(body) {
            Ok(login) => {
                assert!(!login.email.trim().is_empty() && !login.password.trim().is_empty())
            }
            Err(e) => rejected(&e, &["email", "password"]),
        },
        3 => {
            if let Err(e) = parse_json::<RefreshRequest>(body) {
                rejected(&e, &[]);
            }
        }
        4 => {
            if let Err(e) = parse_json::<CreateRoomRequest>(body) {
                rejected(&e, &[]);
            }
        }
        _ => match parse_json::<SendRequest>(body) {
            Ok(send) => {
                // Blank content is fine only beside an attachment; the length bound is not.
                let short = send.content.chars().count() <= MAX_CONTENT_CHARS;
                // Invisible characters (zero-width, NUL, ...) are blank as well as whitespace.
                let blank = is_blank(&send.content);
                assert!(blank || !send.content.trim().is_empty());
                assert_eq!(
                    Content::parse(send.content.clone(), false).is_ok(),
                    short && !blank
                );
                assert_eq!(Content::parse(send.content, true).is_ok(), short);
            }
            Err(e) => rejected(&e, &[]),
        },
    }
});

fn register(body: &[u8], fields: Option<&[Field; 5]>) {
    match RegisterRequest::parse(body) {
        Ok(user) => {
            assert_eq!(Email::parse(user.email.as_str()).as_ref(), Ok(&user.email));
            assert_eq!(
                PhoneNumber::parse(user.phone_number.as_str()).as_ref(),
                Ok(&user.phone_number)
            );
            assert!(validate::password(&user.password).is_ok());
            assert_eq!(
                validate::name(&user.first_name).as_ref(),
                Ok(&user.first_name)
            );
            assert_eq!(
                validate::name(&user.last_name).as_ref(),
                Ok(&user.last_name)
            );
        }
        Err(e) => {
            rejected(&e, &REGISTER_FIELDS);
            // Every bad field is reported, and only bad ones.
            if let Some(fields) = fields {
                let errors = e.errors();
                let reported: BTreeSet<&str> = errors["validations"]
                    .as_object()
                    .expect("field errors")
                    .keys()
                    .map(String::as_str)
                    .collect();
                let bad: BTreeSet<&str> = REGISTER_FIELDS
                    .iter()
                    .zip(fields)
                    .filter(|(name, field)| !field_ok(name, field))
                    .map(|(name, _)| *name)
                    .collect();
                assert_eq!(reported, bad);
            }
        }
    }
}

fn field_ok(name: &str, field: &Field) -> bool {
    let Field::Text(value) = field else {
        return false;
    };
    !value.trim().is_empty()
        && match name {
            "email" => Email::parse(value).is_ok(),
            "phone_number" => PhoneNumber::parse(value).is_ok(),
            "password" => validate::password(value).is_ok(),
            _ => validate::name(value).is_ok(),
        }
}

/// A 400 in the envelope: a `detail`, or `validations` naming only `fields`.
fn rejected(e: &ApiError, fields: &[&str]) {
    let errors = e.errors();
    assert_eq!(e.status().as_u16(), 400, "{errors:?}");
    if let Some(detail) = errors.get("detail") {
        assert!(detail.as_str().is_some_and(|d| !d.is_empty()));
        return;
    }
    let validations = errors["validations"]
        .as_object()
        .expect("detail or validations");
    assert!(!validations.is_empty());
    for (field, message) in validations {
        assert!(fields.contains(&field.as_str()), "unexpected field {field}");
        assert!(message.as_str().is_some_and(|m| !m.is_empty()));
    }
}

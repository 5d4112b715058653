//! Whole requests through the node's real routes (`chatnode::http::routes`) on a SQLite
//! store: any method, path, query string (`?limit=`, `?before=`, `?after=`, `?since=`,
//! `?token=`), `Authorization` header and body (JSON, multipart or raw bytes). Never a
//! panic or a 5xx; every error is a 4xx in the JSON envelope and every JSON answer is an
//! envelope whose `success` matches its status; nothing behind authentication answers 2xx
//! to a request without a valid token.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use chatnode::auth::hasher::Hasher;
use chatnode::auth::{TokenKind, Tokens};
use chatnode::domain::values::{Email, PhoneNumber};
use chatnode::http::routes;
use chatnode::state::AppState;
use chatnode::store::{Attachment, NewUser, Store};
use chatnode::transport::memory::MemoryTransport;
use chatnode::Config;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

const BOUNDARY: &str = "chatnode-fuzz-5d1e";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

#[derive(Arbitrary, Debug)]
struct Input {
    method: Method,
    route: Route,
    slash: bool,
    query: Query,
    auth: Auth,
    body: Body,
}

#[derive(Arbitrary, Debug)]
enum Method {
    Get,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Head,
}

#[derive(Arbitrary, Debug)]
enum Route {
    Rooms,
    Create,
    Enter(Id),
    Leave(Id),
    History(Id),
    Send(Id),
    Socket(Id),
    Media(Option<String>),
    Refresh,
    Logout,
    Health,
    Schema,
    Docs(String),
    Path(String),
}

#[derive(Arbitrary, Debug)]
enum Id {
    /// The room the member is in.
    Member,
    /// A room the member is not in.
    Foreign,
    Number(i64),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Query {
    None,
    Pairs(Vec<(Key, Param)>),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Key {
    Limit,
    Before,
    After,
    Since,
    Token,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Param {
    Number(i64),
    Unsigned(u64),
    Text(String),
    AccessToken,
    RefreshToken,
}

#[derive(Arbitrary, Debug)]
enum Auth {
    None,
    Member,
    Outsider,
    Refresh,
    Header(String),
}

#[derive(Arbitrary, Debug)]
enum Body {
    Empty,
    Raw {
        content_type: Option<String>,
        bytes: Vec<u8>,
    },
    Json(Json),
    Multipart(Vec<(Field, bool, Vec<u8>)>),
}

#[derive(Arbitrary, Debug)]
enum Field {
    Content,
    Attachment,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    RefreshToken,
    Array(Vec<Json>),
    Object(Vec<(JsonKey, Json)>),
}

#[derive(Arbitrary, Debug)]
enum JsonKey {
    Name,
    Members,
    Content,
    Refresh,
    Other(String),
}

struct Node {
    runtime: tokio::runtime::Runtime,
    routes: BoxedFilter<(Response,)>,
    store: Arc<dyn Store>,
    member: i64,
    member_room: i64,
    foreign_room: i64,
    attachment: String,
    access: String,
    refresh: String,
    outsider: String,
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir: PathBuf =
            std::env::temp_dir().join(format!("chatnode-fuzz-http-{}", std::process::id()));
        let mut config = Config::new(&dir);
        // Small, so uploads reach the limit.
        config.max_upload_bytes = 2048;
        std::fs::create_dir_all(config.media_dir()).expect("a media directory");
        let setup = runtime.block_on(async move {
            let store = chatnode::store::open(&config.database_url())
                .await
                .expect("the store opens");
            let user = |name: &str| NewUser {
                email: Email::parse(&format!("{name}@example.com")).expect("an email"),
                username: name.to_string(),
                phone_number: PhoneNumber::parse("+1 415-555-2671").expect("a phone number"),
                first_name: name.into(),
                last_name: name.into(),
                // Nobody logs in here; tokens are issued directly.
                password_hash: "unused".into(),
            };
            let member = store.create_user(user("member")).await.expect("a user");
            let outsider = store.create_user(user("outsider")).await.expect("a user");
            let cap = config.max_room_members;
            let member_room = store
                .create_room("mine", member.id, &[], cap)
                .await
                .expect("a room");
            let foreign_room = store
                .create_room("theirs", outsider.id, &[], cap)
                .await
                .expect("a room");
            let attachment = "0123456789abcdef0123456789abcdef.png".to_string();
            std::fs::write(config.media_dir().join(&attachment), PNG).expect("a file");
            let file = Attachment {
                file_name: attachment.clone(),
                content_type: "image/png".into(),
                size: PNG.len() as u64,
                original_name: None,
            };
            store
                .post_message(member_room.id, member.id, "hello", Some(file))
                .await
                .expect("a message");
            let tokens = Tokens::new(b"fuzzing-secret-0123456789abcdef");
            let access = tokens.issue(member.id, TokenKind::Access).expect("a token");
            let refresh = tokens
                .issue(member.id, TokenKind::Refresh)
                .expect("a token");
            let outsider = tokens
                .issue(outsider.id, TokenKind::Access)
                .expect("a token");
            let hasher = Hasher::start(&config.hashing).expect("hashing workers");
            let state = Arc::new(AppState::new(
                config,
                store.clone(),
                Arc::new(MemoryTransport::default()),
                tokens,
                hasher,
                tokio_util::sync::CancellationToken::new(),
            ));
            (
                routes(state),
                store,
                member.id,
                member_room.id,
                foreign_room.id,
                attachment,
                access,
                refresh,
                outsider,
            )
        });
        let (
            routes,
            store,
            member,
            member_room,
            foreign_room,
            attachment,
            access,
            refresh,
            outsider,
        ) = setup;
        Node {
            runtime,
            routes,
            store,
            member,
            member_room,
            foreign_room,
            attachment,
            access,
            refresh,
            outsider,
        }
    })
}

fn segment(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

impl Node {
    fn id(&self, id: &Id) -> String {
        match id {
            Id::Member => self.member_room.to_string(),
            Id::Foreign => self.foreign_room.to_string(),
            Id::Number(n) => n.to_string(),
            Id::Text(text) => segment(text),
        }
    }

    /// The path, and whether the route needs a valid token.
    fn path(&self, route: &Route) -> (String, bool) {
        let rooms = "/api/v1/chat/chatrooms";
        match route {
            Route::Rooms => (rooms.to_string(), true),
            Route::Create => (format!("{rooms}/create"), true),
            Route::Enter(id) => (format!("{rooms}/{}/enter", self.id(id)), true),
            Route::Leave(id) => (format!("{rooms}/{}/leave", self.id(id)), true),
            Route::History(id) => (format!("{rooms}/{}/messages", self.id(id)), true),
            Route::Send(id) => (format!("{rooms}/{}/messages/send", self.id(id)), true),
            Route::Socket(id) => (format!("/ws/chat/{}", self.id(id)), true),
            Route::Media(name) => {
                let name = name.as_deref().map_or(self.attachment.clone(), segment);
                (format!("/media/{name}"), true)
            }
            Route::Refresh => ("/api/v1/auth/refresh".into(), false),
            Route::Logout => ("/api/v1/auth/logout".into(), false),
            Route::Health => ("/healthz".into(), false),
            Route::Schema => ("/api/v1/schema".into(), false),
            Route::Docs(rest) => (format!("/api/v1/docs/{}", segment(rest)), false),
            Route::Path(path) => (format!("/{path}"), false),
        }
    }

    fn param(&self, param: &Param) -> String {
        match param {
            Param::Number(n) => n.to_string(),
            Param::Unsigned(n) => n.to_string(),
            Param::Text(text) => segment(text),
            Param::AccessToken => self.access.clone(),
            Param::RefreshToken => self.refresh.clone(),
        }
    }

    fn json(&self, json: &Json, depth: usize) -> Value {
        if depth > 32 {
            return Value::Null;
        }
        match json {
            Json::Null => Value::Null,
            Json::Bool(b) => json!(b),
            Json::Int(n) => json!(n),
            Json::Float(f) => json!(f),
            Json::Text(s) => json!(s),
            Json::RefreshToken => json!(self.refresh),
            Json::Array(items) => items.iter().map(|j| self.json(j, depth + 1)).collect(),
            Json::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(key, value)| {
                        let key = match key {
                            JsonKey::Name => "name".to_string(),
                            JsonKey::Members => "members".to_string(),
                            JsonKey::Content => "content".to_string(),
                            JsonKey::Refresh => "refresh".to_string(),
                            JsonKey::Other(key) => key.clone(),
                        };
                        (key, self.json(value, depth + 1))
                    })
                    .collect(),
            ),
        }
    }
}

fuzz_target!(|input: Input| {
    let node = node();
    let (mut path, needs_token) = node.path(&input.route);
    if input.slash {
        path.push('/');
    }
    let mut credentials = matches!(input.auth, Auth::Member | Auth::Outsider);
    match &input.query {
        Query::None => {}
        Query::Pairs(pairs) => {
            let pairs: Vec<String> = pairs
                .iter()
                .map(|(key, param)| {
                    credentials |= matches!(key, Key::Token) && matches!(param, Param::AccessToken);
                    let key = match key {
                        Key::Limit => "limit".to_string(),
                        Key::Before => "before".to_string(),
                        Key::After => "after".to_string(),
                        Key::Since => "since".to_string(),
                        Key::Token => "token".to_string(),
                        Key::Other(key) => segment(key),
                    };
                    format!("{key}={}", node.param(param))
                })
                .collect();
            path = format!("{path}?{}", pairs.join("&"));
        }
        Query::Raw(raw) => {
            // A raw query could carry the token; never assume it does not.
            credentials = true;
            path = format!("{path}?{raw}");
        }
    }
    if warp::http::Uri::try_from(path.as_str()).is_err() {
        return;
    }
    let method = match input.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::Options => "OPTIONS",
        Method::Head => "HEAD",
    };
    let mut request = warp::test::request().method(method).path(&path);
    let authorization = match &input.auth {
        Auth::None => None,
        Auth::Member => Some(format!("Bearer {}", node.access)),
        Auth::Outsider => Some(format!("Bearer {}", node.outsider)),
        Auth::Refresh => Some(format!("Bearer {}", node.refresh)),
        Auth::Header(value) => Some(value.clone()),
    };
    if let Some(value) = authorization {
        if HeaderValue::from_str(&value).is_err() {
            return;
        }
        request = request.header("authorization", value);
    }
    let (content_type, body) = match &input.body {
        Body::Empty => (None, Vec::new()),
        Body::Raw {
            content_type,
            bytes,
        } => (content_type.clone(), bytes.clone()),
        Body::Json(json) => (
            Some("application/json".to_string()),
            serde_json::to_vec(&node.json(json, 0)).expect("serialises"),
        ),
        Body::Multipart(parts) => {
            let mut body = Vec::new();
            for (field, png, bytes) in parts {
                let name = match field {
                    Field::Content => "content",
                    Field::Attachment => "attachment",
                    Field::Other(name) => name,
                };
                body.extend_from_slice(
                    format!(
                        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                         filename=\"f\"\r\n\r\n"
                    )
                    .as_bytes(),
                );
                if *png {
                    body.extend_from_slice(PNG);
                }
                body.extend_from_slice(bytes);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
            (
                Some(format!("multipart/form-data; boundary={BOUNDARY}")),
                body,
            )
        }
    };
    if let Some(content_type) = content_type {
        if HeaderValue::from_str(&content_type).is_err() {
            return;
        }
        request = request.header("content-type", content_type);
    }
    let response = node
        .runtime
        .block_on(request.body(body).reply(&node.routes));
    let status = response.status();
    check(&path, &response);
    if needs_token && !credentials {
        assert!(
            !status.is_success(),
            "{method} {path} answered {status} without a token"
        );
    }
    // Keep the member in their room, so later inputs reach past the membership checks.
    if matches!(input.route, Route::Leave(_)) && status.is_success() {
        let _ = node.runtime.block_on(node.store.join_room(
            node.member_room,
            node.member,
            usize::MAX,
        ));
    }
});

/// No 5xx; errors and JSON answers in the envelope.
fn check(path: &str, response: &warp::http::Response<impl AsRef<[u8]>>) {
    let status = response.status();
    // Readiness is 503 here: this harness runs no subscriber.
    let readiness = path.starts_with("/readyz") && status == StatusCode::SERVICE_UNAVAILABLE;
    assert!(!status.is_server_error() || readiness, "{path}: {status}");
    if status.is_redirection() {
        assert!(
            response.headers().contains_key("location"),
            "{path}: {status}"
        );
        return;
    }
    let json = response
        .headers()
        .get("content-type")
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/json"));
    let documents = path.starts_with("/api/v1/schema") || path.starts_with("/api/v1/docs");
    if status.is_success() && (!json || documents) {
        return;
    }
    assert!(json, "{path}: {status} is not JSON");
    let body: Value = serde_json::from_slice(response.body().as_ref()).expect("a JSON body");
    assert_eq!(
        body["success"],
        status.is_success(),
        "{path}: {status} {body}"
    );
    if status.is_success() {
        assert!(body.get("data").is_some(), "{path}: {body}");
    } else {
        assert!(body["errors"].is_object(), "{path}: {status} {body}");
    }
}

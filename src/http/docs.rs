//! The OpenAPI schema at `/api/v1/schema` and Swagger UI at `/api/v1/docs/`, both served
//! from the binary (the UI is vendored at build time from a crates.io package).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi};
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Uri};
use warp::path::{FullPath, Tail};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{
    asyncapi, auth, conversations, edits, error_response, events, health, media, messages,
    presence, reactions, receipts, rooms, users, ws, ApiError, Detail,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "chatnode", description = "WhatsApp-style chat server: REST, WebSocket and real-time fan-out. \
        Every JSON answer is `{\"success\": true, \"data\": ...}` or `{\"success\": false, \"errors\": ...}`. \
        On any path, before routing: 503 in the envelope when the node, or the client's address, has too many \
        connections open; 431 without a body (hyper's own answer) for a request head over 32 KiB; a connection \
        that sends no complete request head within `--header-read-timeout` is closed. \
        Every answer carries `X-Request-Id`: the request's own when it sent a sane one (1 to 128 of \
        `A-Z a-z 0-9 . _ : -`), a fresh one otherwise; the node's log lines for the request carry it."),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout,
        rooms::list_rooms, rooms::create_room, rooms::enter_room, rooms::leave_room,
        messages::history, messages::send_json, events::events,
        edits::patch_message, edits::delete_message,
        reactions::put_reaction, reactions::delete_reaction,
        conversations::direct, conversations::members,
        receipts::mark_read, receipts::message_receipts,
        users::lookup, users::blocked, users::block, users::unblock,
        presence::presence, presence::me, presence::change_me,
        ws::handshake::handshake, media::download,
        health::healthz, health::livez, health::readyz, asyncapi::document,
    ),
    components(schemas(
        auth::RegisterRequest, auth::LoginRequest, auth::RefreshRequest, crate::store::User,
        auth::Session, auth::Credentials, auth::AccessToken, Detail,
        rooms::CreateRoomRequest, rooms::RoomView, rooms::MemberView, rooms::RoomList,
        rooms::CreatedRoom, messages::SendRequest, messages::MessageView, messages::MessagePage,
        messages::SentMessage, media::UploadForm, events::EventPage,
        edits::EditRequest, edits::EditedMessage, edits::DeletedMessage, messages::Tombstone,
        messages::HistoryEntry, reactions::ReactionRequest, reactions::ReactionState,
        crate::domain::ReactionCount, crate::domain::ReplyRef,
        rooms::PersonView, rooms::ChatListEntry, crate::domain::conversations::RoomKind,
        conversations::DirectRequest, conversations::MemberList,
        receipts::ReadRequest, receipts::ReadPosition, receipts::ReadAnswer, receipts::ReceiptList,
        crate::domain::conversations::MessageReceipt, crate::domain::conversations::Position,
        users::FoundUser, users::BlockedUser, users::UnblockedUser, users::BlockedList,
        presence::PresenceView, presence::Status, presence::AccountChange, presence::Account,
    )),
    modifiers(&BearerAuth, &Envelope),
    tags((name = "auth"), (name = "rooms"), (name = "messages"), (name = "users"), (name = "websocket"),
         (name = "media"), (name = "operations"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every JSON answer is in the envelope ([`super::ok`], [`super::error_response`]), so the
/// document says so in one place: a 2xx body `S` becomes `{"success": true, "data": S}` and
/// every 4xx/5xx `{"success": false, "errors": {...}}`. The statuses every route of a kind
/// can answer are added here too: 401 where a token is required, 400 where a body or a query
/// is read (malformed), 413 where a body is read.
struct Envelope;

impl Modify for Envelope {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                add_common_statuses(operation);
                for (status, response) in operation.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if status.starts_with('2') {
                        for content in response.content.values_mut() {
                            if let Some(data) = content.schema.take() {
                                content.schema = Some(success_envelope(data));
                            }
                        }
                    } else if status.starts_with('4') || status.starts_with('5') {
                        response.content.insert(
                            "application/json".into(),
                            ContentBuilder::new().schema(Some(error_envelope())).build(),
                        );
                    }
                }
            }
        }
    }
}

fn add_common_statuses(operation: &mut Operation) {
    let reads_query = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Query);
    let reads_body = operation.request_body.is_some();
    let needs_token = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut add = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| ResponseBuilder::new().description(description).into());
    };
    if needs_token {
        add("401", "Missing, invalid or expired access token");
    }
    if reads_body {
        add("400", "The body is malformed or a field is invalid");
        add("413", "The body is larger than the limit");
        add("415", "The body is not sent as `application/json`");
    }
    if reads_query {
        add("400", "A query parameter is malformed");
    }
}

fn success_envelope(data: RefOr<Schema>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property(
            "success",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .enum_values(Some([true])),
        )
        .required("success")
        .property("data", data)
        .required("data")
        .into()
}

fn error_envelope() -> RefOr<Schema> {
    ObjectBuilder::new()
        .property(
            "success",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .enum_values(Some([false])),
        )
        .required("success")
        .property(
            "errors",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(
                    "`{\"detail\": \"...\"}`, `{\"validations\": {\"<field>\": \"<message>\"}}`, or for a missing room name `{\"name\": [\"This field is required.\"]}`",
                )),
        )
        .required("errors")
        .into()
}

pub fn schema_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serialises")
    })
}

pub fn routes() -> BoxedFilter<(Response,)> {
    let schema = warp::path!("api" / "v1" / "schema")
        .and(warp::get())
        .map(|| {
            warp::reply::with_header(schema_json(), "content-type", "application/json")
                .into_response()
        });
    let config = Arc::new(utoipa_swagger_ui::Config::from("/api/v1/schema"));
    let ui = warp::path("api")
        .and(warp::path("v1"))
        .and(warp::path("docs"))
        .and(warp::get())
        .and(warp::path::full())
        .and(warp::path::tail())
        .map(move |full: FullPath, tail: Tail| swagger_file(&full, &tail, config.clone()));
    schema.or(ui).unify().boxed()
}

fn swagger_file(
    full: &FullPath,
    tail: &Tail,
    config: Arc<utoipa_swagger_ui::Config<'static>>,
) -> Response {
    // The UI's page loads its assets relatively, so it must live under a trailing slash.
    if full.as_str() == "/api/v1/docs" {
        return warp::redirect::found(Uri::from_static("/api/v1/docs/")).into_response();
    }
    match utoipa_swagger_ui::serve(tail.as_str(), config) {
        Ok(Some(file)) => {
            let mut response = match file.bytes {
                Cow::Borrowed(bytes) => Response::new(bytes.into()),
                Cow::Owned(bytes) => Response::new(bytes.into()),
            };
            if let Ok(value) = HeaderValue::from_str(&file.content_type) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            response
        }
        Ok(None) => error_response(&ApiError::not_found("Not found: no such file")),
        Err(e) => error_response(&ApiError::Internal(format!("Swagger UI error: {e}"))),
    }
}

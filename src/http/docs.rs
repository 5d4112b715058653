//! The OpenAPI schema at `/api/v1/schema` and Swagger UI at `/api/v1/docs/`, both served
//! from the binary (the UI is vendored at build time from a crates.io package).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode, Uri};
use warp::path::{FullPath, Tail};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{auth, error_response, media, messages, rooms, ws, ApiError};

#[derive(OpenApi)]
#[openapi(
    info(title = "chatnode", description = "WhatsApp-style chat server: REST, WebSocket and real-time fan-out. \
        Every JSON answer is `{\"success\": true, \"data\": ...}` or `{\"success\": false, \"errors\": ...}`."),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout,
        rooms::list_rooms, rooms::create_room, rooms::enter_room, rooms::leave_room,
        messages::history, messages::send_json,
        ws::handshake, media::download,
        super::healthz, super::readyz,
    ),
    components(schemas(
        auth::RegisterRequest, auth::LoginRequest, auth::RefreshRequest, crate::store::User,
        rooms::CreateRoomRequest, rooms::RoomView, rooms::MemberView,
        messages::SendRequest, messages::MessageView, media::UploadForm,
    )),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "rooms"), (name = "messages"), (name = "websocket"),
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
        Ok(None) => error_response(&ApiError::new(
            StatusCode::NOT_FOUND,
            "Not found: no such file",
        )),
        Err(e) => error_response(&ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Swagger UI error: {e}"),
        )),
    }
}

use chatnode_client::{Client, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn, PASSWORD};

/// The original's public routes plus chatnode's additions; all must be documented.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/auth/register/"),
    ("post", "/api/v1/auth/login/"),
    ("post", "/api/v1/auth/refresh/"),
    ("post", "/api/v1/auth/logout/"),
    ("get", "/api/v1/chat/chatrooms/"),
    ("post", "/api/v1/chat/chatrooms/create/"),
    ("post", "/api/v1/chat/chatrooms/{id}/enter/"),
    ("post", "/api/v1/chat/chatrooms/{id}/leave/"),
    ("get", "/api/v1/chat/chatrooms/{id}/messages/"),
    ("get", "/api/v1/chat/chatrooms/{id}/events/"),
    ("patch", "/api/v1/chat/chatrooms/{id}/messages/{mid}/"),
    ("delete", "/api/v1/chat/chatrooms/{id}/messages/{mid}/"),
    (
        "put",
        "/api/v1/chat/chatrooms/{id}/messages/{mid}/reaction/",
    ),
    (
        "delete",
        "/api/v1/chat/chatrooms/{id}/messages/{mid}/reaction/",
    ),
    ("post", "/api/v1/chat/chatrooms/{id}/messages/send/"),
    ("post", "/api/v1/chat/chatrooms/{id}/read/"),
    ("get", "/api/v1/chat/chatrooms/{id}/members/"),
    (
        "get",
        "/api/v1/chat/chatrooms/{id}/messages/{mid}/receipts/",
    ),
    ("post", "/api/v1/chat/direct/"),
    ("get", "/api/v1/users/lookup/"),
    ("get", "/api/v1/users/blocked/"),
    ("post", "/api/v1/users/{id}/block/"),
    ("post", "/api/v1/users/{id}/unblock/"),
    ("get", "/api/v1/users/{id}/presence/"),
    ("get", "/api/v1/users/me/"),
    ("get", "/api/v1/asyncapi.json"),
    ("patch", "/api/v1/users/me/"),
    ("get", "/ws/chat/{id}/"),
    ("get", "/media/{file}"),
    ("get", "/healthz"),
    ("get", "/livez"),
    ("get", "/readyz"),
];

#[tokio::test]
async fn every_route_is_documented_and_every_documented_path_is_routed() {
    let node = spawn().await;
    let response = node.api.get("/api/v1/schema").send().await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    let schema: Value = response.json();
    assert!(schema["openapi"].as_str().unwrap().starts_with("3."));
    let paths = schema["paths"].as_object().unwrap();

    for (method, path) in ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} is missing from the schema"
        );
    }
    let mut documented = 0;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            documented += 1;
            let concrete = path
                .replace("{id}", "1")
                .replace("{mid}", "1")
                .replace("{file}", "x.png");
            let request = match method.as_str() {
                "get" => node.api.get(&concrete),
                "post" => node.api.post(&concrete),
                "patch" => node.api.request(chatnode_client::Method::PATCH, &concrete),
                "put" => node.api.request(chatnode_client::Method::PUT, &concrete),
                "delete" => node.api.request(chatnode_client::Method::DELETE, &concrete),
                other => panic!("unexpected method {other}"),
            };
            let response = request.send().await.unwrap();
            let status = response.status;
            let body: Value = response.json();
            let unrouted = status == StatusCode::METHOD_NOT_ALLOWED
                || body["errors"]["detail"] == "Not found: no such route";
            assert!(
                !unrouted,
                "{method} {path} is documented but not routed ({status})"
            );
        }
    }
    assert_eq!(
        documented,
        ROUTES.len(),
        "the schema documents exactly the routes"
    );
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let node = spawn().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let client = Client::with_http(node.api.base_url(), http);
    let redirect = client.get("/api/v1/docs").send().await.unwrap();
    assert_eq!(redirect.status, StatusCode::FOUND);
    assert_eq!(redirect.headers["location"], "/api/v1/docs/");

    let index = client.get("/api/v1/docs/").send().await.unwrap();
    assert_eq!(index.status, StatusCode::OK);
    assert!(index.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(index.text().contains("swagger-ui"));

    let initializer = client
        .get("/api/v1/docs/swagger-initializer.js")
        .send()
        .await
        .unwrap()
        .text();
    assert!(initializer.contains("/api/v1/schema"));
    let bundle = client
        .get("/api/v1/docs/swagger-ui-bundle.js")
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status, StatusCode::OK);
    assert!(bundle.bytes.len() > 100_000);
}

/// Whether `value` has the shape `schema` documents: types, required properties and items,
/// following `$ref`s (enough of JSON Schema for this document).
fn conforms(document: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return conforms(document, &document["components"]["schemas"][name], value);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        return match options.iter().any(|s| conforms(document, s, value).is_ok()) {
            true => Ok(()),
            false => Err(format!("{value} matches no oneOf of {schema}")),
        };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    let matches = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    };
    if !types.iter().any(|t| matches(t)) {
        return Err(format!("{value} is not of type {types:?}"));
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            if !object.contains_key(name) {
                return Err(format!("{value} lacks the required {name:?}"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                if let Some(field) = object.get(name) {
                    conforms(document, property, field).map_err(|e| format!("{name}: {e}"))?;
                }
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for item in array {
            conforms(document, items, item)?;
        }
    }
    Ok(())
}

/// Real answers of every JSON route have the status and the body their operation documents
/// (the document once described bare bodies without the envelope, and left out the 401s and
/// 400s every authenticated or body-reading route answers).
#[tokio::test]
async fn answers_match_the_documented_statuses_and_bodies() {
    let node = spawn().await;
    let schema: Value = node.api.get("/api/v1/schema").send().await.unwrap().json();
    let check = |method: &str, path: &str, status: StatusCode, body: &Value| {
        let responses = &schema["paths"][path][method]["responses"];
        let documented = &responses[status.as_str()];
        assert!(
            documented.is_object(),
            "{method} {path} answered {status}, which it does not document: {body}"
        );
        let body_schema = &documented["content"]["application/json"]["schema"];
        assert!(
            body_schema.is_object(),
            "{method} {path} {status}: no body documented"
        );
        if let Err(e) = conforms(&schema, body_schema, body) {
            panic!("{method} {path} {status}: {e}");
        }
    };

    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let create = "/api/v1/chat/chatrooms/create/";
    let (status, body) = node
        .post(create, Some(&alice.access), json!({"name": "r"}))
        .await;
    check("post", create, status, &body);
    let room = body["data"]["chatroom"]["id"].as_i64().unwrap();

    // (method, documented path, path, caller, JSON body)
    let calls = [
        ("get", "/api/v1/chat/chatrooms/", "", Some(&alice), None),
        ("get", "/api/v1/chat/chatrooms/", "", None, None),
        ("post", create, "", Some(&alice), Some(json!({"name": 7}))),
        (
            "post",
            "/api/v1/chat/chatrooms/{id}/enter/",
            "",
            Some(&bob),
            None,
        ),
        (
            "post",
            "/api/v1/chat/chatrooms/{id}/enter/",
            "",
            Some(&bob),
            None,
        ),
        (
            "post",
            "/api/v1/chat/chatrooms/{id}/messages/send/",
            "",
            Some(&bob),
            Some(json!({"content": "hi"})),
        ),
        (
            "post",
            "/api/v1/chat/chatrooms/{id}/messages/send/",
            "",
            Some(&bob),
            Some(json!({"content": ""})),
        ),
        (
            "post",
            "/api/v1/chat/chatrooms/{id}/messages/send/",
            "",
            None,
            Some(json!({"content": "hi"})),
        ),
        (
            "get",
            "/api/v1/chat/chatrooms/{id}/messages/",
            "",
            Some(&bob),
            None,
        ),
        (
            "get",
            "/api/v1/chat/chatrooms/{id}/messages/",
            "?limit=x",
            Some(&bob),
            None,
        ),
        (
            "post",
            "/api/v1/chat/chatrooms/{id}/leave/",
            "",
            Some(&bob),
            None,
        ),
        (
            "post",
            "/api/v1/chat/chatrooms/{id}/leave/",
            "",
            Some(&bob),
            None,
        ),
        (
            "post",
            "/api/v1/auth/login/",
            "",
            None,
            Some(json!({"email": alice.email, "password": PASSWORD})),
        ),
        (
            "post",
            "/api/v1/auth/refresh/",
            "",
            None,
            Some(json!({"refresh": alice.refresh})),
        ),
        ("post", "/api/v1/auth/refresh/", "", None, Some(json!([]))),
        (
            "post",
            "/api/v1/auth/logout/",
            "",
            None,
            Some(json!({"refresh": alice.refresh})),
        ),
        (
            "post",
            "/api/v1/auth/logout/",
            "",
            None,
            Some(json!({"refresh": alice.refresh})),
        ),
        (
            "post",
            "/api/v1/auth/register/",
            "",
            None,
            Some(json!({"email": "x"})),
        ),
    ];
    for (method, documented, query, caller, body) in calls {
        let path = format!("{}{query}", documented.replace("{id}", &room.to_string()));
        let token = caller.map(|user| user.access.as_str());
        let request = match method {
            "get" => node.api.get(&path),
            _ => node.api.post(&path),
        };
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let (status, answer) = node.send(request, token).await;
        check(method, documented, status, &answer);
    }

    let reaction = "/api/v1/chat/chatrooms/{id}/messages/{mid}/reaction/";
    let id = node.send_message(&alice, room, "react").await["id"].clone();
    let path = reaction
        .replace("{id}", &room.to_string())
        .replace("{mid}", &id.to_string());
    let put = node
        .api
        .request(chatnode_client::Method::PUT, &path)
        .json(&json!({"emoji": "\u{1F44D}"}));
    let (status, answer) = node.send(put, Some(&alice.access)).await;
    check("put", reaction, status, &answer);
    let delete = node.api.request(chatnode_client::Method::DELETE, &path);
    let (status, answer) = node.send(delete, Some(&alice.access)).await;
    check("delete", reaction, status, &answer);
}

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn;

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
    ("post", "/api/v1/chat/chatrooms/{id}/messages/send/"),
    ("get", "/ws/chat/{id}/"),
    ("get", "/media/{file}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

#[tokio::test]
async fn every_route_is_documented_and_every_documented_path_is_routed() {
    let node = spawn().await;
    let response = node
        .client
        .get(node.url("/api/v1/schema"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let schema: Value = response.json().await.unwrap();
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
            let concrete = path.replace("{id}", "1").replace("{file}", "x.png");
            let request = match method.as_str() {
                "get" => node.client.get(node.url(&concrete)),
                "post" => node.client.post(node.url(&concrete)),
                other => panic!("unexpected method {other}"),
            };
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
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
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = client.get(node.url("/api/v1/docs")).send().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::FOUND);
    assert_eq!(redirect.headers()["location"], "/api/v1/docs/");

    let index = client.get(node.url("/api/v1/docs/")).send().await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    assert!(index.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(index.text().await.unwrap().contains("swagger-ui"));

    let initializer = client
        .get(node.url("/api/v1/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/api/v1/schema"));
    let bundle = client
        .get(node.url("/api/v1/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), StatusCode::OK);
    assert!(bundle.bytes().await.unwrap().len() > 100_000);
}

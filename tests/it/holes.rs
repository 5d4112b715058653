//! Smaller holes closed: JSON endpoints require `application/json`, invisible content is
//! blank, a media file replaced by a symbolic link is not followed, logout revokes the
//! access token on every node sharing the database, and a chunked upload's 411 is stated.

use chatnode_client::multipart::{Form, Part};
use chatnode_client::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn, start, test_config, TestDatabase, TestNode, PASSWORD};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

async fn post_typed(
    node: &TestNode,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut request = node.api.post(path).body(body.to_string());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    node.send(request, token).await
}

#[tokio::test]
async fn json_endpoints_answer_415_unless_the_body_is_sent_as_application_json() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "typed", &[]).await;
    let send = format!("/api/v1/chat/chatrooms/{room}/messages/send/");
    let login = json!({ "email": alice.email, "password": PASSWORD });
    let cases = [
        ("/api/v1/auth/login/", login.clone()),
        (
            "/api/v1/auth/register/",
            json!({ "email": "x@example.com" }),
        ),
        ("/api/v1/auth/refresh/", json!({ "refresh": alice.refresh })),
        ("/api/v1/auth/logout/", json!({ "refresh": alice.refresh })),
        ("/api/v1/chat/chatrooms/create/", json!({ "name": "r" })),
        (send.as_str(), json!({ "content": "hi" })),
    ];
    for (path, body) in &cases {
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let (status, answer) =
                post_typed(&node, path, Some(&alice.access), content_type, body).await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{path} {content_type:?}"
            );
            assert_eq!(
                answer,
                json!({"success": false, "errors": {"detail":
                    "The body must be sent as JSON with Content-Type: application/json"}}),
            );
        }
    }
    // Parameters of the type are fine, and nothing above was acted on.
    let charset = Some("application/json; charset=utf-8");
    let (status, answer) = post_typed(&node, "/api/v1/auth/login/", None, charset, &login).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let body = json!({ "content": "typed" });
    let (status, answer) = post_typed(&node, &send, Some(&alice.access), charset, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(node.history(&alice, room, "").await.len(), 1);
    node.stop().await;
}

#[tokio::test]
async fn content_of_only_nul_or_invisible_characters_is_blank() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "blank", &[]).await;
    let send = format!("/api/v1/chat/chatrooms/{room}/messages/send/");
    for blank in [
        "\u{0000}",
        "\u{200B}\u{200C}\u{200D}",
        " \u{2060}\u{FEFF} ",
        "\u{0007}\u{00AD}\u{E0041}",
    ] {
        let (status, body) = node
            .post(&send, Some(&alice.access), json!({ "content": blank }))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{blank:?}: {body}");
        assert_eq!(body["errors"]["detail"], "Message content may not be blank");
        let (status, _) = node
            .post(
                "/api/v1/chat/chatrooms/create/",
                Some(&alice.access),
                json!({ "name": blank }),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "room name {blank:?}");
    }
    // The same over a socket: an error frame, nothing stored.
    let mut socket = node.ws(room, &alice).await;
    socket
        .send_json(json!({"purpose": "send_chat_message", "message": "\u{200B}\u{0000}"}))
        .await;
    let answer = socket.next_json().await;
    assert_eq!(
        answer["errors"]["detail"], "Message content may not be blank",
        "{answer}"
    );
    assert!(node.history(&alice, room, "").await.is_empty());
    // Visible text with a joiner inside (an emoji sequence) is content.
    node.send_message(&alice, room, "\u{1F469}\u{200D}\u{1F4BB}")
        .await;
    node.stop().await;
}

#[tokio::test]
async fn a_media_file_replaced_by_a_symlink_is_not_followed() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "media", &[]).await;
    let form = Form::new().part(
        "attachment",
        Part::bytes(fixture("pixel.png")).file_name("p.png"),
    );
    let request = node
        .api
        .post(&format!("/api/v1/chat/chatrooms/{room}/messages/send/"))
        .multipart(form);
    let (status, body) = node.send(request, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = body["data"]["detail"]["attachment"]
        .as_str()
        .unwrap()
        .to_string();
    let data_dir = node.data_dir.path();
    // A secret beside the media directory, as older versions kept the JWT secret there.
    let secret_file = data_dir.join("jwt-secret");
    let secret = b"a-secret-that-must-not-be-served-0123456789".to_vec();
    std::fs::write(&secret_file, &secret).unwrap();
    let stored = data_dir
        .join("media")
        .join(crate::attachments::path_of(&url).trim_start_matches("/media/"));
    std::fs::remove_file(&stored).unwrap();
    std::os::unix::fs::symlink(&secret_file, &stored).unwrap();

    let response = node
        .api
        .get(&url)
        .token(&alice.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    let answer = response.bytes;
    assert!(!answer.windows(secret.len()).any(|w| w == secret.as_slice()));
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["errors"]["detail"], "Attachment not found");
    node.stop().await;
}

#[tokio::test]
async fn a_download_serves_one_byte_range_with_206() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "media", &[]).await;
    let png = fixture("pixel.png");
    let form = Form::new().part("attachment", Part::bytes(png.clone()).file_name("p.png"));
    let request = node
        .api
        .post(&format!("/api/v1/chat/chatrooms/{room}/messages/send/"))
        .multipart(form);
    let (_, body) = node.send(request, Some(&alice.access)).await;
    let url = body["data"]["detail"]["attachment"]
        .as_str()
        .unwrap()
        .to_string();
    let ranged = node
        .api
        .get(&url)
        .token(&alice.access)
        .header("range", "bytes=1-3")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    let span = format!("bytes 1-3/{}", png.len());
    assert_eq!(ranged.headers["content-range"], span.as_str());
    assert_eq!(ranged.headers["content-type"], "image/png");
    assert_eq!(ranged.bytes.to_vec(), png[1..4]);
    node.stop().await;
}

#[tokio::test]
async fn logout_revokes_the_access_token_on_every_node_sharing_the_database() {
    let database_dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new().await;
    let url = database.shared_url(&database_dir.path().join("shared.db"));
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(data_dir.path());
        config.database_url = Some(url.clone());
        nodes.push(start(config, data_dir).await);
    }
    let (one, two) = (&nodes[0], &nodes[1]);
    let alice = one.register("alice").await;
    let room = one.create_room(&alice, "r", &[]).await;
    let (status, _) = two
        .get("/api/v1/chat/chatrooms/", Some(&alice.access))
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = one
        .post(
            "/api/v1/auth/logout/",
            Some(&alice.access),
            json!({ "refresh": alice.refresh }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let revoked = json!({"success": false, "errors": {"detail": "Token has been revoked"}});
    for node in [one, two] {
        let (status, body) = node
            .get("/api/v1/chat/chatrooms/", Some(&alice.access))
            .await;
        assert_eq!((status, &body), (StatusCode::UNAUTHORIZED, &revoked));
        let (status, body) = node.refused_ws(&node.ws_url(room, &alice.access)).await;
        assert_eq!((status, &body), (401, &revoked));
    }
    // Logging in again gives tokens that work.
    let (status, body) = two
        .post(
            "/api/v1/auth/login/",
            None,
            json!({ "email": alice.email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let fresh = body["data"]["credentials"]["access"].as_str().unwrap();
    let (status, _) = one.get("/api/v1/chat/chatrooms/", Some(fresh)).await;
    assert_eq!(status, StatusCode::OK);
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_chunked_multipart_upload_is_answered_411_as_documented() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "chunked", &[]).await;
    let boundary = "chatnodeboundary";
    let form = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"content\"\r\n\r\nhi\r\n--{boundary}--\r\n"
    );
    let chunks = vec![Ok::<_, std::io::Error>(form.into_bytes())];
    let request = node
        .api
        .post(&format!("/api/v1/chat/chatrooms/{room}/messages/send/"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(chatnode_client::Body::wrap_stream(
            futures_util::stream::iter(chunks),
        ));
    let (status, body) = node.send(request, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::LENGTH_REQUIRED);
    assert_eq!(
        body,
        json!({"success": false, "errors": {"detail": "A Content-Length header is required"}})
    );
    let (_, schema) = node.get("/api/v1/schema", None).await;
    let send = &schema["paths"]["/api/v1/chat/chatrooms/{id}/messages/send/"]["post"];
    let documented = send["responses"]["411"]["description"].as_str().unwrap();
    assert!(
        documented.contains("A Content-Length header is required"),
        "{documented}"
    );
    node.stop().await;
}

//! JWT signing keys: nodes sharing a database agree on a generated secret by themselves, and
//! `--jwt-secret new,old` rotates keys without logging anyone out until the old one is dropped.

use chatnode::auth::Tokens;
use chatnode_client::StatusCode;
use serde_json::json;

use crate::helpers::{start, test_config, TestDatabase, TestNode, PASSWORD};

const ROOMS: &str = "/api/v1/chat/chatrooms/";
const SECRET_A: &str = "rotation-secret-a-0123456789";
const SECRET_B: &str = "rotation-secret-b-0123456789";

/// A node on `database_url` with its own data directory and `jwt_secret`.
async fn node_on(database_url: &str, jwt_secret: Option<&str>) -> TestNode {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path());
    config.database_url = Some(database_url.to_string());
    config.jwt_secret = jwt_secret.map(str::to_string);
    start(config, data_dir).await
}

fn kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).unwrap().kid
}

async fn login(node: &TestNode, email: &str) -> String {
    let (status, body) = node
        .post(
            "/api/v1/auth/login/",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["credentials"]["access"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn nodes_sharing_a_database_without_a_configured_secret_accept_each_others_tokens() {
    let shared = tempfile::tempdir().unwrap();
    let database = TestDatabase::new().await;
    let url = database.shared_url(&shared.path().join("shared.db"));
    let (one, two) = tokio::join!(node_on(&url, None), node_on(&url, None));
    let alice = one.register("alice").await;
    let (status, body) = two.get(ROOMS, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = two
        .post(
            "/api/v1/auth/refresh/",
            None,
            json!({"refresh": alice.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Neither node wrote a secret into its data directory: it lives in the database.
    for node in [&one, &two] {
        assert!(!node.data_dir.path().join("jwt-secret").exists());
    }
    // A node configured with its own secret does not accept them.
    let other = node_on(&url, Some(SECRET_A)).await;
    let (status, _) = other.get(ROOMS, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for node in [one, two, other] {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_secret_generated_into_the_data_dir_by_an_older_version_keeps_its_tokens_valid() {
    let data_dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new().await;
    let mut config = test_config(data_dir.path());
    config.database_url = database.url.clone();
    // As an older version left it: a generated secret in the data directory.
    let old_secret = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    std::fs::write(data_dir.path().join("jwt-secret"), old_secret).unwrap();
    config.jwt_secret = None;
    let node = start(config, data_dir).await;
    let alice = node.register("alice").await;
    // Before key ids, tokens had none: one signed with the file's secret still verifies.
    let legacy = Tokens::new(old_secret.as_bytes())
        .issue(alice.id, chatnode::auth::TokenKind::Access)
        .unwrap();
    let (status, body) = node.get(ROOMS, Some(&legacy)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    node.stop().await;
}

#[tokio::test]
async fn rotating_keys_keeps_old_tokens_until_the_old_key_is_dropped() {
    let shared = tempfile::tempdir().unwrap();
    let database = TestDatabase::new().await;
    let url = database.shared_url(&shared.path().join("shared.db"));

    let node = node_on(&url, Some(SECRET_A)).await;
    let alice = node.register("alice").await;
    let kid_a = Tokens::new(SECRET_A.as_bytes()).signing_kid().to_string();
    let kid_b = Tokens::new(SECRET_B.as_bytes()).signing_kid().to_string();
    assert_eq!(kid(&alice.access), Some(kid_a));
    node.stop().await;

    // B signs, A still verifies.
    let node = node_on(&url, Some(&format!("{SECRET_B},{SECRET_A}"))).await;
    let (status, body) = node.get(ROOMS, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fresh = login(&node, &alice.email).await;
    assert_eq!(kid(&fresh), Some(kid_b.clone()));
    node.stop().await;

    // A dropped: its tokens are refused, B's work.
    let node = node_on(&url, Some(SECRET_B)).await;
    let (status, body) = node.get(ROOMS, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["success"], false);
    let (status, _) = node
        .post(
            "/api/v1/auth/refresh/",
            None,
            json!({"refresh": alice.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = node.get(ROOMS, Some(&fresh)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    node.stop().await;
}

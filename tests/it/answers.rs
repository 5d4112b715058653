//! Clear answers where they were vague: a bad query parameter is named with its range, an
//! attachment held by another node says so, and the original's texts for entering a room
//! twice and creating a room without a name.

use chatnode_client::multipart::{Form, Part};
use chatnode_client::StatusCode;
use serde_json::json;

use crate::helpers::{spawn, start, test_config, TestDatabase};

#[tokio::test]
async fn a_bad_history_parameter_is_named_with_its_allowed_range() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "paging", &[]).await;
    let limit = "expected a whole number from 1 to 200 (larger is read as 200)";
    let id = "expected a message id (a whole number)";
    for (query, name, range, raw) in [
        ("?limit=abc", "limit", limit, "abc"),
        ("?limit=0", "limit", limit, "0"),
        ("?before=x", "before", id, "x"),
        ("?after=1.5", "after", id, "1.5"),
    ] {
        let (status, body) = node
            .get(
                &format!("/api/v1/chat/chatrooms/{room}/messages/{query}"),
                Some(&alice.access),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let detail = format!("Invalid query parameter `{name}`: {range}, got \"{raw}\"");
        assert_eq!(
            body,
            json!({"success": false, "errors": {"detail": detail}})
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn a_bad_page_size_of_the_chat_list_or_members_is_named_with_its_range() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "paging", &[]).await;
    let list = "/api/v1/chat/chatrooms/".to_string();
    let members = format!("/api/v1/chat/chatrooms/{room}/members/");
    for (path, max, raw) in [
        (&list, 200, "abc"),
        (&list, 200, "0"),
        (&members, 500, "-1"),
        (&members, 500, "x"),
    ] {
        let (status, body) = node
            .get(&format!("{path}?limit={raw}"), Some(&alice.access))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}?limit={raw}");
        let detail = format!(
            "Invalid query parameter `limit`: expected a whole number from 1 to {max} (larger is read as {max}), got \"{raw}\""
        );
        assert_eq!(
            body,
            json!({"success": false, "errors": {"detail": detail}})
        );
    }
    // And a cursor that no page gave.
    let (status, body) = node
        .get(&format!("{list}?cursor=yesterday"), Some(&alice.access))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let detail = body["errors"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("Invalid query parameter `cursor`"),
        "{body}"
    );
    node.stop().await;
}

#[tokio::test]
async fn an_attachment_held_by_another_node_says_the_file_is_not_on_this_node() {
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
    let alice = nodes[0].register("alice").await;
    let room = nodes[0].create_room(&alice, "media", &[]).await;
    let png = std::fs::read(format!("{}/fixtures/pixel.png", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let form = Form::new().part("attachment", Part::bytes(png).file_name("p.png"));
    let request = nodes[0]
        .api
        .post(&format!("/api/v1/chat/chatrooms/{room}/messages/send/"))
        .multipart(form);
    let (status, body) = nodes[0].send(request, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let file = body["data"]["detail"]["attachment"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = nodes[1].get(&file, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["errors"]["detail"],
        "The file of this attachment is not on this node (attachments are stored on the node \
         that received them)"
    );
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn the_originals_texts_for_entering_twice_and_a_missing_room_name() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "Lobby", &[]).await;
    let (status, body) = node
        .post(
            &format!("/api/v1/chat/chatrooms/{room}/enter/"),
            Some(&alice.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"success": false, "errors": {"detail": "Chatroom already joined by you"}})
    );
    for nameless in [json!({}), json!({ "name": null, "members": [] })] {
        let (status, body) = node
            .post(
                "/api/v1/chat/chatrooms/create/",
                Some(&alice.access),
                nameless,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({"success": false, "errors": {"name": ["This field is required."]}})
        );
    }
    node.stop().await;
}

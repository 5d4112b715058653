use chatnode_client::multipart::{Form, Part};
use chatnode_client::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn, spawn_with, TestNode, TestUser};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

async fn upload(
    node: &TestNode,
    user: &TestUser,
    room: i64,
    content: Option<&str>,
    file_name: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let mut form = Form::new().part(
        "attachment",
        Part::bytes(bytes).file_name(file_name.to_string()),
    );
    if let Some(content) = content {
        form = form.text("content", content.to_string());
    }
    let request = node
        .api
        .post(&format!("/api/v1/chat/chatrooms/{room}/messages/send/"))
        .multipart(form);
    node.send(request, Some(&user.access)).await
}

/// An attachment URL without its signature: `/media/<file>`.
pub fn path_of(url: &str) -> String {
    url.split('?').next().unwrap().to_string()
}

/// Files in the media directory, ignoring the in-progress folder.
fn stored_files(node: &TestNode) -> Vec<String> {
    let dir = node.data_dir.path().join("media");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".incoming")
        .collect();
    names.sort();
    let incoming = dir.join(".incoming");
    if incoming.exists() {
        assert_eq!(
            std::fs::read_dir(incoming).unwrap().count(),
            0,
            "no partial upload is left"
        );
    }
    names
}

#[tokio::test]
async fn images_and_videos_are_stored_served_to_members_and_broadcast() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let outsider = node.register("outsider").await;
    let room = node.create_room(&alice, "media", &[&bob]).await;
    let mut bob_ws = node.ws(room, &bob).await;

    let png = fixture("pixel.png");
    // The client's file name is irrelevant: the type comes from the bytes.
    let (status, body) = upload(
        &node,
        &alice,
        room,
        Some("look"),
        "holiday.jpeg",
        png.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let message = &body["data"]["detail"];
    assert_eq!(message["content"], "look");
    let url = path_of(message["attachment"].as_str().unwrap());
    assert!(url.starts_with("/media/") && url.ends_with(".png"), "{url}");
    let frame = bob_ws.next_data().await;
    assert_eq!(path_of(frame["file"].as_str().unwrap()), url);
    assert_eq!(frame["message"], "look");
    let history = node.history(&bob, room, "").await;
    assert_eq!(path_of(history[0]["attachment"].as_str().unwrap()), url);

    let download = node.api.get(&url).token(&bob.access).send().await.unwrap();
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.headers["content-type"], "image/png");
    assert_eq!(download.bytes.to_vec(), png);
    let by_query = node
        .api
        .get(&format!("{url}?token={}", bob.access))
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status, StatusCode::OK);

    let (status, _) = node.get(&url, Some(&outsider.access)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = node.get(&url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for (file, content_type) in [("clip.webm", "video/webm"), ("clip.mp4", "video/mp4")] {
        let (status, body) = upload(&node, &alice, room, None, file, fixture(file)).await;
        assert_eq!(status, StatusCode::CREATED, "{file}: {body}");
        let url = path_of(body["data"]["detail"]["attachment"].as_str().unwrap());
        let response = node
            .api
            .get(&url)
            .token(&alice.access)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers["content-type"], content_type);
        let frame = bob_ws.next_data().await;
        assert_eq!(path_of(frame["file"].as_str().unwrap()), url);
    }
    assert_eq!(stored_files(&node).len(), 3);
}

#[tokio::test]
async fn rejected_uploads_store_nothing() {
    let node = spawn_with(|c| c.max_upload_bytes = 1024).await;
    let alice = node.register("alice").await;
    let outsider = node.register("outsider").await;
    let room = node.create_room(&alice, "media", &[]).await;

    let (status, body) = upload(
        &node,
        &alice,
        room,
        Some("sneaky"),
        "not-an-image.png",
        fixture("not-an-image.png"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["errors"]["detail"]
        .as_str()
        .unwrap()
        .contains("Unsupported attachment"));

    let (status, body) = upload(
        &node,
        &alice,
        room,
        Some("big"),
        "clip.mp4",
        fixture("clip.mp4"),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    let (status, _) = upload(
        &node,
        &outsider,
        room,
        Some("x"),
        "pixel.png",
        fixture("pixel.png"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = upload(
        &node,
        &alice,
        999,
        Some("x"),
        "pixel.png",
        fixture("pixel.png"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"]["error"], "Chatroom not found");

    assert!(
        node.history(&alice, room, "").await.is_empty(),
        "no message without its file"
    );
    assert!(
        stored_files(&node).is_empty(),
        "no file without its message"
    );

    // A form without an attachment still needs text.
    let form = chatnode_client::multipart::Form::new().text("content", "");
    let request = node
        .api
        .post(&format!("/api/v1/chat/chatrooms/{room}/messages/send/"))
        .multipart(form);
    let (status, _) = node.send(request, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn media_paths_cannot_escape_the_media_directory() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    for path in [
        "/media/..%2Fchatnode.db",
        "/media/../chatnode.db",
        "/media/%2e%2e/jwt-secret",
        "/media/.incoming",
        "/media/does-not-exist.png",
    ] {
        let response = node
            .api
            .get(path)
            .token(&alice.access)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
        let body: Value = response.json();
        assert_eq!(body["success"], false);
    }
}

/// `url` with the value of query parameter `key` replaced.
fn with_param(url: &str, key: &str, value: &str) -> String {
    let (path, query) = url.split_once('?').unwrap();
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k == key => format!("{k}={value}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[tokio::test]
async fn signed_attachment_urls_work_without_credentials_until_they_expire() {
    let node = spawn_with(|c| c.media_url_ttl_secs = 2).await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "signed", &[&bob]).await;
    let mut bob_ws = node.ws(room, &bob).await;
    let png = fixture("pixel.png");
    let (status, body) = upload(&node, &alice, room, None, "a.png", png.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let signed = body["data"]["detail"]["attachment"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        signed.contains("?exp=") && signed.contains("&sig="),
        "{signed}"
    );

    // As an <img src> fetches it: no header, no token.
    let plain = node.api.get(&signed).send().await.unwrap();
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.bytes.to_vec(), png);
    // The frame and the chat list carry URLs of their own that work the same way.
    let frame_url = bob_ws.next_data().await["file"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        node.api.get(&frame_url).send().await.unwrap().status,
        StatusCode::OK
    );
    let list = node.api.chat_list(&bob.access, None, None).await.unwrap();
    let listed = list.items[0].last_message.as_ref().unwrap();
    let listed = listed.attachment.clone().unwrap();
    assert_eq!(
        node.api.get(&listed).send().await.unwrap().status,
        StatusCode::OK
    );

    // Altered: another file, another expiry, another signature, half a pair.
    let (path, _) = signed.split_once('?').unwrap();
    let other_file = signed.replacen(".png", "x.png", 1);
    let later = with_param(&signed, "exp", "99999999999");
    let forged = with_param(&signed, "sig", "AAAA");
    let half = format!("{path}?exp=99999999999");
    for altered in [other_file, later, forged, half] {
        let (status, body) = node.get(&altered, None).await;
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
            "{altered}: {status} {body}"
        );
        assert_eq!(body["success"], false, "{altered}");
    }
    let (status, body) = node.get(&with_param(&signed, "sig", "AAAA"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Unsigned and without credentials: 401; a member's header still works.
    let (status, _) = node.get(path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let by_header = node.api.get(path).token(&bob.access).send().await.unwrap();
    assert_eq!(by_header.status, StatusCode::OK);

    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (status, body) = node.get(&signed, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let detail = body["errors"]["detail"].as_str().unwrap();
    assert!(detail.contains("expired"), "{body}");
}

#[tokio::test]
async fn a_client_holding_the_current_copy_gets_304_and_caches_stay_private() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "cached", &[]).await;
    let (_, body) = upload(&node, &alice, room, None, "a.png", fixture("pixel.png")).await;
    let url = body["data"]["detail"]["attachment"]
        .as_str()
        .unwrap()
        .to_string();
    let first = node.api.get(&url).send().await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    let etag = first.headers["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let cache = first.headers["cache-control"].to_str().unwrap();
    assert!(cache.starts_with("private"), "{cache}");
    for held in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".into(),
    ] {
        let again = node
            .api
            .get(&url)
            .header("if-none-match", held.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{held}");
        assert!(again.bytes.is_empty(), "{held}");
        assert_eq!(again.headers["etag"].to_str().unwrap(), etag);
    }
    let stale = node
        .api
        .get(&url)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status, StatusCode::OK);
    // The credentials still come first: no 304 for someone who may not read the file.
    let path = path_of(&url);
    let anonymous = node
        .api
        .get(&path)
        .header("if-none-match", etag.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn several_ranges_come_as_multipart_byteranges_and_a_range_past_the_end_is_416() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "ranges", &[]).await;
    let png = fixture("pixel.png");
    let (_, body) = upload(&node, &alice, room, None, "a.png", png.clone()).await;
    let url = body["data"]["detail"]["attachment"]
        .as_str()
        .unwrap()
        .to_string();
    let get = |range: String| {
        let request = node.api.get(&url).header("range", range.as_str());
        async move { request.send().await.unwrap() }
    };
    let answer = get("bytes=0-1, -3".into()).await;
    assert_eq!(answer.status, StatusCode::PARTIAL_CONTENT);
    let content_type = answer.headers["content-type"].to_str().unwrap();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{content_type}"));
    let length: usize = answer.headers["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(answer.bytes.len(), length);
    let size = png.len();
    let mut expected = Vec::new();
    for (start, end) in [(0, 2), (size - 3, size)] {
        let head = format!(
            "\r\n--{boundary}\r\nContent-Type: image/png\r\nContent-Range: bytes {start}-{}/{size}\r\n\r\n",
            end - 1
        );
        expected.extend_from_slice(head.as_bytes());
        expected.extend_from_slice(&png[start..end]);
    }
    expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(answer.bytes.to_vec(), expected);

    let suffix = get("bytes=-4".into()).await;
    assert_eq!(suffix.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(suffix.bytes.to_vec(), png[size - 4..]);
    let past = get(format!("bytes={size}-")).await;
    assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        past.headers["content-range"],
        format!("bytes */{size}").as_str()
    );
    let nonsense = get("bytes=5-2".into()).await;
    assert_eq!(
        nonsense.status,
        StatusCode::OK,
        "an unreadable range is ignored"
    );
    assert_eq!(nonsense.bytes.to_vec(), png);
}

#[tokio::test]
async fn a_download_names_the_file_as_its_sender_did_safely_encoded() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "names", &[]).await;
    let png = fixture("pixel.png");
    let (_, body) = upload(&node, &alice, room, None, "../Été/holiday \"1\".png", png).await;
    let url = body["data"]["detail"]["attachment"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = node.api.get(&url).send().await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers["content-disposition"].to_str().unwrap(),
        "inline; filename=\"holiday _1_.png\"; filename*=UTF-8''holiday%20%221%22.png"
    );
}

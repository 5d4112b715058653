use chatnode::auth::Claims;
use chatnode_client::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::json;

use crate::helpers::{spawn, TestNode, JWT_SECRET, PASSWORD, WAIT};

fn decode(token: &str) -> Claims {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims
}

fn forge(claims: &Claims, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn register_returns_the_user_and_tokens_with_the_original_claims() {
    let node = spawn().await;
    let (status, body) = node
        .post(
            "/api/v1/auth/register/",
            None,
            json!({"email": "Ada@Example.com", "phone_number": "+14155552671",
                   "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["success"], true);
    let user = &body["data"]["user"];
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["phone_number"], "+1 415-555-2671");
    assert_eq!(user["first_name"], "Ada");
    assert!(user["created_at"].is_string() && user["updated_at"].is_string());
    let username = user["username"].as_str().unwrap();
    let (local, suffix) = username.split_once('_').unwrap();
    assert_eq!(local, "ada");
    assert_eq!(suffix.len(), 12);

    let access = decode(body["data"]["credentials"]["access"].as_str().unwrap());
    let refresh = decode(body["data"]["credentials"]["refresh"].as_str().unwrap());
    assert_eq!(access.token_type, "access");
    assert_eq!(refresh.token_type, "refresh");
    assert_eq!(access.user_id, user["id"].as_i64().unwrap());
    assert_eq!(access.exp - access.iat, 3600);
    assert_eq!(refresh.exp - refresh.iat, 30 * 24 * 3600);
    assert_ne!(access.jti, refresh.jti);
}

#[tokio::test]
async fn email_is_unique_whatever_its_case() {
    let node = spawn().await;
    node.register("bob").await;
    let (status, body) = node
        .post(
            "/api/v1/auth/register/",
            None,
            json!({"email": "BOB@example.COM", "phone_number": "+14155552671",
                   "password": PASSWORD, "first_name": "B", "last_name": "B"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"success": false, "errors": {"detail": "User account already exists. Please login."}})
    );
}

#[tokio::test]
async fn invalid_registration_fields_are_reported_per_field() {
    let node = spawn().await;
    let (status, body) = node
        .post(
            "/api/v1/auth/register/",
            None,
            json!({"email": "not-an-email", "phone_number": "12345", "password": "password",
                   "first_name": "", "last_name": 7}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v = &body["errors"]["validations"];
    assert_eq!(v["email"], "Enter a valid email address.");
    assert_eq!(v["phone_number"], "Enter a valid phone number.");
    assert_eq!(v["password"], "This password is too common.");
    assert_eq!(v["first_name"], "This field is required.");
    assert_eq!(v["last_name"], "Not a valid string.");

    for (password, message) in [
        (
            "short1!",
            "This password is too short. It must contain at least 8 characters.",
        ),
        ("1234567890123", "This password is entirely numeric."),
    ] {
        let (status, body) = node
            .post(
                "/api/v1/auth/register/",
                None,
                json!({"email": "x@example.com", "phone_number": "+447911123456",
                       "password": password, "first_name": "X", "last_name": "Y"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["errors"]["validations"]["password"], message);
    }

    let (status, body) = node.post("/api/v1/auth/register/", None, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for field in [
        "email",
        "phone_number",
        "password",
        "first_name",
        "last_name",
    ] {
        assert_eq!(
            body["errors"]["validations"][field],
            "This field is required."
        );
    }
    // Nothing was created by the failed attempts: the address is still free.
    node.register("x").await;
}

#[tokio::test]
async fn login_accepts_any_email_case_and_refuses_bad_credentials_alike() {
    let node = spawn().await;
    let user = node.register("carol").await;
    let (status, body) = node
        .post(
            "/api/v1/auth/login/",
            None,
            json!({"email": "CAROL@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["user"]["id"], user.id);
    assert!(body["data"]["credentials"]["access"].is_string());

    let (wrong_status, wrong) = node
        .post(
            "/api/v1/auth/login/",
            None,
            json!({"email": user.email, "password": "not-the-password"}),
        )
        .await;
    let (unknown_status, unknown) = node
        .post(
            "/api/v1/auth/login/",
            None,
            json!({"email": "nobody@example.com", "password": "not-the-password"}),
        )
        .await;
    assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown, "no account enumeration through login");

    let (status, body) = node
        .post("/api/v1/auth/login/", None, json!({"email": "a@b.co"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errors"]["validations"]["password"],
        "This field is required."
    );
}

#[tokio::test]
async fn access_tokens_guard_the_api_with_bearer_or_jwt_prefix() {
    let node = spawn().await;
    let user = node.register("dave").await;
    let (status, body) = node.get("/api/v1/chat/chatrooms/", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"success": false, "errors": {"detail": "no_auth_error"}})
    );

    let jwt_prefixed = node
        .api
        .get("/api/v1/chat/chatrooms/")
        .header("Authorization", format!("JWT {}", user.access));
    let (status, _) = node.send(jwt_prefixed, None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = node
        .get("/api/v1/chat/chatrooms/", Some(&user.access))
        .await;
    assert_eq!(status, StatusCode::OK);

    let basic = node
        .api
        .get("/api/v1/chat/chatrooms/")
        .header("Authorization", "Basic dXNlcjpwYXNz");
    let (status, _) = node.send(basic, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forged_expired_and_wrong_type_tokens_are_refused() {
    let node = spawn().await;
    let user = node.register("erin").await;
    let claims = decode(&user.access);
    let now = chrono::Utc::now().timestamp();

    let expired = forge(
        &Claims {
            iat: now - 7200,
            exp: now - 3600,
            ..claims.clone()
        },
        JWT_SECRET,
    );
    let other_secret = forge(&claims, "some-other-secret-that-is-long");
    let mut tampered = user.access.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        user.access.split('.').nth(1).unwrap()
    );
    for (token, detail) in [
        (expired.as_str(), "Token has expired"),
        (other_secret.as_str(), "Token is invalid"),
        (tampered.as_str(), "Token is invalid"),
        (unsigned.as_str(), "Token is invalid"),
        (
            user.refresh.as_str(),
            "Token has wrong type: an access token is required",
        ),
        ("garbage", "Token is invalid"),
    ] {
        let (status, body) = node.get("/api/v1/chat/chatrooms/", Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(body["errors"]["detail"], detail);
    }
}

#[tokio::test]
async fn refresh_issues_access_tokens_until_logout_revokes_it() {
    let node = spawn().await;
    let user = node.register("fay").await;
    let (status, body) = node
        .post(
            "/api/v1/auth/refresh/",
            None,
            json!({"refresh": user.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fresh = body["data"]["access"].as_str().unwrap();
    assert_eq!(decode(fresh).token_type, "access");
    let (status, _) = node.get("/api/v1/chat/chatrooms/", Some(fresh)).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = node
        .post(
            "/api/v1/auth/refresh/",
            None,
            json!({"refresh": user.access}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an access token cannot refresh"
    );

    let (status, body) = node
        .post(
            "/api/v1/auth/logout/",
            None,
            json!({"refresh": user.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = node
        .post(
            "/api/v1/auth/refresh/",
            None,
            json!({"refresh": user.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errors"]["detail"], "Token has been revoked");
    let (status, _) = node
        .post(
            "/api/v1/auth/logout/",
            None,
            json!({"refresh": user.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// `header.payload` of `token`, signed again with `signature`.
fn resigned(header_b64: &str, token: &str, sign: impl Fn(&[u8]) -> String) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let message = format!("{header_b64}.{payload}");
    let signature = sign(message.as_bytes());
    format!("{message}.{signature}")
}

#[tokio::test]
async fn tokens_of_any_other_algorithm_are_refused_even_when_signed_with_the_secret() {
    let node = spawn().await;
    let user = node.register("gil").await;
    let room = node.create_room(&user, "r", &[]).await;
    let claims = decode(&user.access);
    let secret = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    // {"alg":"RS256","typ":"JWT"}
    let rs256 = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9";
    let hmac =
        |message: &[u8]| jsonwebtoken::crypto::sign(message, &secret, Algorithm::HS256).unwrap();
    let junk = |_: &[u8]| "c2lnbmVkLWJ5LW5vYm9keQ".to_string();
    let cases = [
        // Algorithm confusion: the right HMAC under a header claiming RS256.
        resigned(rs256, &user.access, hmac),
        resigned(rs256, &user.access, junk),
        jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &secret).unwrap(),
        jsonwebtoken::encode(&Header::new(Algorithm::HS384), &claims, &secret).unwrap(),
    ];
    for token in &cases {
        let (status, body) = node.get("/api/v1/chat/chatrooms/", Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(body["errors"]["detail"], "Token is invalid");
        let (status, body) = node.refused_ws(&node.ws_url(room, token)).await;
        assert_eq!(status, 401, "{token}");
        assert_eq!(body["errors"]["detail"], "Token is invalid");
    }
    // The same claims under HS256 are accepted: only the algorithm made the difference.
    let (status, _) = node
        .get("/api/v1/chat/chatrooms/", Some(&forge(&claims, JWT_SECRET)))
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// Removes a user row behind the node's back, as an administrator would.
async fn delete_user(node: &TestNode, id: i64) {
    match &node.database.url {
        None => {
            let db = rusqlite::Connection::open(node.data_dir.path().join("chatnode.db")).unwrap();
            db.busy_timeout(WAIT).unwrap();
            assert_eq!(
                db.execute("DELETE FROM users WHERE id = ?1", [id]).unwrap(),
                1
            );
        }
        #[cfg(feature = "postgres")]
        Some(url) => {
            let (db, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            assert_eq!(
                db.execute("DELETE FROM users WHERE id = $1", &[&id])
                    .await
                    .unwrap(),
                1
            );
        }
        #[cfg(not(feature = "postgres"))]
        Some(url) => unreachable!("a database URL without the postgres feature: {url}"),
    }
}

#[tokio::test]
async fn valid_tokens_of_deleted_or_never_created_users_are_refused() {
    let node = spawn().await;
    let owner = node.register("hana").await;
    let room = node.create_room(&owner, "r", &[]).await;
    let leaver = node.register("ivan").await;
    delete_user(&node, leaver.id).await;
    let mut never = decode(&owner.access);
    never.user_id = owner.id + 1000;
    let never = forge(&never, JWT_SECRET);
    for token in [leaver.access.as_str(), never.as_str()] {
        let (status, body) = node.get("/api/v1/chat/chatrooms/", Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["errors"]["detail"], "User not found");
        let (status, body) = node.refused_ws(&node.ws_url(room, token)).await;
        assert_eq!(status, 401);
        assert_eq!(body["errors"]["detail"], "User not found");
    }
    let (status, body) = node
        .post(
            "/api/v1/auth/refresh/",
            None,
            json!({"refresh": leaver.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errors"]["detail"], "User not found");
    let (status, _) = node
        .post(
            "/api/v1/auth/login/",
            None,
            json!({"email": leaver.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

use reqwest::StatusCode;
use serde::Deserialize;

use crate::{Client, Error, Person, Presence, Profile};

#[derive(Deserialize)]
struct Found {
    user: Person,
}

#[derive(Deserialize)]
struct Account {
    user: Profile,
}

#[derive(Deserialize)]
struct Blocked {
    users: Vec<Person>,
}

impl Client {
    /// `GET /api/v1/users/<id>/presence/`: online or offline and last seen, for the caller
    /// and people sharing a room with them.
    pub async fn presence(&self, access: &str, user_id: i64) -> Result<Presence, Error> {
        self.get(&format!("/api/v1/users/{user_id}/presence/"))
            .token(access)
            .data(StatusCode::OK)
            .await
    }

    /// `GET /api/v1/users/me/`: the caller's own account.
    pub async fn me(&self, access: &str) -> Result<Profile, Error> {
        let account: Account = self
            .get("/api/v1/users/me/")
            .token(access)
            .data(StatusCode::OK)
            .await?;
        Ok(account.user)
    }

    /// `PATCH /api/v1/users/me/` `{"show_last_seen"}`: hide or show the caller's last seen.
    pub async fn set_show_last_seen(&self, access: &str, show: bool) -> Result<Profile, Error> {
        let account: Account = self
            .request(reqwest::Method::PATCH, "/api/v1/users/me/")
            .token(access)
            .json(&serde_json::json!({ "show_last_seen": show }))
            .data(StatusCode::OK)
            .await?;
        Ok(account.user)
    }

    /// `GET /api/v1/users/lookup/?email=`: a person by their exact email.
    pub async fn lookup_email(&self, access: &str, email: &str) -> Result<Person, Error> {
        self.lookup(access, "email", email).await
    }

    /// `GET /api/v1/users/lookup/?phone=`: a person by phone number, any formatting.
    pub async fn lookup_phone(&self, access: &str, phone: &str) -> Result<Person, Error> {
        self.lookup(access, "phone", phone).await
    }

    async fn lookup(&self, access: &str, key: &str, value: &str) -> Result<Person, Error> {
        let found: Found = self
            .get(&format!("/api/v1/users/lookup/?{key}={}", encode(value)))
            .token(access)
            .data(StatusCode::OK)
            .await?;
        Ok(found.user)
    }

    /// `GET /api/v1/users/blocked/`.
    pub async fn blocked(&self, access: &str) -> Result<Vec<Person>, Error> {
        let list: Blocked = self
            .get("/api/v1/users/blocked/")
            .token(access)
            .data(StatusCode::OK)
            .await?;
        Ok(list.users)
    }

    /// `POST /api/v1/users/<id>/block/`; idempotent.
    pub async fn block(&self, access: &str, user_id: i64) -> Result<Person, Error> {
        self.set_block(access, user_id, "block", "blocked").await
    }

    /// `POST /api/v1/users/<id>/unblock/`; idempotent.
    pub async fn unblock(&self, access: &str, user_id: i64) -> Result<Person, Error> {
        self.set_block(access, user_id, "unblock", "unblocked")
            .await
    }

    async fn set_block(
        &self,
        access: &str,
        user_id: i64,
        action: &str,
        field: &str,
    ) -> Result<Person, Error> {
        let data: serde_json::Value = self
            .post(&format!("/api/v1/users/{user_id}/{action}/"))
            .token(access)
            .data(StatusCode::OK)
            .await?;
        serde_json::from_value(data[field].clone()).map_err(|_| Error::Unexpected {
            status: StatusCode::OK,
            body: data.to_string(),
        })
    }
}

/// Percent-encodes a query value (`+` of a phone number, `@` of an email).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

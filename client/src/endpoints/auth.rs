use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::Detail;
use crate::{Client, Error, NewAccount, Session};

#[derive(Deserialize)]
struct Access {
    access: String,
}

impl Client {
    /// `POST /api/v1/auth/register/`: a new account, logged in.
    pub async fn register(&self, account: &NewAccount) -> Result<Session, Error> {
        self.post("/api/v1/auth/register/")
            .json(account)
            .data(StatusCode::CREATED)
            .await
    }

    /// `POST /api/v1/auth/login/`.
    pub async fn login(&self, email: &str, password: &str) -> Result<Session, Error> {
        self.post("/api/v1/auth/login/")
            .json(&json!({ "email": email, "password": password }))
            .data(StatusCode::OK)
            .await
    }

    /// `POST /api/v1/auth/refresh/`: a new access token for a refresh token.
    pub async fn refresh(&self, refresh: &str) -> Result<String, Error> {
        let access: Access = self
            .post("/api/v1/auth/refresh/")
            .json(&json!({ "refresh": refresh }))
            .data(StatusCode::OK)
            .await?;
        Ok(access.access)
    }

    /// `POST /api/v1/auth/logout/`: the refresh token stops working.
    pub async fn logout(&self, access: &str, refresh: &str) -> Result<String, Error> {
        let detail: Detail = self
            .post("/api/v1/auth/logout/")
            .token(access)
            .json(&json!({ "refresh": refresh }))
            .data(StatusCode::OK)
            .await?;
        Ok(detail.detail)
    }
}

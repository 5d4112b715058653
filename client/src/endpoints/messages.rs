use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::{Client, Error, EventPage, HistoryQuery, Message, Reactions, ReadPosition, Receipt};

#[derive(Deserialize)]
struct Messages {
    detail: Vec<Message>,
}

#[derive(Deserialize)]
struct Sent {
    detail: Message,
}

#[derive(Deserialize)]
struct Edited {
    message: Message,
}

#[derive(Deserialize)]
struct Deleted {
    deleted: Message,
}

#[derive(Deserialize)]
struct ReadAnswer {
    read: ReadPosition,
}

#[derive(Deserialize)]
struct Receipts {
    receipts: Vec<Receipt>,
}

/// A file to attach to a message.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub file_name: String,
    pub bytes: Vec<u8>,
}

impl Client {
    /// `GET .../<room>/messages/`: a page of history, newest first.
    pub async fn history(
        &self,
        access: &str,
        room: i64,
        query: HistoryQuery,
    ) -> Result<Vec<Message>, Error> {
        let path = format!("/api/v1/chat/chatrooms/{room}/messages/{}", query.query());
        let page: Messages = self.get(&path).token(access).data(StatusCode::OK).await?;
        Ok(page.detail)
    }

    /// `GET .../<room>/events/?after_seq=&limit=`: a page of the room's event log.
    pub async fn events(
        &self,
        access: &str,
        room: i64,
        after_seq: i64,
        limit: Option<u32>,
    ) -> Result<EventPage, Error> {
        let limit = limit.map(|l| format!("&limit={l}")).unwrap_or_default();
        let path = format!("/api/v1/chat/chatrooms/{room}/events/?after_seq={after_seq}{limit}");
        self.get(&path).token(access).data(StatusCode::OK).await
    }

    /// `PATCH .../<room>/messages/<id>/`: the message with its new content.
    pub async fn edit(
        &self,
        access: &str,
        room: i64,
        id: i64,
        content: &str,
    ) -> Result<Message, Error> {
        let edited: Edited = self
            .request(
                reqwest::Method::PATCH,
                &format!("/api/v1/chat/chatrooms/{room}/messages/{id}/"),
            )
            .token(access)
            .json(&json!({ "content": content }))
            .data(StatusCode::OK)
            .await?;
        Ok(edited.message)
    }

    /// `DELETE .../<room>/messages/<id>/`: deleted for everyone; the tombstone.
    pub async fn delete_message(&self, access: &str, room: i64, id: i64) -> Result<Message, Error> {
        let deleted: Deleted = self
            .request(
                reqwest::Method::DELETE,
                &format!("/api/v1/chat/chatrooms/{room}/messages/{id}/"),
            )
            .token(access)
            .data(StatusCode::OK)
            .await?;
        Ok(deleted.deleted)
    }

    /// `PUT .../<room>/messages/<id>/reaction/`: reacts with `emoji`, replacing the caller's
    /// reaction; the message's reactions.
    pub async fn react(
        &self,
        access: &str,
        room: i64,
        id: i64,
        emoji: &str,
    ) -> Result<Reactions, Error> {
        self.request(
            reqwest::Method::PUT,
            &format!("/api/v1/chat/chatrooms/{room}/messages/{id}/reaction/"),
        )
        .token(access)
        .json(&json!({ "emoji": emoji }))
        .data(StatusCode::OK)
        .await
    }

    /// `DELETE .../<room>/messages/<id>/reaction/`: takes the caller's reaction back.
    pub async fn unreact(&self, access: &str, room: i64, id: i64) -> Result<Reactions, Error> {
        self.request(
            reqwest::Method::DELETE,
            &format!("/api/v1/chat/chatrooms/{room}/messages/{id}/reaction/"),
        )
        .token(access)
        .data(StatusCode::OK)
        .await
    }

    /// `POST .../<room>/messages/send/`: the stored message, once it is committed.
    pub async fn send(&self, access: &str, room: i64, content: &str) -> Result<Message, Error> {
        let sent: Sent = self
            .post(&format!("/api/v1/chat/chatrooms/{room}/messages/send/"))
            .token(access)
            .json(&json!({ "content": content }))
            .data(StatusCode::CREATED)
            .await?;
        Ok(sent.detail)
    }

    /// The same send as a multipart form with a file; its type is judged by its bytes.
    pub async fn send_attachment(
        &self,
        access: &str,
        room: i64,
        content: &str,
        file: Attachment,
    ) -> Result<Message, Error> {
        let form = Form::new().text("content", content.to_string()).part(
            "attachment",
            Part::bytes(file.bytes).file_name(file.file_name),
        );
        let sent: Sent = self
            .post(&format!("/api/v1/chat/chatrooms/{room}/messages/send/"))
            .token(access)
            .multipart(form)
            .data(StatusCode::CREATED)
            .await?;
        Ok(sent.detail)
    }

    /// `POST .../<room>/read/`: the caller has read up to message `upto`.
    pub async fn mark_read(
        &self,
        access: &str,
        room: i64,
        upto: i64,
    ) -> Result<ReadPosition, Error> {
        let answer: ReadAnswer = self
            .post(&format!("/api/v1/chat/chatrooms/{room}/read/"))
            .token(access)
            .json(&json!({ "upto": upto }))
            .data(StatusCode::OK)
            .await?;
        Ok(answer.read)
    }

    /// `GET .../<room>/messages/<id>/receipts/`: who has the caller's message, who read it.
    pub async fn receipts(
        &self,
        access: &str,
        room: i64,
        message: i64,
    ) -> Result<Vec<Receipt>, Error> {
        let path = format!("/api/v1/chat/chatrooms/{room}/messages/{message}/receipts/");
        let list: Receipts = self.get(&path).token(access).data(StatusCode::OK).await?;
        Ok(list.receipts)
    }

    /// `GET /media/<file>`: an attachment's bytes (`url` as a message names it).
    pub async fn media(&self, access: &str, url: &str) -> Result<Vec<u8>, Error> {
        let answer = self.get(url).token(access).send().await?;
        match answer.api_error() {
            Some(error) => Err(Error::Api(Box::new(error))),
            None if answer.status == StatusCode::OK => Ok(answer.bytes.to_vec()),
            None => Err(Error::Unexpected {
                status: answer.status,
                body: answer.text(),
            }),
        }
    }
}

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::Detail;
use crate::{ChatListEntry, Client, Error, Page, Person, Room};

#[derive(Deserialize)]
struct RoomList {
    chatrooms: Vec<ChatListEntry>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct CreatedRoom {
    chatroom: Room,
}

#[derive(Deserialize)]
struct MemberList {
    members: Vec<Person>,
    next: Option<String>,
}

impl Client {
    /// `GET /api/v1/chat/chatrooms/`: the caller's chats, most recent activity first. `page`
    /// is a `next` of an earlier page, or `None` for the first (with `limit`, if given).
    pub async fn chat_list(
        &self,
        access: &str,
        limit: Option<u32>,
        page: Option<&str>,
    ) -> Result<Page<ChatListEntry>, Error> {
        let path = match (page, limit) {
            (Some(next), _) => next.to_string(),
            (None, Some(limit)) => format!("/api/v1/chat/chatrooms/?limit={limit}"),
            (None, None) => "/api/v1/chat/chatrooms/".to_string(),
        };
        let list: RoomList = self.get(&path).token(access).data(StatusCode::OK).await?;
        Ok(Page {
            items: list.chatrooms,
            next: list.next,
        })
    }

    /// `POST /api/v1/chat/chatrooms/create/`: a group with the caller as admin.
    pub async fn create_room(
        &self,
        access: &str,
        name: &str,
        members: &[i64],
    ) -> Result<Room, Error> {
        let created: CreatedRoom = self
            .post("/api/v1/chat/chatrooms/create/")
            .token(access)
            .json(&json!({ "name": name, "members": members }))
            .data(StatusCode::CREATED)
            .await?;
        Ok(created.chatroom)
    }

    /// `POST /api/v1/chat/direct/`: the direct conversation with `user_id`, created (`true`)
    /// or the one that already exists (`false`).
    pub async fn direct(&self, access: &str, user_id: i64) -> Result<(Room, bool), Error> {
        let answer = self
            .post("/api/v1/chat/direct/")
            .token(access)
            .json(&json!({ "user_id": user_id }))
            .send()
            .await?;
        let created = answer.status == StatusCode::CREATED;
        let room: CreatedRoom = answer.data(if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        })?;
        Ok((room.chatroom, created))
    }

    /// `POST .../<room>/enter/`: the caller joins.
    pub async fn enter(&self, access: &str, room: i64) -> Result<String, Error> {
        self.room_action(access, room, "enter").await
    }

    /// `POST .../<room>/leave/`: the caller leaves.
    pub async fn leave(&self, access: &str, room: i64) -> Result<String, Error> {
        self.room_action(access, room, "leave").await
    }

    async fn room_action(&self, access: &str, room: i64, action: &str) -> Result<String, Error> {
        let detail: Detail = self
            .post(&format!("/api/v1/chat/chatrooms/{room}/{action}/"))
            .token(access)
            .json(&json!({}))
            .data(StatusCode::OK)
            .await?;
        Ok(detail.detail)
    }

    /// `GET .../<room>/members/`: one page of members; `page` as in [`Client::chat_list`].
    pub async fn members(
        &self,
        access: &str,
        room: i64,
        page: Option<&str>,
    ) -> Result<Page<Person>, Error> {
        let path = page.map_or_else(
            || format!("/api/v1/chat/chatrooms/{room}/members/"),
            str::to_string,
        );
        let list: MemberList = self.get(&path).token(access).data(StatusCode::OK).await?;
        Ok(Page {
            items: list.members,
            next: list.next,
        })
    }
}

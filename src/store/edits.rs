//! The store's part of editing and deleting messages. Every backend implements it;
//! [`super::Store`] requires it. Each change is one transaction with its event (and, for a
//! delete, the redaction of what the room's log holds of the message).

use async_trait::async_trait;

use super::{Attachment, Message, StoreError, StoreResult};

/// Who may change a message, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeRule {
    /// Seconds after sending that the sender may still make the change.
    pub window_secs: i64,
    /// Whether the room's admin may make it at any time (deletes, not edits).
    pub admin_any_time: bool,
}

impl ChangeRule {
    /// Whether `user` may change `message` of a room administered by `admin` at `now`.
    pub fn check(
        self,
        message: &Message,
        user: i64,
        admin: i64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<()> {
        if self.admin_any_time && admin == user {
            return Ok(());
        }
        if message.sender_id != user {
            return Err(StoreError::NotSender);
        }
        let sent = chrono::DateTime::parse_from_rfc3339(&message.created_at)
            .map_err(|e| StoreError::backend("a stored timestamp", e))?;
        if (now - sent.to_utc()).num_seconds() > self.window_secs {
            return Err(StoreError::ChangeWindowClosed);
        }
        Ok(())
    }
}

#[async_trait]
pub trait EditStore: Send + Sync {
    /// Replaces the content of message `id` of `room` for `user` (`rule`: its sender within
    /// the window), sets `edited_at` and queues `message_edited`; the edited message.
    async fn edit_message(
        &self,
        room: i64,
        user: i64,
        id: i64,
        content: &str,
        rule: ChangeRule,
    ) -> StoreResult<Message>;

    /// Deletes message `id` of `room` for everyone as `rule` allows `user`: empties its
    /// content, removes its attachment row, redacts its events in the log and queues
    /// `message_deleted`. The tombstone and the attachment whose file the caller removes.
    async fn delete_message(
        &self,
        room: i64,
        user: i64,
        id: i64,
        rule: ChangeRule,
    ) -> StoreResult<(Message, Option<Attachment>)>;
}

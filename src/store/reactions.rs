//! The store's part of reactions. Every backend implements it; [`super::Store`] requires it.
//! A change is one transaction with its `reaction` event, so the log and the counts agree.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{ReactionCount, Reactions};

#[async_trait]
pub trait ReactionStore: Send + Sync {
    /// Sets `user`'s reaction to message `id` of `room` to `emoji`, replacing theirs, or
    /// removes it (`None`), and queues `reaction` when that changed anything. `user` must be
    /// a member (`RoomNotFound`, `NotMember`) and the message there, not deleted
    /// (`MessageNotFound`); in a direct conversation with a block either way, only taking
    /// a reaction back is allowed (`Blocked`). The message's reactions after it.
    async fn react(
        &self,
        room: i64,
        user: i64,
        id: i64,
        emoji: Option<&str>,
    ) -> StoreResult<Reactions>;

    /// The reactions of those of `messages` (of `room`) that have any: one query for a page
    /// of history.
    async fn reaction_counts(
        &self,
        room: i64,
        messages: Vec<i64>,
    ) -> StoreResult<Vec<(i64, Vec<ReactionCount>)>>;
}

/// `(message, emoji, count)` rows grouped by message, each message's most used emoji first
/// (then by emoji, the same on every backend whatever its collation).
pub fn grouped(rows: Vec<(i64, String, i64)>) -> Vec<(i64, Vec<ReactionCount>)> {
    let mut grouped: Vec<(i64, Vec<ReactionCount>)> = Vec::new();
    for (message, emoji, count) in rows {
        let entry = ReactionCount { emoji, count };
        match grouped.last_mut() {
            Some((last, counts)) if *last == message => counts.push(entry),
            _ => grouped.push((message, vec![entry])),
        }
    }
    for (_, counts) in &mut grouped {
        counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.emoji.cmp(&b.emoji)));
    }
    grouped
}

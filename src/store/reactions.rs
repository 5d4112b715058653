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

    /// The reactions of those of `messages` (of `room`) that have any, in message id order,
    /// each with `viewer`'s own: one query for a page of history.
    async fn reaction_counts(
        &self,
        room: i64,
        viewer: i64,
        messages: Vec<i64>,
    ) -> StoreResult<Vec<Reactions>>;
}

/// A row of the backends' count queries: message, emoji, how many, and whether the viewer
/// is one of them.
pub type CountRow = (i64, String, i64, bool);

/// Count rows (in message order) grouped by message, each message's most used emoji first
/// (then by emoji, the same on every backend whatever its collation).
pub fn grouped(rows: Vec<CountRow>) -> Vec<Reactions> {
    let mut grouped: Vec<Reactions> = Vec::new();
    for (message, emoji, count, viewers) in rows {
        if grouped.last().is_none_or(|last| last.message_id != message) {
            grouped.push(Reactions {
                message_id: message,
                counts: Vec::new(),
                mine: None,
            });
        }
        let last = grouped.last_mut().expect("pushed above");
        if viewers {
            last.mine = Some(emoji.clone());
        }
        last.counts.push(ReactionCount { emoji, count });
    }
    for reactions in &mut grouped {
        let counts = &mut reactions.counts;
        counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.emoji.cmp(&b.emoji)));
    }
    grouped
}

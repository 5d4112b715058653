//! `chatnode admin stats`: what the database holds and how far the relay is behind.

use serde_json::json;

use super::output::{fields, or_dash, Report};
use super::AdminError;
use crate::store::Store;

pub async fn run(store: &dyn Store) -> Result<Report, AdminError> {
    let counts = store.counts().await?;
    let outbox = store.outbox_depth().await?;
    let json = json!({
        "users": counts.users,
        "disabled_users": counts.disabled_users,
        "rooms": counts.rooms,
        "messages": counts.messages,
        "outbox_depth": outbox.rows,
        "outbox_oldest_at": outbox.oldest_at,
    });
    let text = fields(&[
        ("users", counts.users.to_string()),
        ("disabled users", counts.disabled_users.to_string()),
        ("rooms", counts.rooms.to_string()),
        ("messages", counts.messages.to_string()),
        ("outbox depth", outbox.rows.to_string()),
        ("outbox oldest", or_dash(outbox.oldest_at)),
    ]);
    Ok(Report { json, text })
}

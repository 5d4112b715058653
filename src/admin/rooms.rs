//! `chatnode admin rooms list|show|delete`.

use std::path::Path;

use clap::Subcommand;
use serde_json::json;

use super::output::{fields, table, Report};
use super::{AdminError, PageArgs};
use crate::store::admin::RoomRecord;
use crate::store::{Member, Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum RoomsCommand {
    /// Rooms by id, a page at a time.
    List(PageArgs),
    /// One room and its members.
    Show { id: i64 },
    /// Delete the room, its history and its attachments; its sockets close on every node.
    Delete { id: i64 },
}

pub async fn run(
    store: &dyn Store,
    media_dir: &Path,
    command: RoomsCommand,
) -> Result<Report, AdminError> {
    match command {
        RoomsCommand::List(page) => {
            let rooms = store.room_records(page.into()).await?;
            let rows: Vec<Vec<String>> = rooms.iter().map(row).collect();
            Ok(Report {
                json: json!(rooms),
                text: table(HEADERS, &rows),
            })
        }
        RoomsCommand::Show { id } => {
            let (room, members) = store
                .room_record(id)
                .await?
                .ok_or(AdminError::RoomNotFound(id))?;
            Ok(show(&room, &members))
        }
        RoomsCommand::Delete { id } => {
            let deleted = match store.delete_room(id).await {
                Ok(deleted) => deleted,
                Err(StoreError::RoomNotFound) => return Err(AdminError::RoomNotFound(id)),
                Err(e) => return Err(e.into()),
            };
            for file in &deleted.files {
                remove_file(media_dir, id, file)?;
            }
            let mut json = json!(deleted.room);
            json["deleted"] = json!(true);
            json["files_removed"] = json!(deleted.files.len());
            Ok(Report {
                json,
                text: format!(
                    "deleted room {id} ({:?}): {} members, {} messages, {} files",
                    deleted.room.name,
                    deleted.room.members,
                    deleted.room.messages,
                    deleted.files.len()
                ),
            })
        }
    }
}

const HEADERS: &[&str] = &[
    "ID", "NAME", "KIND", "ADMIN", "MEMBERS", "MESSAGES", "CREATED",
];

fn row(room: &RoomRecord) -> Vec<String> {
    vec![
        room.id.to_string(),
        room.name.clone(),
        room.kind.as_str().to_string(),
        room.admin.to_string(),
        room.members.to_string(),
        room.messages.to_string(),
        room.created_at.clone(),
    ]
}

fn show(room: &RoomRecord, members: &[Member]) -> Report {
    let mut json = json!(room);
    json["member_list"] = members
        .iter()
        .map(|m| json!({ "id": m.id, "username": m.username }))
        .collect();
    let names: Vec<String> = members
        .iter()
        .map(|m| format!("{} ({})", m.username, m.id))
        .collect();
    let text = fields(&[
        ("id", room.id.to_string()),
        ("name", room.name.clone()),
        ("kind", room.kind.as_str().to_string()),
        ("admin", room.admin.to_string()),
        ("members", room.members.to_string()),
        ("messages", room.messages.to_string()),
        ("created", room.created_at.clone()),
        ("member list", names.join(", ")),
    ]);
    Report { json, text }
}

/// Removes an attachment of a deleted room; one already gone is fine. Stored names are
/// plain file names (the upload path makes them), so this stays inside the media directory.
fn remove_file(media_dir: &Path, room: i64, file: &str) -> Result<(), AdminError> {
    let inside = Path::new(file).file_name().is_some_and(|name| name == file);
    if !inside {
        return Ok(());
    }
    match std::fs::remove_file(media_dir.join(file)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(AdminError::MediaLeft {
            room,
            file: file.to_string(),
            source: e,
        }),
        _ => Ok(()),
    }
}

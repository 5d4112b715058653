//! `chatnode admin`: operators manage users, tokens and rooms through the node's database,
//! and drain a running node. Changes that running nodes must act on (a disabled account's
//! sockets, a deleted room's) travel as outbox events, the path every room event takes, so
//! every node sharing the database hears of them; see ARCHITECTURE.md.

pub mod node;
pub mod output;
pub mod rooms;
pub mod stats;
pub mod tokens;
pub mod users;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::store::admin::{AdminPage, MAX_ADMIN_PAGE};
use crate::store::{Store, StoreError};
pub use output::Report;

/// `chatnode admin [--json] [--data-dir DIR | --database-url URL] <group> <command>`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub database: Database,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The database of the node, given as to `chatnode serve` (same flags, same variables).
#[derive(Debug, Clone, Args)]
pub struct Database {
    /// The node's data directory: its SQLite database is `<dir>/chatnode.db`.
    #[arg(
        long,
        env = "CHATNODE_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// `sqlite://<path>` or `postgres://...`; overrides `--data-dir`'s database.
    #[arg(long, env = "CHATNODE_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// List, show, disable and enable accounts.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Revoke an account's tokens.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// List, show and delete rooms.
    #[command(subcommand)]
    Rooms(rooms::RoomsCommand),
    /// Users, rooms, messages and the outbox's depth.
    Stats,
    /// Act on a running node.
    #[command(subcommand)]
    Node(node::NodeCommand),
}

/// Why an admin command failed; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no database at {0}: give the node's --data-dir or --database-url (CHATNODE_DATA_DIR, CHATNODE_DATABASE_URL)")]
    NoDatabase(PathBuf),
    #[error("{}", .0.chain())]
    Store(#[from] StoreError),
    #[error("no user with id {0}")]
    UserNotFound(i64),
    #[error("no room with id {0}")]
    RoomNotFound(i64),
    #[error("room {room} was deleted, but its file {file} could not be removed: {source}")]
    MediaLeft {
        room: i64,
        file: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Node(#[from] node::NodeError),
}

/// `--after` and `--limit` of a listing.
#[derive(Debug, Clone, Copy, Args)]
pub struct PageArgs {
    /// List ids after this one (the last id of the previous page).
    #[arg(long, default_value_t = 0)]
    pub after: i64,
    /// At most this many rows (up to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_ADMIN_PAGE)))]
    pub limit: u32,
}

impl From<PageArgs> for AdminPage {
    fn from(page: PageArgs) -> Self {
        AdminPage {
            after: page.after,
            limit: page.limit,
        }
    }
}

/// Runs one admin command and returns what it reports.
pub async fn run(args: AdminArgs) -> Result<Report, AdminError> {
    let AdminArgs {
        database, command, ..
    } = args;
    match command {
        // Talks to the node's process, not to its database.
        AdminCommand::Node(command) => Ok(node::run(command).await?),
        AdminCommand::Users(command) => users::run(open(&database).await?.as_ref(), command).await,
        AdminCommand::Tokens(command) => {
            tokens::run(open(&database).await?.as_ref(), command).await
        }
        AdminCommand::Rooms(command) => {
            let store = open(&database).await?;
            rooms::run(store.as_ref(), &database.media_dir(), command).await
        }
        AdminCommand::Stats => stats::run(open(&database).await?.as_ref()).await,
    }
}

impl Database {
    pub fn url(&self) -> String {
        let mut config = crate::Config::new(&self.data_dir);
        config.database_url = self.database_url.clone();
        config.database_url()
    }

    pub fn media_dir(&self) -> PathBuf {
        crate::Config::new(&self.data_dir).media_dir()
    }
}

/// Opens the node's database; a SQLite file that is not there is an error, not a new
/// empty database (a mistyped directory would otherwise list no users).
async fn open(database: &Database) -> Result<Arc<dyn Store>, AdminError> {
    let url = database.url();
    if let Some(path) = url.strip_prefix("sqlite://") {
        if !std::path::Path::new(path).is_file() {
            return Err(AdminError::NoDatabase(path.into()));
        }
    }
    Ok(crate::store::open(&url).await?)
}

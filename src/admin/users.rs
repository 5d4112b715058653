//! `chatnode admin users list|show|disable|enable`.

use clap::Subcommand;
use serde_json::json;

use super::output::{fields, or_dash, table, Report};
use super::{AdminError, PageArgs};
use crate::store::admin::Account;
use crate::store::{Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Accounts by id, a page at a time.
    List(PageArgs),
    /// One account: its rooms, messages, whether it is disabled.
    Show { id: i64 },
    /// Refuse every token and login of the account and close its sockets on every node.
    Disable { id: i64 },
    /// Let the account sign in and use its unexpired tokens again.
    Enable { id: i64 },
}

pub async fn run(store: &dyn Store, command: UsersCommand) -> Result<Report, AdminError> {
    match command {
        UsersCommand::List(page) => {
            let accounts = store.accounts(page.into()).await?;
            Ok(list(&accounts))
        }
        UsersCommand::Show { id } => {
            let (account, sent) = store
                .account(id)
                .await?
                .ok_or(AdminError::UserNotFound(id))?;
            Ok(show(&account, Some(sent)))
        }
        UsersCommand::Disable { id } => set_disabled(store, id, true).await,
        UsersCommand::Enable { id } => set_disabled(store, id, false).await,
    }
}

async fn set_disabled(store: &dyn Store, id: i64, disabled: bool) -> Result<Report, AdminError> {
    match store.set_disabled(id, disabled).await {
        Ok(account) => Ok(show(&account, None)),
        Err(StoreError::UserNotFound) => Err(AdminError::UserNotFound(id)),
        Err(e) => Err(e.into()),
    }
}

/// The state column: what a token of the account gets.
fn state(account: &Account) -> &'static str {
    if account.disabled_at.is_some() {
        "disabled"
    } else {
        "active"
    }
}

fn list(accounts: &[Account]) -> Report {
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            vec![
                a.user.id.to_string(),
                a.user.username.clone(),
                a.user.email.clone(),
                state(a).to_string(),
                a.rooms.to_string(),
                a.user.created_at.clone(),
            ]
        })
        .collect();
    Report {
        json: json!(accounts),
        text: table(
            &["ID", "USERNAME", "EMAIL", "STATE", "ROOMS", "CREATED"],
            &rows,
        ),
    }
}

/// One account; `sent` is its message count when it was counted.
pub(super) fn show(account: &Account, sent: Option<i64>) -> Report {
    let mut json = json!(account);
    json["state"] = json!(state(account));
    let user = &account.user;
    let mut pairs = vec![
        ("id", user.id.to_string()),
        ("username", user.username.clone()),
        ("email", user.email.clone()),
        ("name", format!("{} {}", user.first_name, user.last_name)),
        ("phone", user.phone_number.clone()),
        ("state", state(account).to_string()),
        ("disabled at", or_dash(account.disabled_at.as_ref())),
        ("tokens revoked at", or_dash(account.tokens_revoked_at)),
        ("rooms", account.rooms.to_string()),
        ("created", user.created_at.clone()),
    ];
    if let Some(sent) = sent {
        json["messages"] = json!(sent);
        pairs.push(("messages", sent.to_string()));
    }
    Report {
        json,
        text: fields(&pairs),
    }
}

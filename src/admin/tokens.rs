//! `chatnode admin tokens revoke --user <id>`.

use clap::Subcommand;

use super::output::Report;
use super::AdminError;
use crate::store::{Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Refuse every access and refresh token the account holds now (its sockets close on
    /// every node); it signs in again to get new ones.
    Revoke {
        /// The account's id.
        #[arg(long)]
        user: i64,
    },
}

pub async fn run(store: &dyn Store, command: TokensCommand) -> Result<Report, AdminError> {
    let TokensCommand::Revoke { user } = command;
    match store.revoke_user_tokens(user).await {
        Ok(account) => Ok(super::users::show(&account, None)),
        Err(StoreError::UserNotFound) => Err(AdminError::UserNotFound(user)),
        Err(e) => Err(e.into()),
    }
}

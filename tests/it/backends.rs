//! Fresh PostgreSQL databases for tests. Each [`FreshDatabase`] is a new database on the server
//! at `CHATNODE_TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`, used only
//! to create and drop them), dropped again when the guard is dropped, also when the test
//! panics. Tests only PostgreSQL can run are `#[ignore]`d and use [`fresh_database`], which
//! fails without that URL; the black-box suite runs on PostgreSQL when it is set, on SQLite
//! otherwise.

use tokio_postgres::NoTls;

use crate::helpers::WAIT;

pub struct FreshDatabase {
    /// `postgres://` URL of the new database, for `--database-url` or `store::open`.
    pub url: String,
    admin_url: String,
    name: String,
}

/// A new, empty database for a PostgreSQL-only test; fails when no server is configured.
pub async fn fresh_database() -> FreshDatabase {
    fresh_database_url()
        .await
        .expect("this PostgreSQL test needs CHATNODE_TEST_DATABASE_URL")
}

/// A new, empty database, or `None` when no server is configured.
pub async fn fresh_database_url() -> Option<FreshDatabase> {
    let admin_url = match std::env::var("CHATNODE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => return None,
    };
    let name = format!("chatnode_test_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&admin_url, &format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
    Some(FreshDatabase {
        url: with_database(&admin_url, &name),
        admin_url,
        name,
    })
}

impl FreshDatabase {
    /// A plain connection to the test database, for checks the store does not expose.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio::time::timeout(WAIT, tokio_postgres::connect(&self.url, NoTls))
                .await
                .expect("the test database answers in time")
                .expect("the test database accepts connections");
        tokio::spawn(connection);
        client
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and may run while the test's runtime unwinds: a thread with its
        // own runtime does the work. FORCE ends the sessions of stores still open.
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(admin_sql(&admin_url, &sql))
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: cannot drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

async fn admin_sql(admin_url: &str, sql: &str) -> Result<(), String> {
    let work = async {
        let (client, connection) = tokio_postgres::connect(admin_url, NoTls).await?;
        tokio::spawn(connection);
        client.batch_execute(sql).await
    };
    match tokio::time::timeout(WAIT, work).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        }),
        Err(_) => Err(format!("no answer within {WAIT:?}")),
    }
}

/// `url` with its database (the path) replaced by `name`, keeping any `?options`.
fn with_database(url: &str, name: &str) -> String {
    let (base, options) = match url.split_once('?') {
        Some((base, options)) => (base, format!("?{options}")),
        None => (url, String::new()),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    format!("{server}/{name}{options}")
}

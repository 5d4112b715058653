//! PostgreSQL behind the [`Store`](crate::store::Store) seam, for several nodes sharing one database.
//!
//! A deadpool pool of tokio-postgres connections. Joins, leaves and messages first lock their
//! room's row, so whatever node they run on, a room's membership changes are serialised (the
//! member cap holds) and its message and outbox ids are assigned and committed in one order.
//! A trigger on the outbox NOTIFYs `chatnode_outbox` at commit; every store LISTENs on a
//! connection of its own, so the relay holding the lease wakes for commits on any node.

mod admin;
mod conversations;
mod edits;
mod engine;
mod events;
mod presence;
mod queries;
mod reactions;
mod rows;

pub use engine::PostgresStore;

#[cfg(test)]
mod tests {
    use super::engine::MIGRATIONS;

    #[test]
    fn every_sql_file_is_a_listed_migration_in_order() {
        let listed: Vec<String> = MIGRATIONS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(crate::store::migration_files("postgres"), listed);
    }
}

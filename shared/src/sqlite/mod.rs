//! The SQLite engine under the local adapters: one database file, one writer
//! thread with group commit, checkpoints on their own thread, a pool of
//! readers, and the schema.
//!
//! It runs no query of its own on the tables: the SQLite adapters of the
//! stores above it (`ledger/sqlite.rs`, `state/sqlite.rs`, `queue/sqlite.rs`,
//! `intake/sqlite.rs`) run theirs through a shared [`Db`].

mod db;
mod schema;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::path::PathBuf;

pub use db::{Db, DbOptions, Durability};
pub(crate) use db::{OpError, OpResult};

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A file, directory or thread could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// SQLite could not open or prepare the database.
    #[error("cannot open the database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's reason.
        source: rusqlite::Error,
    },
    /// The database was made by a newer payhook.
    #[error(
        "the database {path} has schema version {found}; this payhook knows up to {supported} (use a newer payhook or another --db)"
    )]
    Schema {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
}

//! Local, embedded mode: the whole pipeline in one process over one SQLite
//! database, with the same handlers as the Lambda functions.
//!
//! [`Db`] opens the database (WAL, migrations) and owns the connection model;
//! the adapters beside the AWS ones ([`SqliteLedger`](crate::ledger::sqlite::SqliteLedger),
//! [`SqliteStateStore`](crate::state::sqlite::SqliteStateStore),
//! [`SqliteQueue`](crate::queue::sqlite::SqliteQueue)) share it. [`Pipeline`]
//! assembles the receive handler and one worker per processor over it, and
//! [`Inspector`] answers questions about what happened.

mod db;
pub mod inspect;
mod pipeline;
#[cfg(test)]
pub(crate) mod testing;
mod worker;

use std::path::PathBuf;

pub use db::{Db, DbOptions, Durability};
pub(crate) use db::{OpError, OpResult};
pub use inspect::{EventFilter, Inspector, Stats};
pub use pipeline::{
    LocalReceiver, Pipeline, PipelineEffects, PipelineSettings, Recovery, dev_secret,
};
pub use worker::WorkerSettings;

use crate::error::StoreError;

/// Why local mode could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A file or directory could not be created.
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
    /// Another live process runs the pipeline on the same database.
    #[error("another payhook dev ({owner}) is running on {path}; stop it or pass another --db")]
    Locked {
        /// The database file.
        path: PathBuf,
        /// Who holds it, as recorded at its start.
        owner: String,
    },
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

//! Local, embedded mode: the whole pipeline in one process over one SQLite
//! database, with the same handlers as the Lambda functions.
//!
//! [`Pipeline`] assembles the receive handler and one worker per processor
//! over the SQLite adapters of one [`Db`](crate::sqlite::Db), and
//! [`Inspector`] answers questions about what happened; [`replay`] rebuilds
//! the state an object was in after each of its events.

pub mod inspect;
mod pipeline;
pub mod replay;
mod worker;

pub use crate::state::effects::{EffectFilter, EffectStatus, EffectView};
pub use inspect::{Counters, EventFilter, Inspector, STAGES, Stats, Throughput, TimelineEntry};
pub use pipeline::{
    LocalReceiver, Pipeline, PipelineEffects, PipelineSettings, Recovery, dev_effects_secret,
    dev_secret,
};
pub use worker::WorkerSettings;

use std::path::PathBuf;

use crate::error::StoreError;
use crate::sqlite::DbError;

/// Why local mode could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The database could not be opened or its lock file created.
    #[error(transparent)]
    Db(#[from] DbError),
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

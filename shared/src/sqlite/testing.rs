//! Test support for the SQLite adapters: a throw-away database per test.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Db, DbOptions, Durability};
use crate::clock::{Clock, ManualClock};

/// A database in its own temporary directory, closed and removed on drop.
pub struct TempDb {
    dir: PathBuf,
    db: Db,
    clock: ManualClock,
}

impl TempDb {
    /// A fresh database whose clock starts at `NOW_SECS`.
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("payhook-test-{}", uuid::Uuid::new_v4()));
        let clock = ManualClock::at_secs(NOW_SECS);
        let db = open(&dir, &clock);
        Self { dir, db, clock }
    }

    /// The database.
    pub fn db(&self) -> Db {
        self.db.clone()
    }

    /// The clock the database measures time with.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// Closes the database and opens the same file again, as a restart would.
    pub fn reopen(&mut self) -> Db {
        self.db.close();
        self.db = open(&self.dir, &self.clock);
        self.db.clone()
    }

    /// The database file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("test.db")
    }
}

impl Default for TempDb {
    fn default() -> Self {
        Self::new()
    }
}

/// The start of every test clock (unix seconds).
pub const NOW_SECS: i64 = 1_750_000_000;

fn open(dir: &std::path::Path, clock: &ManualClock) -> Db {
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    Db::open(
        dir.join("test.db"),
        DbOptions {
            durability: Durability::Normal,
            readers: 2,
            clock,
        },
    )
    .expect("test database opens")
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.db.close();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

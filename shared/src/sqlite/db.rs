//! The one SQLite database behind local mode: opening, and the connection
//! model every SQLite adapter shares.
//!
//! **Writes** go to one writer thread that owns the only write connection. It
//! takes every operation waiting on its channel, runs them all in a single
//! `BEGIN IMMEDIATE` transaction, commits once, and only then answers each
//! caller: a group commit. Under load one commit (and, with
//! [`Durability::Full`], one fsync) covers dozens of operations, and no caller
//! hears "done" before its write is committed.
//!
//! An operation that fails must leave nothing behind, and must not take the
//! rest of its group with it. Operations almost never fail, so a group first
//! runs without savepoints (each costs a copy of every page it touches); if
//! one fails, the group is rolled back and run again with a savepoint around
//! each operation, which then fails alone. Operations are therefore `Fn`:
//! run twice on the same state, they do the same.
//!
//! **Checkpoints** (copying the WAL back into the database file, with its
//! fsyncs) run on a thread of their own, nudged by the writer once the WAL
//! holds [`CHECKPOINT_PAGES`], so commits never wait for them. Only when the
//! WAL reaches [`RESTART_PAGES`] does the writer finish a checkpoint itself (by
//! then mostly done), which lets the next transaction start the log over.
//!
//! **Reads** run on a small pool of read-only connections; in WAL mode they see
//! every committed write and never wait on the writer. Point lookups run on
//! the calling thread; longer inspection queries on tokio's blocking pool.

use std::cell::Cell;
use std::ffi::c_int;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::hooks::Wal;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use super::DbError;
use super::schema::migrate;
use crate::clock::{Clock, SystemClock};
use crate::error::StoreError;

/// The backend name in [`StoreError`]s.
pub(crate) const BACKEND: &str = "sqlite";

/// The most operations one group commit takes; bounds a caller's wait.
const MAX_GROUP: usize = 512;

/// WAL pages added between nudges of the checkpoint thread (SQLite's own
/// automatic checkpoint interval).
const CHECKPOINT_PAGES: c_int = 1000;

/// WAL pages after which the writer completes the checkpoint itself (by then
/// mostly done), so that the log starts over: bounds it at about 16 MB.
const RESTART_PAGES: c_int = 4000;

thread_local! {
    /// Pages in the WAL after the last commit on this thread. Each writer
    /// thread owns one database, so a thread-local is per database.
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

/// How long a connection waits for another process's lock (e.g. `payhook dlq`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How hard a commit presses data to disk before callers are answered.
///
/// Both keep everything acknowledged across a `kill -9`: in WAL mode a commit
/// is complete once its frames are written to the WAL file, which happens
/// before any caller is answered, and a killed process does not take the
/// operating system's file cache with it. They differ only when the machine
/// itself stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=NORMAL`: a power loss or kernel crash may roll back the
    /// last commits (never corrupt the file). The default: a process crash
    /// loses nothing answered, at about 1.5x the throughput of `Full`.
    #[default]
    Normal,
    /// `synchronous=FULL`: each group commit is fsynced before anyone is
    /// answered, so an acknowledged delivery survives power loss too. Group
    /// commit makes its cost one fsync per batch of operations, not per write.
    Full,
}

impl Durability {
    /// Parses `normal` or `full`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "normal" => Some(Self::Normal),
            "full" => Some(Self::Full),
            _ => None,
        }
    }

    /// The `PRAGMA synchronous` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

/// How to open the database.
#[derive(Clone)]
pub struct DbOptions {
    /// The `synchronous` setting of the writer.
    pub durability: Durability,
    /// How many read connections are kept open.
    pub readers: usize,
    /// The clock leases, visibility timeouts and TTLs are measured with.
    pub clock: Arc<dyn Clock>,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            readers: 8,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for DbOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbOptions")
            .field("durability", &self.durability)
            .field("readers", &self.readers)
            .finish_non_exhaustive()
    }
}

/// Why one database operation failed, before it is named as a [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpError {
    /// SQLite refused or failed.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    /// A stored row cannot be read back.
    #[error("stored item {key} is malformed: {message}")]
    Corrupt {
        /// The row's key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A claim is held by another delivery now (see [`StoreError::ClaimLost`]).
    #[error("the claim on {0} is held by another delivery now")]
    ClaimLost(String),
    /// The operation panicked; its writes were rolled back.
    #[error("operation panicked")]
    Panicked,
    /// The group's transaction could not begin; the operation did not run.
    #[error("the transaction could not begin")]
    NotStarted,
}

impl OpError {
    /// A malformed row.
    pub(crate) fn corrupt(key: impl std::fmt::Display, message: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    pub(crate) fn into_store(self, operation: &'static str) -> StoreError {
        match self {
            Self::Corrupt { key, message } => StoreError::Corrupt { key, message },
            Self::ClaimLost(key) => StoreError::ClaimLost { key },
            other => StoreError::unavailable(BACKEND, operation, other),
        }
    }
}

/// The result type of database operations.
pub(crate) type OpResult<T> = Result<T, OpError>;

/// One write operation waiting in a group.
trait Job: Send {
    /// Runs the operation, inside a savepoint of its own when `alone`;
    /// `false` when it failed. Run again after its group was rolled back, it
    /// sees the state it saw the first time.
    fn run(&mut self, conn: &Connection, alone: bool) -> bool;

    /// Answers the caller with the last run's result once the group's commit
    /// is decided (`Err`: not committed); `started` is whether the group's
    /// transaction began at all.
    fn finish(self: Box<Self>, started: bool, commit: Result<(), &str>);
}

/// A [`Job`], what follows its commit, and where its answer goes.
struct Op<T, F, A> {
    operation: &'static str,
    f: F,
    then: A,
    result: Option<OpResult<T>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F, A> Job for Op<T, F, A>
where
    T: Send,
    F: Fn(&Connection) -> OpResult<T> + Send,
    A: FnOnce(&Result<T, StoreError>) + Send,
{
    fn run(&mut self, conn: &Connection, alone: bool) -> bool {
        let result = if alone {
            in_savepoint(conn, &self.f)
        } else {
            std::panic::catch_unwind(AssertUnwindSafe(|| (self.f)(conn)))
                .unwrap_or(Err(OpError::Panicked))
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, started: bool, commit: Result<(), &str>) {
        let Self {
            operation,
            f,
            then,
            result,
            reply,
        } = *self;
        // Dropped first: what it captured is its caller's alone again when answered.
        drop(f);
        let out = match (result, commit) {
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Err(err)), _) => Err(err.into_store(operation)),
            (_, Err(message)) if !started => Err(StoreError::unavailable(
                BACKEND,
                operation,
                format!("transaction could not begin: {message}"),
            )),
            (_, Err(message)) => Err(StoreError::unavailable(
                BACKEND,
                operation,
                format!("commit failed: {message}"),
            )),
            (None, Ok(())) => Err(OpError::NotStarted.into_store(operation)),
        };
        then(&out);
        // The caller may have gone away (a dropped request); the write stands.
        let _ = reply.send(out);
    }
}

/// A handle to the database; cheap to clone, shared by every local adapter.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Box<dyn Job>>>>,
    /// The writer, then the checkpoint thread: joined in that order.
    threads: Mutex<Vec<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    max_readers: usize,
    clock: Arc<dyn Clock>,
    durability: Durability,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.inner.path)
            .field("durability", &self.inner.durability)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Db {
    /// Opens (creating if needed, with its directory) the database at `path`,
    /// brings its schema up to date and starts the writer thread.
    pub fn open(path: impl AsRef<Path>, options: DbOptions) -> Result<Self, DbError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| DbError::Open {
            path: path.clone(),
            source,
        };
        let mut writer = Connection::open(&path).map_err(open_err)?;
        configure_writer(&writer, options.durability).map_err(open_err)?;
        migrate(&mut writer, &path)?;

        let checkpointer = Connection::open(&path).map_err(open_err)?;
        checkpointer.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        checkpointer
            .pragma_update(None, "synchronous", options.durability.as_str())
            .map_err(open_err)?;

        let spawn_err = |source| DbError::Io {
            path: path.clone(),
            source,
        };
        // One nudge waiting is enough: the checkpoint it starts takes all there is.
        let (nudge, nudges) = mpsc::sync_channel::<()>(1);
        let checkpoints = std::thread::Builder::new()
            .name("payhook-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpointer, &nudges))
            .map_err(spawn_err)?;
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let writes = std::thread::Builder::new()
            .name("payhook-sqlite-writer".into())
            .spawn(move || write_loop(&writer, &rx, &nudge))
            .map_err(spawn_err)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(Some(tx)),
                threads: Mutex::new(vec![writes, checkpoints]),
                readers: Mutex::new(Vec::new()),
                max_readers: options.readers.max(1),
                clock: options.clock,
                durability: options.durability,
            }),
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The durability setting in force.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Now, by the database's clock (unix milliseconds).
    pub fn now_millis(&self) -> i64 {
        self.inner.clock.now_millis()
    }

    /// Stops taking writes, lets the writer commit what it has, and waits for
    /// it and the checkpoint thread.
    pub fn close(&self) {
        drop(lock(&self.inner.writer).take());
        let threads = std::mem::take(&mut *lock(&self.inner.threads));
        for thread in threads {
            // A panicked thread has nothing left to flush.
            let _ = thread.join();
        }
        lock(&self.inner.readers).clear();
    }

    /// Runs `f` in the next group commit; resolves once that commit is
    /// durable. `f` may run twice (see the module docs), and is dropped before
    /// the answer, so an `Arc` it captured is the caller's alone again.
    pub(crate) async fn write<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> OpResult<T> + Send + 'static,
    {
        self.write_then(operation, f, |_| {}).await
    }

    /// [`write`](Self::write), then `then` with the result on the writer
    /// thread, once the commit is decided and before the caller is answered:
    /// it runs even if the caller has gone away meanwhile (a dropped request).
    pub(crate) async fn write_then<T, F, A>(
        &self,
        operation: &'static str,
        f: F,
        then: A,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> OpResult<T> + Send + 'static,
        A: FnOnce(&Result<T, StoreError>) + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Op {
            operation,
            f,
            then,
            result: None,
            reply,
        });
        let sent = match lock(&self.inner.writer).as_ref() {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::unavailable(
                BACKEND,
                operation,
                "the database is closed",
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::unavailable(
                BACKEND,
                operation,
                "the writer stopped before committing",
            ))
        })
    }

    /// Runs a point lookup `f` on a read connection right here: it takes
    /// microseconds and, in WAL mode, never waits for the writer, so a hop to
    /// another thread would cost more than the query.
    pub(crate) fn lookup<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&Connection) -> OpResult<T>,
    ) -> Result<T, StoreError> {
        self.inner
            .with_reader(f)
            .map_err(|e| e.into_store(operation))
    }

    /// Runs a longer query `f` (inspection) on a read connection on the blocking pool.
    pub(crate) async fn read<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> OpResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.with_reader(f))
            .await
            .map_err(|e| StoreError::unavailable(BACKEND, operation, e))?
            .map_err(|e| e.into_store(operation))
    }

    /// The value stored under `key` in the metadata table, creating it with
    /// `make` the first time (concurrent creators agree on one value).
    pub async fn meta_get_or_insert(
        &self,
        key: &'static str,
        make: impl FnOnce() -> String + Send + 'static,
    ) -> Result<String, StoreError> {
        let candidate = make();
        self.write("meta", move |conn| {
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
            )?
            .execute(params![key, candidate])?;
            Ok(conn
                .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |row| row.get(0))?)
        })
        .await
    }

    /// Stores `value` under `key` in the metadata table, replacing any earlier value.
    pub async fn meta_put(&self, key: &'static str, value: String) -> Result<(), StoreError> {
        self.write("meta", move |conn| {
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
            Ok(())
        })
        .await
    }

    /// The value stored under `key` in the metadata table, if any.
    pub async fn meta_get(&self, key: &'static str) -> Result<Option<String>, StoreError> {
        self.read("meta", move |conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |row| row.get(0))
                .optional()?)
        })
        .await
    }
}

impl Inner {
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> OpResult<T>) -> OpResult<T> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = f(&conn);
        let mut readers = lock(&self.readers);
        if readers.len() < self.max_readers && lock(&self.writer).is_some() {
            readers.push(conn);
        }
        result
    }
}

fn configure_writer(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode WAL refused (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", durability.as_str())?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -16_000)?;
    conn.set_prepared_statement_cache_capacity(64);
    // Replaces SQLite's automatic checkpoint inside COMMIT: see `write_loop`.
    conn.wal_hook(Some(record_wal_pages));
    Ok(())
}

fn record_wal_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

fn open_reader(path: &Path) -> OpResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "cache_size", -8_000)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Runs one operation in its own savepoint so that its failure (or panic)
/// rolls back its writes only, not the rest of the group.
fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> OpResult<T>) -> OpResult<T> {
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    let result =
        std::panic::catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or(Err(OpError::Panicked));
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
    }
    conn.prepare_cached("RELEASE op")?.execute([])?;
    result
}

/// Copies the WAL into the database whenever nudged, beside the writer. A
/// passive checkpoint never blocks the writer or readers; what it cannot copy
/// yet (frames a reader still needs) waits for the next nudge.
fn checkpoint_loop(conn: &Connection, nudges: &mpsc::Receiver<()>) {
    while nudges.recv().is_ok() {
        if let Err(err) = passive_checkpoint(conn) {
            tracing::warn!(error = %err, "WAL checkpoint failed; the next one retries");
        }
    }
}

fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

/// Runs a begun group's operations and commits them: without savepoints
/// first and, if one failed, all again from the start with a savepoint each.
fn run_group(conn: &Connection, group: &mut [Box<dyn Job>]) -> Result<(), String> {
    if !group.iter_mut().all(|job| job.run(conn, false)) {
        conn.execute_batch("ROLLBACK; BEGIN IMMEDIATE")
            .map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                e.to_string()
            })?;
        for job in group.iter_mut() {
            job.run(conn, true);
        }
    }
    conn.execute_batch("COMMIT").map_err(|e| {
        // Leave no half-open transaction behind for the next group.
        let _ = conn.execute_batch("ROLLBACK");
        e.to_string()
    })
}

fn write_loop(
    conn: &Connection,
    jobs: &mpsc::Receiver<Box<dyn Job>>,
    nudge: &mpsc::SyncSender<()>,
) {
    let mut group: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_GROUP);
    // The WAL's size at the last nudge of the checkpoint thread.
    let mut nudged_at: c_int = 0;
    while let Ok(first) = jobs.recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let begun = conn.execute_batch("BEGIN IMMEDIATE");
        let outcome = match &begun {
            Ok(()) => run_group(conn, &mut group),
            Err(e) => Err(e.to_string()),
        };
        let commit = match &outcome {
            Ok(()) => Ok(()),
            Err(message) => Err(message.as_str()),
        };
        for job in group.drain(..) {
            job.finish(begun.is_ok(), commit);
        }
        // After answering: nobody waits for a checkpoint.
        let pages = WAL_PAGES.get();
        if pages < nudged_at {
            nudged_at = 0; // the log started over
        }
        if pages >= RESTART_PAGES {
            // Busy (the checkpoint thread is at it) is fine: the next commit retries.
            let _ = passive_checkpoint(conn);
        } else if pages >= nudged_at + CHECKPOINT_PAGES {
            nudged_at = pages;
            // Full means a nudge is already waiting.
            let _ = nudge.try_send(());
        }
    }
}

#[cfg(test)]
mod tests;

//! The local database's tables and their migrations.
//!
//! Each adapter owns its queries (`ledger/sqlite.rs`, `state/sqlite.rs`,
//! `queue/sqlite.rs`); the tables are declared here together because one
//! `user_version` orders the migrations of the whole file.

use std::path::Path;

use rusqlite::Connection;

use super::DbError;

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
///
/// Every secondary index costs page writes on each commit, so there are only
/// those the hot path or the newest-first listing needs; TTL purges and the
/// inspection of one event use primary keys or a scan at start-up.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: ledger, bodies, state, markers, queues, meta.
    "
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE ledger (
        provider           TEXT    NOT NULL,
        event_id           TEXT    NOT NULL,
        status             TEXT    NOT NULL,
        event_type         TEXT    NOT NULL,
        created            INTEGER NOT NULL,
        received_at_millis INTEGER NOT NULL,
        lease_until_millis INTEGER NOT NULL,
        attempts           INTEGER NOT NULL,
        queue              TEXT,
        message_id         TEXT,
        ignore_reason      TEXT,
        object_id          TEXT,
        livemode           INTEGER,
        expires_at         INTEGER NOT NULL,
        PRIMARY KEY (provider, event_id)
    );
    CREATE INDEX ledger_newest ON ledger (received_at_millis DESC);

    CREATE TABLE bodies (
        provider TEXT NOT NULL,
        event_id TEXT NOT NULL,
        body     TEXT NOT NULL,
        PRIMARY KEY (provider, event_id)
    ) WITHOUT ROWID;

    CREATE TABLE state_items (
        kind              TEXT    NOT NULL,
        id                TEXT    NOT NULL,
        version           INTEGER NOT NULL,
        last_created      INTEGER NOT NULL,
        last_event_id     TEXT    NOT NULL,
        last_event_type   TEXT    NOT NULL,
        updated_at_millis INTEGER NOT NULL,
        data              TEXT    NOT NULL,
        pending           TEXT    NOT NULL,
        PRIMARY KEY (kind, id)
    ) WITHOUT ROWID;

    CREATE TABLE markers (
        processor  TEXT    NOT NULL,
        event_id   TEXT    NOT NULL,
        event_type TEXT    NOT NULL,
        kind       TEXT,
        object_id  TEXT,
        outcome    TEXT    NOT NULL,
        at_millis  INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (processor, event_id)
    ) WITHOUT ROWID;
    CREATE INDEX markers_object ON markers (kind, object_id, at_millis);

    CREATE TABLE messages (
        seq                INTEGER PRIMARY KEY AUTOINCREMENT,
        queue              TEXT    NOT NULL,
        dead               INTEGER NOT NULL DEFAULT 0,
        provider           TEXT    NOT NULL,
        event_id           TEXT    NOT NULL,
        event_type         TEXT    NOT NULL,
        body               TEXT    NOT NULL,
        attributes         TEXT    NOT NULL,
        sent_at_millis     INTEGER NOT NULL,
        visible_at_millis  INTEGER NOT NULL,
        receive_count      INTEGER NOT NULL DEFAULT 0,
        in_flight          INTEGER NOT NULL DEFAULT 0,
        last_error         TEXT,
        dead_at_millis     INTEGER,
        redrives           INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX messages_ready ON messages (queue, dead, visible_at_millis, seq);
    ",
    // 2: message bodies apart from the delivery state each receive and settle
    // rewrites, so that those rewrite a short row, not the whole event.
    "
    CREATE TABLE message_bodies (
        seq        INTEGER PRIMARY KEY,
        body       TEXT    NOT NULL,
        attributes TEXT    NOT NULL
    );
    INSERT INTO message_bodies (seq, body, attributes) SELECT seq, body, attributes FROM messages;
    ALTER TABLE messages DROP COLUMN body;
    ALTER TABLE messages DROP COLUMN attributes;
    ",
    // 3: the seq an object's next effect gets (its outbox numbers effects 1, 2, 3…).
    "
    ALTER TABLE state_items ADD COLUMN next_seq INTEGER NOT NULL DEFAULT 1;
    ",
    // 4: each object's last delivered effects (a JSON array, newest last).
    "
    ALTER TABLE state_items ADD COLUMN delivered TEXT NOT NULL DEFAULT '[]';
    ",
    // 5: the token of the claim that holds a RECEIVED record.
    "
    ALTER TABLE ledger ADD COLUMN claim_token TEXT NOT NULL DEFAULT '';
    ",
];

/// Brings the schema of the database at `path` up to date in one transaction.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    let open_err = |source| DbError::Open {
        path: path.to_path_buf(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(open_err)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(open_err)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(DbError::Schema {
            path: path.to_path_buf(),
            found: version,
            supported: known,
        });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(sql).map_err(open_err)?;
        tx.pragma_update(None, "user_version", n as i64 + 1)
            .map_err(open_err)?;
    }
    tx.commit().map_err(open_err)
}

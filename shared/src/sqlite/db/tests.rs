//! The engine: group commit, rollback of one operation alone, checkpoints, migrations.

use super::*;
use crate::sqlite::schema::MIGRATIONS;
use crate::sqlite::testing::TempDb;

fn count(conn: &Connection, table: &str) -> OpResult<i64> {
    Ok(conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
}

#[tokio::test]
async fn failing_operation_rolls_back_alone_within_its_group() {
    // GIVEN many concurrent writes, one of which fails after writing
    let t = TempDb::new();
    let db = t.db();
    let writes = (0..40).map(|n| {
        let db = db.clone();
        async move {
            db.write("test", move |conn| {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, 'v')",
                    [format!("k{n}")],
                )?;
                if n == 7 {
                    return Err(OpError::corrupt("k7", "refused after writing"));
                }
                Ok(())
            })
            .await
        }
    });
    let results = futures_util::future::join_all(writes).await;
    // THEN only that write failed, and only its row is missing
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    assert!(matches!(results[7], Err(StoreError::Corrupt { .. })));
    assert_eq!(db.read("test", |c| count(c, "meta")).await.unwrap(), 39);
}

#[tokio::test]
async fn group_run_again_after_a_failure_answers_what_was_committed() {
    // GIVEN a counter and many concurrent increments that each report the
    // value they wrote, one of which fails after incrementing
    let t = TempDb::new();
    let db = t.db();
    db.meta_put("counter", "0".into()).await.unwrap();
    let writes = (0..40).map(|n| {
        let db = db.clone();
        async move {
            db.write("test", move |conn| {
                let value: i64 = conn.query_row(
                    "UPDATE meta SET value = value + 1 WHERE key = 'counter' RETURNING CAST(value AS INTEGER)",
                    [],
                    |row| row.get(0),
                )?;
                if n == 7 {
                    return Err(OpError::corrupt("counter", "refused after writing"));
                }
                Ok(value)
            })
            .await
        }
    });
    let results = futures_util::future::join_all(writes).await;
    // THEN the others each answer a distinct value that stands, and the
    // failed increment left nothing behind
    let mut values: Vec<i64> = results.into_iter().filter_map(Result::ok).collect();
    values.sort_unstable();
    assert_eq!(values, (1..=39).collect::<Vec<_>>());
    assert_eq!(db.meta_get("counter").await.unwrap().as_deref(), Some("39"));
}

#[tokio::test]
async fn panicking_operation_is_rolled_back_and_the_writer_lives_on() {
    // GIVEN a write that panics after writing
    let t = TempDb::new();
    let db = t.db();
    let failed = db
        .write("test", |conn| -> OpResult<()> {
            conn.execute("INSERT INTO meta (key, value) VALUES ('p', 'v')", [])?;
            panic!("bug in an operation");
        })
        .await;
    // THEN it fails alone, nothing it wrote stands, and later writes succeed
    assert!(failed.is_err());
    db.write("test", |conn| {
        Ok(conn.execute("INSERT INTO meta (key, value) VALUES ('q', 'v')", [])?)
    })
    .await
    .unwrap();
    assert_eq!(db.read("test", |c| count(c, "meta")).await.unwrap(), 1);
}

#[tokio::test]
async fn closed_database_refuses_writes_cleanly() {
    // GIVEN a closed database WHEN a write is attempted THEN it fails as unavailable
    let t = TempDb::new();
    let db = t.db();
    db.close();
    let err = db.meta_get_or_insert("k", || "v".into()).await.unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
}

#[tokio::test]
async fn meta_value_is_created_once_and_kept_across_restarts() {
    // GIVEN a value created on first use
    let mut t = TempDb::new();
    let first = t
        .db()
        .meta_get_or_insert("secret", || "one".into())
        .await
        .unwrap();
    // WHEN asked again with another candidate, also after a restart
    let again = t
        .db()
        .meta_get_or_insert("secret", || "two".into())
        .await
        .unwrap();
    let db = t.reopen();
    // THEN the first value stands
    assert_eq!((first.as_str(), again.as_str()), ("one", "one"));
    assert_eq!(db.meta_get("secret").await.unwrap().as_deref(), Some("one"));
    assert_eq!(db.meta_get("other").await.unwrap(), None);
}

#[tokio::test]
async fn database_made_by_a_newer_payhook_is_refused() {
    // GIVEN a database whose schema is newer than this build knows
    let t = TempDb::new();
    let newer = MIGRATIONS.len() as i64 + 1;
    t.db()
        .write("test", move |conn| {
            Ok(conn.pragma_update(None, "user_version", newer)?)
        })
        .await
        .unwrap();
    t.db().close();
    // WHEN it is opened THEN opening fails, naming both versions
    let err = Db::open(t.path(), DbOptions::default()).unwrap_err();
    assert!(
        matches!(err, DbError::Schema { found, .. } if found == newer),
        "{err}"
    );
}

#[tokio::test]
async fn queued_messages_survive_the_move_of_bodies_to_their_own_table() {
    // GIVEN a schema-1 database holding a queued message
    let t = TempDb::new();
    t.db().close();
    let path = t.path().with_file_name("v1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO messages (queue, provider, event_id, event_type, body, attributes,
                 sent_at_millis, visible_at_millis)
             VALUES ('fulfill', 'stripe', 'evt_1', 't', '{\"id\":\"evt_1\"}', '{\"k\":\"v\"}', 0, 0)",
            [],
        )
        .unwrap();
    }
    // WHEN it is opened by this build
    let db = Db::open(&path, DbOptions::default()).unwrap();
    // THEN the message keeps its body and attributes, now in their own table
    let (body, attributes): (String, String) = db
        .read("test", |c| {
            Ok(c.query_row(
                "SELECT b.body, b.attributes FROM messages m JOIN message_bodies b USING (seq)
                 WHERE m.event_id = 'evt_1' AND m.queue = 'fulfill'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(body, r#"{"id":"evt_1"}"#);
    assert_eq!(attributes, r#"{"k":"v"}"#);
    db.close();
}

#[tokio::test]
async fn the_wal_starts_over_under_sustained_writes() {
    // GIVEN a database taking far more writes than the WAL bound (~40 MB)
    let t = TempDb::new();
    let db = t.db();
    let blob = "x".repeat(4000);
    for n in 0..200 {
        let blob = blob.clone();
        db.write("test", move |conn| {
            for i in 0..50 {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![format!("k{n}-{i}"), blob],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
        if n % 10 == 9 {
            // Room for the checkpoint thread on a machine the other tests
            // keep busy: the bound is about log restarts, not about winning
            // a race for the CPU.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // THEN the checkpoints (thread and writer) kept the WAL file near its
    // bound instead of growing with every write, and nothing was lost
    let wal = t.path().with_extension("db-wal");
    let wal_bytes = std::fs::metadata(&wal).unwrap().len();
    let bound = u64::try_from(RESTART_PAGES + CHECKPOINT_PAGES).unwrap() * 4096 * 3 / 2;
    assert!(wal_bytes < bound, "WAL is {wal_bytes} bytes");
    assert_eq!(db.read("test", |c| count(c, "meta")).await.unwrap(), 10_000);
}

#[tokio::test]
async fn opening_creates_the_directory_in_wal_mode() {
    // GIVEN a path in a directory that does not exist yet
    let t = TempDb::new();
    let path = t.path().with_file_name("nested").join("dir").join("dev.db");
    // WHEN it is opened THEN the directory and a WAL database exist
    let db = Db::open(&path, DbOptions::default()).unwrap();
    let mode: String = db
        .read("test", |c| {
            Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(db.durability(), Durability::Normal);
    db.close();
}

#[test]
fn durability_names_parse() {
    assert_eq!(Durability::parse("Normal"), Some(Durability::Normal));
    assert_eq!(Durability::parse("full"), Some(Durability::Full));
    assert_eq!(Durability::parse("off"), None);
}

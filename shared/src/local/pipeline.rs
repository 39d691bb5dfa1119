//! The whole pipeline over one database: the receive handler, and one worker
//! per processor running the same [`Runner`] the Lambda functions run.
//!
//! Start-up takes an exclusive lock on the database (one pipeline per file),
//! then recovers what a killed predecessor left: messages it had received
//! become visible at once and its ledger leases end, so nothing waits out a
//! timeout. A stop lets the batches in hand finish and leaves the rest queued.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::LocalError;
use super::inspect::Inspector;
use super::worker::{self, WorkerSettings};
use crate::clock::SystemClock;
use crate::config::DomainSettings;
use crate::config::ReceiveSettings;
use crate::intake::sqlite::SqliteIntake;
use crate::ledger::sqlite::SqliteLedger;
use crate::process::dispute::Disputes;
use crate::process::fulfill::Fulfill;
use crate::process::payout::Payouts;
use crate::process::subscription::Subscriptions;
use crate::process::{Domain, Effects, LogEffects, Runner};
use crate::queue::sqlite::{QueueSettings, SqliteQueue};
use crate::receive::Receiver;
use crate::sqlite::{Db, DbError};
use crate::state::sqlite::SqliteStateStore;
use crate::stripe_api::http::StripeApi;
use crate::verify::Verifiers;

/// The receive handler of the local pipeline.
pub type LocalReceiver = Receiver<SqliteIntake, SystemClock>;

/// The metadata key of the generated Stripe signing secret.
const DEV_SECRET_KEY: &str = "stripe_dev_secret";
/// The metadata key of the generated effects signing secret.
const DEV_EFFECTS_SECRET_KEY: &str = "effects_signing_secret";
/// The metadata key naming the process that runs the pipeline.
const OWNER_KEY: &str = "owner";

/// Side effects for all four processors: one value, so a user plugs in one type.
pub trait PipelineEffects:
    Effects<<Fulfill as Domain>::Effect>
    + Effects<<Subscriptions as Domain>::Effect>
    + Effects<<Disputes as Domain>::Effect>
    + Effects<<Payouts as Domain>::Effect>
    + Clone
    + 'static
{
}

impl<T> PipelineEffects for T where
    T: Effects<<Fulfill as Domain>::Effect>
        + Effects<<Subscriptions as Domain>::Effect>
        + Effects<<Disputes as Domain>::Effect>
        + Effects<<Payouts as Domain>::Effect>
        + Clone
        + 'static
{
}

/// Everything the local pipeline is configured with.
#[derive(Clone, Debug)]
pub struct PipelineSettings {
    /// The receive handler's settings (the Lambda's environment variables).
    pub receive: ReceiveSettings,
    /// Visibility timeout, receives before the DLQ, retry backoff.
    pub queue: QueueSettings,
    /// Batch size and idle polling of the workers.
    pub worker: WorkerSettings,
    /// How long per-event markers are kept (seconds).
    pub marker_ttl_secs: i64,
    /// Failed deliveries of one effect after which its object's outbox is parked.
    pub effects_max_attempts: u32,
    /// The business rules' settings (`ORDER_METADATA_KEY`).
    pub domain: DomainSettings,
    /// Stripe's API, to fetch routed thin events' snapshots (`STRIPE_API_KEY`).
    pub stripe_api: Option<StripeApi>,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            receive: ReceiveSettings::default(),
            queue: QueueSettings::default(),
            worker: WorkerSettings::default(),
            marker_ttl_secs: 30 * 86_400,
            effects_max_attempts: crate::process::DEFAULT_MAX_ATTEMPTS,
            domain: DomainSettings::default(),
            stripe_api: None,
        }
    }
}

/// What start-up found and repaired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Messages a previous process received and never settled, made visible again.
    pub released_messages: usize,
    /// `RECEIVED` leases a previous process held, ended.
    pub ended_leases: usize,
    /// Expired ledger records, markers and bodies removed.
    pub purged: usize,
}

/// The running local pipeline.
#[derive(Debug)]
pub struct Pipeline {
    db: Db,
    receiver: Arc<LocalReceiver>,
    queue: SqliteQueue,
    recovery: Recovery,
    stop: watch::Sender<bool>,
    /// Bumped when an outbox is retried: wakes the sweepers.
    retries: watch::Sender<u64>,
    effects_max_attempts: u32,
    workers: Mutex<Vec<JoinHandle<()>>>,
    _owner: OwnerLock,
}

impl Pipeline {
    /// Starts the pipeline on `db` with the default side effects (log lines).
    pub async fn start(
        db: Db,
        verifiers: Verifiers,
        settings: PipelineSettings,
    ) -> Result<Self, LocalError> {
        Self::start_with_effects(db, verifiers, settings, LogEffects).await
    }

    /// Starts the pipeline on `db`, performing side effects with `effects`.
    /// Must be called inside a tokio runtime: the workers are tasks.
    pub async fn start_with_effects<F: PipelineEffects>(
        db: Db,
        verifiers: Verifiers,
        settings: PipelineSettings,
        effects: F,
    ) -> Result<Self, LocalError> {
        let owner = OwnerLock::acquire(&db).await?;
        let ledger = SqliteLedger::new(db.clone());
        let state = SqliteStateStore::new(db.clone());
        // Room for one batch per consumer in memory; more waits in the table.
        let hand_off = settings.worker.batch_size.max(1) * settings.worker.consumers.max(1);
        let queue = SqliteQueue::new(db.clone(), settings.queue).with_hand_off(hand_off);
        let recovery = Recovery {
            released_messages: queue.release_in_flight().await?,
            ended_leases: ledger.expire_leases().await?,
            purged: ledger.purge_expired().await? + state.purge_expired().await?,
        };
        let mut receiver = Receiver::new(
            verifiers,
            SqliteIntake::new(db.clone(), queue.clone()),
            SystemClock,
            settings.receive.clone(),
        );
        if let Some(api) = settings.stripe_api.clone() {
            receiver = receiver.with_snapshots(Box::new(api));
        }
        let receiver = Arc::new(receiver);
        let (stop, stopped) = watch::channel(false);
        let (retries, retried) = watch::channel(0);
        let parts = Parts {
            state,
            ledger,
            effects,
            queue: queue.clone(),
            worker: settings.worker,
            marker_ttl_secs: settings.marker_ttl_secs,
            effects_max_attempts: settings.effects_max_attempts,
            stop: stopped,
            retries: retried,
        };
        let workers: Vec<_> = [
            parts.spawn(Fulfill::configured(&settings.domain)),
            parts.spawn(Subscriptions::configured(&settings.domain)),
            parts.spawn(Disputes::configured(&settings.domain)),
            parts.spawn(Payouts::configured(&settings.domain)),
        ]
        .into_iter()
        .flatten()
        .collect();
        Ok(Self {
            db,
            receiver,
            queue,
            recovery,
            stop,
            retries,
            effects_max_attempts: settings.effects_max_attempts,
            workers: Mutex::new(workers),
            _owner: owner,
        })
    }

    /// The receive handler: give it every request on `/webhooks/{provider}`.
    pub fn receiver(&self) -> Arc<LocalReceiver> {
        Arc::clone(&self.receiver)
    }

    /// Queries over the ledger, state and queues.
    pub fn inspector(&self) -> Inspector {
        Inspector::new(self.db.clone(), self.queue.clone())
            .with_max_attempts(self.effects_max_attempts)
            .with_sweeps(self.retries.clone())
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// What start-up recovered from a previous run.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// Stops the workers after their current batch, waits for them, and closes
    /// the database. Undelivered messages stay queued for the next start.
    pub async fn shutdown(self) {
        // Send fails only when every worker is already gone.
        let _ = self.stop.send(true);
        let workers =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner));
        for worker in workers {
            if let Err(err) = worker.await {
                tracing::error!(error = %err, "a processor worker ended abnormally");
            }
        }
        let db = self.db.clone();
        // Joining the writer waits for its last commit: off the async threads.
        let _ = tokio::task::spawn_blocking(move || db.close()).await;
    }
}

/// What every worker is built from.
struct Parts<F> {
    state: SqliteStateStore,
    ledger: SqliteLedger,
    effects: F,
    queue: SqliteQueue,
    worker: WorkerSettings,
    marker_ttl_secs: i64,
    effects_max_attempts: u32,
    stop: watch::Receiver<bool>,
    retries: watch::Receiver<u64>,
}

impl<F: Clone + 'static> Parts<F> {
    /// Starts `domain`'s consumer loops.
    fn spawn<D>(&self, domain: D) -> Vec<JoinHandle<()>>
    where
        D: Domain + 'static,
        F: Effects<D::Effect>,
    {
        let runner = Arc::new(
            Runner::new(
                domain,
                self.state.clone(),
                self.ledger.clone(),
                self.effects.clone(),
                SystemClock,
                self.marker_ttl_secs,
            )
            .with_max_attempts(self.effects_max_attempts),
        );
        let sweeper = tokio::spawn(worker::sweep(
            Arc::clone(&runner),
            self.worker.sweep_interval,
            self.retries.clone(),
            self.stop.clone(),
        ));
        (0..self.worker.consumers.max(1))
            .map(|_| {
                tokio::spawn(worker::run(
                    Arc::clone(&runner),
                    self.queue.clone(),
                    self.worker,
                    self.stop.clone(),
                ))
            })
            .chain([sweeper])
            .collect()
    }
}

/// The Stripe signing secret of this database: generated once (`whsec_` and
/// 64 hex digits, the shape the Stripe CLI prints) and kept, so it is stable
/// across restarts and readable by `payhook dev --print-secret`.
pub async fn dev_secret(db: &Db) -> Result<String, LocalError> {
    let make = || {
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        format!("whsec_{}{}", a.simple(), b.simple())
    };
    Ok(db.meta_get_or_insert(DEV_SECRET_KEY, make).await?)
}

/// The effects signing secret of this database, for an HTTP effects target
/// without `EFFECTS_SIGNING_SECRET`: a Standard Webhooks secret (`whsec_`
/// and 32 bytes in base64) generated once and kept, so the merchant's
/// endpoint keeps verifying across restarts.
pub async fn dev_effects_secret(db: &Db) -> Result<String, LocalError> {
    use base64::Engine as _;
    let make = || {
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let bytes: Vec<u8> = a.as_bytes().iter().chain(b.as_bytes()).copied().collect();
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    };
    Ok(db.meta_get_or_insert(DEV_EFFECTS_SECRET_KEY, make).await?)
}

/// Holds an exclusive lock on `<db>.lock` for as long as the pipeline runs.
///
/// SQLite's own file locking does it: a connection in exclusive locking mode
/// that has written keeps its lock until it closes, and the operating system
/// drops it when the process dies, even by `kill -9`.
struct OwnerLock {
    _conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for OwnerLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerLock")
            .field("path", &self.path)
            .finish()
    }
}

impl OwnerLock {
    async fn acquire(db: &Db) -> Result<Self, LocalError> {
        let path = lock_path(db.path());
        let me = format!("pid {}", std::process::id());
        let taken = {
            let path = path.clone();
            let me = me.clone();
            tokio::task::spawn_blocking(move || lock_file(&path, &me))
                .await
                .map_err(|e| DbError::Io {
                    path: db.path().to_path_buf(),
                    source: std::io::Error::other(e),
                })?
        };
        match taken {
            Ok(Some(conn)) => {
                db.meta_put(OWNER_KEY, me).await?;
                Ok(Self { _conn: conn, path })
            }
            Ok(None) => Err(LocalError::Locked {
                path: db.path().to_path_buf(),
                owner: db
                    .meta_get(OWNER_KEY)
                    .await?
                    .unwrap_or_else(|| "another process".into()),
            }),
            Err(source) => Err(DbError::Open { path, source }.into()),
        }
    }
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    db.with_file_name(name)
}

/// `Some` with the locked connection, `None` when another process holds it.
fn lock_file(path: &Path, me: &str) -> rusqlite::Result<Option<Connection>> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::ZERO)?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    let held = conn.execute_batch(
        "BEGIN EXCLUSIVE;
         CREATE TABLE IF NOT EXISTS owner (who TEXT NOT NULL);
         DELETE FROM owner;",
    );
    match held {
        Ok(()) => {
            conn.execute("INSERT INTO owner (who) VALUES (?1)", [me])?;
            conn.execute_batch("COMMIT")?;
            Ok(Some(conn))
        }
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use http::{HeaderMap, HeaderValue, Method, StatusCode};
    use serde::Serialize;
    use serde_json::json;

    use super::*;
    use crate::clock::Clock;
    use crate::ledger::{LedgerKey, LedgerStatus};
    use crate::local::inspect::{EventFilter, EventView};
    use crate::process::{EffectContext, EffectError};
    use crate::queue::Queue;
    use crate::route::Processor;
    use crate::sample::EventBuilder;
    use crate::sqlite::testing::TempDb;
    use crate::state::{StateKey, StateKind};
    use crate::verify::{Provider, Tolerance, sign_stripe};

    const SECRET: &str = "whsec_pipeline_test";
    const STANDARD_SECRET: &str = "whsec_cGlwZWxpbmVfc3RhbmRhcmRfc2VjcmV0";

    /// Effects that fail while `failing` is set and count what they performed.
    #[derive(Clone, Default)]
    struct Flaky {
        failing: Arc<AtomicBool>,
        performed: Arc<AtomicUsize>,
    }

    impl<E: Serialize + Sync> Effects<E> for Flaky {
        async fn perform(&self, _: &E, _: &EffectContext) -> Result<(), EffectError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(EffectError("the fulfilment service is down".into()));
            }
            self.performed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn settings() -> PipelineSettings {
        PipelineSettings {
            queue: QueueSettings {
                visibility_timeout_millis: 30_000,
                max_receive_count: 3,
                retry_backoff_millis: 0,
            },
            worker: WorkerSettings {
                batch_size: 8,
                poll_interval: Duration::from_millis(20),
                consumers: 2,
                sweep_interval: Duration::from_secs(60),
            },
            ..PipelineSettings::default()
        }
    }

    async fn start(t: &TempDb, effects: Flaky) -> Pipeline {
        start_with(t, effects, settings()).await
    }

    async fn start_with(t: &TempDb, effects: Flaky, settings: PipelineSettings) -> Pipeline {
        let verifiers =
            Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap();
        Pipeline::start_with_effects(t.db(), verifiers, settings, effects)
            .await
            .unwrap()
    }

    /// Messages waiting or in flight on every queue.
    async fn queued(p: &Pipeline) -> u64 {
        let stats = p.inspector().stats().await.unwrap();
        stats.queues.iter().map(|q| q.ready + q.in_flight).sum()
    }

    fn payment_succeeded(event_id: &str, pi: &str) -> String {
        payment(event_id, pi).body()
    }

    /// A `payment_intent.succeeded` event for payment intent `pi`, created now.
    fn payment(event_id: &str, pi: &str) -> EventBuilder {
        EventBuilder::new("payment_intent.succeeded")
            .id(event_id)
            .created(SystemClock.now_secs())
            .with(json!({
                "id": pi, "amount": 2000, "amount_received": 2000, "currency": "usd",
                "status": "succeeded", "metadata": { "order_id": "ord_1" }, "latest_charge": "ch_1"
            }))
    }

    async fn deliver(p: &Pipeline, body: &str) -> crate::receive::Answer {
        let mut headers = HeaderMap::new();
        let signature = sign_stripe(SECRET, SystemClock.now_secs(), body.as_bytes());
        headers.insert(
            "stripe-signature",
            HeaderValue::from_str(&signature).unwrap(),
        );
        p.receiver()
            .handle(&Method::POST, "stripe", &headers, body.as_bytes())
            .await
    }

    /// A Standard Webhooks delivery `id` of `event_type` whose data is `data`.
    async fn deliver_standard(
        p: &Pipeline,
        id: &str,
        event_type: &str,
        data: serde_json::Value,
    ) -> crate::receive::Answer {
        let now = SystemClock.now_secs();
        let body = json!({ "type": event_type, "timestamp": "2026-12-05T00:00:00Z", "data": data })
            .to_string();
        let signature =
            crate::verify::sign_standard(STANDARD_SECRET, id, now, body.as_bytes()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_str(id).unwrap());
        headers.insert("webhook-timestamp", HeaderValue::from(now));
        headers.insert(
            "webhook-signature",
            HeaderValue::from_str(&signature).unwrap(),
        );
        p.receiver()
            .handle(&Method::POST, "standard", &headers, body.as_bytes())
            .await
    }

    /// A pipeline that also verifies Standard Webhooks deliveries, routed by `standard_routes`.
    async fn start_with_standard(t: &TempDb, standard_routes: &str) -> Pipeline {
        let verifiers = Verifiers::from_secrets(
            vec![SECRET.into()],
            vec![STANDARD_SECRET.into()],
            Tolerance::DEFAULT,
        )
        .unwrap();
        let mut settings = settings();
        settings.receive.routes = crate::route::Routes::all()
            .with_standard(standard_routes)
            .unwrap();
        Pipeline::start_with_effects(t.db(), verifiers, settings, Flaky::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_standard_delivery_shaped_as_a_stripe_payment_is_not_routed() {
        // GIVEN a pipeline with a Standard Webhooks secret and no STANDARD_ROUTES
        let t = TempDb::new();
        let p = start_with_standard(&t, "").await;
        // WHEN a Standard delivery says `payment_intent.succeeded` with a
        // payment-intent-shaped object
        let data = json!({"id": "pi_9", "object": "payment_intent", "status": "succeeded",
                          "amount": 2000, "amount_received": 2000, "currency": "usd"});
        let answer = deliver_standard(&p, "msg_1", "payment_intent.succeeded", data).await;
        // THEN it is acknowledged and recorded as not routed; no order exists
        assert_eq!(answer.status, StatusCode::OK);
        assert!(
            answer.body_string().contains("not_routed"),
            "{}",
            answer.body_string()
        );
        let key = LedgerKey::new(Provider::Standard, "msg_1");
        let view = p.inspector().event(&key).await.unwrap().unwrap();
        assert!(view.processing.is_empty(), "{view:?}");
        assert_eq!(queued(&p).await, 0);
        let order = StateKey::new(StateKind::Order, "pi_9");
        assert!(p.inspector().object(&order).await.unwrap().is_none());
        p.shutdown().await;
    }

    #[tokio::test]
    async fn a_standard_delivery_never_stands_for_the_stripe_event_of_the_same_id() {
        // GIVEN Standard deliveries routed to fulfill (which reads Stripe objects only)
        let t = TempDb::new();
        let p = start_with_standard(&t, "payment_intent.*=fulfill").await;
        // WHEN a Standard delivery whose webhook-id is a Stripe event's id
        // arrives first, shaped as that payment
        let data = json!({"id": "pi_1", "object": "payment_intent", "status": "succeeded",
                          "amount": 2000, "amount_received": 2000, "currency": "usd"});
        let answer = deliver_standard(&p, "evt_1", "payment_intent.succeeded", data).await;
        assert_eq!(answer.status, StatusCode::OK);
        let standard = LedgerKey::new(Provider::Standard, "evt_1");
        for _ in 0..500 {
            let view = p.inspector().event(&standard).await.unwrap().unwrap();
            if !view.processing.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // THEN fulfill skipped it: no order
        let view = p.inspector().event(&standard).await.unwrap().unwrap();
        assert_eq!(view.processing.len(), 1, "{view:?}");
        assert_eq!(view.processing[0].outcome, crate::state::Outcome::Skipped);
        let order = StateKey::new(StateKind::Order, "pi_1");
        assert!(p.inspector().object(&order).await.unwrap().is_none());
        // WHEN the Stripe event evt_1 arrives
        let answer = deliver(&p, &payment_succeeded("evt_1", "pi_1")).await;
        assert_eq!(answer.status, StatusCode::OK);
        // THEN it is applied: the order exists, from the Stripe event
        let view = wait_for_stage(&p, "evt_1", "processed").await;
        assert_eq!(
            view.processing[0].outcome,
            crate::state::Outcome::Applied,
            "{view:?}"
        );
        let order = p.inspector().object(&order).await.unwrap().unwrap();
        assert_eq!(order.last_event.id, "evt_1");
        p.shutdown().await;
    }

    async fn wait_for_stage(p: &Pipeline, event_id: &str, stage: &str) -> EventView {
        let key = LedgerKey::new(Provider::Stripe, event_id);
        for _ in 0..500 {
            if let Some(v) = p.inspector().event(&key).await.unwrap() {
                if v.stage == stage {
                    return v;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{event_id} never reached {stage}: {:?}",
            p.inspector().event(&key).await
        );
    }

    #[tokio::test]
    async fn delivered_event_is_processed_once_and_inspectable() {
        // GIVEN a running pipeline
        let t = TempDb::new();
        let effects = Flaky::default();
        let p = start(&t, effects.clone()).await;
        // WHEN a signed event is delivered twice
        let first = deliver(&p, &payment_succeeded("evt_1", "pi_1")).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
        let event = wait_for_stage(&p, "evt_1", "processed").await;
        let again = deliver(&p, &payment_succeeded("evt_1", "pi_1")).await;
        // THEN it is enqueued once, applied once, its effect performed once,
        // and the order's state is readable with the event that made it
        assert_eq!(first.body["outcome"], "enqueued");
        assert_eq!(again.body["duplicate"], true);
        assert_eq!(event.status, LedgerStatus::Enqueued);
        assert_eq!(event.processing.len(), 1);
        assert_eq!(event.processing[0].processor, Processor::Fulfill);
        let order = p
            .inspector()
            .object(&StateKey::new(StateKind::Order, "pi_1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(order.last_event.id, "evt_1");
        assert!(order.pending_effects.is_empty());
        assert_eq!(order.history.len(), 1);
        assert_eq!(effects.performed.load(Ordering::SeqCst), 1);
        let listed = p
            .inspector()
            .events(EventFilter {
                event_type: Some("payment_intent.*".into()),
                limit: 10,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        p.shutdown().await;
    }

    #[tokio::test]
    async fn burst_beyond_the_hand_off_is_processed_in_full_from_the_table() {
        // GIVEN a pipeline whose consumers have room for 16 messages in memory
        // and would not poll their table for a minute
        let t = TempDb::new();
        let effects = Flaky::default();
        let mut settings = settings();
        settings.worker.poll_interval = Duration::from_secs(60);
        let p = start_with(&t, effects.clone(), settings).await;
        // (past the consumers' first look at the table, at start-up)
        tokio::time::sleep(Duration::from_millis(100)).await;
        // WHEN 120 events arrive at once
        let bodies: Vec<_> = (0..120)
            .map(|n| payment_succeeded(&format!("evt_{n}"), &format!("pi_{n}")))
            .collect();
        let answers = futures_util::future::join_all(bodies.iter().map(|b| deliver(&p, b))).await;
        assert!(answers.iter().all(|a| a.status == StatusCode::OK));
        // THEN those beyond the hand-off are taken from the table at once, and
        // every event is applied once
        for n in 0..120 {
            wait_for_stage(&p, &format!("evt_{n}"), "processed").await;
        }
        assert_eq!(effects.performed.load(Ordering::SeqCst), 120);
        for _ in 0..500 {
            if queued(&p).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(queued(&p).await, 0);
        p.shutdown().await;
    }

    #[tokio::test]
    async fn delivery_racing_a_live_claim_is_told_to_retry_and_queues_nothing() {
        use crate::ledger::{ClaimRequest, Ledger};
        // GIVEN an event another delivery has claimed and still holds
        let t = TempDb::new();
        let p = start(&t, Flaky::default()).await;
        let now = SystemClock.now_millis();
        SqliteLedger::new(t.db())
            .claim(&ClaimRequest {
                key: LedgerKey::new(Provider::Stripe, "evt_held"),
                event_type: "payment_intent.succeeded".into(),
                created: now / 1000,
                livemode: Some(false),
                object_id: Some("pi_held".into()),
                now_millis: now,
                lease_until_millis: now + 30_000,
                expires_at: now / 1000 + 86_400,
                token: "the killed run".into(),
            })
            .await
            .unwrap();
        // WHEN the event is delivered
        let answer = deliver(&p, &payment_succeeded("evt_held", "pi_held")).await;
        // THEN it is refused with 409 and nothing is queued for it
        assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
        assert_eq!(answer.body["error"], "in_flight");
        assert_eq!(queued(&p).await, 0);
        p.shutdown().await;
    }

    #[tokio::test]
    async fn failing_effect_dead_letters_and_redrive_finishes_it_once_fixed() {
        // GIVEN a pipeline whose fulfilment service is down
        let t = TempDb::new();
        let effects = Flaky::default();
        effects.failing.store(true, Ordering::SeqCst);
        let p = start(&t, effects.clone()).await;
        // WHEN an event arrives, it fails every receive and lands in the DLQ
        deliver(&p, &payment_succeeded("evt_1", "pi_1")).await;
        let dead = wait_for_stage(&p, "evt_1", "dead_letter").await;
        assert_eq!(
            dead.processing.len(),
            1,
            "the state change itself is committed"
        );
        let letters = p.inspector().dead_letters(None, 10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].receive_count, 3);
        assert!(
            letters[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("fulfilment service is down")),
            "{:?}",
            letters[0].last_error
        );
        let order = p
            .inspector()
            .object(&StateKey::new(StateKind::Order, "pi_1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            order.pending_effects.len(),
            1,
            "state committed, effect still pending"
        );
        // WHEN the service is back and the DLQ is redriven
        effects.failing.store(false, Ordering::SeqCst);
        assert_eq!(
            p.inspector()
                .redrive(Some(Processor::Fulfill))
                .await
                .unwrap(),
            1
        );
        // THEN the pending effect is performed exactly once and the message is gone
        wait_for_stage(&p, "evt_1", "processed").await;
        let order = p
            .inspector()
            .object(&StateKey::new(StateKind::Order, "pi_1"))
            .await
            .unwrap()
            .unwrap();
        assert!(order.pending_effects.is_empty());
        assert_eq!(effects.performed.load(Ordering::SeqCst), 1);
        assert!(
            p.inspector()
                .dead_letters(None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        p.shutdown().await;
    }

    #[tokio::test]
    async fn start_resumes_what_a_killed_run_left_behind() {
        // GIVEN a database where one message was queued and another received
        // by a process that then died, and that process's lease on a third event
        let t = TempDb::new();
        let queue = SqliteQueue::new(t.db(), QueueSettings::default());
        for (evt, pi) in [("evt_q", "pi_q"), ("evt_r", "pi_r")] {
            let message = payment(evt, pi).message();
            queue.send(Processor::Fulfill, &message).await.unwrap();
        }
        assert_eq!(queue.receive(Processor::Fulfill, 1).await.unwrap().len(), 1);
        // WHEN the pipeline starts on it
        let p = start(&t, Flaky::default()).await;
        // THEN the received message is released at once and both are processed
        assert_eq!(p.recovery().released_messages, 1);
        for pi in ["pi_q", "pi_r"] {
            let key = StateKey::new(StateKind::Order, pi);
            let mut found = None;
            for _ in 0..500 {
                found = p.inspector().object(&key).await.unwrap();
                if found.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(found.is_some(), "{pi} was not processed");
        }
        p.shutdown().await;
    }

    #[tokio::test]
    async fn second_pipeline_on_one_database_is_refused() {
        // GIVEN a running pipeline
        let t = TempDb::new();
        let p = start(&t, Flaky::default()).await;
        // WHEN another starts on the same file
        let verifiers =
            Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap();
        let other = Db::open(t.path(), crate::sqlite::DbOptions::default()).unwrap();
        let err = Pipeline::start(other.clone(), verifiers, settings())
            .await
            .unwrap_err();
        // THEN it is refused, naming the owner
        assert!(
            matches!(&err, LocalError::Locked { owner, .. } if owner.contains("pid")),
            "{err}"
        );
        other.close();
        p.shutdown().await;
    }

    #[tokio::test]
    async fn dev_secret_is_generated_once_in_the_stripe_cli_shape() {
        // GIVEN a fresh database WHEN the dev secret is asked for twice, across a restart
        let mut t = TempDb::new();
        let first = dev_secret(&t.db()).await.unwrap();
        let again = dev_secret(&t.reopen()).await.unwrap();
        // THEN it is the same `whsec_` + 64 hex digits
        assert_eq!(first, again);
        let hex = first.strip_prefix("whsec_").unwrap();
        assert_eq!(hex.len(), 64);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[tokio::test]
    async fn start_purges_expired_ledger_records_markers_and_orphan_bodies() {
        // GIVEN one expired and one live ledger record and marker, and a body each
        let t = TempDb::new();
        let now_secs = t.db().now_millis() / 1000;
        t.db()
            .write("test", move |conn| {
                for (id, expires) in [("evt_old", now_secs - 1), ("evt_new", now_secs + 60)] {
                    conn.execute(
                        "INSERT INTO ledger (provider, event_id, status, event_type, created, received_at_millis,
                             lease_until_millis, attempts, expires_at)
                         VALUES ('stripe', ?1, 'ENQUEUED', 't', 0, 0, 0, 1, ?2)",
                        rusqlite::params![id, expires],
                    )?;
                    conn.execute(
                        "INSERT INTO markers (processor, event_id, event_type, outcome, at_millis, expires_at)
                         VALUES ('fulfill', ?1, 't', 'applied', 0, ?2)",
                        rusqlite::params![id, expires],
                    )?;
                    conn.execute(
                        "INSERT INTO bodies (provider, event_id, body) VALUES ('stripe', ?1, '{}')",
                        [id],
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        // WHEN the pipeline starts on it
        let p = start(&t, Flaky::default()).await;
        // THEN only the expired rows (and the body of the expired record) are gone
        assert_eq!(p.recovery().purged, 3);
        for table in ["ledger", "markers", "bodies"] {
            let count: i64 = p
                .db()
                .read("test", move |c| {
                    Ok(c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
                })
                .await
                .unwrap();
            assert_eq!(count, 1, "{table}");
        }
        p.shutdown().await;
    }

    #[tokio::test]
    async fn a_body_a_dead_letter_refers_to_outlives_its_ledger_record() {
        // GIVEN an event too large for a message, dead-lettered, whose ledger
        // record has expired
        let t = TempDb::new();
        let now_secs = t.db().now_millis() / 1000;
        t.db()
            .write("test", move |conn| {
                conn.execute(
                    "INSERT INTO ledger (provider, event_id, status, event_type, created, received_at_millis,
                         lease_until_millis, attempts, expires_at)
                     VALUES ('stripe', 'evt_big', 'ENQUEUED', 'payout.paid', 0, 0, 0, 1, ?1)",
                    [now_secs - 1],
                )?;
                conn.execute(
                    "INSERT INTO bodies (provider, event_id, body) VALUES ('stripe', 'evt_big', '{}')",
                    [],
                )?;
                conn.execute(
                    "INSERT INTO messages (queue, dead, provider, event_id, event_type, sent_at_millis,
                         visible_at_millis, receive_count, dead_at_millis)
                     VALUES ('payout', 1, 'stripe', 'evt_big', 'payout.paid', 0, 0, 3, 0)",
                    [],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        // WHEN the pipeline starts and purges
        let p = start(&t, Flaky::default()).await;
        // THEN the record goes, but the body stays for the redrive
        assert_eq!(p.recovery().purged, 1);
        let bodies: i64 = p
            .db()
            .read("test", |c| {
                Ok(c.query_row("SELECT COUNT(*) FROM bodies", [], |r| r.get(0))?)
            })
            .await
            .unwrap();
        assert_eq!(bodies, 1);
        p.shutdown().await;
    }

    #[tokio::test]
    async fn parked_effect_is_listed_and_delivered_once_retried() {
        use crate::local::{EffectFilter, EffectStatus};
        // GIVEN a pipeline that parks an outbox after one failed delivery,
        // and a fulfilment service that is down
        let t = TempDb::new();
        let effects = Flaky::default();
        effects.failing.store(true, Ordering::SeqCst);
        let settings = PipelineSettings {
            effects_max_attempts: 1,
            ..settings()
        };
        let p = start_with(&t, effects.clone(), settings).await;
        // WHEN a payment arrives THEN its fulfil parks and the event is processed
        deliver(&p, &payment_succeeded("evt_1", "pi_1")).await;
        wait_for_stage(&p, "evt_1", "processed").await;
        let key = StateKey::new(StateKind::Order, "pi_1");
        let parked = p
            .inspector()
            .effects(EffectFilter {
                status: Some(EffectStatus::Parked),
                limit: 10,
                ..EffectFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(parked.len(), 1, "{parked:?}");
        assert_eq!((parked[0].object.clone(), parked[0].seq), (key.clone(), 1));
        assert_eq!(parked[0].attempts, 1);
        assert!(
            parked[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("fulfilment service is down"))
        );
        // WHEN the service is back and the outbox is retried
        effects.failing.store(false, Ordering::SeqCst);
        assert_eq!(p.inspector().retry_effects(Some(&key)).await.unwrap(), 1);
        // THEN the sweeper delivers it at once, once
        for _ in 0..500 {
            if effects.performed.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(effects.performed.load(Ordering::SeqCst), 1);
        let left = p
            .inspector()
            .effects(EffectFilter {
                limit: 10,
                ..EffectFilter::default()
            })
            .await
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
        // AND it is listed as delivered (one attempt since the retry) in the object's
        // history and among every delivered effect
        let history = p
            .inspector()
            .effects(EffectFilter {
                object: Some(key.clone()),
                limit: 10,
                ..EffectFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(history[0].status, EffectStatus::Delivered);
        assert_eq!((history[0].seq, history[0].attempts), (1, 1));
        assert!(history[0].delivered_at_millis.is_some());
        let delivered = p
            .inspector()
            .effects(EffectFilter {
                status: Some(EffectStatus::Delivered),
                limit: 10,
                ..EffectFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(delivered, history);
        let view = p.inspector().object(&key).await.unwrap().unwrap();
        assert!(view.pending_effects.is_empty());
        assert_eq!(view.delivered_effects.len(), 1);
        assert_eq!(view.delivered_effects[0].id, history[0].id);
        p.shutdown().await;
    }
}

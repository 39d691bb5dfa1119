//! One run of a flow: deliver its events in one order, with copies and
//! failures, through a real runner and the HTTP target; then check what the
//! endpoint received against the flow's expectations.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use payhook_shared::clock::ManualClock;
use payhook_shared::ledger::MemoryLedger;
use payhook_shared::process::dispute::Disputes;
use payhook_shared::process::effects::http_target::HttpEffects;
use payhook_shared::process::fulfill::Fulfill;
use payhook_shared::process::payout::Payouts;
use payhook_shared::process::subscription::Subscriptions;
use payhook_shared::process::{Domain, Effects, Runner};
use payhook_shared::queue::Delivery;
use payhook_shared::sample;
use payhook_shared::sqlite::testing::TempDb;
use payhook_shared::state::sqlite::SqliteStateStore;
use payhook_shared::state::{MemoryStateStore, StateKey, StateKind, StateStore};
use serde_json::Value;

use super::rng::Rng;
use super::server::{Plan, Request, SECRET, Server};
use super::spec::{Flow, START, matches};

/// Where the runner keeps state.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Memory,
    Sqlite,
}

/// The state store of a backend, kept for a whole flow: runs are told
/// apart by their ids (see [`Run::go`]), so one SQLite database serves them all.
pub enum Stores {
    Memory,
    Sqlite(TempDb),
}

impl Stores {
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Memory => Self::Memory,
            Backend::Sqlite => Self::Sqlite(TempDb::new()),
        }
    }
}

/// How a run ended.
pub enum Outcome {
    Ok,
    Failed(String),
}

/// One delivery order of a flow.
pub struct Run<'a> {
    pub flow: &'a Flow,
    pub events: &'a [Value],
    /// The order the events are first delivered in.
    pub order: &'a [usize],
    /// Picks the copies, the batches and the failing effects.
    pub seed: u64,
    pub plan: Plan,
    /// Whether events are delivered one to three times (else once).
    pub copies: bool,
    /// Parks outboxes after this many failures (and then retries them).
    pub max_attempts: Option<u32>,
    /// Whether effects go through the HTTP target (else straight to the
    /// endpoint's record, the same message without the round trip).
    pub http: bool,
}

/// Where a run's effects go.
struct Target<'a> {
    server: &'a Server,
    run: u64,
    url: &'a str,
}

/// Each run posts to its own path on the shared server.
static RUNS: AtomicU64 = AtomicU64::new(1);

/// Sweeps after the deliveries before a run counts as stuck.
const MAX_SWEEPS: usize = 50;

impl Run<'_> {
    /// Delivers, drains and checks. Every event id and every expected
    /// object's id gets the run's suffix, so that runs sharing a store never
    /// meet; the server's bodies lose it again before they are checked.
    pub async fn go(&self, stores: &Stores, server: &Server) -> Outcome {
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let suffix = format!("_r{run}");
        let url = server.url(run, self.plan);
        let ids: BTreeSet<&str> = self
            .flow
            .events
            .iter()
            .map(|e| e.id.as_str())
            .chain(
                self.flow
                    .objects()
                    .filter_map(|o| o.split_once('/'))
                    .map(|(_, id)| id),
            )
            .collect();
        let events: Vec<(Value, String)> = self
            .events
            .iter()
            .map(|event| {
                let mut body = event.to_string();
                for id in &ids {
                    body = body.replace(&format!("\"{id}\""), &format!("\"{id}{suffix}\""));
                }
                (serde_json::from_str(&body).unwrap(), body)
            })
            .collect();
        let target = Target {
            server,
            run,
            url: &url,
        };
        let drained = match stores {
            Stores::Memory => {
                self.on(MemoryStateStore::new(), &target, &events, &suffix)
                    .await
            }
            Stores::Sqlite(db) => {
                let store = SqliteStateStore::new(db.db());
                self.on(store, &target, &events, &suffix).await
            }
        };
        let requests: Vec<Request> = server
            .take(run)
            .into_iter()
            .map(|mut request| {
                let body = request
                    .body
                    .to_string()
                    .replace(&format!("{suffix}\""), "\"");
                request.body = serde_json::from_str(&body).unwrap();
                request
            })
            .collect();
        match drained.and_then(|()| self.check(&requests)) {
            Ok(()) => Outcome::Ok,
            Err(why) => Outcome::Failed(why),
        }
    }

    async fn on<S: StateStore>(
        &self,
        store: S,
        target: &Target<'_>,
        events: &[(Value, String)],
        suffix: &str,
    ) -> Result<(), String> {
        match self.flow.processor.as_str() {
            "fulfill" => {
                self.to(Fulfill::default(), store, target, events, suffix)
                    .await
            }
            "subscription" => self.to(Subscriptions, store, target, events, suffix).await,
            "dispute" => self.to(Disputes, store, target, events, suffix).await,
            "payout" => self.to(Payouts, store, target, events, suffix).await,
            other => Err(format!("unknown processor {other}")),
        }
    }

    async fn to<D: Domain, S: StateStore>(
        &self,
        domain: D,
        store: S,
        target: &Target<'_>,
        events: &[(Value, String)],
        suffix: &str,
    ) -> Result<(), String> {
        if self.http {
            let http = HttpEffects::new(target.url, SECRET, Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            self.drive(domain, store, http, events, suffix).await
        } else {
            let direct = target.server.direct(target.run);
            self.drive(domain, store, direct, events, suffix).await
        }
    }

    /// The batches delivered: the order, each event's copies placed at
    /// random later positions, cut into batches of one to three.
    fn batches(&self) -> Vec<Vec<usize>> {
        let mut rng = Rng::new(self.seed);
        let mut schedule = self.order.to_vec();
        if self.copies {
            for &event in self.order {
                for _ in 0..rng.below(3) {
                    let first = schedule.iter().position(|&e| e == event).unwrap_or(0);
                    let at = first + 1 + rng.below(schedule.len() - first);
                    schedule.insert(at, event);
                }
            }
        }
        let mut batches = Vec::new();
        let mut rest = schedule.as_slice();
        while !rest.is_empty() {
            let size = if self.copies { 1 + rng.below(3) } else { 1 };
            let (batch, tail) = rest.split_at(size.min(rest.len()));
            batches.push(batch.to_vec());
            rest = tail;
        }
        batches
    }

    async fn drive<D: Domain, S: StateStore, F: Effects<D::Effect>>(
        &self,
        domain: D,
        store: S,
        target: F,
        events: &[(Value, String)],
        suffix: &str,
    ) -> Result<(), String> {
        let mut runner = Runner::new(
            domain,
            store,
            MemoryLedger::new(),
            target,
            ManualClock::at_secs(START),
            7 * 86_400,
        );
        if let Some(max) = self.max_attempts {
            runner = runner.with_max_attempts(max);
        }
        for (n, batch) in self.batches().into_iter().enumerate() {
            let deliveries = batch
                .iter()
                .enumerate()
                .map(|(i, &e)| Delivery {
                    id: format!("m{n}.{i}"),
                    message: Ok(sample::message(&events[e].0, events[e].1.clone())),
                })
                .collect();
            // A failed record comes back: as a later copy, or through the sweep.
            runner.run_batch(deliveries).await;
        }
        let mut retried = 0;
        for _ in 0..MAX_SWEEPS {
            let swept = runner.sweep(1000).await.map_err(|e| e.to_string())?;
            if swept.objects == 0 {
                break;
            }
            let left = waiting(runner.store(), D::KINDS, suffix).await?;
            if swept.failed == 0 && !left.is_empty() {
                // Nothing failed, yet effects wait: the outbox is parked.
                if self.max_attempts.is_none() {
                    return Err(format!("outboxes parked: {left:?}"));
                }
                for key in &left {
                    runner
                        .store()
                        .retry_effects(key)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                retried += 1;
            }
        }
        if self.max_attempts.is_some() && retried == 0 {
            return Err("no outbox parked".into());
        }
        let left = waiting(runner.store(), D::KINDS, suffix).await?;
        if !left.is_empty() {
            return Err(format!(
                "effects still pending after {MAX_SWEEPS} sweeps: {left:?}"
            ));
        }
        for object in self.flow.objects() {
            let (kind, id) = object.split_once('/').unwrap_or_default();
            let kind = StateKind::parse(kind).ok_or_else(|| format!("no kind {kind}"))?;
            let item = runner
                .store()
                .load(&StateKey::new(kind, format!("{id}{suffix}")))
                .await
                .map_err(|e| e.to_string())?;
            if item.as_ref().is_some_and(|i| !i.pending.is_empty()) {
                return Err(format!("{object} still has pending effects"));
            }
        }
        Ok(())
    }

    /// Per object: each attempt only once every lower `seq` was accepted;
    /// the accepted effects numbered 1..n; and they are what the flow
    /// expects (Stripe's order) or one of its alternatives (any order).
    fn check(&self, requests: &[Request]) -> Result<(), String> {
        let mut accepted: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        let mut received: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for request in requests {
            let data = &request.body["data"];
            let object = format!(
                "{}/{}",
                data["object"]["kind"].as_str().unwrap_or_default(),
                data["object"]["id"].as_str().unwrap_or_default()
            );
            let seq = data["seq"].as_u64().unwrap_or_default();
            let done = accepted.entry(object.clone()).or_default();
            if let Some(missing) = (1..seq).find(|s| !done.contains(s)) {
                return Err(format!(
                    "{object}: seq {seq} ({}) attempted before seq {missing} was accepted",
                    request.id
                ));
            }
            if request.accepted {
                done.insert(seq);
                if seen.insert(request.id.clone()) {
                    received
                        .entry(object)
                        .or_default()
                        .push(request.body.clone());
                }
            }
        }
        for (object, effects) in &received {
            let seqs: Vec<u64> = effects
                .iter()
                .map(|e| e["data"]["seq"].as_u64().unwrap_or(0))
                .collect();
            if seqs != (1..=effects.len() as u64).collect::<Vec<_>>() {
                return Err(format!("{object}: seqs {seqs:?} are not 1..n"));
            }
        }
        let natural = !self.copies && matches!(self.plan, Plan::Fixed(0));
        let fits = expected(&self.flow.expect, &received)
            || (!natural
                && self
                    .flow
                    .also
                    .iter()
                    .any(|a| expected(&a.expect, &received)));
        if fits {
            Ok(())
        } else {
            Err(format!("received {}", summary(&received)))
        }
    }
}

/// This run's objects with effects waiting in `store`.
async fn waiting<S: StateStore>(
    store: &S,
    kinds: &[StateKind],
    suffix: &str,
) -> Result<Vec<StateKey>, String> {
    let keys = store
        .outboxes(kinds, 10_000)
        .await
        .map_err(|e| e.to_string())?;
    Ok(keys
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.id.ends_with(suffix))
        .collect())
}

/// Whether `received` is exactly `expect`, object by object.
fn expected(
    expect: &BTreeMap<String, Vec<Value>>,
    received: &BTreeMap<String, Vec<Value>>,
) -> bool {
    let objects: BTreeSet<&String> = expect.keys().chain(received.keys()).collect();
    objects.into_iter().all(|object| {
        let want = expect.get(object).map_or(&[][..], Vec::as_slice);
        let got = received.get(object).map_or(&[][..], Vec::as_slice);
        want.len() == got.len() && want.iter().zip(got).all(|(w, g)| matches(w, g))
    })
}

/// What was received, one line per effect: its type and own fields.
fn summary(received: &BTreeMap<String, Vec<Value>>) -> String {
    let mut text = String::new();
    for (object, effects) in received {
        text.push_str(&format!("\n  {object}:"));
        for effect in effects {
            let mut data = effect["data"].clone();
            if let Some(fields) = data.as_object_mut() {
                for field in ["id", "seq", "object", "event_id", "event_type"] {
                    fields.remove(field);
                }
            }
            text.push_str(&format!(
                "\n    {} {data}",
                effect["type"].as_str().unwrap_or_default()
            ));
        }
    }
    text
}

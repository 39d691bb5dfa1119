//! Reconcile: find the events the webhook path never took (a wrong secret
//! after a rotation, an outage, a deploy that answered 4xx) by listing
//! Stripe's Events API, and take each one as a webhook would.
//!
//! A run lists `GET /v1/events` from a window start to now, for the types
//! this deployment routes (in calls of at most 20 types, Stripe's limit),
//! page by page. Every event goes through [`Receiver::admit`]: the same
//! claim → route → send, under the same ledger key, so an event the webhook
//! already took costs one conditional write and is a duplicate, and one it
//! missed is enqueued: recovered. A webhook arriving at the same moment
//! finds the claim held (or done) and no event is taken twice.
//!
//! The window starts at the last complete run's start less an overlap (so
//! that an event Stripe lists late is still seen), or `lookback` back on the
//! first run, and never beyond the 30 days Stripe keeps events. The mark
//! moves only when a run listed every page and took every event.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
pub use crate::config::ReconcileSettings;
use crate::intake::{Intake, Intaken};
use crate::ledger::HighWater;
use crate::receive::{AdmitError, Receiver};
use crate::route::{ROUTES, Route};
use crate::stripe_api::{
    ApiError, EventsApi, ListRequest, MAX_TYPES_PER_CALL, PAGE_LIMIT, RETENTION_SECS,
};
use crate::telemetry::{self, Metric};
use crate::verify::Provider;

/// The name of Stripe's high-water mark in the ledger.
pub const STRIPE_MARK: &str = "reconcile:stripe";

/// Events admitted at once (each is one or two conditional writes).
const CONCURRENCY: usize = 8;

/// Recovered event ids kept in a report (the count is always exact).
const RECOVERED_LISTED: usize = 100;

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The window's start (unix seconds, `created[gte]`).
    pub since: i64,
    /// When the run started: the next run's mark, if this one completes.
    pub until: i64,
    /// Events listed.
    pub listed: u64,
    /// Events the webhook path had not taken, enqueued (or recorded) now.
    pub recovered: u64,
    /// Events the webhook path had not taken, recorded now as ignored (a
    /// livemode this endpoint does not take).
    pub ignored: u64,
    /// Events already taken.
    pub duplicates: u64,
    /// Events another delivery holds right now.
    pub in_flight: u64,
    /// Events that could not be taken (the next run tries again).
    pub failed: u64,
    /// List calls made.
    pub pages: u64,
    /// The first recovered event ids.
    pub recovered_ids: Vec<String>,
    /// Why the run did not complete, if it did not.
    pub failure: Option<String>,
}

impl Report {
    /// Whether every page was listed and every event taken.
    pub fn complete(&self) -> bool {
        self.failure.is_none()
    }
}

/// Reconciles one provider's events (Stripe's) into a receiver's intake.
pub struct Reconciler<'r, I, C, A, H> {
    receiver: &'r Receiver<I, C>,
    api: A,
    marks: H,
    clock: C,
    settings: ReconcileSettings,
}

impl<'r, I, C, A, H> Reconciler<'r, I, C, A, H>
where
    I: Intake,
    C: Clock,
    A: EventsApi,
    H: HighWater,
{
    /// A reconciler taking events into `receiver`, listing them with `api`,
    /// keeping its mark in `marks`.
    pub fn new(
        receiver: &'r Receiver<I, C>,
        api: A,
        marks: H,
        clock: C,
        settings: ReconcileSettings,
    ) -> Self {
        Self {
            receiver,
            api,
            marks,
            clock,
            settings,
        }
    }

    /// The Stripe types this deployment routes, in list-call-sized groups.
    fn type_groups(&self) -> Vec<Vec<String>> {
        let routes = &self.receiver.settings().routes;
        let routed: Vec<String> = ROUTES
            .iter()
            .filter(|(t, _)| matches!(routes.route(Provider::Stripe, t), Route::To(_)))
            .map(|(t, _)| (*t).to_owned())
            .collect();
        routed
            .chunks(MAX_TYPES_PER_CALL)
            .map(<[String]>::to_vec)
            .collect()
    }

    /// One run. `look_back` overrides the window: it starts that long ago
    /// instead of at the mark; `deadline` stops listing in time (the run then
    /// reports a failure and leaves the mark, so the next run covers the rest).
    pub async fn run(&self, look_back: Option<Duration>, deadline: Option<Instant>) -> Report {
        let now = self.clock.now_secs();
        let mut report = Report {
            until: now,
            ..Report::default()
        };
        let start = match look_back {
            Some(back) => Ok(now.saturating_sub(i64::try_from(back.as_secs()).unwrap_or(i64::MAX))),
            None => self.marks.high_water(STRIPE_MARK).await.map(|mark| {
                mark.map_or(now - self.settings.lookback_secs, |m| {
                    m - self.settings.overlap_secs
                })
            }),
        };
        report.since = match start {
            // A minute inside Stripe's 30 days, so the oldest page is still there.
            Ok(at) => at.max(now - RETENTION_SECS + 60),
            Err(err) => {
                report.failure = Some(format!("reading the high-water mark: {err}"));
                return self.finish(report).await;
            }
        };
        for types in self.type_groups() {
            if let Err(failure) = self.list_all(&types, deadline, &mut report).await {
                report.failure = Some(failure);
                break;
            }
        }
        if report.failure.is_none() && report.failed > 0 {
            report.failure = Some(format!("{} events could not be taken", report.failed));
        }
        self.finish(report).await
    }

    /// Lists every page of one group of types, taking each event.
    async fn list_all(
        &self,
        types: &[String],
        deadline: Option<Instant>,
        report: &mut Report,
    ) -> Result<(), String> {
        let mut request = ListRequest {
            created_gte: report.since,
            types: types.to_vec(),
            undelivered_only: self.settings.undelivered_only,
            starting_after: None,
            limit: PAGE_LIMIT,
        };
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err("ran out of time; the next run continues".into());
            }
            let page = self
                .api
                .list(&request)
                .await
                .map_err(|e: ApiError| format!("listing events: {e}"))?;
            report.pages += 1;
            let Some(last) = page.data.last() else {
                return Ok(());
            };
            let last_id = event_id(last.get())?;
            report.listed += page.data.len() as u64;
            for events in page.data.chunks(CONCURRENCY) {
                let admissions = events
                    .iter()
                    .map(|raw| self.receiver.admit(Provider::Stripe, raw.get()));
                let outcomes = futures_util::future::join_all(admissions).await;
                for (raw, outcome) in events.iter().zip(outcomes) {
                    tally(report, raw.get(), outcome);
                }
            }
            if !page.has_more {
                return Ok(());
            }
            request.starting_after = Some(last_id);
        }
    }

    /// Raises the mark after a complete run, and reports.
    async fn finish(&self, mut report: Report) -> Report {
        if report.complete()
            && let Err(err) = self.marks.raise_high_water(STRIPE_MARK, report.until).await
        {
            report.failure = Some(format!("keeping the high-water mark: {err}"));
        }
        telemetry::emit(
            "reconcile",
            &[
                (Metric::Listed, report.listed as f64),
                (Metric::Recovered, report.recovered as f64),
            ],
        );
        if report.recovered > 0 {
            tracing::warn!(
                recovered = report.recovered,
                ids = ?report.recovered_ids,
                "reconcile recovered events the webhook path never took"
            );
        }
        tracing::info!(
            since = report.since,
            listed = report.listed,
            recovered = report.recovered,
            ignored = report.ignored,
            duplicates = report.duplicates,
            in_flight = report.in_flight,
            failed = report.failed,
            pages = report.pages,
            failure = report.failure.as_deref().unwrap_or(""),
            "reconcile finished"
        );
        report
    }
}

/// The `id` of a listed event, to page on.
fn event_id(raw: &str) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    serde_json::from_str::<Id>(raw)
        .map(|e| e.id)
        .map_err(|e| format!("a listed event has no id: {e}"))
}

fn tally(report: &mut Report, raw: &str, outcome: Result<Intaken, AdmitError>) {
    match outcome {
        Ok(Intaken::Ignored(_)) => report.ignored += 1,
        Ok(Intaken::Enqueued { .. }) => {
            report.recovered += 1;
            if report.recovered_ids.len() < RECOVERED_LISTED
                && let Ok(id) = event_id(raw)
            {
                report.recovered_ids.push(id);
            }
        }
        Ok(Intaken::Duplicate(_)) => report.duplicates += 1,
        Ok(Intaken::InFlight { .. }) => report.in_flight += 1,
        Err(err) => {
            report.failed += 1;
            tracing::error!(
                event_id = event_id(raw).unwrap_or_default(),
                error = %err,
                "reconcile could not take an event"
            );
        }
    }
}

#[cfg(test)]
mod tests;

//! What `payhook dev` remembers of the webhook deliveries it answered, for
//! the console: each delivery's answer (the verification verdict included),
//! the counts the database cannot give (duplicates and refusals are answered
//! without writing anything), and the bodies of accepted events.
//!
//! The pipeline keeps an event's body only while its message is queued (or
//! by reference when it is large), so the console's raw body and its replay
//! of an object's states come from here. It is memory, bounded, and starts
//! empty with each run: nothing here is needed for correctness, and keeping
//! it off the database keeps the receive path's writes as they were.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use payhook_shared::ledger::LedgerKey;
use payhook_shared::verify::Provider;
use serde_json::{Value, json};

/// Deliveries remembered, newest last.
const RECENT: usize = 500;
/// Bytes of event bodies remembered; the oldest go first.
const BODY_BYTES: usize = 32 * 1024 * 1024;

/// One delivery and its answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// When it was answered (unix milliseconds).
    pub at_millis: i64,
    /// The route's provider segment (`stripe`, `standard`, or what was sent).
    pub provider: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The event id, when the body was verified and parsed.
    pub event_id: Option<String>,
    /// `enqueued`, `ignored`, `duplicate`, or the error code of a refusal.
    pub outcome: String,
    /// The refusal's message, if it was refused.
    pub message: Option<String>,
}

impl Delivery {
    /// As the console shows it.
    pub fn to_json(&self) -> Value {
        json!({
            "at_millis": self.at_millis,
            "provider": self.provider,
            "status": self.status,
            "event_id": self.event_id,
            "outcome": self.outcome,
            "message": self.message,
        })
    }
}

/// Counts since this run started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Deliveries of an event already enqueued or ignored (answered 200).
    pub duplicates: u64,
    /// Deliveries refused: bad signature, stale timestamp, malformed body, …
    pub refused: u64,
}

/// The memory itself; cheap to share.
#[derive(Debug, Default)]
pub struct Deliveries {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    recent: VecDeque<Delivery>,
    bodies: HashMap<(Provider, String), Arc<str>>,
    body_order: VecDeque<(Provider, String)>,
    body_bytes: usize,
    tally: Tally,
}

impl Deliveries {
    /// Records a delivery to `provider` of `body`, answered `status` with `answer`.
    pub fn record(
        &self,
        at_millis: i64,
        provider: &str,
        body: &[u8],
        status: StatusCode,
        answer: &Value,
    ) {
        let event_id = answer.get("id").and_then(Value::as_str).map(str::to_owned);
        let outcome = answer
            .get("outcome")
            .or_else(|| answer.get("error"))
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let accepted = status.is_success();
        let delivery = Delivery {
            at_millis,
            provider: provider.to_owned(),
            status: status.as_u16(),
            event_id: event_id.clone(),
            message: (!accepted)
                .then(|| answer.get("message").and_then(Value::as_str))
                .flatten()
                .map(str::to_owned),
            outcome,
        };
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if accepted && delivery.outcome == "duplicate" {
            inner.tally.duplicates += 1;
        } else if !accepted && status != StatusCode::CONFLICT {
            // 409: another delivery holds the event; not a refusal of it.
            inner.tally.refused += 1;
        }
        let first_acceptance = accepted && delivery.outcome != "duplicate";
        if let (true, Some(id), Some(provider), Ok(text)) = (
            first_acceptance,
            event_id,
            Provider::from_route(provider),
            std::str::from_utf8(body),
        ) {
            inner.keep_body((provider, id), text);
        }
        if inner.recent.len() == RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(delivery);
    }

    /// The body of an accepted event, if it is still remembered.
    pub fn body(&self, key: &LedgerKey) -> Option<Arc<str>> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .bodies
            .get(&(key.provider, key.event_id.clone()))
            .cloned()
    }

    /// The deliveries of one event remembered, oldest first.
    pub fn of_event(&self, key: &LedgerKey) -> Vec<Delivery> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .recent
            .iter()
            .filter(|d| {
                d.event_id.as_deref() == Some(key.event_id.as_str())
                    && Provider::from_route(&d.provider) == Some(key.provider)
            })
            .cloned()
            .collect()
    }

    /// The last `n` deliveries refused, newest first.
    pub fn refusals(&self, n: usize) -> Vec<Delivery> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .recent
            .iter()
            .rev()
            .filter(|d| !(200..300).contains(&d.status))
            .take(n)
            .cloned()
            .collect()
    }

    /// Counts since this run started.
    pub fn tally(&self) -> Tally {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tally
    }
}

impl Inner {
    fn keep_body(&mut self, key: (Provider, String), text: &str) {
        if text.len() > BODY_BYTES {
            return;
        }
        if let Some(old) = self.bodies.insert(key.clone(), Arc::from(text)) {
            self.body_bytes -= old.len();
        } else {
            self.body_order.push_back(key);
        }
        self.body_bytes += text.len();
        while self.body_bytes > BODY_BYTES {
            let Some(oldest) = self.body_order.pop_front() else {
                break;
            };
            if let Some(gone) = self.bodies.remove(&oldest) {
                self.body_bytes -= gone.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(id: &str, outcome: &str) -> Value {
        json!({ "received": true, "id": id, "type": "x", "outcome": outcome })
    }

    #[test]
    fn accepted_bodies_are_kept_and_duplicates_and_refusals_counted() {
        // GIVEN an empty memory
        let d = Deliveries::default();
        // WHEN an event is accepted, delivered again, and a forgery refused
        d.record(
            1,
            "stripe",
            b"{\"id\":\"evt_1\"}",
            StatusCode::OK,
            &accepted("evt_1", "enqueued"),
        );
        d.record(
            2,
            "stripe",
            b"{\"id\":\"evt_1\"}",
            StatusCode::OK,
            &accepted("evt_1", "duplicate"),
        );
        d.record(
            3,
            "stripe",
            b"{}",
            StatusCode::BAD_REQUEST,
            &json!({ "error": "signature_mismatch", "message": "no signature matches" }),
        );
        // THEN the body is kept once, both deliveries of evt_1 are listed, and each is counted
        let key = LedgerKey::new(Provider::Stripe, "evt_1");
        assert_eq!(d.body(&key).as_deref(), Some("{\"id\":\"evt_1\"}"));
        let of = d.of_event(&key);
        assert_eq!(
            of.iter().map(|x| x.outcome.as_str()).collect::<Vec<_>>(),
            ["enqueued", "duplicate"]
        );
        assert_eq!(
            d.tally(),
            Tally {
                duplicates: 1,
                refused: 1
            }
        );
        let refused = d.refusals(5);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].message.as_deref(), Some("no signature matches"));
    }

    #[test]
    fn the_oldest_bodies_go_first_beyond_the_budget() {
        // GIVEN bodies that together exceed the budget
        let d = Deliveries::default();
        let big = "x".repeat(BODY_BYTES / 2 + 1);
        for id in ["evt_a", "evt_b"] {
            d.record(
                1,
                "stripe",
                big.as_bytes(),
                StatusCode::OK,
                &accepted(id, "enqueued"),
            );
        }
        // THEN only the newest is remembered
        assert!(d.body(&LedgerKey::new(Provider::Stripe, "evt_a")).is_none());
        assert!(d.body(&LedgerKey::new(Provider::Stripe, "evt_b")).is_some());
    }
}

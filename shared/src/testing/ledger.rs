//! The ledger and body-store contract: every backend (memory, SQLite,
//! DynamoDB) runs these cases through [`ledger_conformance!`](crate::ledger_conformance),
//! so a condition that differs between them fails somewhere.
//!
//! Keys are under the namespace `ns`, so the cases can share a table.

use std::future::Future;

use crate::error::StoreError;
use crate::ledger::{
    BodyStore, Claim, ClaimRequest, HighWater, Ledger, LedgerEntry, LedgerKey, LedgerStatus,
    MemoryLedger,
};
use crate::route::IgnoreReason;
use crate::verify::Provider;

/// When the cases' clock stands (unix milliseconds).
pub const NOW: i64 = 1_750_000_000_000;
/// How long the cases' claims hold.
pub const LEASE: i64 = 30_000;

/// A ledger the cases can read back, whatever the backend.
pub trait LedgerProbe: Ledger + BodyStore + HighWater {
    /// The stored record for `key`.
    fn entry(&self, key: &LedgerKey) -> impl Future<Output = Option<LedgerEntry>>;
}

impl LedgerProbe for MemoryLedger {
    async fn entry(&self, key: &LedgerKey) -> Option<LedgerEntry> {
        MemoryLedger::entry(self, key)
    }
}

#[cfg(feature = "local")]
impl LedgerProbe for crate::ledger::sqlite::SqliteLedger {
    async fn entry(&self, key: &LedgerKey) -> Option<LedgerEntry> {
        crate::ledger::sqlite::SqliteLedger::entry(self, key)
            .await
            .expect("entry reads")
    }
}

#[cfg(feature = "aws")]
impl LedgerProbe for crate::ledger::dynamodb::DynamoLedger {
    async fn entry(&self, key: &LedgerKey) -> Option<LedgerEntry> {
        crate::ledger::dynamodb::DynamoLedger::entry(self, key)
            .await
            .expect("entry reads")
    }
}

/// The key of event `id` (namespaced by `ns`).
pub fn key(ns: &str, id: &str) -> LedgerKey {
    LedgerKey::new(Provider::Stripe, format!("{ns}{id}"))
}

/// The token of the delivery claiming event `id` at `now_millis`: each
/// delivery (each moment) claims with its own.
pub fn token(ns: &str, id: &str, now_millis: i64) -> String {
    format!("{ns}{id}@{now_millis}")
}

/// A claim of event `id` (namespaced by `ns`) at `now_millis`, for `LEASE`.
pub fn request(ns: &str, id: &str, now_millis: i64) -> ClaimRequest {
    ClaimRequest {
        key: key(ns, id),
        event_type: "payment_intent.succeeded".into(),
        created: 1_749_999_990,
        livemode: Some(false),
        object_id: Some("pi_1".into()),
        now_millis,
        lease_until_millis: now_millis + LEASE,
        expires_at: now_millis / 1000 + 86_400,
        token: token(ns, id, now_millis),
    }
}

pub async fn first_claim_owns_the_event<L: LedgerProbe>(l: &L, ns: &str) {
    // GIVEN an empty ledger
    // WHEN an event is claimed
    let claim = l.claim(&request(ns, "evt_1", NOW)).await.unwrap();
    // THEN it is the first attempt and the record says RECEIVED with the event's facts
    assert_eq!(claim, Claim::Claimed { attempts: 1 });
    let e = l.entry(&key(ns, "evt_1")).await.unwrap();
    assert_eq!(e.status, LedgerStatus::Received);
    assert_eq!(e.attempts, 1);
    assert_eq!(e.event_type, "payment_intent.succeeded");
    assert_eq!(e.created, 1_749_999_990);
    assert_eq!(e.received_at_millis, NOW);
    assert_eq!(e.object_id.as_deref(), Some("pi_1"));
    assert_eq!(e.livemode, Some(false));
    assert_eq!((e.queue, e.message_id, e.ignore_reason), (None, None, None));
}

pub async fn live_lease_reports_in_flight<L: LedgerProbe>(l: &L, ns: &str) {
    // GIVEN a claim whose lease runs until NOW + LEASE
    l.claim(&request(ns, "evt_1", NOW)).await.unwrap();
    // WHEN another delivery claims before the lease ends, and exactly when it ends
    let early = l
        .claim(&request(ns, "evt_1", NOW + LEASE - 1))
        .await
        .unwrap();
    let at_end = l.claim(&request(ns, "evt_1", NOW + LEASE)).await.unwrap();
    // THEN both lose to the holder and learn when its lease ends
    let in_flight = Claim::InFlight {
        lease_until_millis: NOW + LEASE,
    };
    assert_eq!(early, in_flight);
    assert_eq!(at_end, in_flight);
    assert_eq!(l.entry(&key(ns, "evt_1")).await.unwrap().attempts, 1);
}

pub async fn expired_lease_is_taken_over_with_attempts_counted<L: LedgerProbe>(l: &L, ns: &str) {
    // GIVEN a claim whose holder crashed
    l.claim(&request(ns, "evt_1", NOW)).await.unwrap();
    // WHEN a delivery claims after the lease expired
    let later = NOW + LEASE + 1;
    let claim = l.claim(&request(ns, "evt_1", later)).await.unwrap();
    // THEN it owns the event as the second attempt, under a new lease; the
    // record still says when the event was first received
    assert_eq!(claim, Claim::Claimed { attempts: 2 });
    let e = l.entry(&key(ns, "evt_1")).await.unwrap();
    assert_eq!(
        (e.status, e.attempts, e.received_at_millis),
        (LedgerStatus::Received, 2, NOW),
        "first received at NOW"
    );
    assert_eq!(
        l.claim(&request(ns, "evt_1", later + 1)).await.unwrap(),
        Claim::InFlight {
            lease_until_millis: later + LEASE
        }
    );
}

pub async fn enqueued_event_is_a_duplicate_even_after_its_lease<L: LedgerProbe>(l: &L, ns: &str) {
    // GIVEN an event claimed and enqueued
    l.claim(&request(ns, "evt_1", NOW)).await.unwrap();
    l.mark_enqueued(
        &key(ns, "evt_1"),
        &token(ns, "evt_1", NOW),
        "fulfill",
        "fulfill-1",
    )
    .await
    .unwrap();
    // WHEN it is delivered again long after its lease
    let claim = l
        .claim(&request(ns, "evt_1", NOW + 10 * LEASE))
        .await
        .unwrap();
    // THEN the delivery is a duplicate and the record keeps where it went
    assert_eq!(claim, Claim::Done(LedgerStatus::Enqueued));
    let e = l.entry(&key(ns, "evt_1")).await.unwrap();
    assert_eq!(e.status, LedgerStatus::Enqueued);
    assert_eq!(e.queue.as_deref(), Some("fulfill"));
    assert_eq!(e.message_id.as_deref(), Some("fulfill-1"));
    assert_eq!(e.attempts, 1);
}

pub async fn ignored_event_is_a_duplicate<L: LedgerProbe>(l: &L, ns: &str) {
    // GIVEN an event recorded as ignored
    l.claim(&request(ns, "evt_1", NOW)).await.unwrap();
    l.mark_ignored(
        &key(ns, "evt_1"),
        &token(ns, "evt_1", NOW),
        IgnoreReason::UnknownType,
    )
    .await
    .unwrap();
    // WHEN it is delivered again
    let claim = l
        .claim(&request(ns, "evt_1", NOW + 10 * LEASE))
        .await
        .unwrap();
    // THEN it is a duplicate, and the reason is kept
    assert_eq!(claim, Claim::Done(LedgerStatus::Ignored));
    let e = l.entry(&key(ns, "evt_1")).await.unwrap();
    assert_eq!(e.ignore_reason.as_deref(), Some("unknown_type"));
}

pub async fn release_frees_a_claim_for_the_next_delivery<L: LedgerProbe>(l: &L, ns: &str) {
    // GIVEN a claim whose enqueue failed
    l.claim(&request(ns, "evt_1", NOW)).await.unwrap();
    // WHEN it is released
    l.release(&key(ns, "evt_1"), &token(ns, "evt_1", NOW))
        .await
        .unwrap();
    // THEN the record is gone and the retry claims at once, afresh
    assert_eq!(l.entry(&key(ns, "evt_1")).await, None);
    assert_eq!(
        l.claim(&request(ns, "evt_1", NOW + 1)).await.unwrap(),
        Claim::Claimed { attempts: 1 }
    );
}

pub async fn release_never_removes_a_finished_event<L: LedgerProbe>(l: &L, ns: &str) {
    // GIVEN one event enqueued and one ignored
    l.claim(&request(ns, "evt_e", NOW)).await.unwrap();
    l.mark_enqueued(
        &key(ns, "evt_e"),
        &token(ns, "evt_e", NOW),
        "fulfill",
        "fulfill-1",
    )
    .await
    .unwrap();
    l.claim(&request(ns, "evt_i", NOW)).await.unwrap();
    l.mark_ignored(
        &key(ns, "evt_i"),
        &token(ns, "evt_i", NOW),
        IgnoreReason::NotEnabled,
    )
    .await
    .unwrap();
    // WHEN both are released (and a missing one too)
    for id in ["evt_e", "evt_i", "evt_missing"] {
        l.release(&key(ns, id), &token(ns, id, NOW)).await.unwrap();
    }
    // THEN both records stand and redeliveries stay duplicates
    assert_eq!(
        l.claim(&request(ns, "evt_e", NOW + 1)).await.unwrap(),
        Claim::Done(LedgerStatus::Enqueued)
    );
    assert_eq!(
        l.claim(&request(ns, "evt_i", NOW + 1)).await.unwrap(),
        Claim::Done(LedgerStatus::Ignored)
    );
}

pub async fn marking_an_unclaimed_event_fails<L: LedgerProbe>(l: &L, ns: &str) {
    // GIVEN no claim WHEN the event is marked THEN the store reports it as
    // corrupt (not a silent write) and creates nothing
    assert!(matches!(
        l.mark_enqueued(&key(ns, "evt_x"), "t", "fulfill", "m")
            .await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        l.mark_ignored(&key(ns, "evt_x"), "t", IgnoreReason::UnknownType)
            .await,
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(l.entry(&key(ns, "evt_x")).await, None);
}

pub async fn a_claim_taken_over_is_no_longer_its_first_holders<L: LedgerProbe>(l: &L, ns: &str) {
    // GIVEN a claim whose holder was too slow: its lease ran out and
    // another delivery took the event over
    l.claim(&request(ns, "evt_1", NOW)).await.unwrap();
    let later = NOW + LEASE + 1;
    assert_eq!(
        l.claim(&request(ns, "evt_1", later)).await.unwrap(),
        Claim::Claimed { attempts: 2 }
    );
    let (first, second) = (token(ns, "evt_1", NOW), token(ns, "evt_1", later));
    // WHEN the first holder, failing, releases THEN the new claim stands
    l.release(&key(ns, "evt_1"), &first).await.unwrap();
    let e = l.entry(&key(ns, "evt_1")).await.unwrap();
    assert_eq!((e.status, e.attempts), (LedgerStatus::Received, 2));
    // WHEN the first holder marks THEN it is told the claim is lost, and
    // nothing changes
    assert!(matches!(
        l.mark_enqueued(&key(ns, "evt_1"), &first, "fulfill", "m-1")
            .await,
        Err(StoreError::ClaimLost { .. })
    ));
    assert!(matches!(
        l.mark_ignored(&key(ns, "evt_1"), &first, IgnoreReason::UnknownType)
            .await,
        Err(StoreError::ClaimLost { .. })
    ));
    assert_eq!(
        l.entry(&key(ns, "evt_1")).await.unwrap().status,
        LedgerStatus::Received
    );
    // AND the holder marks it
    l.mark_enqueued(&key(ns, "evt_1"), &second, "fulfill", "m-2")
        .await
        .unwrap();
    let e = l.entry(&key(ns, "evt_1")).await.unwrap();
    assert_eq!(
        (e.status, e.message_id.as_deref()),
        (LedgerStatus::Enqueued, Some("m-2"))
    );
    // AND a late release by either holder leaves the enqueued event alone
    l.release(&key(ns, "evt_1"), &second).await.unwrap();
    assert!(l.entry(&key(ns, "evt_1")).await.is_some());
}

pub async fn a_claim_sent_again_finds_itself<L: LedgerProbe>(l: &L, ns: &str) {
    // GIVEN a claim written, whose answer was lost
    let req = request(ns, "evt_1", NOW);
    l.claim(&req).await.unwrap();
    // WHEN the same claim is sent again (the SDK's retry) within its lease
    let again = l
        .claim(&ClaimRequest {
            now_millis: NOW + 5,
            ..req.clone()
        })
        .await
        .unwrap();
    // THEN it is ours, not in flight, and counts no extra attempt
    assert_eq!(again, Claim::Claimed { attempts: 1 });
    l.mark_enqueued(&req.key, &req.token, "fulfill", "m")
        .await
        .unwrap();
    assert_eq!(l.entry(&req.key).await.unwrap().attempts, 1);
}

pub async fn providers_do_not_share_event_ids<L: LedgerProbe>(l: &L, ns: &str) {
    // GIVEN a Stripe event claimed
    l.claim(&request(ns, "evt_1", NOW)).await.unwrap();
    // WHEN a Standard Webhooks event with the same id is claimed
    let mut other = request(ns, "evt_1", NOW);
    other.key = LedgerKey::new(Provider::Standard, other.key.event_id.clone());
    // THEN it is a different event
    assert_eq!(
        l.claim(&other).await.unwrap(),
        Claim::Claimed { attempts: 1 }
    );
}

pub async fn bodies_are_kept_and_replaced<L: LedgerProbe>(l: &L, ns: &str) {
    // GIVEN no body WHEN one is put, then replaced THEN the latest is read back
    assert_eq!(l.get_body(&key(ns, "evt_1")).await.unwrap(), None);
    l.put_body(&key(ns, "evt_1"), "{\"a\":1}").await.unwrap();
    assert_eq!(
        l.get_body(&key(ns, "evt_1")).await.unwrap().as_deref(),
        Some("{\"a\":1}")
    );
    l.put_body(&key(ns, "evt_1"), "{\"a\":2}").await.unwrap();
    assert_eq!(
        l.get_body(&key(ns, "evt_1")).await.unwrap().as_deref(),
        Some("{\"a\":2}")
    );
    assert_eq!(l.get_body(&key(ns, "evt_2")).await.unwrap(), None);
}

/// Bodies of every size the receiver accepts come back byte for byte.
pub async fn bodies_round_trip_exactly<L: LedgerProbe>(l: &L, ns: &str) {
    for (id, body) in [
        ("tiny", "{}".to_owned()),
        ("multibyte", "{\"name\":\"Zoë 😀\"}".repeat(30_000)),
        ("mib", "x".repeat(1024 * 1024)),
    ] {
        // GIVEN a body WHEN stored and read back THEN it is unchanged
        let key = key(ns, &format!("evt_body_{id}"));
        l.put_body(&key, &body).await.unwrap();
        assert_eq!(
            l.get_body(&key).await.unwrap().as_deref(),
            Some(body.as_str()),
            "{id}"
        );
    }
}

/// A reconcile high-water mark starts unset, rises, never falls, and is
/// its own per name.
pub async fn a_high_water_mark_only_rises<L: LedgerProbe>(l: &L, ns: &str) {
    let (a, b) = (format!("{ns}stripe"), format!("{ns}other"));
    assert_eq!(l.high_water(&a).await.unwrap(), None);
    l.raise_high_water(&a, 1_700_000_000).await.unwrap();
    assert_eq!(l.high_water(&a).await.unwrap(), Some(1_700_000_000));
    // WHEN an older run finishes late THEN the mark stays
    l.raise_high_water(&a, 1_600_000_000).await.unwrap();
    assert_eq!(l.high_water(&a).await.unwrap(), Some(1_700_000_000));
    l.raise_high_water(&a, 1_700_000_900).await.unwrap();
    assert_eq!(l.high_water(&a).await.unwrap(), Some(1_700_000_900));
    assert_eq!(l.high_water(&b).await.unwrap(), None);
    // AND the mark is no event: claiming an id that looks like it is unaffected
    let claim = l.claim(&request(ns, "stripe", NOW)).await.unwrap();
    assert!(matches!(claim, Claim::Claimed { attempts: 1 }), "{claim:?}");
}

/// Every ledger case, each as a test of its own, over the backend an async
/// expression makes: it yields `(guard, ledger)`, the guard kept alive for
/// the test (a temporary database, say).
#[macro_export]
macro_rules! ledger_conformance {
    ($make:expr) => {
        $crate::__conformance_cases!(
            ledger,
            $make,
            [
                first_claim_owns_the_event,
                live_lease_reports_in_flight,
                expired_lease_is_taken_over_with_attempts_counted,
                enqueued_event_is_a_duplicate_even_after_its_lease,
                ignored_event_is_a_duplicate,
                release_frees_a_claim_for_the_next_delivery,
                release_never_removes_a_finished_event,
                marking_an_unclaimed_event_fails,
                a_claim_taken_over_is_no_longer_its_first_holders,
                a_claim_sent_again_finds_itself,
                providers_do_not_share_event_ids,
                bodies_are_kept_and_replaced,
                bodies_round_trip_exactly,
                a_high_water_mark_only_rises,
            ]
        );
    };
}

//! The state an object was in after each event, recomputed for people.
//!
//! The stores keep an object's current state only. Since every [`Domain`] is
//! a pure function of (state, event), replaying the events a processor
//! applied, in the order it applied them, through the same rules rebuilds
//! every state in between — and the last one must equal what is stored, which
//! [`Replay::matches`] checks. The console's object pages show these steps.

use serde::Serialize;

use crate::config::DomainSettings;
use crate::event;
use crate::process::dispute::Disputes;
use crate::process::fulfill::Fulfill;
use crate::process::payout::Payouts;
use crate::process::subscription::Subscriptions;
use crate::process::{Decision, Domain};
use crate::state::{Json, Outcome, StateKind};
use crate::verify::{Provider, Verified};

/// One recorded event to replay.
#[derive(Clone, Copy, Debug)]
pub struct ReplayInput<'a> {
    /// Who sent it.
    pub provider: Provider,
    /// What the processor recorded for it.
    pub outcome: Outcome,
    /// Its body, when still held somewhere.
    pub body: Option<&'a str>,
}

/// The state after one event, or why it is unknown.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// The object's state after the event, when it can be rebuilt.
    pub state: Option<Json>,
    /// Why it cannot, when it cannot.
    pub unknown: Option<String>,
}

/// The steps of one object's history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Replay {
    /// One step per input, in the same order.
    pub steps: Vec<Step>,
    /// Whether the last rebuilt state is the stored one (`None`: the last
    /// state could not be rebuilt).
    pub matches: Option<bool>,
}

/// Replays `inputs` (in the order they were applied) through the rules for
/// `kind` under `settings`, and compares the result with `stored`.
pub fn replay(
    kind: StateKind,
    settings: &DomainSettings,
    inputs: &[ReplayInput<'_>],
    stored: &Json,
) -> Replay {
    let steps = match kind {
        StateKind::Order => run(&Fulfill::configured(settings), inputs),
        StateKind::Subscription => run(&Subscriptions::configured(settings), inputs),
        StateKind::Dispute => run(&Disputes::configured(settings), inputs),
        StateKind::Payout | StateKind::Account => run(&Payouts::configured(settings), inputs),
    };
    let matches = match steps.last() {
        Some(Step {
            state: Some(last), ..
        }) => Some(same_json(last, stored)),
        _ => None,
    };
    Replay { steps, matches }
}

/// Whether two JSON texts hold the same value (key order and spacing aside).
fn same_json(a: &Json, b: &Json) -> bool {
    let parse = |j: &Json| serde_json::from_str::<serde_json::Value>(j.as_str()).ok();
    parse(a).is_some_and(|a| Some(a) == parse(b))
}

fn run<D: Domain>(domain: &D, inputs: &[ReplayInput<'_>]) -> Vec<Step> {
    let mut current: Result<Option<D::State>, String> = Ok(None);
    let mut steps = Vec::with_capacity(inputs.len());
    for input in inputs {
        // A stale or skipped event changed nothing: its body is not needed.
        if input.outcome == Outcome::Applied {
            current = current.and_then(|state| apply(domain, state.as_ref(), input));
        }
        steps.push(match &current {
            Ok(Some(state)) => match Json::encode(state) {
                Ok(json) => Step {
                    state: Some(json),
                    unknown: None,
                },
                Err(e) => unknown(e.to_string()),
            },
            Ok(None) => unknown("no state yet".to_owned()),
            Err(why) => unknown(why.clone()),
        });
    }
    steps
}

fn unknown(why: String) -> Step {
    Step {
        state: None,
        unknown: Some(why),
    }
}

fn apply<D: Domain>(
    domain: &D,
    state: Option<&D::State>,
    input: &ReplayInput<'_>,
) -> Result<Option<D::State>, String> {
    let body = input.body.ok_or_else(|| {
        "an earlier event's body is no longer held (payhook dev keeps the bodies of events it received since it started)".to_owned()
    })?;
    let verified = Verified {
        body,
        timestamp: 0,
        delivery_id: None,
    };
    let envelope = event::parse(input.provider, &verified).map_err(|e| e.to_string())?;
    match domain.apply(state, &envelope).map_err(|e| e.to_string())? {
        Decision::Apply { state, .. } => Ok(Some(state)),
        // Recorded as applied, decided stale now: the rules changed since.
        Decision::Stale => Err("the rules now decide this event differently".to_owned()),
    }
}

//! The merchant's endpoint: a loopback HTTP server that verifies each
//! effect's Standard Webhooks signature, records every request per run, and
//! answers 500 to the first attempts of the effects a run's plan picks; and
//! the same endpoint in process ([`Direct`]), for the orders not sent over HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use payhook_shared::process::{EffectContext, EffectError, EffectMessage, Effects};
use payhook_shared::verify::{Scheme, StandardVerifier, Tolerance};
use serde::Serialize;
use serde_json::Value;

use super::rng::mix;

/// The secret the target signs with and the server verifies with.
pub const SECRET: &str = "whsec_cGF5aG9va19mbG93c190ZXN0X3NlY3JldA==";

/// How a run's effects fail before they are accepted.
#[derive(Clone, Copy, Debug)]
pub enum Plan {
    /// Each effect fails its first 0, 1 or 2 attempts, picked from the seed
    /// and the effect id (two in five fail at least once).
    Random(u64),
    /// Every effect fails its first `n` attempts.
    Fixed(u32),
}

impl Plan {
    fn failures(self, id: &str) -> u32 {
        match self {
            Self::Random(seed) => {
                let h = id.bytes().fold(seed, |h, b| mix(h ^ u64::from(b)));
                [0, 0, 0, 1, 2][(h % 5) as usize]
            }
            Self::Fixed(n) => n,
        }
    }
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Request {
    /// `webhook-id`.
    pub id: String,
    /// The body, parsed.
    pub body: Value,
    /// Whether it was answered 2xx.
    pub accepted: bool,
}

#[derive(Default)]
struct Runs {
    plans: HashMap<u64, Plan>,
    attempts: HashMap<(u64, String), u32>,
    requests: HashMap<u64, Vec<Request>>,
    refused: Vec<String>,
}

/// The running server.
#[derive(Clone)]
pub struct Server {
    base: String,
    runs: Arc<Mutex<Runs>>,
}

impl Server {
    /// Starts a server on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self {
            base: format!("http://{}", listener.local_addr().unwrap()),
            runs: Arc::new(Mutex::new(Runs::default())),
        };
        let verifier =
            Arc::new(StandardVerifier::new(vec![SECRET.into()], Tolerance::DEFAULT).unwrap());
        let app = Router::new()
            .route("/runs/{run}", post(receive))
            .with_state((server.clone(), verifier));
        tokio::spawn(async move { axum::serve(listener, app).await });
        server
    }

    /// The URL run `run` posts its effects to, failing them per `plan`.
    pub fn url(&self, run: u64, plan: Plan) -> String {
        self.runs.lock().unwrap().plans.insert(run, plan);
        format!("{}/runs/{run}", self.base)
    }

    /// Every request run `run` made, in arrival order (and forgets them).
    pub fn take(&self, run: u64) -> Vec<Request> {
        let mut runs = self.runs.lock().unwrap();
        runs.plans.remove(&run);
        runs.attempts.retain(|(r, _), _| *r != run);
        runs.requests.remove(&run).unwrap_or_default()
    }

    /// Records one request of run `run`; true when it is accepted (its
    /// effect has failed as often as the run's plan says).
    fn record(&self, run: u64, id: String, body: Value) -> bool {
        let mut runs = self.runs.lock().unwrap();
        let plan = runs.plans.get(&run).copied().unwrap_or(Plan::Fixed(0));
        let attempt = runs.attempts.entry((run, id.clone())).or_default();
        *attempt += 1;
        let accepted = *attempt > plan.failures(&id);
        runs.requests
            .entry(run)
            .or_default()
            .push(Request { id, body, accepted });
        accepted
    }

    /// The endpoint without HTTP, for the bulk of the orders: the same
    /// message, plan and record, in process.
    pub fn direct(&self, run: u64) -> Direct {
        Direct {
            server: self.clone(),
            run,
        }
    }

    fn refuse(&self, why: String) {
        self.runs.lock().unwrap().refused.push(why);
    }

    /// Requests refused for a bad signature or body, described.
    pub fn refused(&self) -> Vec<String> {
        self.runs.lock().unwrap().refused.clone()
    }
}

type AppState = (Server, Arc<StandardVerifier>);

/// An effects target that hands each effect's message straight to the
/// server's record, as the HTTP target would send it.
pub struct Direct {
    server: Server,
    run: u64,
}

impl<E: Serialize + Sync> Effects<E> for Direct {
    async fn perform(&self, effect: &E, ctx: &EffectContext) -> Result<(), EffectError> {
        let message = EffectMessage::new(effect, ctx, 0)?;
        let body = serde_json::to_value(&message).map_err(|e| EffectError(e.to_string()))?;
        if self
            .server
            .record(self.run, ctx.idempotency_key.clone(), body)
        {
            Ok(())
        } else {
            Err(EffectError("answered 500".into()))
        }
    }
}

async fn receive(
    State((server, verifier)): State<AppState>,
    Path(run): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let verified = match verifier.verify(&headers, &body, now) {
        Ok(verified) => verified.delivery_id.map(str::to_owned),
        Err(err) => {
            server.refuse(format!("run {run}: {err}"));
            return StatusCode::BAD_REQUEST;
        }
    };
    let (Some(id), Ok(body)) = (verified, serde_json::from_slice::<Value>(&body)) else {
        server.refuse(format!("run {run}: no webhook-id or no JSON body"));
        return StatusCode::BAD_REQUEST;
    };
    if server.record(run, id, body) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

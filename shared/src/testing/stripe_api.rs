//! A fake of Stripe's API on a loopback socket, as far as payhook calls it:
//! `GET /v1/events` (reconcile's listing) and `GET /v2/core/events/{id}`
//! (the full event behind a thin one).
//!
//! One fake for every suite, so that reconcile's unit tests, the moto suite
//! and the CLI's end-to-end tests exercise the real client
//! ([`StripeApi`](crate::stripe_api::http::StripeApi) or the `payhook`
//! binary) against the same reading of Stripe's documentation: newest first,
//! `created[gte]`, `types[]`, `delivery_success=false`, `starting_after`,
//! `limit`, `has_more`, a bearer key, and faults injected per call.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// The page size when none is set: Stripe's largest `limit`, so that a fake
/// left alone pages only as Stripe would.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// What the fake answers to the next call, in place of its answer; queued
/// with [`FakeStripe::fault`] and taken one per call (list or v2 fetch),
/// after the key check.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// 429 with `Retry-After: retry_after` (seconds), as Stripe rate limits.
    RateLimited {
        /// The `Retry-After` header's value.
        retry_after: u64,
    },
    /// A 500 with an empty JSON body.
    ServerError,
    /// A 401 with Stripe's message for a refused key (`Invalid API Key`).
    Unauthorized,
    /// No answer for this long, then a 500: for the client's timeout.
    Stall(Duration),
}

/// One listed event.
#[derive(Clone)]
struct Stored {
    id: String,
    created: i64,
    event_type: String,
    delivered: bool,
    body: String,
}

/// Stripe's Events API with the events, full v2 events and faults a test
/// gives it, recording every list call.
///
/// Share it as an `Arc`: the test adds events and reads calls while the
/// server answers.
///
/// ```ignore
/// let fake = Arc::new(FakeStripe::new("rk_test_x").page_size(3));
/// fake.add(&body, true);
/// let base = Arc::clone(&fake).serve().await; // "http://127.0.0.1:port"
/// ```
pub struct FakeStripe {
    key: String,
    page_size: usize,
    events: Mutex<Vec<Stored>>,
    faults: Mutex<VecDeque<Fault>>,
    /// Every list query, decoded as (key, value) pairs.
    calls: Mutex<Vec<Vec<(String, String)>>>,
    /// Full v2 events by id, for the thin-event fetch.
    v2: Mutex<Vec<(String, String)>>,
}

impl FakeStripe {
    /// An empty API that answers only `Authorization: Bearer {api_key}`
    /// (anything else is a 401, as Stripe refuses an unknown key), with
    /// pages of at most [`DEFAULT_PAGE_SIZE`] events.
    pub fn new(api_key: &str) -> Self {
        Self {
            key: format!("Bearer {api_key}"),
            page_size: DEFAULT_PAGE_SIZE,
            events: Mutex::default(),
            faults: Mutex::default(),
            calls: Mutex::default(),
            v2: Mutex::default(),
        }
    }

    /// At most `events` per page whatever `limit` asks: small, so that a few
    /// events make several pages and the client's paging is exercised.
    pub fn page_size(mut self, events: usize) -> Self {
        assert!(events > 0, "a page holds at least one event");
        self.page_size = events;
        self
    }

    /// Lists `body` (a v1 event as Stripe renders it, with `id`, `created`
    /// and `type`); `delivered: false` is an event some webhook endpoint
    /// failed to take, the only ones `delivery_success=false` lists.
    pub fn add(&self, body: &str, delivered: bool) {
        let v: Value = serde_json::from_str(body).expect("an event body is JSON");
        let field = |name: &str| {
            v[name]
                .as_str()
                .unwrap_or_else(|| panic!("an event has a string `{name}`"))
                .to_owned()
        };
        let stored = Stored {
            id: field("id"),
            created: v["created"].as_i64().expect("an event has `created`"),
            event_type: field("type"),
            delivered,
            body: body.to_owned(),
        };
        self.events.lock().unwrap().push(stored);
    }

    /// Serves `body` (a full v2 event, with its `id`) at
    /// `GET /v2/core/events/{id}`; other ids are a 404.
    pub fn add_v2(&self, body: &str) {
        let v: Value = serde_json::from_str(body).expect("a v2 event body is JSON");
        let id = v["id"].as_str().expect("a v2 event has an `id`").to_owned();
        self.v2.lock().unwrap().push((id, body.to_owned()));
    }

    /// Answers the next call with `fault` instead (faults queue up, first in
    /// first answered).
    pub fn fault(&self, fault: Fault) {
        self.faults.lock().unwrap().push_back(fault);
    }

    /// Every `GET /v1/events` query with the right key so far, faulted or
    /// not, in order, each as its decoded (key, value) pairs.
    pub fn calls(&self) -> Vec<Vec<(String, String)>> {
        self.calls.lock().unwrap().clone()
    }

    /// Serves the API on a loopback port for the rest of the runtime;
    /// returns its base URL (`http://127.0.0.1:{port}`), what `StripeApi`
    /// and `STRIPE_API_BASE` take.
    pub async fn serve(self: Arc<Self>) -> String {
        let app = Router::new()
            .route("/v1/events", get(list))
            .route("/v2/core/events/{id}", get(v2_event))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    /// The 401 for a call without this API's key.
    fn refuses(&self, headers: &HeaderMap) -> Option<Response> {
        let given = headers.get("authorization").and_then(|v| v.to_str().ok());
        (given != Some(self.key.as_str())).then(|| {
            (
                StatusCode::UNAUTHORIZED,
                r#"{"error":{"message":"Invalid API Key provided"}}"#,
            )
                .into_response()
        })
    }

    /// The next queued fault's answer, if any.
    async fn next_fault(&self) -> Option<Response> {
        let fault = self.faults.lock().unwrap().pop_front()?;
        Some(match fault {
            Fault::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after.to_string())],
                r#"{"error":{"message":"Too many requests"}}"#,
            )
                .into_response(),
            Fault::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "{}").into_response(),
            Fault::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                r#"{"error":{"message":"Invalid API Key provided: rk_test_***"}}"#,
            )
                .into_response(),
            Fault::Stall(d) => {
                tokio::time::sleep(d).await;
                (StatusCode::INTERNAL_SERVER_ERROR, "{}").into_response()
            }
        })
    }
}

/// `GET /v1/events` as Stripe documents it: newest first, `created[gte]`,
/// `types[]`, `delivery_success=false`, `starting_after`, `limit` (at most
/// the page size), `has_more`.
async fn list(
    State(fake): State<Arc<FakeStripe>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if let Some(refused) = fake.refuses(&headers) {
        return refused;
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    fake.calls.lock().unwrap().push(pairs.clone());
    if let Some(answer) = fake.next_fault().await {
        return answer;
    }
    let one = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let types: Vec<&String> = pairs
        .iter()
        .filter(|(k, _)| k == "types[]")
        .map(|(_, v)| v)
        .collect();
    let gte: i64 = one("created[gte]").map_or(0, |v| v.parse().unwrap());
    let undelivered = one("delivery_success").is_some_and(|v| v == "false");
    let limit: usize = one("limit").map_or(10, |v| v.parse().unwrap());
    let mut events: Vec<Stored> = fake
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.created >= gte)
        .filter(|e| types.is_empty() || types.contains(&&e.event_type))
        .filter(|e| !undelivered || !e.delivered)
        .cloned()
        .collect();
    events.sort_by(|a, b| (b.created, &b.id).cmp(&(a.created, &a.id)));
    if let Some(after) = one("starting_after") {
        let at = events
            .iter()
            .position(|e| &e.id == after)
            .map_or(0, |i| i + 1);
        events.drain(..at);
    }
    let page = limit.min(fake.page_size);
    let has_more = events.len() > page;
    events.truncate(page);
    let data: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.body).unwrap())
        .collect();
    axum::Json(json!({"object": "list", "url": "/v1/events", "data": data, "has_more": has_more}))
        .into_response()
}

/// `GET /v2/core/events/{id}`: a full v2 event given with
/// [`FakeStripe::add_v2`], else Stripe's 404.
async fn v2_event(
    State(fake): State<Arc<FakeStripe>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = fake.refuses(&headers) {
        return refused;
    }
    if let Some(answer) = fake.next_fault().await {
        return answer;
    }
    let found = fake
        .v2
        .lock()
        .unwrap()
        .iter()
        .find(|(i, _)| *i == id)
        .map(|(_, body)| body.clone());
    match found {
        Some(body) => ([("content-type", "application/json")], body).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            r#"{"error":{"message":"No such event"}}"#,
        )
            .into_response(),
    }
}

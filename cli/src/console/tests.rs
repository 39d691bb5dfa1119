//! The console's routes on a real server: the pipeline over a temporary
//! SQLite database, the router and the guard as `payhook dev` assembles them.

use std::sync::Arc;
use std::time::Duration;

use payhook_shared::clock::SystemClock;
use payhook_shared::local::{Pipeline, PipelineSettings};
use payhook_shared::sqlite::{Db, DbOptions, Durability};
use payhook_shared::verify::{Tolerance, Verifiers};
use serde_json::{Value, json};

use crate::api::{self, AppState, ConsoleSettings};
use crate::serve::{self, AllowedHosts, Limits};

const SECRET: &str = "whsec_console_unit_test_0123456789";

/// A running console server; stopped (and its database removed) on drop.
struct Console {
    base: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    dir: std::path::PathBuf,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Console {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "payhook-console-{}-{}",
            std::process::id(),
            api::now_millis()
        ));
        let db = Db::open(
            dir.join("dev.db"),
            DbOptions {
                durability: Durability::Normal,
                readers: 2,
                clock: Arc::new(SystemClock),
            },
        )
        .expect("database");
        let verifiers = Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT)
            .expect("secret");
        let pipeline = Pipeline::start(db, verifiers, PipelineSettings::default())
            .await
            .expect("pipeline");
        let app = api::router(AppState {
            receiver: pipeline.receiver(),
            inspector: pipeline.inspector(),
            read_limit: 1 << 20,
            deliveries: Arc::default(),
            console: Arc::new(ConsoleSettings {
                stripe_secret: Some(SECRET.into()),
                domain: Default::default(),
            }),
        })
        .layer(axum::middleware::from_fn_with_state(
            AllowedHosts::new("127.0.0.1"),
            serve::guard,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            serve::serve(listener, app, Limits::default(), async {
                let _ = stopped.await;
            })
            .await;
            pipeline.shutdown().await;
        });
        Self {
            base,
            client: reqwest::Client::new(),
            _stop: stop,
            dir,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn trigger(&self, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/api/trigger", self.base))
            .json(&body)
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `path` once `done` holds of it (within 10 s).
    async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..500 {
            let (_, v) = self.get(path).await;
            if done(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{path} never got there: {}", self.get(path).await.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_files_are_served_with_a_strict_policy() {
    // GIVEN the console
    let c = Console::start().await;
    // WHEN its page is fetched
    let page = c
        .client
        .get(format!("{}/", c.base))
        .send()
        .await
        .expect("answered");
    // THEN it is HTML under a self-only policy, with no inline script
    assert_eq!(page.status().as_u16(), 200);
    let header = |r: &reqwest::Response, h: &str| {
        r.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header(&page, "content-type").starts_with("text/html"));
    let csp = header(&page, "content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let etag = header(&page, "etag");
    let html = page.text().await.expect("text");
    assert!(html.contains(r#"<script type="module" src="/console/console.js">"#));
    assert!(!html.contains("<script>") && !html.contains("style=\""));
    // AND every file it names is served with its type; a known one revalidates to 304
    for (file, kind) in [
        ("console.js", "text/javascript"),
        ("console.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = c
            .client
            .get(format!("{}/console/{file}", c.base))
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status().as_u16(), 200, "{file}");
        assert!(header(&r, "content-type").starts_with(kind), "{file}");
    }
    let again = c
        .client
        .get(format!("{}/", c.base))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("answered");
    assert_eq!(again.status().as_u16(), 304);
    let (status, missing) = c.get("/console/secrets.txt").await;
    assert_eq!(
        (status, missing["error"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_event_from_the_page_runs_the_whole_loop() {
    // GIVEN the console and its catalogue
    let c = Console::start().await;
    let (_, catalogue) = c.get("/api/catalogue").await;
    let groups = catalogue["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 5);
    assert!(
        groups[0]["types"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("payment_intent.succeeded")))
    );
    // WHEN a test event is sent
    let (status, sent) = c
        .trigger(json!({ "event": "payment_intent.succeeded" }))
        .await;
    // THEN its sequence is signed and accepted like a webhook
    assert_eq!(status, 200, "{sent}");
    let sent = sent["sent"].as_array().expect("sent").clone();
    assert_eq!(sent.len(), 3);
    assert!(
        sent.iter()
            .all(|s| s["status"] == 200 && s["answer"]["outcome"] == "enqueued")
    );
    let last = sent[2]["id"].as_str().expect("id");
    // AND its detail has the body received, the verdict and the effect it caused
    let detail = c
        .until(&format!("/api/console/events/stripe/{last}"), |d| {
            d["event"]["stage"] == "processed"
                && d["effects"].as_array().is_some_and(|e| !e.is_empty())
        })
        .await;
    assert_eq!(detail["body_source"], "memory");
    assert!(detail["body"].as_str().is_some_and(|b| b.contains(last)));
    assert_eq!(detail["verdict"]["verified"], true);
    assert_eq!(detail["deliveries"][0]["outcome"], "enqueued");
    // AND the order's timeline replays to its stored state, one step per event
    let order = detail["event"]["processing"][0]["object"]["id"]
        .as_str()
        .expect("order id");
    let (status, object) = c.get(&format!("/api/console/objects/order/{order}")).await;
    assert_eq!(status, 200, "{object}");
    assert_eq!(object["timeline"].as_array().map(Vec::len), Some(3));
    assert_eq!(object["replay_matches"], true);
    assert!(object["timeline"][2]["state"].as_str().is_some());
    assert_eq!(object["effects"][0]["seq"], 1);
    // AND the header counts them
    let (_, overview) = c.get("/api/console/overview").await;
    assert_eq!(overview["counters"]["received"], 3);
    assert_eq!(overview["counters"]["processed"], 3);
    assert_eq!(
        overview["throughput"]["received"].as_array().map(Vec::len),
        Some(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_clear_and_other_pages_cannot_trigger() {
    // GIVEN the console
    let c = Console::start().await;
    // WHEN asked for what does not exist THEN the answers say so
    for (body, error) in [
        (
            json!({ "event": "payment_intent.nonsense" }),
            "unknown_event_type",
        ),
        (json!({}), "event_required"),
    ] {
        let (status, answer) = c.trigger(body).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some(error)));
    }
    for (path, error) in [
        ("/api/events?stage=lost", "unknown_stage"),
        ("/api/events?provider=paypal", "unknown_provider"),
        ("/api/console/objects/planet/x", "unknown_kind"),
    ] {
        let (status, answer) = c.get(path).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(error)),
            "{path}"
        );
    }
    let (status, _) = c.get("/api/console/objects/order/pi_none").await;
    assert_eq!(status, 404);
    // AND a page of another origin, or a form post, cannot send test events
    let from_a_page = c
        .client
        .post(format!("{}/api/trigger", c.base))
        .header("origin", "http://evil.example")
        .json(&json!({ "event": "payment_intent.succeeded" }))
        .send()
        .await
        .expect("answered");
    assert_eq!(from_a_page.status().as_u16(), 403);
    let form = c
        .client
        .post(format!("{}/api/trigger", c.base))
        .header("content-type", "text/plain")
        .body(r#"{"event": "payment_intent.succeeded"}"#)
        .send()
        .await
        .expect("answered");
    assert_eq!(form.status().as_u16(), 403);
    let (_, overview) = c.get("/api/console/overview").await;
    assert_eq!(overview["counters"]["received"], 0);
}

//! End to end: the real `payhook dev` binary on a loopback port and a temporary
//! database, driven over real HTTP with signed deliveries — including a
//! `kill -9` in the middle of a load and a restart on the same database.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use payhook_shared::sample::EventBuilder;
use payhook_shared::testing::stripe_api::FakeStripe;
use payhook_shared::verify::sign_stripe;
use serde_json::{Value, json};

const SECRET: &str = "whsec_e2e_test_secret_0123456789";

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("payhook-e2e-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("dev.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `payhook dev`; killed (if still running) when dropped, so no
/// server outlives its test.
struct Dev {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Dev {
    /// Starts `payhook dev` on a free port over `db` with the test secret.
    fn start(db: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let log = db.with_file_name(format!("dev-{}.log", STARTS.fetch_add(1, Ordering::SeqCst)));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_payhook"));
        command
            .args(["dev", "--port", "0", "--db"])
            .arg(db)
            .args(args)
            .env_remove("STANDARD_WEBHOOK_SECRET")
            .env_remove("MAX_BODY_BYTES")
            .env_remove("HANDLED_EVENT_TYPES")
            .env_remove("WEBHOOK_LIVEMODE")
            .env_remove("EFFECTS_TARGET")
            .env_remove("EFFECTS_SIGNING_SECRET")
            .env("STRIPE_WEBHOOK_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("payhook dev starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("payhook dev listening on ") {
                        break url.trim().to_owned();
                    }
                }
                _ => {
                    let _ = child.kill();
                    panic!(
                        "payhook dev did not start: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `kill -9`: no shutdown code runs.
    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "payhook dev did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- payhook dev log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        self.kill_hard();
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn payment_intent(
    event_id: &str,
    event_type: &str,
    pi: &str,
    status: &str,
    created: i64,
) -> String {
    let received = if status == "succeeded" { 2000 } else { 0 };
    EventBuilder::new(event_type)
        .id(event_id)
        .created(created)
        .object(json!({
            "id": pi, "object": "payment_intent", "amount": 2000, "amount_received": received,
            "currency": "usd", "status": status, "metadata": { "order_id": format!("ord_{pi}") }
        }))
        .body()
}

async fn deliver_signed(
    client: &reqwest::Client,
    dev: &Dev,
    body: &str,
    secret: &str,
) -> reqwest::Result<(u16, Value)> {
    let signature = sign_stripe(secret, now(), body.as_bytes());
    let response = client
        .post(dev.url("/webhooks/stripe"))
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

async fn deliver(client: &reqwest::Client, dev: &Dev, body: &str) -> (u16, Value) {
    deliver_signed(client, dev, body, SECRET)
        .await
        .expect("delivery answered")
}

async fn get(client: &reqwest::Client, dev: &Dev, path: &str) -> (u16, Value) {
    let response = client.get(dev.url(path)).send().await.expect("API answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("API answers JSON"))
}

/// Polls `path` until `done` holds for its JSON (30 s at most).
async fn wait_for(
    client: &reqwest::Client,
    dev: &Dev,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(client, dev, path).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never got there; last: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_event_is_processed_and_visible_through_the_api() {
    // GIVEN payhook dev with its own generated secret, read with --print-secret
    let dir = TempDir::new("processed");
    let printed = Command::new(env!("CARGO_BIN_EXE_payhook"))
        .args(["dev", "--print-secret", "--db"])
        .arg(dir.db())
        .env_remove("STRIPE_WEBHOOK_SECRET")
        .output()
        .expect("print-secret runs");
    let secret = String::from_utf8(printed.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let dev = Dev::start(&dir.db(), &[], &[("STRIPE_WEBHOOK_SECRET", "")]);
    let client = reqwest::Client::new();
    // WHEN a payment intent succeeds
    let body = payment_intent(
        "evt_ok_1",
        "payment_intent.succeeded",
        "pi_ok_1",
        "succeeded",
        now(),
    );
    let (status, answer) = deliver_signed(&client, &dev, &body, &secret)
        .await
        .expect("answered");
    // THEN it is accepted, processed, and its order and event are readable
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "enqueued");
    let event = wait_for(&client, &dev, "/api/events/stripe/evt_ok_1", |e| {
        e["stage"] == "processed"
    })
    .await;
    assert_eq!(event["status"], "ENQUEUED");
    assert_eq!(event["processing"][0]["processor"], "fulfill");
    let (status, order) = get(&client, &dev, "/api/orders/pi_ok_1").await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["last_event"]["id"], "evt_ok_1");
    assert!(order["version"].as_u64().is_some_and(|v| v >= 1));
    assert_eq!(order["pending_effects"], json!([]));
    let (_, listed) = get(&client, &dev, "/api/events?type=payment_intent.*&limit=10").await;
    assert_eq!(listed["count"], 1);
    let (_, health) = get(&client, &dev, "/healthz").await;
    assert_eq!(health["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_deliveries_are_answered_duplicate_and_applied_once() {
    // GIVEN an event already accepted
    let dir = TempDir::new("duplicate");
    let dev = Dev::start(&dir.db(), &[], &[]);
    let client = reqwest::Client::new();
    let body = payment_intent(
        "evt_dup_1",
        "payment_intent.succeeded",
        "pi_dup_1",
        "succeeded",
        now(),
    );
    assert_eq!(deliver(&client, &dev, &body).await.0, 200);
    wait_for(&client, &dev, "/api/events/stripe/evt_dup_1", |e| {
        e["stage"] == "processed"
    })
    .await;
    // WHEN the provider delivers it three more times
    for _ in 0..3 {
        let (status, answer) = deliver(&client, &dev, &body).await;
        // THEN each is acknowledged as a duplicate
        assert_eq!(status, 200);
        assert_eq!(answer["duplicate"], true, "{answer}");
    }
    // AND the event was claimed once and applied once
    let (_, event) = get(&client, &dev, "/api/events/stripe/evt_dup_1").await;
    assert_eq!(event["attempts"], 1);
    assert_eq!(event["processing"].as_array().map(Vec::len), Some(1));
    let (_, order) = get(&client, &dev, "/api/orders/pi_dup_1").await;
    assert_eq!(order["history"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_deliveries_store_nothing_and_answer_like_the_lambda() {
    // GIVEN payhook dev with a 1 KiB body limit
    let dir = TempDir::new("refused");
    let dev = Dev::start(&dir.db(), &[], &[("MAX_BODY_BYTES", "1024")]);
    let client = reqwest::Client::new();
    // WHEN an event is signed with the wrong secret
    let body = payment_intent(
        "evt_bad_1",
        "payment_intent.succeeded",
        "pi_bad_1",
        "succeeded",
        now(),
    );
    let (status, answer) = deliver_signed(&client, &dev, &body, "whsec_wrong")
        .await
        .expect("answered");
    // THEN it is refused with 400 and nothing is stored
    assert_eq!(status, 400);
    assert_eq!(answer["error"], "invalid_signature");
    let (status, missing) = get(&client, &dev, "/api/events/stripe/evt_bad_1").await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"], "not_found");
    assert_eq!(get(&client, &dev, "/api/events").await.1["count"], 0);
    // AND the other refusals are the receiver's own
    let wrong_method = client
        .get(dev.url("/webhooks/stripe"))
        .send()
        .await
        .expect("answered");
    assert_eq!(wrong_method.status().as_u16(), 405);
    let unknown = client
        .post(dev.url("/webhooks/paypal"))
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(unknown.status().as_u16(), 404);
    let unconfigured = client
        .post(dev.url("/webhooks/standard"))
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(
        unconfigured.json::<Value>().await.expect("json")["error"],
        "provider_not_configured"
    );
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(2048));
    let (status, answer) = deliver(&client, &dev, &big).await;
    assert_eq!(status, 413);
    assert_eq!(answer["error"], "body_too_large");
    let (status, unknown_order) = get(&client, &dev, "/api/orders/pi_nope").await;
    assert_eq!(
        (status, unknown_order["error"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_is_dead_lettered_and_redriven_through_the_api() {
    // GIVEN payhook dev that dead-letters after two receives
    let dir = TempDir::new("poison");
    let dev = Dev::start(
        &dir.db(),
        &["--max-receive-count", "2", "--retry-backoff-ms", "10"],
        &[],
    );
    let client = reqwest::Client::new();
    // WHEN a dispute event arrives whose object the processor cannot read
    let body = json!({
        "id": "evt_poison_1", "object": "event", "api_version": "2024-06-20", "created": now(),
        "livemode": false, "type": "charge.dispute.created",
        "data": { "object": { "id": "dp_poison_1", "object": "dispute" } }
    })
    .to_string();
    let (status, answer) = deliver(&client, &dev, &body).await;
    assert_eq!(
        (status, answer["queue"].as_str()),
        (200, Some("dispute")),
        "{answer}"
    );
    // THEN it lands in the dispute DLQ after two receives
    let dlq = wait_for(&client, &dev, "/api/dlq?queue=dispute", |d| d["count"] == 1).await;
    let letter = &dlq["dead_letters"][0];
    assert_eq!(letter["event_id"], "evt_poison_1");
    assert_eq!(letter["dead_letter_queue"], "dispute-dlq");
    assert_eq!(letter["receive_count"], 2);
    let (_, event) = get(&client, &dev, "/api/events/stripe/evt_poison_1").await;
    assert_eq!(event["stage"], "dead_letter");
    // WHEN a web page the developer has open tries to redrive it
    let from_a_page = client
        .post(dev.url("/api/dlq/redrive?queue=dispute"))
        .header("origin", "http://evil.example")
        .json(&json!({}))
        .send()
        .await
        .expect("answered");
    // THEN it is refused, and so is a form post without JSON
    assert_eq!(from_a_page.status().as_u16(), 403);
    let form = client
        .post(dev.url("/api/dlq/redrive?queue=dispute"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .expect("answered");
    assert_eq!(form.status().as_u16(), 403);
    // WHEN it is redriven through the API
    let redriven: Value = client
        .post(dev.url("/api/dlq/redrive?queue=dispute"))
        .json(&json!({}))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(redriven["redriven"], 1);
    // THEN it is received afresh (two more receives) and, still poison, comes back counting the redrive
    let again = wait_for(&client, &dev, "/api/dlq", |d| {
        d["count"] == 1 && d["dead_letters"][0]["redrives"] == 1
    })
    .await;
    assert_eq!(again["dead_letters"][0]["receive_count"], 2);
    let bogus = client
        .post(dev.url("/api/dlq/redrive?queue=bogus"))
        .json(&json!({}))
        .send()
        .await
        .expect("answered");
    assert_eq!(bogus.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_a_restart_keeps_everything() {
    // GIVEN an accepted, processed event
    let dir = TempDir::new("sigterm");
    let mut dev = Dev::start(&dir.db(), &[], &[]);
    let client = reqwest::Client::new();
    let body = payment_intent(
        "evt_term_1",
        "payment_intent.succeeded",
        "pi_term_1",
        "succeeded",
        now(),
    );
    assert_eq!(deliver(&client, &dev, &body).await.0, 200);
    wait_for(&client, &dev, "/api/events/stripe/evt_term_1", |e| {
        e["stage"] == "processed"
    })
    .await;
    // WHEN payhook dev gets SIGTERM and starts again on the same database
    assert!(dev.terminate().success());
    let dev = Dev::start(&dir.db(), &[], &[]);
    // THEN the event is still a duplicate and its order still there
    assert_eq!(deliver(&client, &dev, &body).await.1["duplicate"], true);
    assert_eq!(get(&client, &dev, "/api/orders/pi_term_1").await.0, 200);
}

/// Delivers every body not yet in `accepted` to `url`, `concurrency` at a
/// time, adding each one answered 2xx. With `kill_after`, that server is
/// killed with -9 once that many were answered.
async fn load(
    client: &reqwest::Client,
    url: String,
    bodies: &[(String, String)],
    accepted: &Arc<std::sync::Mutex<BTreeSet<String>>>,
    concurrency: usize,
    kill_after: Option<(usize, &mut Dev)>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let pending: Vec<_> = {
        let done = accepted.lock().expect("lock");
        bodies
            .iter()
            .filter(|(id, _)| !done.contains(id))
            .cloned()
            .collect()
    };
    let bodies = Arc::new(pending);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, ok, bodies, accepted, url) = (
                client.clone(),
                next.clone(),
                ok.clone(),
                bodies.clone(),
                accepted.clone(),
                url.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((id, body)) = bodies.get(i) else {
                        break;
                    };
                    let signature = sign_stripe(SECRET, now(), body.as_bytes());
                    let sent = client
                        .post(&url)
                        .header("stripe-signature", signature)
                        .body(body.clone())
                        .send()
                        .await;
                    if let Ok(response) = sent {
                        if response.status().is_success() {
                            // Count it only once the whole answer arrived.
                            if response.bytes().await.is_ok() {
                                accepted.lock().expect("lock").insert(id.clone());
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    if let Some((threshold, dev)) = kill_after {
        while ok.load(Ordering::SeqCst) < threshold && !tasks.iter().all(|t| t.is_finished()) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        dev.kill_hard();
    }
    for t in tasks {
        t.await.expect("load task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_under_load_loses_nothing_answered_and_applies_each_event_once() {
    kill_minus_nine_under_load("normal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_under_load_with_full_durability_loses_nothing_answered() {
    kill_minus_nine_under_load("full").await;
}

async fn kill_minus_nine_under_load(durability: &str) {
    // GIVEN 200 payment intents, each created then succeeded: 400 events
    let dir = TempDir::new(&format!("kill9-{durability}"));
    let args = ["--durability", durability];
    let mut dev = Dev::start(&dir.db(), &args, &[]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let start = now() - 60;
    let mut bodies = Vec::new();
    for n in 0..200 {
        let pi = format!("pi_load_{n}");
        bodies.push((
            format!("evt_load_c{n}"),
            payment_intent(
                &format!("evt_load_c{n}"),
                "payment_intent.created",
                &pi,
                "requires_payment_method",
                start,
            ),
        ));
        bodies.push((
            format!("evt_load_s{n}"),
            payment_intent(
                &format!("evt_load_s{n}"),
                "payment_intent.succeeded",
                &pi,
                "succeeded",
                start + 1,
            ),
        ));
    }
    let accepted = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    // WHEN they are delivered 64 at a time and payhook dev is killed with -9 a third of the way in
    let threshold = bodies.len() / 3;
    let url = dev.url("/webhooks/stripe");
    load(
        &client,
        url,
        &bodies,
        &accepted,
        64,
        Some((threshold, &mut dev)),
    )
    .await;
    let first_run: BTreeSet<String> = accepted.lock().expect("lock").clone();
    assert!(
        first_run.len() >= threshold,
        "only {} accepted before the kill",
        first_run.len()
    );
    assert!(
        first_run.len() < bodies.len(),
        "the kill came too late to interrupt anything"
    );
    // AND it restarts on the same database
    let dev = Dev::start(&dir.db(), &args, &[]);
    // THEN every delivery answered 2xx before the kill is in the ledger, enqueued
    let (_, listed) = get(&client, &dev, "/api/events?limit=1000").await;
    let stored: HashMap<String, Value> = listed["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| (e["id"].as_str().unwrap_or_default().to_owned(), e.clone()))
        .collect();
    for id in &first_run {
        let event = stored
            .get(id)
            .unwrap_or_else(|| panic!("{id} was answered 2xx and then lost"));
        assert_eq!(event["status"], "ENQUEUED", "{event}");
    }
    // WHEN the provider retries everything it did not get a 2xx for
    load(
        &client,
        dev.url("/webhooks/stripe"),
        &bodies,
        &accepted,
        64,
        None,
    )
    .await;
    let unanswered: Vec<_> = bodies
        .iter()
        .filter(|(id, _)| !accepted.lock().expect("lock").contains(id))
        .collect();
    assert!(
        unanswered.is_empty(),
        "{} deliveries never got a 2xx",
        unanswered.len()
    );
    // THEN every event is processed, each exactly once: in = out
    let all = wait_for(&client, &dev, "/api/events?limit=1000", |l| {
        l["count"] == bodies.len()
            && l["events"]
                .as_array()
                .is_some_and(|es| es.iter().all(|e| e["stage"] == "processed"))
    })
    .await;
    for event in all["events"].as_array().expect("events") {
        assert_eq!(
            event["processing"].as_array().map(Vec::len),
            Some(1),
            "{event}"
        );
    }
    for n in 0..200 {
        let (status, order) = get(&client, &dev, &format!("/api/orders/pi_load_{n}")).await;
        assert_eq!(status, 200, "pi_load_{n}: {order}");
        let history = order["history"].as_array().expect("history");
        let mut ids: Vec<_> = history
            .iter()
            .map(|h| h["event_id"].as_str().unwrap_or_default())
            .collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            [format!("evt_load_c{n}"), format!("evt_load_s{n}")],
            "{order}"
        );
        assert_eq!(order["pending_effects"], json!([]), "{order}");
    }
    let (_, dlq) = get(&client, &dev, "/api/dlq").await;
    assert_eq!(dlq["count"], 0, "{dlq}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_are_listed_and_retried_through_the_api_and_the_cli() {
    // GIVEN payhook dev that has fulfilled a paid order
    let dir = TempDir::new("effects");
    let dev = Dev::start(&dir.db(), &[], &[]);
    let client = reqwest::Client::new();
    let body = payment_intent(
        "evt_fx_1",
        "payment_intent.succeeded",
        "pi_fx_1",
        "succeeded",
        now(),
    );
    let (status, answer) = deliver(&client, &dev, &body).await;
    assert_eq!(status, 200, "{answer}");
    wait_for(&client, &dev, "/api/events/stripe/evt_fx_1", |e| {
        e["stage"] == "processed"
    })
    .await;
    // WHEN its effects are listed, for everything and for the order
    let (status, all) = get(&client, &dev, "/api/effects").await;
    let (_, one) = get(
        &client,
        &dev,
        "/api/effects?kind=order&id=pi_fx_1&status=parked",
    )
    .await;
    // THEN nothing is left undelivered
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["count"], 0);
    assert_eq!(one["effects"], json!([]));
    // AND a retry of every parked outbox releases none; bad filters are clear 400s
    let retried: Value = client
        .post(dev.url("/api/effects/retry"))
        .json(&json!({}))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(retried["retried"], 0);
    for bad in [
        "/api/effects?status=lost",
        "/api/effects?kind=order",
        "/api/effects?kind=planet&id=x",
    ] {
        let (status, answer) = get(&client, &dev, bad).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // AND the CLI reads the same database while dev runs
    let listed = Command::new(env!("CARGO_BIN_EXE_payhook"))
        .args(["effects", "list", "--json", "--db"])
        .arg(dir.db())
        .output()
        .expect("effects list runs");
    assert!(listed.status.success(), "{listed:?}");
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed["count"], 0);
    let retry = Command::new(env!("CARGO_BIN_EXE_payhook"))
        .args([
            "effects", "retry", "--kind", "order", "--id", "pi_fx_1", "--db",
        ])
        .arg(dir.db())
        .output()
        .expect("effects retry runs");
    assert!(retry.status.success(), "{retry:?}");
    assert!(String::from_utf8_lossy(&retry.stdout).contains("order#pi_fx_1"));
}

/// One effect delivery as the merchant's endpoint received it, and what it answered.
#[derive(Clone, Debug)]
struct Received {
    body: Value,
    verified: bool,
    answered: u16,
}

/// The merchant's endpoint: answers 503 to its first `failures` requests,
/// then 200; verifies each signature with the effects secret.
async fn merchant_endpoint(failures: usize) -> (String, Arc<std::sync::Mutex<Vec<Received>>>) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use payhook_shared::verify::{Scheme, StandardVerifier, Tolerance};

    type Seen = Arc<std::sync::Mutex<Vec<Received>>>;
    async fn receive(
        State((seen, failures)): State<(Seen, usize)>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let verifier =
            StandardVerifier::new(vec![EFFECTS_SECRET.into()], Tolerance::DEFAULT).unwrap();
        let verified = verifier.verify(&headers, &body, now()).is_ok();
        let mut seen = seen.lock().unwrap();
        let answered = if seen.len() < failures { 503 } else { 200 };
        seen.push(Received {
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            verified,
            answered,
        });
        StatusCode::from_u16(answered).unwrap()
    }
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/effects", axum::routing::post(receive))
        .with_state((Arc::clone(&seen), failures));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/effects", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

const EFFECTS_SECRET: &str = "whsec_cGF5aG9va19lMmVfZWZmZWN0c19zZWNyZXQ=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_reach_an_http_endpoint_signed_in_order_despite_its_failures() {
    // GIVEN payhook dev delivering effects to a merchant endpoint that fails its first two requests
    let (endpoint, seen) = merchant_endpoint(2).await;
    let dir = TempDir::new("http-effects");
    let dev = Dev::start(
        &dir.db(),
        &["--effects", &endpoint, "--retry-backoff-ms", "20"],
        &[("EFFECTS_SIGNING_SECRET", EFFECTS_SECRET)],
    );
    let client = reqwest::Client::new();
    // WHEN an order is paid, then refunded in full
    let paid = payment_intent(
        "evt_h1",
        "payment_intent.succeeded",
        "pi_h1",
        "succeeded",
        now(),
    );
    assert_eq!(deliver(&client, &dev, &paid).await.0, 200);
    let refunded = EventBuilder::new("charge.refunded")
        .id("evt_h2")
        .created(now())
        .with(json!({
            "id": "ch_h1", "payment_intent": "pi_h1", "status": "succeeded", "amount": 2000,
            "amount_captured": 2000, "amount_refunded": 2000, "captured": true, "refunded": true,
            "currency": "usd"
        }))
        .body();
    assert_eq!(deliver(&client, &dev, &refunded).await.0, 200);
    // THEN the endpoint gets the fulfil, then the revoke, each signed, numbered
    // 1 and 2 for the order: the revoke never before the fulfil got through
    for _ in 0..1000 {
        let delivered = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.answered == 200)
            .count();
        if delivered >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let received = seen.lock().unwrap().clone();
    assert!(received.iter().all(|r| r.verified), "{received:?}");
    let delivered: Vec<_> = received.iter().filter(|r| r.answered == 200).collect();
    let types: Vec<_> = delivered
        .iter()
        .map(|r| r.body["type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        types,
        ["fulfill.fulfil", "fulfill.revoke_fulfilment"],
        "{received:?}"
    );
    let seqs: Vec<_> = delivered
        .iter()
        .map(|r| r.body["data"]["seq"].clone())
        .collect();
    assert_eq!(seqs, [json!(1), json!(2)]);
    assert!(
        delivered
            .iter()
            .all(|r| r.body["data"]["object"] == json!({"kind": "order", "id": "pi_h1"}))
    );
    let first_revoke = received
        .iter()
        .position(|r| r.body["type"] == "fulfill.revoke_fulfilment")
        .unwrap();
    let fulfilled = received
        .iter()
        .position(|r| r.body["type"] == "fulfill.fulfil" && r.answered == 200)
        .unwrap();
    assert!(fulfilled < first_revoke, "{received:?}");
    // AND nothing is left undelivered
    let (_, effects) = get(&client, &dev, "/api/effects").await;
    assert_eq!(effects["count"], 0, "{effects}");
}

/// The key `payhook reconcile` and `payhook dev` call the fake Stripe API with.
const API_KEY: &str = "rk_test_e2e";

/// Stripe's API for the missed-event paths (`GET /v1/events`, `GET
/// /v2/core/events/{id}`), answering [`API_KEY`].
fn fake_stripe() -> Arc<FakeStripe> {
    Arc::new(FakeStripe::new(API_KEY))
}

fn reconcile(db: &Path, api: &str, extra: &[&str]) -> (bool, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_payhook"))
        .args(["reconcile", "--json", "--db"])
        .arg(db)
        .args(extra)
        .env("STRIPE_API_KEY", API_KEY)
        .env("STRIPE_API_BASE", api)
        .env_remove("HANDLED_EVENT_TYPES")
        .env_remove("WEBHOOK_LIVEMODE")
        .output()
        .expect("payhook reconcile runs");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no JSON report: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payhook_reconcile_recovers_what_the_webhooks_missed_while_dev_runs() {
    // GIVEN payhook dev that took one payment by webhook, and Stripe's
    // Events API listing that one and another that never arrived
    let dir = TempDir::new("reconcile");
    let dev = Dev::start(&dir.db(), &[], &[]);
    let client = reqwest::Client::new();
    let created = now() - 30;
    let seen = payment_intent(
        "evt_rc_seen",
        "payment_intent.succeeded",
        "pi_rc_1",
        "succeeded",
        created,
    );
    let missed = payment_intent(
        "evt_rc_missed",
        "payment_intent.succeeded",
        "pi_rc_2",
        "succeeded",
        created + 1,
    );
    assert_eq!(deliver(&client, &dev, &seen).await.0, 200);
    let fake = fake_stripe();
    for body in [&seen, &missed] {
        fake.add(body, true);
    }
    let api = Arc::clone(&fake).serve().await;
    // WHEN `payhook reconcile` runs against dev's database
    let (ok, report) = reconcile(&dir.db(), &api, &[]);
    // THEN the missed one is recovered, the other is a duplicate
    assert!(ok, "{report}");
    assert_eq!(report["listed"], 2, "{report}");
    assert_eq!(report["recovered"], 1, "{report}");
    assert_eq!(report["duplicates"], 1, "{report}");
    assert_eq!(report["recovered_ids"], json!(["evt_rc_missed"]));
    // AND the running pipeline processes it, once
    wait_for(&client, &dev, "/api/events/stripe/evt_rc_missed", |e| {
        e["stage"] == "processed"
    })
    .await;
    let (_, order) = get(&client, &dev, "/api/orders/pi_rc_2").await;
    assert_eq!(
        order["history"].as_array().map(Vec::len),
        Some(1),
        "{order}"
    );
    // AND a second run (from the high-water mark, less the overlap) finds nothing new
    let (ok, again) = reconcile(&dir.db(), &api, &[]);
    assert!(ok, "{again}");
    assert_eq!(
        (again["recovered"].clone(), again["duplicates"].clone()),
        (json!(0), json!(2)),
        "{again}"
    );
    // AND Stripe's late retry of the missed one is a duplicate
    let (status, answer) = deliver(&client, &dev, &missed).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("duplicate"))
    );
    // AND without a key the command says what to set
    let out = Command::new(env!("CARGO_BIN_EXE_payhook"))
        .args(["reconcile", "--db"])
        .arg(dir.db())
        .env_remove("STRIPE_API_KEY")
        .env_remove("STRIPE_API_KEY_ARN")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("STRIPE_API_KEY is not set"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_key_dev_reconciles_itself_and_processes_thin_events_as_snapshots() {
    // GIVEN Stripe's API listing a payment no webhook brought, and holding
    // the full event behind a thin one
    let fake = fake_stripe();
    let created = now() - 20;
    let listed = payment_intent(
        "evt_auto_1",
        "payment_intent.succeeded",
        "pi_auto_1",
        "succeeded",
        created,
    );
    fake.add(&listed, true);
    let snapshot: Value = serde_json::from_str(&payment_intent(
        "evt_thin_1",
        "payment_intent.succeeded",
        "pi_thin_1",
        "succeeded",
        created,
    ))
    .unwrap();
    let thin = payhook_shared::sample::thin(&snapshot);
    let mut full = thin.clone();
    full["data"] = snapshot["data"].clone();
    fake.add_v2(&full.to_string());
    let api = Arc::clone(&fake).serve().await;
    // WHEN payhook dev starts with a key
    let dir = TempDir::new("autoreconcile");
    let dev = Dev::start(
        &dir.db(),
        &[],
        &[("STRIPE_API_KEY", API_KEY), ("STRIPE_API_BASE", &api)],
    );
    let client = reqwest::Client::new();
    // THEN its first reconcile recovers and processes the listed payment
    wait_for(&client, &dev, "/api/events/stripe/evt_auto_1", |e| {
        e["stage"] == "processed"
    })
    .await;
    assert!(!fake.calls().is_empty());
    // AND a signed thin event is fetched and processed as its snapshot
    let (status, answer) = deliver(&client, &dev, &thin.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "enqueued", "{answer}");
    wait_for(&client, &dev, "/api/events/stripe/evt_thin_1", |e| {
        e["stage"] == "processed"
    })
    .await;
    let (status, order) = get(&client, &dev, "/api/orders/pi_thin_1").await;
    assert_eq!(status, 200, "{order}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventbridge_and_thin_deliveries_from_payhook_trigger() {
    // GIVEN payhook dev without an API key
    let dir = TempDir::new("bridge");
    let dev = Dev::start(&dir.db(), &[], &[]);
    let client = reqwest::Client::new();
    let trigger = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_payhook"))
            .args(["trigger", "payment_intent.succeeded", "--secret", SECRET])
            .args(extra)
            .env_remove("STRIPE_EVENT_SOURCE")
            .output()
            .expect("trigger runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // WHEN a payment arrives as Stripe's EventBridge destination sends it
    let (ok, lines) = trigger(&["--eventbridge", "--to", &dev.url("/eventbridge")]);
    // THEN each event is taken and enqueued
    assert!(ok, "{lines}");
    let ids: Vec<String> = lines
        .lines()
        .filter(|l| l.contains("\"outcome\":\"enqueued\""))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    assert!(!ids.is_empty(), "{lines}");
    for id in &ids {
        wait_for(&client, &dev, &format!("/api/events/stripe/{id}"), |e| {
            e["stage"] == "processed"
        })
        .await;
    }
    // AND the same event from a source that is not Stripe's is refused, writing nothing
    let event: Value = serde_json::from_str(&payment_intent(
        "evt_foreign_1",
        "payment_intent.succeeded",
        "pi_f",
        "succeeded",
        now(),
    ))
    .unwrap();
    let foreign =
        payhook_shared::sample::lambda::eventbridge_event("aws.partner/example.com/x", &event, 0);
    let response = client
        .post(dev.url("/eventbridge"))
        .json(&foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let (status, _) = get(&client, &dev, "/api/events/stripe/evt_foreign_1").await;
    assert_eq!(status, 404);
    // WHEN thin events arrive signed THEN each is answered 200 and recorded ignored
    let (ok, lines) = trigger(&["--thin", "--to", &dev.url("/webhooks/stripe")]);
    assert!(ok, "{lines}");
    assert!(
        lines
            .lines()
            .all(|l| l.contains("\"ignored\":\"thin_event\"")),
        "{lines}"
    );
    // AND `--to -` prints the receive function's ingress batch for `make invoke`
    let (ok, batch) = trigger(&["--eventbridge", "--to", "-"]);
    assert!(ok);
    let batch: Value = serde_json::from_str(&batch).unwrap();
    let records = batch["Records"].as_array().unwrap();
    assert!(!records.is_empty());
    let first: Value = serde_json::from_str(records[0]["body"].as_str().unwrap()).unwrap();
    assert!(
        first["source"]
            .as_str()
            .unwrap()
            .starts_with("aws.partner/stripe.com/")
    );
    assert_eq!(first["detail"]["object"], "event");
}

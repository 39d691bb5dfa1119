//! The receive path's CPU cost per delivery: verify → parse → route, against a
//! bare HMAC-SHA256 of the same bytes, for Stripe events of about 1, 3, 16 and
//! 64 KB built with `sample::EventBuilder` from Stripe's published fixtures
//! and rendered as Stripe sends them (two-space indent, `id`/`object` first).
//!
//! `cargo bench -p payhook-shared --all-features --bench receive_path` runs the
//! criterion groups, then prints one ratio line per size. It also writes each
//! payload, its `Stripe-Signature` header, the secret and the Rust figures to
//! `target/bench-payloads/` for `bench/peers/compare.sh`, which times Stripe's
//! Node `constructEvent` on the same files. `PAYHOOK_BENCH_SUMMARY_ONLY=1`
//! skips the criterion groups and prints only the summary.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use payhook_shared::event;
use payhook_shared::route::{Route, Routes};
use payhook_shared::sample::EventBuilder;
use payhook_shared::sample::fixtures::fixture;
use payhook_shared::verify::{Provider, Scheme, StripeVerifier, Tolerance, Verified, sign_stripe};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "whsec_bench_4eC39HqLyjWDarjtT1zdp7dc";
const TIMESTAMP: i64 = 1_721_954_070;

/// One benchmark payload: a signed Stripe event of about `label` size.
struct Payload {
    label: &'static str,
    event_type: &'static str,
    body: String,
    headers: HeaderMap,
}

fn main() {
    let payloads = payloads();
    let verifier = StripeVerifier::new(vec![SECRET.to_owned()], Tolerance::DEFAULT)
        .unwrap_or_else(|e| panic!("bench verifier: {e}"));
    let routes = Routes::all();
    for p in &payloads {
        // Prove each path works before timing it.
        let (verified, route) = full(&verifier, &routes, p);
        assert_eq!(verified.body.len(), p.body.len());
        assert!(matches!(route, Route::To(_)), "{} routes", p.event_type);
        println!(
            "payload {:>4}: {:>6} bytes, {}",
            p.label,
            p.body.len(),
            p.event_type
        );
    }

    if std::env::var_os("PAYHOOK_BENCH_SUMMARY_ONLY").is_none() {
        let mut c = Criterion::default().configure_from_args();
        criterion_groups(&mut c, &payloads, &verifier, &routes);
        c.final_summary();
    }
    summary(&payloads, &verifier, &routes);
}

fn criterion_groups(
    c: &mut Criterion,
    payloads: &[Payload],
    verifier: &StripeVerifier,
    routes: &Routes,
) {
    let mut group = c.benchmark_group("receive_path");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    let hmac = keyed_hmac();
    for p in payloads {
        let bytes = p.body.len();
        group.throughput(Throughput::Bytes(bytes as u64));
        let verified = Verified {
            body: &p.body,
            timestamp: TIMESTAMP,
            delivery_id: None,
        };
        let env = parse(&verified);
        group.bench_with_input(BenchmarkId::new("hmac_sha256", bytes), p, |b, p| {
            b.iter(|| bare_hmac(&hmac, black_box(p.body.as_bytes())))
        });
        group.bench_with_input(BenchmarkId::new("verify", bytes), p, |b, p| {
            b.iter(|| verify(verifier, black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("parse", bytes), &verified, |b, v| {
            b.iter(|| parse(black_box(v)))
        });
        group.bench_with_input(BenchmarkId::new("route", bytes), &env, |b, env| {
            b.iter(|| routes.route(Provider::Stripe, black_box(&env.event_type)))
        });
        group.bench_with_input(BenchmarkId::new("verify_parse_route", bytes), p, |b, p| {
            b.iter(|| full(verifier, routes, black_box(p)).1)
        });
    }
    group.finish();
}

/// The HMAC every delivery must compute anyway, with the key schedule done
/// once (as the verifier does): the floor the receive path is measured against.
fn keyed_hmac() -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes())
        .unwrap_or_else(|e| panic!("hmac key: {e}"))
}

fn bare_hmac(keyed: &Hmac<Sha256>, body: &[u8]) -> u8 {
    let mut mac = keyed.clone();
    mac.update(body);
    mac.finalize().into_bytes()[0]
}

fn verify<'a>(verifier: &StripeVerifier, p: &'a Payload) -> Verified<'a> {
    verifier
        .verify(&p.headers, p.body.as_bytes(), TIMESTAMP)
        .unwrap_or_else(|e| panic!("bench payload fails verification: {e}"))
}

fn parse<'a>(verified: &Verified<'a>) -> event::Envelope<'a> {
    event::parse(Provider::Stripe, verified)
        .unwrap_or_else(|e| panic!("bench payload fails to parse: {e}"))
}

fn full<'a>(verifier: &StripeVerifier, routes: &Routes, p: &'a Payload) -> (Verified<'a>, Route) {
    let verified = verify(verifier, p);
    let route = routes.route(Provider::Stripe, &parse(&verified).event_type);
    (verified, route)
}

/// Median nanoseconds per call of `f`, over batches of about 2 ms.
fn median_ns<T>(mut f: impl FnMut() -> T) -> f64 {
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed() < Duration::from_millis(200) {
        black_box(f());
        calls += 1;
    }
    let per_batch = (calls / 100).max(1);
    let mut samples: Vec<f64> = (0..101)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                black_box(f());
            }
            t.elapsed().as_nanos() as f64 / f64::from(per_batch)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// One line per size: bare HMAC vs the whole verify + parse + route, and the
/// same figures as TSV in `target/bench-payloads/rust.tsv`.
fn summary(payloads: &[Payload], verifier: &StripeVerifier, routes: &Routes) {
    let hmac = keyed_hmac();
    let dir = payload_dir();
    let mut tsv = String::from("label\tbytes\thmac_ns\tverify_ns\tparse_ns\troute_ns\tfull_ns\n");
    println!("\nreceive path per delivery (median ns; ratio = full / hmac, target <= 1.50)");
    println!(
        "{:>5} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "size", "bytes", "hmac_ns", "verify_ns", "parse_ns", "route_ns", "full_ns", "ratio"
    );
    for p in payloads {
        let verified = verify(verifier, p);
        let env = parse(&verified);
        let hmac_ns = median_ns(|| bare_hmac(&hmac, black_box(p.body.as_bytes())));
        let verify_ns = median_ns(|| verify(verifier, black_box(p)).timestamp);
        let parse_ns = median_ns(|| parse(black_box(&verified)).created);
        let route_ns = median_ns(|| routes.route(Provider::Stripe, black_box(&env.event_type)));
        let full_ns = median_ns(|| full(verifier, routes, black_box(p)).1);
        println!(
            "{:>5} {:>7} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>6.2}",
            p.label,
            p.body.len(),
            hmac_ns,
            verify_ns,
            parse_ns,
            route_ns,
            full_ns,
            full_ns / hmac_ns
        );
        tsv.push_str(&format!(
            "{}\t{}\t{hmac_ns:.0}\t{verify_ns:.0}\t{parse_ns:.0}\t{route_ns:.0}\t{full_ns:.0}\n",
            p.label,
            p.body.len()
        ));
    }
    write(&dir.join("rust.tsv"), &tsv);
    println!("payloads and figures in {}", dir.display());
}

/// `$CARGO_TARGET_DIR/bench-payloads`, by default `target/bench-payloads` at
/// the workspace root; filled with each payload, its header and the secret.
fn payload_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("bench-payloads")
}

fn write(path: &std::path::Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Builds the four payloads, signs them and writes them out for the peers.
fn payloads() -> Vec<Payload> {
    let specs: [(&str, &str, usize, Value); 4] = [
        ("1k", "refund.created", 1024, refund()),
        (
            "3k",
            "payment_intent.succeeded",
            3 * 1024,
            payment_intent(3 * 1024),
        ),
        ("16k", "invoice.paid", 16 * 1024, invoice(16 * 1024)),
        ("64k", "invoice.paid", 64 * 1024, invoice(64 * 1024)),
    ];
    let dir = payload_dir();
    let mut manifest = Vec::new();
    let payloads: Vec<Payload> = specs
        .into_iter()
        .map(|(label, event_type, _target, object)| {
            let body = render_event(&object, event_type);
            let header = sign_stripe(SECRET, TIMESTAMP, body.as_bytes());
            let mut headers = HeaderMap::new();
            headers.insert(
                "stripe-signature",
                header.parse().unwrap_or_else(|e| panic!("header: {e}")),
            );
            write(&dir.join(format!("{label}.json")), &body);
            manifest.push(
                json!({"label": label, "file": format!("{label}.json"), "bytes": body.len(),
                                 "header": header, "event_type": event_type}),
            );
            Payload {
                label,
                event_type,
                body,
                headers,
            }
        })
        .collect();
    let manifest = json!({"secret": SECRET, "timestamp": TIMESTAMP, "payloads": manifest});
    write(&dir.join("manifest.json"), &format!("{manifest:#}\n"));
    payloads
}

/// `object` as an `event_type` event, rendered as Stripe sends it.
fn render_event(object: &Value, event_type: &str) -> String {
    EventBuilder::new(event_type)
        .id("evt_3PgcABB7WZ01zgkW0x1yLqZc")
        .created(TIMESTAMP)
        .api_version("2024-06-20")
        .request("req_8J2qFzXqhUe6Tn", "7c1f4e2a-5b9d-4c3e-8f6a-2d1b0e9c7a54")
        .object(object.clone())
        .body()
}

/// Stripe's fixture of resource `name`.
fn resource(name: &str) -> Value {
    fixture(name).unwrap_or_else(|e| panic!("{e}"))
}

/// ~1 KB: a succeeded refund, as-is.
fn refund() -> Value {
    let mut r = resource("refund");
    r["payment_intent"] = json!("pi_3PgcA9B7WZ01zgkW1lV2Jx3c");
    r
}

/// ~3 KB: a succeeded payment intent carrying order metadata.
fn payment_intent(target: usize) -> Value {
    let mut pi = resource("payment_intent");
    pi["status"] = json!("succeeded");
    pi["amount_received"] = pi["amount"].clone();
    pi["latest_charge"] = json!("ch_3PgcA9B7WZ01zgkW1mC4Ll0d");
    pi["customer"] = json!("cus_QXg1o8vcGmoR32");
    let mut n = 0;
    while render_event(&pi, "payment_intent.succeeded").len() < target - 40 {
        pi["metadata"][format!("order_line_{n:02}")] = json!(format!(
            "sku_{:06}|qty={}|ref=ord_2024_{:05}",
            100_000 + n * 37,
            n % 5 + 1,
            4200 + n
        ));
        n += 1;
    }
    pi
}

/// ~16 / 64 KB: a paid invoice with as many line items as it takes.
fn invoice(target: usize) -> Value {
    let mut inv = resource("invoice");
    inv["status"] = json!("paid");
    inv["amount_paid"] = inv["amount_due"].clone();
    inv["amount_remaining"] = json!(0);
    let line = inv["lines"]["data"][0].clone();
    let mut n = 0;
    while render_event(&inv, "invoice.paid").len() < target - 700 {
        let mut item = line.clone();
        item["id"] = json!(format!("il_1Pgc6sB7WZ01zgkW{n:08}"));
        item["description"] = json!(format!("Seat licence {} (created for API docs)", n + 1));
        inv["lines"]["data"]
            .as_array_mut()
            .unwrap_or_else(|| panic!("invoice lines"))
            .push(item);
        n += 1;
    }
    inv
}

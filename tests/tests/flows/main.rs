//! The event sequences Stripe really sends (`tests/flows/*.json`), delivered
//! in every order (all of them up to six events, 500 seeded random ones
//! beyond), each event one to three times, through the real runner and the
//! HTTP target, to a loopback endpoint that fails the first attempts of
//! random effects: per object it must receive exactly the flow's effects, in
//! `seq` order, each attempted only once every lower `seq` was accepted, and
//! nothing may stay pending. On the memory and the SQLite state stores.
//!
//! A failure names the flow, the backend and the seed; `FLOWS_SEED=<seed>`
//! replays that one order.

mod check;
mod rng;
mod server;
mod spec;

use std::time::Instant;

use check::{Backend, Outcome, Run, Stores};
use payhook_shared::testing::orders::permutations;
use rng::Rng;
use server::{Plan, Server};
use spec::Flow;

/// Random orders tried for a flow of more than [`ALL_ORDERS_UP_TO`] events.
const RANDOM_ORDERS: usize = 500;
/// Flows up to this many events are tried in every order.
const ALL_ORDERS_UP_TO: usize = 6;
/// One order in this many (Stripe's among them) goes through the HTTP
/// target to the loopback server; the others reach the same endpoint in
/// process, which keeps the whole run short.
const HTTP_EVERY: usize = 8;

/// The orders a flow of `n` events is tried in: Stripe's first.
fn orders(n: usize, seed: u64) -> Vec<Vec<usize>> {
    if n <= ALL_ORDERS_UP_TO {
        return permutations(n);
    }
    let mut rng = Rng::new(seed);
    let natural: Vec<usize> = (0..n).collect();
    let mut out = vec![natural.clone()];
    while out.len() < RANDOM_ORDERS + 1 {
        let mut order = natural.clone();
        rng.shuffle(&mut order);
        out.push(order);
    }
    out
}

/// Every flow on `backend`; panics with every failing case.
async fn all_flows(backend: Backend) {
    let server = Server::start().await;
    let replay: Option<u64> = std::env::var("FLOWS_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let mut failures = Vec::new();
    for (file, flow) in Flow::all() {
        let started = Instant::now();
        assert!(
            !flow.docs.is_empty()
                && flow
                    .docs
                    .iter()
                    .all(|d| d.starts_with("https://docs.stripe.com/")),
            "{file}: name the Stripe documentation the sequence follows"
        );
        assert!(
            flow.also.iter().all(|a| !a.why.is_empty()),
            "{file}: say why each alternative is right"
        );
        let events = flow.build();
        let stores = Stores::new(backend);
        let flow_seed = file
            .bytes()
            .fold(0xf10e_u64, |h, b| rng::mix(h ^ u64::from(b)));
        let orders = orders(events.len(), flow_seed);
        let failed_before = failures.len();
        for (n, order) in orders.iter().enumerate() {
            let seed = rng::mix(flow_seed ^ n as u64);
            if replay.is_some_and(|r| r != seed) {
                continue;
            }
            // Stripe's order, each event once and no failure, must give
            // exactly `expect`; every other run may give an alternative.
            let natural = n == 0;
            let run = Run {
                flow: &flow,
                events: &events,
                order,
                seed,
                plan: if natural {
                    Plan::Fixed(0)
                } else {
                    Plan::Random(seed)
                },
                copies: !natural,
                max_attempts: None,
                http: n % HTTP_EVERY == 0,
            };
            match run.go(&stores, &server).await {
                Outcome::Ok => {}
                Outcome::Failed(why) => failures.push(format!(
                    "{file} on {backend:?}, order {order:?} (FLOWS_SEED={seed}): {why}"
                )),
            }
            if failures.len() >= failed_before + 5 {
                break;
            }
        }
        eprintln!(
            "{file} ({}): {} orders on {backend:?} in {:.1} s",
            flow.name,
            orders.len(),
            started.elapsed().as_secs_f64()
        );
    }
    failures.extend(server.refused());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_in_every_order_on_memory() {
    all_flows(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_in_every_order_on_sqlite() {
    all_flows(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_outbox_is_released_by_a_retry_and_delivered_in_order() {
    // GIVEN a flow whose every effect fails twice, with two attempts allowed
    let server = Server::start().await;
    let (_, flow) = Flow::all()
        .into_iter()
        .find(|(file, _)| file == "refund_partial_then_full")
        .expect("the partial-then-full refund flow");
    let events = flow.build();
    let order: Vec<usize> = (0..events.len()).collect();
    for backend in [Backend::Memory, Backend::Sqlite] {
        let run = Run {
            flow: &flow,
            events: &events,
            order: &order,
            seed: 7,
            plan: Plan::Fixed(2),
            copies: false,
            max_attempts: Some(2),
            http: true,
        };
        // WHEN its events are delivered, the outbox parks; swept, it stays
        // parked; retried, it is delivered
        // THEN the endpoint receives exactly the flow's effects, in order
        match run.go(&Stores::new(backend), &server).await {
            Outcome::Ok => {}
            Outcome::Failed(why) => panic!("{backend:?}: {why}"),
        }
    }
    assert!(server.refused().is_empty(), "{:?}", server.refused());
}

//! Writes the seed corpora of the `fuzz/` targets: realistic deliveries from
//! the sample events (built on Stripe's fixtures) and a few hand-made edge
//! cases, signed with the targets' fixed secrets at their fixed clock.
//!
//! `cargo run -p payhook-shared --features samples --example fuzz_seeds -- DIR`
//! writes `DIR/<target>/seed-*` (`scripts/fuzz.sh` runs it).

use std::path::{Path, PathBuf};

use payhook_shared::queue::{EventMessage, Payload};
use payhook_shared::route::Processor;
use payhook_shared::sample::{self, EventBuilder, lambda};
use payhook_shared::verify::{Provider, sign_standard, sign_stripe};
use serde_json::{Value, json};

/// The fuzz targets' clock and secrets (`fuzz/fuzz_targets/*.rs` use the same).
const NOW: i64 = 1_700_000_000;
const STRIPE_SECRET: &str = "whsec_fuzz_current";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: fuzz_seeds DIR")?);
    let mut bodies = Vec::new();
    let mut messages = Vec::new();
    for event_type in sample::supported_types() {
        for event in sample::event_at(event_type, &[], NOW)? {
            let compact = serde_json::to_string(&event)?;
            messages.push(sample::message(&event, compact.clone()));
            bodies.push(sample::body(&event));
            bodies.push(compact);
        }
    }
    bodies.sort();
    bodies.dedup();
    let edge = edge_cases();

    let stripe: Vec<Vec<u8>> = bodies
        .iter()
        .take(40)
        .chain(&edge)
        .enumerate()
        .map(|(i, body)| {
            let signed = sign_stripe(STRIPE_SECRET, NOW, body.as_bytes());
            let header = match i % 4 {
                0 => signed,
                1 => format!(
                    "{signed},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
                ),
                2 => signed.replace(",v1=", ", v1=00ff,v1="),
                _ => format!(" {}", signed.replace(',', " , ")),
            };
            [header.as_bytes(), b"\n", body.as_bytes()].concat()
        })
        .collect();
    write(&dir.join("stripe_header"), &stripe)?;

    let mut standard = Vec::new();
    for (i, event_type) in sample::supported_types().into_iter().enumerate().take(20) {
        let event = sample::standard_event(event_type, &[])?;
        let body = event.body();
        let sig = sign_standard(STANDARD_SECRET, &event.id, NOW, body.as_bytes())?;
        let sig = if i % 2 == 0 {
            sig
        } else {
            format!("v1a,bm90IGEgc2lnbmF0dXJl v2,AAAA {sig}")
        };
        standard.push(format!("{}\n{NOW}\n{sig}\n{body}", event.id).into_bytes());
    }
    write(&dir.join("standard_headers"), &standard)?;

    let envelopes: Vec<Vec<u8>> = bodies
        .iter()
        .chain(&edge)
        .map(|b| b.clone().into_bytes())
        .collect();
    write(&dir.join("envelope_differential"), &envelopes)?;

    let mut records = Vec::new();
    for (i, message) in messages.iter().enumerate().take(30) {
        let mut message = message.clone();
        if i % 3 == 1 {
            message.payload = Payload::Stored;
        }
        if i % 5 == 2 {
            message.provider = Provider::Standard;
            message.livemode = None;
        }
        let sent = lambda::SentMessage::from(&message);
        let event = lambda::sqs_event(Processor::Fulfill, &[sent], NOW * 1000);
        records.push(serde_json::to_vec_pretty(&event)?);
    }
    records.push(serde_json::to_vec(&minimal_record())?);
    write(&dir.join("sqs_record"), &records)?;
    Ok(())
}

/// Envelopes whose shape the samples never take: every rule of the scanner.
fn edge_cases() -> Vec<String> {
    let base = EventBuilder::new("payment_intent.succeeded")
        .id("evt_edge")
        .created(NOW);
    let mut out = vec![
        base.compact_body(),
        base.clone()
            .request("req_1", "idem-1")
            .account("acct_1")
            .api_version("2024-06-20")
            .compact_body(),
        base.clone()
            .previous_attributes(json!({"status": "requires_payment_method"}))
            .compact_body(),
    ];
    out.extend(
        [
            r#"{"id":"evt_1","object":"event","type":"t","created":1,"data":{"object":{"id":"x","object":"y"}}}"#,
            r#"{"id":"evt_1","id":"evt_2","type":"t","created":1,"data":{"object":{}}}"#,
            r#"{"id":"evt_\u0031","type":"a\"b\\c\/\n\u00e9\ud83d\ude00","created":-0,"data":{"object":{"id":5,"id":"pi_1","object":"x"}}}"#,
            r#"{"object":"v2.core.event","id":"evt_1","created":"2024-01-01T00:00:00Z"}"#,
            r#"{"id":"evt_1","type":"t","created":1.5,"livemode":"yes","data":{"object":[]}}"#,
            r#"{"id":"evt_1","type":"t","created":1,"request":"req_old","data":{"object":{"a":[{"}":"]"}],"id":"o"},"previous_attributes":null}}"#,
            r#"{"id":"evt_1","type":"t","created":1,"request":{"id":null,"idempotency_key":"k","id":"x"},"data":null}"#,
            " \r\n\t{\"id\" : \"evt_1\" , \"type\" : \"t\" , \"created\" : 9223372036854775807 , \"data\" : { \"object\" : { } } } \n",
            r#"{"id":"","type":"","created":null,"livemode":null,"account":null,"data":{"object":null}}"#,
            r#"[{"id":"evt_1"}]"#,
            r#""event""#,
            r#"{"id":"evt_1","type":"t","created":1,"data":{"object":{"id":"o"}}} x"#,
            r#"{"id":"evt_1","type":"t","created":1e3,"data":{"object":{"id":"o"}},"extra":[1,{"a":"\\"}]}"#,
        ]
        .map(str::to_owned),
    );
    out
}

/// The smallest record a processor accepts.
fn minimal_record() -> Value {
    let message = EventMessage {
        provider: Provider::Stripe,
        event_id: "evt_1".into(),
        event_type: "charge.refunded".into(),
        object_id: None,
        created: NOW,
        livemode: Some(true),
        payload: Payload::Inline("{}".into()),
    };
    let attributes: serde_json::Map<String, Value> = message
        .attributes()
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_owned(),
                json!({"stringValue": value, "dataType": "String"}),
            )
        })
        .collect();
    json!({"Records": [{"messageId": "m-1", "body": message.body(), "messageAttributes": attributes}]})
}

/// Writes each seed as `dir/seed-<n>`.
fn write(dir: &Path, seeds: &[Vec<u8>]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), seed)?;
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
    Ok(())
}

//! Writes N distinct, signed Stripe events for the load benchmark
//! (`bench/load.sh`), as the complete HTTP requests wrk sends.
//!
//! Each is a `POST /webhooks/stripe` of a `payment_intent.succeeded` event
//! from `sample::EventBuilder`, compact, padded with metadata to about SIZE
//! bytes, with a fresh event and payment intent id each, and its
//! `Stripe-Signature` made with SECRET at the current time (so run the load
//! within the 300 s tolerance). Requests are dealt in turn into THREADS files,
//! `OUT.0`, `OUT.1`, …, one per wrk thread, each request ended by a NUL byte:
//! built here, wrk spends no time formatting them (see `bench/load/wrk.lua`).
//!
//! Usage: `load_payloads OUT N SECRET [SIZE] [THREADS]`

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use payhook_shared::sample::{EventBuilder, now_secs};
use payhook_shared::verify::sign_stripe;
use serde_json::json;

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("load_payloads: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let usage = "usage: load_payloads OUT N SECRET [SIZE] [THREADS]";
    let [out, n, secret, rest @ ..] = args.as_slice() else {
        return Err(usage.into());
    };
    let number = |text: &str| text.parse::<usize>().map_err(|e| format!("{text:?}: {e}"));
    let n = number(n)?;
    let size = rest.first().map_or(Ok(3072), |s| number(s))?;
    let threads = rest.get(1).map_or(Ok(2), |s| number(s))?.max(1);
    let now = now_secs();
    let event = |i: usize, pad: &str| {
        EventBuilder::new("payment_intent.succeeded")
            .id(format!("evt_load{now}{i:08}"))
            .created(now)
            .api_version("2024-06-20")
            .with(json!({
                "id": format!("pi_load{now}{i:08}"), "status": "succeeded", "amount": 2000,
                "amount_received": 2000, "currency": "usd", "livemode": false,
                "metadata": { "order_id": format!("order_{i}"), "pad": pad },
            }))
            .compact_body()
    };
    let pad = "x".repeat(size.saturating_sub(event(0, "").len() + 60));
    let mut files = (0..threads)
        .map(|t| {
            let path = format!("{out}.{t}");
            File::create(&path)
                .map(BufWriter::new)
                .map_err(|e| format!("{path}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut bytes = 0;
    for i in 0..n {
        let body = event(i, &pad);
        let signature = sign_stripe(secret, now, body.as_bytes());
        let file = &mut files[i % threads];
        write!(
            file,
            "POST /webhooks/stripe HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/json\r\n\
             Stripe-Signature: {signature}\r\nContent-Length: {}\r\n\r\n{body}\0",
            body.len()
        )
        .map_err(|e| format!("{out}: {e}"))?;
        bytes = body.len();
    }
    for mut file in files {
        file.flush().map_err(|e| format!("{out}: {e}"))?;
    }
    eprintln!("{n} events of {bytes} bytes in {out}.0..{}", threads - 1);
    Ok(())
}

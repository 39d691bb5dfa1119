//! `payhook trigger` and `payhook events`: realistic signed Stripe events,
//! delivered to a receiver or written as Lambda invocation events.
//!
//! Both build on `payhook_shared::sample`: a type's natural sequence (as
//! `stripe trigger` sends it) with fresh ids, signed as Stripe signs.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use payhook_shared::route::{Processor, ROUTES, processor_for};
use payhook_shared::sample::lambda::{self, SentMessage, WebhookRequest};
use payhook_shared::sample::{self, TEST_STANDARD_SECRET, TEST_STRIPE_SECRET};
use payhook_shared::verify::{Provider, sign_standard, sign_stripe};
use serde_json::Value;

use crate::send;

/// `payhook trigger EVENT_TYPE`.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// The event type, e.g. `checkout.session.completed` (see --list).
    #[arg(required_unless_present = "list", value_name = "EVENT_TYPE")]
    pub event_type: Option<String>,
    /// Where to POST the events (default: `payhook dev`'s webhook route, or
    /// with --eventbridge its stand-in for the partner bus). With
    /// --eventbridge, `-` prints the receive function's invocation event (an
    /// ingress queue batch) instead, for `make invoke`.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// The endpoint secret to sign with (`payhook dev --print-secret --db PATH` prints the local one).
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub secret: Option<String>,
    /// Set a field of the event's object, on every event carrying it:
    /// `metadata.order_id=42`, `amount=5000`, `charge:metadata.note=x`, `status=lost`.
    #[arg(long = "override", value_name = "KEY=VALUE", value_parser = sample::parse_override)]
    pub overrides: Vec<(String, String)>,
    /// List every supported type, grouped by processor.
    #[arg(long, conflicts_with = "event_type")]
    pub list: bool,
    /// Send each event as the thin event Stripe sends for it
    /// (`"object": "v2.core.event"`, a reference to the object, no snapshot).
    #[arg(long)]
    pub thin: bool,
    /// Deliver as Stripe's EventBridge destination does: an EventBridge event
    /// from a partner event source with the event as `detail`, unsigned.
    #[arg(long)]
    pub eventbridge: bool,
    /// The partner event source (`aws.partner/stripe.com/ed_…`) for --eventbridge.
    #[arg(
        long,
        env = "STRIPE_EVENT_SOURCE",
        value_name = "SOURCE",
        requires = "eventbridge"
    )]
    pub source: Option<String>,
}

/// `payhook dev`'s webhook route.
const DEV_WEBHOOKS: &str = "http://127.0.0.1:4242/webhooks/stripe";

/// `payhook dev`'s stand-in for the partner bus and its ingress queue.
const DEV_EVENTBRIDGE: &str = "http://127.0.0.1:4242/eventbridge";

/// `payhook events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The folder to write the events into.
    #[arg(long, default_value = "events", value_name = "DIR")]
    pub out: PathBuf,
    /// The Stripe endpoint secret to sign with.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true, default_value = TEST_STRIPE_SECRET, value_name = "SECRET")]
    pub secret: String,
    /// The Standard Webhooks secret for `receive-standard-webhook.json`.
    #[arg(long, env = "STANDARD_WEBHOOK_SECRET", hide_env_values = true, default_value = TEST_STANDARD_SECRET, value_name = "SECRET")]
    pub standard_secret: String,
}

/// Sends the sequence of a type, one line per event; exit 1 if any answer is not 2xx.
pub async fn run(args: TriggerArgs) -> Result<ExitCode> {
    let event_type = match (args.list, args.event_type.clone()) {
        (true, _) => {
            print!("{}", list());
            return Ok(ExitCode::SUCCESS);
        }
        (false, Some(t)) => t,
        (false, None) => anyhow::bail!("name an event type, or pass --list to see them"),
    };
    let events: Vec<Value> = sample::event(&event_type, &args.overrides)?
        .iter()
        .map(|e| {
            if args.thin {
                sample::thin(e)
            } else {
                e.clone()
            }
        })
        .collect();
    if args.eventbridge {
        return eventbridge(&args, &events).await;
    }
    let secret = send::require_secret(args.secret.as_deref(), "STRIPE_WEBHOOK_SECRET")?;
    let to = args.to.as_deref().unwrap_or(DEV_WEBHOOKS);
    let client = send::client()?;
    let mut all_accepted = true;
    for event in &events {
        let body = if args.thin {
            event.to_string()
        } else {
            sample::body(event)
        };
        let headers = send::signature_headers(Provider::Stripe, &secret, None, body.as_bytes())?;
        let answer =
            send::deliver(&client, to, Provider::Stripe, &headers, body.into_bytes()).await?;
        all_accepted &= report(event, &answer);
    }
    Ok(exit(all_accepted))
}

/// `--eventbridge`: each event as the partner bus carries it, POSTed to
/// `payhook dev`'s stand-in, or (`--to -`) printed as the receive
/// function's ingress batch.
async fn eventbridge(args: &TriggerArgs, events: &[Value]) -> Result<ExitCode> {
    let source = args.source.clone().unwrap_or_else(lambda::partner_source);
    let millis = sample::now_secs() * 1000;
    let wrapped: Vec<Value> = events
        .iter()
        .zip(0..)
        .map(|(e, i)| lambda::eventbridge_event(&source, e, millis + i * 40))
        .collect();
    let to = args.to.as_deref().unwrap_or(DEV_EVENTBRIDGE);
    if to == "-" {
        print!(
            "{}",
            lambda::to_file_text(&lambda::ingress_sqs_event(&wrapped, millis + 90))
        );
        return Ok(ExitCode::SUCCESS);
    }
    let client = send::client()?;
    let mut all_accepted = true;
    for (event, body) in events.iter().zip(&wrapped) {
        let answer = send::deliver(
            &client,
            to,
            Provider::Stripe,
            &[],
            body.to_string().into_bytes(),
        )
        .await?;
        all_accepted &= report(event, &answer);
    }
    Ok(exit(all_accepted))
}

/// Prints one delivery's line; whether it was accepted.
fn report(event: &Value, answer: &send::Answer) -> bool {
    println!(
        "{:<44} {}  {}  {}",
        text(event, "type"),
        text(event, "id"),
        answer.status,
        answer.body
    );
    answer.is_success()
}

fn exit(all_accepted: bool) -> ExitCode {
    if all_accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Every supported type under its processor, then the unrouted ones.
pub fn list() -> String {
    let mut out = String::new();
    for processor in Processor::ALL {
        let types: Vec<&str> = ROUTES
            .iter()
            .filter(|(_, p)| *p == processor)
            .map(|(t, _)| *t)
            .collect();
        let _ = writeln!(out, "{processor} ({})", types.len());
        for t in types {
            let _ = writeln!(out, "  {t}");
        }
    }
    let _ = writeln!(
        out,
        "ignored: no processor, acknowledged and recorded ({})",
        sample::UNROUTED.len()
    );
    for t in sample::UNROUTED {
        let _ = writeln!(out, "  {t}");
    }
    out
}

/// Writes the sample invocation events into `args.out`.
pub fn events(args: EventsArgs) -> Result<ExitCode> {
    let stripe_secret = send::require_secret(Some(&args.secret), "STRIPE_WEBHOOK_SECRET")?;
    let standard_secret =
        send::require_secret(Some(&args.standard_secret), "STANDARD_WEBHOOK_SECRET")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let files = build_events(&stripe_secret, &standard_secret)?;
    for (name, value, about) in &files {
        let path = args.out.join(name);
        let text = lambda::to_file_text(value);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {:<52} {about}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The event files: `(file name, content, one-line description)`.
pub fn build_events(
    stripe_secret: &str,
    standard_secret: &str,
) -> Result<Vec<(String, Value, String)>> {
    let now = sample::now_secs();
    let millis = now * 1000;
    let mut files = Vec::new();
    let receive = |name: &str, event: &Value, body: &str, signed_at: i64, base64: bool| {
        let request = WebhookRequest {
            provider: "stripe",
            signature_headers: vec![(
                "stripe-signature",
                sign_stripe(stripe_secret, signed_at, body.as_bytes()),
            )],
            body: body.as_bytes(),
            base64,
            at_millis: millis + 137,
        };
        let about = format!("{} {}", text(event, "type"), text(event, "id"));
        (name.to_owned(), lambda::http_api_request(&request), about)
    };

    let succeeded = pick("payment_intent.succeeded")?;
    let succeeded_body = sample::body(&succeeded);
    files.push(receive(
        "receive-payment-intent-succeeded.json",
        &succeeded,
        &succeeded_body,
        now,
        false,
    ));
    for (name, event_type, picked) in [
        (
            "receive-checkout-session-completed.json",
            "checkout.session.completed",
            "checkout.session.completed",
        ),
        (
            "receive-subscription-updated.json",
            "customer.subscription.updated",
            "customer.subscription.updated",
        ),
        (
            "receive-dispute-created.json",
            "charge.dispute.created",
            "charge.dispute.created",
        ),
        (
            "receive-payout-failed.json",
            "payout.failed",
            "payout.failed",
        ),
        (
            "receive-ignored-type.json",
            "customer.created",
            "customer.created",
        ),
    ] {
        let event = pick_from(event_type, picked)?;
        files.push(receive(name, &event, &sample::body(&event), now, false));
    }
    // A provider retry: the same event, the same bytes, signed again.
    files.push(receive(
        "receive-duplicate.json",
        &succeeded,
        &succeeded_body,
        now,
        false,
    ));
    // Signed, then changed in transit: no signature matches.
    let genuine = pick("payment_intent.succeeded")?;
    let mut tampered = genuine.clone();
    if let Some(amount) = tampered.pointer_mut("/data/object/amount_received") {
        *amount = Value::from(1);
    }
    let signature = sign_stripe(stripe_secret, now, sample::body(&genuine).as_bytes());
    let tampered_body = sample::body(&tampered);
    let request = WebhookRequest {
        provider: "stripe",
        signature_headers: vec![("stripe-signature", signature)],
        body: tampered_body.as_bytes(),
        base64: false,
        at_millis: millis + 211,
    };
    files.push((
        "receive-bad-signature.json".to_owned(),
        lambda::http_api_request(&request),
        format!(
            "{} with its body changed after signing",
            text(&tampered, "id")
        ),
    ));
    // A delivery captured an hour ago and replayed: older than any tolerance.
    let hour_ago = now - 3600;
    let stale = sample::event_at("payment_intent.succeeded", &[], hour_ago)?
        .pop()
        .context("empty sample")?;
    files.push(receive(
        "receive-stale-timestamp.json",
        &stale,
        &sample::body(&stale),
        hour_ago,
        false,
    ));
    let refunded = pick("charge.refunded")?;
    files.push(receive(
        "receive-base64-body.json",
        &refunded,
        &sample::body(&refunded),
        now,
        true,
    ));

    // The same payment as Stripe's EventBridge destination delivers it: the
    // ingress queue's batch; taken after the webhook file, a duplicate.
    let bridged = lambda::eventbridge_event(&lambda::partner_source(), &succeeded, millis + 95);
    files.push((
        "receive-eventbridge-sqs.json".to_owned(),
        lambda::ingress_sqs_event(&[bridged], millis + 140),
        format!(
            "{} {} via EventBridge (ingress queue batch)",
            text(&succeeded, "type"),
            text(&succeeded, "id")
        ),
    ));
    // The thin form of a payment: ignored (`thin_event`) unless STRIPE_API_KEY lets receive fetch its snapshot.
    let paid = pick("payment_intent.succeeded")?;
    let thin = sample::thin(&paid).to_string();
    files.push(receive("receive-thin-event.json", &paid, &thin, now, false));

    let standard = sample::standard_event("payment_intent.succeeded", &[])?;
    let standard_body = standard.body();
    let signature = sign_standard(
        standard_secret,
        &standard.id,
        standard.timestamp,
        standard_body.as_bytes(),
    )
    .context("--standard-secret is not a Standard Webhooks secret (`whsec_` + base64)")?;
    let request = WebhookRequest {
        provider: "standard",
        signature_headers: vec![
            ("webhook-id", standard.id.clone()),
            ("webhook-timestamp", standard.timestamp.to_string()),
            ("webhook-signature", signature),
        ],
        body: standard_body.as_bytes(),
        base64: false,
        at_millis: millis + 301,
    };
    files.push((
        "receive-standard-webhook.json".to_owned(),
        lambda::http_api_request(&request),
        format!("{} {}", standard.event_type, standard.id),
    ));

    for (name, processor, sequences) in [
        (
            "fulfill-sqs.json",
            Processor::Fulfill,
            &["checkout.session.completed"][..],
        ),
        (
            "subscription-sqs.json",
            Processor::Subscription,
            &["customer.subscription.created"][..],
        ),
        (
            "dispute-sqs.json",
            Processor::Dispute,
            &["charge.dispute.closed"][..],
        ),
        (
            "payout-sqs.json",
            Processor::Payout,
            &["payout.failed", "account.updated"][..],
        ),
    ] {
        let mut messages = Vec::new();
        for event_type in sequences {
            messages.extend(queued(processor, &sample::event(event_type, &[])?)?);
        }
        let about = format!("{} records for {processor}", messages.len());
        files.push((
            name.to_owned(),
            lambda::sqs_event(processor, &messages, millis + 450),
            about,
        ));
    }
    let mut messages = queued(
        Processor::Fulfill,
        &sample::event("payment_intent.succeeded", &[])?,
    )?;
    let mut poison = queued(Processor::Fulfill, &sample::event("charge.refunded", &[])?)?
        .into_iter()
        .find(|m| m.body.contains("\"charge.refunded\""))
        .context("no charge.refunded message")?;
    // Cut mid-object: it can never parse, so it fails until the dead-letter queue takes it.
    poison.body.truncate(poison.body.len() / 3);
    poison.receive_count = 3;
    messages.insert(1, poison);
    let about = format!("{} records, the second one unparseable", messages.len());
    files.push((
        "fulfill-sqs-poison.json".to_owned(),
        lambda::sqs_event(Processor::Fulfill, &messages, millis + 520),
        about,
    ));
    Ok(files)
}

/// The event of type `event_type` from its own sample sequence.
fn pick(event_type: &str) -> Result<Value> {
    pick_from(event_type, event_type)
}

/// The `picked` event from the sample sequence of `event_type`.
fn pick_from(event_type: &str, picked: &str) -> Result<Value> {
    sample::event(event_type, &[])?
        .into_iter()
        .rev()
        .find(|e| e.get("type").and_then(Value::as_str) == Some(picked))
        .with_context(|| format!("the {event_type} sample has no {picked} event"))
}

/// The messages receive would enqueue for `processor` from `events`.
fn queued(processor: Processor, events: &[Value]) -> Result<Vec<SentMessage>> {
    events
        .iter()
        .filter(|e| {
            e.get("type")
                .and_then(Value::as_str)
                .and_then(processor_for)
                == Some(processor)
        })
        .map(|e| Ok(SentMessage::from(&sample::message(e, sample::body(e)))))
        .collect()
}

/// A string field of an event, for output.
fn text<'a>(event: &'a Value, field: &str) -> &'a str {
    event.get(field).and_then(Value::as_str).unwrap_or("?")
}

//! The invocation events AWS hands the functions, exactly as the services
//! send them: API Gateway HTTP API (payload format 2.0) requests for
//! `receive`, and SQS batches for the processors, with the message
//! attributes [`EventMessage::attributes`] sends and the MD5 digests SQS adds.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::{ids, render};
use crate::queue::EventMessage;
use crate::route::Processor;
use crate::verify::Provider;

/// The account id in sample ARNs and request contexts (AWS's documentation account).
pub const ACCOUNT_ID: &str = "123456789012";

/// The region of sample ARNs and hosts.
pub const REGION: &str = "us-east-1";

/// The `User-Agent` Stripe sends webhooks with.
pub const STRIPE_USER_AGENT: &str = "Stripe/1.0 (+https://stripe.com/docs/webhooks)";

/// A `User-Agent` as a Standard Webhooks sender (Svix) sends.
pub const STANDARD_USER_AGENT: &str =
    "Svix-Webhooks/1.62.0 (sender-xJ2kQ; +https://www.svix.com/http-sender/)";

/// One of the addresses Stripe documents for webhook deliveries.
const STRIPE_SOURCE_IP: &str = "54.187.174.169";

/// A documentation address (RFC 5737) for other senders.
const OTHER_SOURCE_IP: &str = "203.0.113.10";

/// A webhook delivery as it reaches API Gateway.
#[derive(Clone, Debug)]
pub struct WebhookRequest<'a> {
    /// The route segment: `stripe` or `standard`.
    pub provider: &'a str,
    /// The signature headers, names in lower case as HTTP/2 and API Gateway give them.
    pub signature_headers: Vec<(&'static str, String)>,
    /// The body bytes.
    pub body: &'a [u8],
    /// Whether API Gateway base64-encoded the body (always so when it is not UTF-8).
    pub base64: bool,
    /// When the request arrived (unix milliseconds).
    pub at_millis: i64,
}

/// The `receive` invocation for `request`: an HTTP API payload 2.0 event on
/// the route `POST /webhooks/{provider}`.
pub fn http_api_request(request: &WebhookRequest<'_>) -> Value {
    let api_id = ids::lower_alphanumeric(10);
    let host = format!("{api_id}.execute-api.{REGION}.amazonaws.com");
    let path = format!("/webhooks/{}", request.provider);
    let (user_agent, source_ip) = match Provider::from_route(request.provider) {
        Some(Provider::Stripe) => (STRIPE_USER_AGENT, STRIPE_SOURCE_IP),
        _ => (STANDARD_USER_AGENT, OTHER_SOURCE_IP),
    };
    let text = std::str::from_utf8(request.body).ok();
    let (body, base64) = match text {
        Some(text) if !request.base64 => (text.to_owned(), false),
        _ => (BASE64.encode(request.body), true),
    };
    let seconds = request.at_millis.div_euclid(1000);
    let mut headers = Map::new();
    for (name, value) in [
        ("accept", "*/*; q=0.5, application/xml".to_owned()),
        ("cache-control", "no-cache".to_owned()),
        ("content-length", request.body.len().to_string()),
        ("content-type", "application/json; charset=utf-8".to_owned()),
        ("host", host.clone()),
        ("user-agent", user_agent.to_owned()),
        (
            "x-amzn-trace-id",
            format!("Root=1-{seconds:08x}-{}", ids::lower_hex(24)),
        ),
        ("x-forwarded-for", source_ip.to_owned()),
        ("x-forwarded-port", "443".to_owned()),
        ("x-forwarded-proto", "https".to_owned()),
    ]
    .into_iter()
    .chain(request.signature_headers.iter().cloned())
    {
        headers.insert(name.to_owned(), Value::String(value));
    }
    json!({
        "version": "2.0",
        "routeKey": "POST /webhooks/{provider}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": api_id,
            "domainName": host,
            "domainPrefix": api_id,
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": user_agent,
            },
            "requestId": format!("{}=", ids::alphanumeric(15)),
            "routeKey": "POST /webhooks/{provider}",
            "stage": "$default",
            "time": gateway_time(seconds),
            "timeEpoch": request.at_millis,
        },
        "pathParameters": {"provider": request.provider},
        "body": body,
        "isBase64Encoded": base64,
    })
}

/// API Gateway's `requestContext.time`: `27/Nov/2026:21:51:18 +0000`.
fn gateway_time(seconds: i64) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp(seconds) else {
        return "01/Jan/1970:00:00:00 +0000".to_owned();
    };
    let month = t.month().to_string();
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        t.day(),
        month.get(..3).unwrap_or(&month),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The keys of API Gateway and SQS events in the order AWS documents them.
const AWS_ORDER: &[&str] = &[
    // One order that fits the top level, `requestContext` and SQS records alike.
    "version",
    "accountId",
    "apiId",
    "domainName",
    "domainPrefix",
    "http",
    "requestId",
    "routeKey",
    "rawPath",
    "rawQueryString",
    "cookies",
    "headers",
    "queryStringParameters",
    "requestContext",
    "pathParameters",
    "stage",
    "time",
    "timeEpoch",
    "method",
    "path",
    "protocol",
    "sourceIp",
    "userAgent",
    "Records",
    "messageId",
    "receiptHandle",
    "body",
    "isBase64Encoded",
    "stageVariables",
    "attributes",
    "messageAttributes",
    "md5OfBody",
    "md5OfMessageAttributes",
    "eventSource",
    "eventSourceARN",
    "awsRegion",
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "stringValue",
    "stringListValues",
    "binaryListValues",
    "dataType",
];

/// An invocation event as a file: pretty-printed, keys in AWS's documented order.
pub fn to_file_text(event: &Value) -> String {
    render::pretty(event, AWS_ORDER) + "\n"
}

/// One message on a processor queue, as receive sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    /// The message body.
    pub body: String,
    /// The message attributes (all `String`).
    pub attributes: Vec<(&'static str, String)>,
    /// How many times SQS has delivered it, this delivery included.
    pub receive_count: u32,
}

impl From<&EventMessage> for SentMessage {
    fn from(message: &EventMessage) -> Self {
        Self {
            body: message.body(),
            attributes: message.attributes(),
            receive_count: 1,
        }
    }
}

/// The ARN of `processor`'s queue in the sample account.
pub fn queue_arn(processor: Processor) -> String {
    format!(
        "arn:aws:sqs:{REGION}:{ACCOUNT_ID}:payhook-{}",
        processor.as_str()
    )
}

/// The ARN of the queue Stripe's EventBridge rule feeds, in the sample account.
pub fn ingress_queue_arn() -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:payhook-ingress")
}

/// A Stripe partner event source, as Stripe names one for an event destination.
pub fn partner_source() -> String {
    format!(
        "{}ed_test_{}",
        crate::receive::partner::STRIPE_SOURCE_PREFIX,
        ids::alphanumeric(43)
    )
}

/// The EventBridge event Stripe's destination puts on the partner bus from
/// `source` for `event` (a snapshot or thin Stripe event) at `at_millis`.
pub fn eventbridge_event(source: &str, event: &Value, at_millis: i64) -> Value {
    let time = OffsetDateTime::from_unix_timestamp(at_millis.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": event.get("type"),
        "source": source,
        "account": ACCOUNT_ID,
        "time": time,
        "region": REGION,
        "resources": [],
        "detail": event,
    })
}

/// The SQS event the receive function gets from the ingress queue for
/// EventBridge `events`, put a few milliseconds apart from `sent_millis`.
pub fn ingress_sqs_event(events: &[Value], sent_millis: i64) -> Value {
    let messages: Vec<SentMessage> = events
        .iter()
        .map(|e| SentMessage {
            body: e.to_string(),
            attributes: Vec::new(),
            receive_count: 1,
        })
        .collect();
    sqs_batch(
        &ingress_queue_arn(),
        "events.amazonaws.com",
        &messages,
        sent_millis,
    )
}

/// The SQS event Lambda hands `processor`'s function for `messages`, sent
/// a few milliseconds apart from `sent_millis` by the receive function.
pub fn sqs_event(processor: Processor, messages: &[SentMessage], sent_millis: i64) -> Value {
    let sender = format!("AROA{}:payhook-receive", ids::upper_base32(17));
    sqs_batch(&queue_arn(processor), &sender, messages, sent_millis)
}

/// An SQS batch of `messages` from the queue `arn`, sent by `sender`.
fn sqs_batch(arn: &str, sender: &str, messages: &[SentMessage], sent_millis: i64) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .zip(0i64..)
        .map(|(m, i)| {
            let sent = sent_millis + 7 * i;
            let mut attributes = Map::new();
            for (name, value) in &m.attributes {
                attributes.insert(
                    (*name).to_owned(),
                    json!({"stringValue": value, "stringListValues": [], "binaryListValues": [], "dataType": "String"}),
                );
            }
            json!({
                "messageId": uuid::Uuid::new_v4().to_string(),
                "receiptHandle": format!("AQEB{}", BASE64.encode(ids::alphanumeric(132))),
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": m.receive_count.to_string(),
                    "SentTimestamp": sent.to_string(),
                    "SenderId": sender,
                    "ApproximateFirstReceiveTimestamp": (sent + 21).to_string(),
                },
                "messageAttributes": attributes,
                "md5OfBody": md5_hex(m.body.as_bytes()),
                "md5OfMessageAttributes": md5_of_attributes(&m.attributes),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// SQS's digest of string message attributes: for each attribute in name
/// order, the name, the data type, the transport type (1: string) and the
/// value, each length-prefixed (4 bytes, big-endian) except the transport byte.
fn md5_of_attributes(attributes: &[(&'static str, String)]) -> String {
    let mut sorted: Vec<&(&str, String)> = attributes.iter().collect();
    sorted.sort_by_key(|(name, _)| *name);
    let mut buf = Vec::with_capacity(512);
    for (name, value) in sorted {
        put_length_prefixed(&mut buf, name.as_bytes());
        put_length_prefixed(&mut buf, b"String");
        buf.push(1);
        put_length_prefixed(&mut buf, value.as_bytes());
    }
    md5_hex(&buf)
}

fn put_length_prefixed(buf: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_body_matches_the_known_digest() {
        // GIVEN RFC 1321's test input WHEN digested THEN its published digest comes out
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn md5_of_attributes_ignores_order_and_sees_values() {
        // GIVEN the same attributes in two orders, and one value changed
        let a = vec![
            ("provider", "stripe".to_owned()),
            ("event_id", "evt_1".to_owned()),
        ];
        let b = vec![
            ("event_id", "evt_1".to_owned()),
            ("provider", "stripe".to_owned()),
        ];
        let c = vec![
            ("event_id", "evt_2".to_owned()),
            ("provider", "stripe".to_owned()),
        ];
        // THEN order does not matter and the value does
        assert_eq!(md5_of_attributes(&a), md5_of_attributes(&b));
        assert_ne!(md5_of_attributes(&a), md5_of_attributes(&c));
        // AND the digest is the one SQS computes (cross-checked with moto's implementation)
        assert_eq!(md5_of_attributes(&a), "b3500e6db88f004d75d7e867494db6fb");
    }

    #[test]
    fn non_utf8_bodies_are_always_base64() {
        // GIVEN a body that is not UTF-8, not flagged for base64
        let request = WebhookRequest {
            provider: "stripe",
            signature_headers: vec![],
            body: b"\xff\xfe",
            base64: false,
            at_millis: 1_700_000_000_000,
        };
        // WHEN it becomes an API Gateway event THEN it is base64 and flagged so
        let event = http_api_request(&request);
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["body"], "//4=");
        assert_eq!(
            event["requestContext"]["time"],
            "14/Nov/2023:22:13:20 +0000"
        );
    }
}

//! The HTTP target against a real HTTP server on loopback: the body, the
//! Standard Webhooks headers and signature, and every way a delivery fails.

use std::sync::{Arc, Mutex};

use http::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::process::effects::EffectContext;
use crate::route::Processor;
use crate::state::{StateKey, StateKind};
use crate::verify::{Scheme, StandardVerifier, Tolerance};

const SECRET: &str = "whsec_cGF5aG9va19lZmZlY3RzX3Rlc3Rfc2VjcmV0";

/// One request as the server read it.
#[derive(Clone, Debug)]
struct Seen {
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A loopback HTTP/1.1 server answering every request with `status` (or
/// never answering, with `None`); returns its URL and what it saw.
async fn server(status: Option<u16>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/effects", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Requests on one connection, one after another (keep-alive).
                loop {
                    let head_end = loop {
                        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let mut headers = HeaderMap::new();
                    for line in head.lines().skip(1) {
                        if let Some((name, value)) = line.split_once(':') {
                            headers.insert(
                                http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                                value.trim().parse().unwrap(),
                            );
                        }
                    }
                    let length: usize = headers
                        .get("content-length")
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = buf[head_end..head_end + length].to_vec();
                    buf.drain(..head_end + length);
                    record.lock().unwrap().push(Seen { headers, body });
                    let Some(status) = status else {
                        std::future::pending::<()>().await;
                        return;
                    };
                    let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn ctx(seq: u64) -> EffectContext {
    EffectContext {
        processor: Processor::Fulfill,
        idempotency_key: format!("fulfill:evt_1:{}", seq - 1),
        seq,
        event_id: "evt_1".into(),
        event_type: "payment_intent.succeeded".into(),
        key: StateKey::new(StateKind::Order, "pi_1"),
    }
}

fn effect() -> serde_json::Value {
    serde_json::json!({"effect": "fulfil", "order_id": "order_42", "amount": 5000, "seq": "not ours"})
}

#[tokio::test]
async fn delivered_effect_is_a_signed_standard_webhook() {
    // GIVEN a target in front of a server that answers 204
    let (url, seen) = server(Some(204)).await;
    let target = HttpEffects::new(&url, SECRET, DEFAULT_TIMEOUT).unwrap();
    // WHEN two effects are delivered
    target.perform(&effect(), &ctx(1)).await.unwrap();
    target.perform(&effect(), &ctx(2)).await.unwrap();
    // THEN each is one POST, signed per Standard Webhooks with the effect id as webhook-id
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let verifier = StandardVerifier::new(vec![SECRET.into()], Tolerance::DEFAULT).unwrap();
    for (n, request) in seen.iter().enumerate() {
        let now = SystemClock.now_secs();
        let verified = verifier
            .verify(&request.headers, &request.body, now)
            .unwrap();
        assert_eq!(
            verified.delivery_id,
            Some(format!("fulfill:evt_1:{n}").as_str())
        );
        assert_eq!(request.headers["content-type"], "application/json");
        // AND the body is the effect message: type, timestamp, data with id, seq, object, event
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["type"], "fulfill.fulfil");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        let data = &body["data"];
        assert_eq!(data["id"], format!("fulfill:evt_1:{n}"));
        assert_eq!(
            data["seq"],
            n + 1,
            "the effect's own `seq` field never hides ours"
        );
        assert_eq!(
            data["object"],
            serde_json::json!({"kind": "order", "id": "pi_1"})
        );
        assert_eq!(data["event_id"], "evt_1");
        assert_eq!(data["event_type"], "payment_intent.succeeded");
        assert_eq!(data["order_id"], "order_42");
        assert_eq!(data["amount"], 5000);
        assert!(data.get("effect").is_none());
    }
}

#[tokio::test]
async fn every_failure_is_an_effect_error_naming_what_happened() {
    // GIVEN servers that refuse, fail, never answer, and no server at all
    let (refusing, _) = server(Some(409)).await;
    let (failing, _) = server(Some(503)).await;
    let (stalling, stalled) = server(None).await;
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}/", listener.local_addr().unwrap())
    };
    let quick = Duration::from_millis(300);
    // WHEN an effect is delivered to each THEN each fails with a clear reason
    for (url, says) in [
        (&refusing, "409"),
        (&failing, "503"),
        (&stalling, "did not answer"),
        (&closed, "127.0.0.1"),
    ] {
        let target = HttpEffects::new(url, SECRET, quick).unwrap();
        let err = target.perform(&effect(), &ctx(1)).await.unwrap_err();
        assert!(err.to_string().contains(says), "{url}: {err}");
    }
    assert_eq!(
        stalled.lock().unwrap().len(),
        1,
        "the stalled request arrived"
    );
}

#[test]
fn bad_urls_and_secrets_are_refused_at_start() {
    for url in ["ftp://example.com/x", "not a url", "/relative"] {
        assert!(
            matches!(
                HttpEffects::new(url, SECRET, DEFAULT_TIMEOUT),
                Err(HttpTargetError::Url(_))
            ),
            "{url}"
        );
    }
    let err =
        HttpEffects::new("https://example.com/x", "not-base64!", DEFAULT_TIMEOUT).unwrap_err();
    assert!(matches!(err, HttpTargetError::Secret(_)), "{err}");
    assert!(
        !err.to_string().contains("not-base64!"),
        "the secret is never echoed"
    );
}

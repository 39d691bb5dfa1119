//! The Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`) on arbitrary values.
//!
//! Input: the three header values and the body, separated by newlines. Checks
//! that verification never panics, that an accepted delivery carries a `v1`
//! equal to an independently computed HMAC within the tolerance, and that any
//! signature list still verifies once a genuine `v1,…` entry is appended.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use payhook_shared::verify::{Scheme, StandardVerifier, Tolerance, VerifyError, sign_standard};
use sha2::Sha256;

/// The clock and secrets `shared/examples/fuzz_seeds.rs` signs the seeds with.
const NOW: i64 = 1_700_000_000;
const SECRETS: [&str; 2] = [
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
];

static VERIFIER: LazyLock<StandardVerifier> = LazyLock::new(|| {
    let secrets = SECRETS.iter().map(|s| s.to_string()).collect();
    StandardVerifier::new(secrets, Tolerance::DEFAULT).expect("valid secrets")
});

/// HMAC-SHA256 of `"{id}.{t}.{body}"` under a secret's decoded key, computed here.
fn reference_mac(secret: &str, id: &str, t: &str, body: &[u8]) -> [u8; 32] {
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    for part in [id.as_bytes(), b".", t.as_bytes(), b".", body] {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn headers(id: &HeaderValue, t: &HeaderValue, sig: &HeaderValue) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("webhook-id", id.clone());
    h.insert("webhook-timestamp", t.clone());
    h.insert("webhook-signature", sig.clone());
    h
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let (Some(id), Some(t), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let body = parts.next().unwrap_or_default();
    let (Ok(id), Ok(t), Ok(sig)) = (
        HeaderValue::from_bytes(id),
        HeaderValue::from_bytes(t),
        HeaderValue::from_bytes(sig),
    ) else {
        return;
    };

    // An accepted delivery is genuine: a v1 matches the reference HMAC.
    if let Ok(verified) = VERIFIER.verify(&headers(&id, &t, &sig), body, NOW) {
        let id = id.to_str().expect("accepted id is text").trim();
        let t = t.to_str().expect("accepted timestamp is text").trim();
        let sig = sig.to_str().expect("accepted signature is text");
        assert_eq!(verified.body.as_bytes(), body);
        assert_eq!(verified.delivery_id, Some(id));
        assert_eq!(t.parse::<i64>().ok(), Some(verified.timestamp));
        assert!((verified.timestamp - NOW).abs() <= 300);
        let genuine = SECRETS.map(|s| reference_mac(s, id, t, body));
        let matched = sig
            .split(' ')
            .filter_map(|e| e.split_once(','))
            .filter(|(v, _)| *v == "v1")
            .filter_map(|(_, s)| BASE64.decode(s).ok())
            .any(|given| genuine.iter().any(|g| g[..] == given[..]));
        assert!(matched, "accepted without a genuine v1: {sig:?}");
    }

    // Any signature list verifies once a genuine entry for a text id is appended.
    let (Ok(id_text), Ok(sig_text)) = (id.to_str(), sig.to_str()) else {
        return;
    };
    let id_text = id_text.trim();
    if id_text.is_empty() {
        return;
    }
    let genuine = sign_standard(SECRETS[1], id_text, NOW, body).expect("valid secret");
    let Ok(sig) = HeaderValue::from_str(&format!("{sig_text} {genuine}")) else {
        return;
    };
    let now = HeaderValue::from(NOW);
    match VERIFIER.verify(&headers(&id, &now, &sig), body, NOW) {
        Ok(verified) => assert_eq!(verified.delivery_id, Some(id_text)),
        Err(VerifyError::BodyNotUtf8 { .. }) => assert!(std::str::from_utf8(body).is_err()),
        Err(e) => panic!("genuine signature refused ({e}) in {sig:?}"),
    }
});

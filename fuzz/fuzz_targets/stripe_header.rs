//! The `Stripe-Signature` parser and verifier on arbitrary headers.
//!
//! Input: the header value, a newline, then the body. Checks that
//! verification never panics, that an accepted delivery carries a `v1` equal
//! to an independently computed HMAC of a configured secret within the
//! tolerance, and that any header without a `t=` of its own still verifies
//! once a genuine `t=…,v1=…` is appended to it.
#![no_main]

use std::sync::LazyLock;

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use payhook_shared::verify::{Scheme, StripeVerifier, Tolerance, VerifyError, sign_stripe};
use sha2::Sha256;

/// The clock and secrets `shared/examples/fuzz_seeds.rs` signs the seeds with.
const NOW: i64 = 1_700_000_000;
const SECRETS: [&str; 2] = ["whsec_fuzz_current", "whsec_fuzz_previous"];

static VERIFIER: LazyLock<StripeVerifier> = LazyLock::new(|| {
    let secrets = SECRETS.iter().map(|s| s.to_string()).collect();
    StripeVerifier::new(secrets, Tolerance::DEFAULT).expect("valid secrets")
});

fn headers(value: HeaderValue) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("stripe-signature", value);
    h
}

/// The header's `key=value` elements, trimmed, as Stripe's libraries read them.
fn elements(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header
        .split(',')
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
}

/// HMAC-SHA256 of `"{t}.{body}"`, computed here rather than by the crate.
fn reference_mac(secret: &str, t: &str, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(value) = HeaderValue::from_bytes(header) else {
        return;
    };
    let text = value.to_str().ok().map(str::to_owned);

    // An accepted delivery is genuine: a v1 matches the reference HMAC.
    if let Ok(verified) = VERIFIER.verify(&headers(value), body, NOW) {
        let text = text.as_deref().expect("an accepted header is text");
        assert_eq!(verified.body.as_bytes(), body);
        assert!((verified.timestamp - NOW).abs() <= 300);
        let t: Vec<&str> = elements(text)
            .filter(|(k, _)| *k == "t")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(t.len(), 1, "one t= in {text:?}");
        assert_eq!(t[0].parse::<i64>().ok(), Some(verified.timestamp));
        let genuine = SECRETS.map(|s| hex::encode(reference_mac(s, t[0], body)));
        assert!(
            elements(text)
                .any(|(k, v)| k == "v1" && genuine.iter().any(|g| g.eq_ignore_ascii_case(v))),
            "accepted without a genuine v1: {text:?}"
        );
    }

    // Any header without its own `t=` verifies once a genuine signature is appended.
    let Some(text) = text else { return };
    if elements(&text).any(|(k, _)| k == "t") {
        return;
    }
    let signed = format!("{text},{}", sign_stripe(SECRETS[1], NOW, body));
    let Ok(value) = HeaderValue::from_str(&signed) else {
        return;
    };
    match VERIFIER.verify(&headers(value), body, NOW) {
        Ok(verified) => assert_eq!(verified.timestamp, NOW),
        Err(VerifyError::BodyNotUtf8 { .. }) => assert!(std::str::from_utf8(body).is_err()),
        Err(e) => panic!("genuine signature refused ({e}) in {signed:?}"),
    }
});

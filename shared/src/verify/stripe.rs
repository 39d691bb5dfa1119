//! Stripe's `Stripe-Signature` scheme: HMAC-SHA256 keyed with the endpoint
//! secret (`whsec_…`, used as-is, not decoded) over `"{t}.{raw body}"`.
//!
//! The header is `t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]`. Only `v1` counts:
//! every other scheme is ignored, so a forger cannot downgrade to a weaker one.
//! Any `v1` matching any configured secret is accepted, which is how a secret
//! is rolled without dropping deliveries.
//!
//! Order of checks: header shape, then timestamp tolerance, then the HMAC over
//! the raw bytes, and only then UTF-8 — so a non-UTF-8 body is reported as such
//! only when its signature is genuine; a forged one is a mismatch.

use std::fmt;

use http::{HeaderMap, HeaderName};

use super::{
    ConfigError, Keys, Provider, Scheme, Tolerance, V1Signatures, Verified, VerifyError,
    parse_unix_seconds, single_header, utf8_body,
};

/// The signature header (matched case-insensitively by `HeaderMap`).
const HEADER: HeaderName = HeaderName::from_static("stripe-signature");
/// The header as Stripe spells it, for messages.
const HEADER_DISPLAY: &str = "Stripe-Signature";
/// Where the timestamp lives, for messages.
const TIMESTAMP_FIELD: &str = "`t=` in `Stripe-Signature`";
/// What a well-formed v1 signature looks like, for messages.
const V1_SHAPE: &str = "64 hex characters";

/// Verifies Stripe deliveries against one or more endpoint secrets.
///
/// Each secret's HMAC key state is computed once here and cloned per request,
/// so verification does no allocation and no key schedule on the hot path.
#[derive(Clone)]
pub struct StripeVerifier {
    keys: Keys,
    tolerance: Tolerance,
}

impl StripeVerifier {
    /// A verifier accepting signatures by any of `secrets` (the whole `whsec_…`
    /// strings); refuses an empty list or an empty secret.
    pub fn new(secrets: Vec<String>, tolerance: Tolerance) -> Result<Self, ConfigError> {
        let keys = Keys::new(Provider::Stripe, &secrets, |secret, position, count| {
            if secret.is_empty() {
                return Err(ConfigError::EmptySecret {
                    provider: Provider::Stripe,
                    position,
                    count,
                });
            }
            Ok(secret.as_bytes().to_vec())
        })?;
        Ok(Self { keys, tolerance })
    }

    /// The timestamp tolerance this verifier applies.
    pub fn tolerance(&self) -> Tolerance {
        self.tolerance
    }
}

impl fmt::Debug for StripeVerifier {
    /// Shows the shape of the configuration, never the secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeVerifier")
            .field("secrets", &self.keys.macs.len())
            .field("tolerance", &self.tolerance)
            .field("secret_has_whitespace", &self.keys.secret_has_whitespace)
            .finish()
    }
}

impl Scheme for StripeVerifier {
    fn verify<'a>(
        &self,
        headers: &'a HeaderMap,
        body: &'a [u8],
        now: i64,
    ) -> Result<Verified<'a>, VerifyError> {
        let header = single_header(headers, &HEADER, HEADER_DISPLAY)?;
        let t = timestamp_text(header)?;
        let timestamp = parse_unix_seconds(t, TIMESTAMP_FIELD)?;
        let given = V1Signatures::scan(v1_values(header), decode_v1, HEADER_DISPLAY, V1_SHAPE)?;
        self.tolerance.check(timestamp, now)?;

        // One HMAC per secret over the raw bytes; each v1 compared in constant time.
        let parts: [&[u8]; 3] = [t.as_bytes(), b".", body];
        if self.keys.any(&parts, |expected| {
            given.contains(expected, || v1_values(header).filter_map(decode_v1))
        }) {
            return Ok(Verified {
                body: utf8_body(body)?,
                timestamp,
                delivery_id: None,
            });
        }
        Err(self.keys.mismatch())
    }
}

/// The header's elements as `(key, value)`; elements without `=` are skipped.
fn elements(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header
        .split(',')
        .filter_map(|item| item.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
}

/// The text of the single `t=` element, exactly as signed.
fn timestamp_text(header: &str) -> Result<&str, VerifyError> {
    let mut timestamps = elements(header).filter(|(k, _)| *k == "t");
    let (_, t) = timestamps.next().ok_or(VerifyError::NoTimestamp)?;
    if timestamps.next().is_some() {
        return Err(VerifyError::DuplicateTimestamp);
    }
    Ok(t)
}

/// Every `v1=` value; all other schemes (`v0`, …) are ignored by design.
fn v1_values(header: &str) -> impl Iterator<Item = &str> {
    elements(header).filter(|(k, _)| *k == "v1").map(|(_, v)| v)
}

/// A v1 value as its 32 bytes, if it is exactly 64 hex characters.
fn decode_v1(value: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(value, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::super::sign_stripe;
    use super::*;

    const SECRET: &str = "whsec_test_secret_1";
    const OTHER_SECRET: &str = "whsec_rotated_secret_2";
    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}"#;

    fn verifier(secrets: &[&str]) -> StripeVerifier {
        let secrets = secrets.iter().map(|s| s.to_string()).collect();
        StripeVerifier::new(secrets, Tolerance::DEFAULT).unwrap()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("Stripe-Signature", HeaderValue::from_str(value).unwrap());
        h
    }

    /// The hex of a correct v1 for `BODY` at `NOW` under `SECRET`.
    fn good_v1() -> String {
        let header = sign_stripe(SECRET, NOW, BODY);
        header.split_once(",v1=").unwrap().1.to_string()
    }

    fn verify(value: &str, body: &[u8], now: i64) -> Result<i64, VerifyError> {
        verifier(&[SECRET])
            .verify(&headers(value), body, now)
            .map(|v| v.timestamp)
    }

    #[test]
    fn valid_signature_is_accepted() {
        // GIVEN a body signed with the configured secret
        let h = headers(&sign_stripe(SECRET, NOW, BODY));
        // WHEN it is verified at the signing time
        let verified = verifier(&[SECRET]).verify(&h, BODY, NOW).unwrap();
        // THEN the exact body, the timestamp and no delivery id come back
        assert_eq!(verified.body.as_bytes(), BODY);
        assert_eq!(verified.timestamp, NOW);
        assert_eq!(verified.delivery_id, None);
    }

    #[test]
    fn header_name_is_case_insensitive() {
        // GIVEN the header sent in lower case
        let mut h = HeaderMap::new();
        h.insert(
            "stripe-signature",
            HeaderValue::from_str(&sign_stripe(SECRET, NOW, BODY)).unwrap(),
        );
        // WHEN verified THEN it is found and accepted
        assert!(verifier(&[SECRET]).verify(&h, BODY, NOW).is_ok());
    }

    #[test]
    fn garbage_header_is_rejected_as_no_timestamp() {
        // GIVEN a header with no recognisable element
        // WHEN verified
        let err = verify("this is not a signature", BODY, NOW).unwrap_err();
        // THEN the missing `t=` is named
        assert_eq!(err, VerifyError::NoTimestamp);
        assert!(err.to_string().contains("no `t=`"));
    }

    #[test]
    fn empty_header_is_rejected() {
        // GIVEN an empty Stripe-Signature header
        // WHEN verified
        let err = verify("", BODY, NOW).unwrap_err();
        // THEN the header is named as empty
        assert_eq!(
            err,
            VerifyError::EmptyHeader {
                header: "Stripe-Signature"
            }
        );
    }

    #[test]
    fn missing_header_names_the_header() {
        // GIVEN no Stripe-Signature header at all
        // WHEN verified
        let err = verifier(&[SECRET])
            .verify(&HeaderMap::new(), BODY, NOW)
            .unwrap_err();
        // THEN the message names the header
        assert_eq!(err.to_string(), "missing `Stripe-Signature` header");
    }

    #[test]
    fn repeated_header_is_rejected() {
        // GIVEN two Stripe-Signature headers, both valid
        let value = HeaderValue::from_str(&sign_stripe(SECRET, NOW, BODY)).unwrap();
        let mut h = HeaderMap::new();
        h.append("Stripe-Signature", value.clone());
        h.append("Stripe-Signature", value);
        // WHEN verified
        let err = verifier(&[SECRET]).verify(&h, BODY, NOW).unwrap_err();
        // THEN the ambiguity is refused
        assert_eq!(err.code(), "duplicate_header");
    }

    #[test]
    fn non_ascii_header_is_rejected() {
        // GIVEN a header value with an opaque high byte
        let mut h = HeaderMap::new();
        h.insert(
            "Stripe-Signature",
            HeaderValue::from_bytes(b"t=1700000000,v1=\xff").unwrap(),
        );
        // WHEN verified THEN it is refused as not text
        let err = verifier(&[SECRET]).verify(&h, BODY, NOW).unwrap_err();
        assert_eq!(err.code(), "header_not_text");
    }

    #[test]
    fn empty_body_signed_verifies() {
        // GIVEN an empty body, correctly signed
        let h = headers(&sign_stripe(SECRET, NOW, b""));
        // WHEN verified THEN it is accepted with an empty body
        let verified = verifier(&[SECRET]).verify(&h, b"", NOW).unwrap();
        assert_eq!(verified.body, "");
    }

    #[test]
    fn v0_only_is_rejected_as_no_v1() {
        // GIVEN only a v0 signature (a downgrade attempt), even a "correct" one
        let value = format!("t={NOW},v0={}", good_v1());
        // WHEN verified
        let err = verify(&value, BODY, NOW).unwrap_err();
        // THEN no v1 is reported
        assert_eq!(
            err.to_string(),
            "`Stripe-Signature` header has no v1 signature"
        );
    }

    #[test]
    fn v1_with_wrong_hex_is_a_mismatch() {
        // GIVEN a well-formed v1 that is not the right signature
        let value = format!("t={NOW},v1={}", "ab".repeat(32));
        // WHEN verified THEN it is a mismatch with the actionable hint
        let err = verify(&value, BODY, NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no signature matches — is the raw body verified and the right endpoint secret configured?"
        );
    }

    #[test]
    fn v1_of_wrong_length_or_alphabet_is_malformed() {
        // GIVEN v1 values that are not 64 hex characters
        let mut short = good_v1();
        short.pop();
        let non_hex = format!("{}zz", &good_v1()[2..]);
        for v1 in [short.as_str(), non_hex.as_str(), ""] {
            // WHEN verified
            let err = verify(&format!("t={NOW},v1={v1}"), BODY, NOW).unwrap_err();
            // THEN the encoding is named
            assert_eq!(
                err.to_string(),
                "`Stripe-Signature` v1 signature is not 64 hex characters"
            );
        }
    }

    #[test]
    fn valid_v1_among_bad_ones_is_accepted() {
        // GIVEN a malformed v1, a wrong v1, a v0 and the right v1, in that order
        let value = format!(
            "t={NOW},v1=nothex,v1={},v0={},v1={}",
            "00".repeat(32),
            "11".repeat(32),
            good_v1()
        );
        // WHEN verified THEN the right one is found
        assert_eq!(verify(&value, BODY, NOW), Ok(NOW));
    }

    #[test]
    fn rotation_accepts_either_secret() {
        // GIVEN a verifier configured with the old and the new secret
        let v = verifier(&[SECRET, OTHER_SECRET]);
        for secret in [SECRET, OTHER_SECRET] {
            // WHEN a delivery signed with either arrives
            let h = headers(&sign_stripe(secret, NOW, BODY));
            // THEN it is accepted
            assert!(
                v.verify(&h, BODY, NOW).is_ok(),
                "signed with secret {secret}"
            );
        }
        // AND one signed with neither is not
        let h = headers(&sign_stripe("whsec_unknown", NOW, BODY));
        assert_eq!(v.verify(&h, BODY, NOW).unwrap_err().code(), "mismatch");
    }

    #[test]
    fn rotation_accepts_two_signatures_one_per_secret() {
        // GIVEN Stripe's rollover header: one v1 per secret, only the new one configured
        let old = good_v1();
        let new = sign_stripe(OTHER_SECRET, NOW, BODY);
        let new = new.split_once(",v1=").unwrap().1;
        let value = format!("t={NOW},v1={old},v1={new}");
        // WHEN verified THEN the second v1 matches
        let h = headers(&value);
        assert!(verifier(&[OTHER_SECRET]).verify(&h, BODY, NOW).is_ok());
    }

    #[test]
    fn older_than_tolerance_is_stale_with_exact_message() {
        // GIVEN a valid signature made 1712 s ago
        let h = headers(&sign_stripe(SECRET, NOW - 1712, BODY));
        // WHEN verified now
        let err = verifier(&[SECRET]).verify(&h, BODY, NOW).unwrap_err();
        // THEN it is stale, with age and tolerance in the message
        assert_eq!(
            err.to_string(),
            "timestamp 1712 s older than the 300 s tolerance"
        );
    }

    #[test]
    fn inside_tolerance_is_accepted_on_both_sides_up_to_the_edge() {
        // GIVEN signatures exactly at the edges and inside the 300 s window
        for offset in [-300, -299, -1, 0, 1, 299, 300] {
            let h = headers(&sign_stripe(SECRET, NOW + offset, BODY));
            // WHEN verified THEN each is accepted
            assert!(
                verifier(&[SECRET]).verify(&h, BODY, NOW).is_ok(),
                "offset {offset}"
            );
        }
        // AND one second beyond either edge is not
        let past = headers(&sign_stripe(SECRET, NOW - 301, BODY));
        assert_eq!(
            verifier(&[SECRET])
                .verify(&past, BODY, NOW)
                .unwrap_err()
                .code(),
            "stale"
        );
        let future = headers(&sign_stripe(SECRET, NOW + 301, BODY));
        assert_eq!(
            verifier(&[SECRET])
                .verify(&future, BODY, NOW)
                .unwrap_err()
                .code(),
            "future"
        );
    }

    #[test]
    fn future_beyond_tolerance_is_rejected_with_exact_message() {
        // GIVEN a valid signature dated 342 s ahead of our clock
        let h = headers(&sign_stripe(SECRET, NOW + 342, BODY));
        // WHEN verified now
        let err = verifier(&[SECRET]).verify(&h, BODY, NOW).unwrap_err();
        // THEN it is refused as future
        assert_eq!(
            err.to_string(),
            "timestamp 342 s in the future, beyond the 300 s tolerance"
        );
    }

    #[test]
    fn custom_tolerance_is_applied() {
        // GIVEN a 10 s tolerance and a signature 11 s old
        let v = StripeVerifier::new(vec![SECRET.into()], Tolerance::new(10).unwrap()).unwrap();
        let h = headers(&sign_stripe(SECRET, NOW - 11, BODY));
        // WHEN verified THEN the configured tolerance is the one reported
        assert_eq!(
            v.verify(&h, BODY, NOW).unwrap_err().to_string(),
            "timestamp 11 s older than the 10 s tolerance"
        );
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        // GIVEN the largest timestamp a header can carry and a clock far in the past
        let h = headers(&format!("t={},v1={}", i64::MAX, good_v1()));
        // WHEN verified THEN it is a clean "future" error, not a panic
        let err = verifier(&[SECRET]).verify(&h, BODY, i64::MIN).unwrap_err();
        assert_eq!(err.code(), "future");
    }

    #[test]
    fn zero_tolerance_is_refused() {
        // GIVEN a tolerance of 0 WHEN built THEN it is a configuration error
        assert_eq!(Tolerance::new(0), Err(ConfigError::ZeroTolerance));
    }

    #[test]
    fn two_timestamps_are_rejected() {
        // GIVEN two `t=` elements
        let value = format!("t={NOW},t={},v1={}", NOW + 1, good_v1());
        // WHEN verified THEN the duplicate is named
        assert_eq!(
            verify(&value, BODY, NOW).unwrap_err().to_string(),
            "`Stripe-Signature` header has two `t=` timestamps"
        );
    }

    #[test]
    fn non_numeric_timestamp_is_rejected() {
        // GIVEN timestamps that are not plain digits
        for t in [
            "abc",
            "",
            "-5",
            "+1700000000",
            "1.5",
            "99999999999999999999",
        ] {
            let value = format!("t={t},v1={}", good_v1());
            // WHEN verified THEN the `t=` element is named
            assert_eq!(
                verify(&value, BODY, NOW).unwrap_err().to_string(),
                "`t=` in `Stripe-Signature` is not a number (expected unix seconds)",
                "t={t}"
            );
        }
    }

    #[test]
    fn non_utf8_body_signed_correctly_is_a_clean_error() {
        // GIVEN a genuine signature over bytes that are not UTF-8
        let body = b"{\"id\":\"evt_\xff\xfe\"}";
        let h = headers(&sign_stripe(SECRET, NOW, body));
        // WHEN verified
        let err = verifier(&[SECRET]).verify(&h, body, NOW).unwrap_err();
        // THEN the body is refused as non-UTF-8 (after the signature was checked)
        assert_eq!(err, VerifyError::BodyNotUtf8 { valid_up_to: 11 });
    }

    #[test]
    fn non_utf8_body_with_forged_signature_is_a_mismatch() {
        // GIVEN non-UTF-8 bytes with a signature over something else
        let body = b"\xff\xfe";
        let h = headers(&sign_stripe(SECRET, NOW, b"other"));
        // WHEN verified THEN the signature failure wins: nothing is said about the body
        let err = verifier(&[SECRET]).verify(&h, body, NOW).unwrap_err();
        assert_eq!(err.code(), "mismatch");
    }

    #[test]
    fn signed_non_json_body_verifies() {
        // GIVEN a signed body that is not JSON
        let body = b"not json at all";
        let h = headers(&sign_stripe(SECRET, NOW, body));
        // WHEN verified THEN verification succeeds: parsing is another module's job
        assert_eq!(
            verifier(&[SECRET]).verify(&h, body, NOW).unwrap().body,
            "not json at all"
        );
    }

    #[test]
    fn tampered_body_is_a_mismatch() {
        // GIVEN a signature over the original body
        let h = headers(&sign_stripe(SECRET, NOW, BODY));
        // WHEN one byte of the body is changed
        let mut tampered = BODY.to_vec();
        tampered[2] ^= 1;
        // THEN it no longer verifies
        let err = verifier(&[SECRET]).verify(&h, &tampered, NOW).unwrap_err();
        assert_eq!(err.code(), "mismatch");
    }

    #[test]
    fn whitespace_in_a_secret_is_noted_on_mismatch() {
        // GIVEN a secret configured with a trailing newline (pasted from a terminal)
        let v = verifier(&[&format!("{SECRET}\n")]);
        // WHEN Stripe's real signature (made with the clean secret) arrives
        let h = headers(&sign_stripe(SECRET, NOW, BODY));
        let err = v.verify(&h, BODY, NOW).unwrap_err();
        // THEN the mismatch says why
        assert_eq!(
            err,
            VerifyError::Mismatch {
                secret_has_whitespace: true
            }
        );
        assert!(err.to_string().contains("leading or trailing whitespace"));
    }

    #[test]
    fn clean_secrets_get_no_whitespace_note() {
        // GIVEN clean secrets WHEN a mismatch happens THEN no whitespace note is added
        let h = headers(&sign_stripe("whsec_wrong", NOW, BODY));
        let err = verifier(&[SECRET, OTHER_SECRET])
            .verify(&h, BODY, NOW)
            .unwrap_err();
        assert!(!err.to_string().contains("whitespace"));
    }

    // Fixed vectors, computed independently with Python's `hmac` module:
    //   python3 -c 'import hmac,hashlib; print(hmac.new(SECRET.encode(), f"{T}.".encode() + BODY.encode(), hashlib.sha256).hexdigest())'
    // with SECRET, T and BODY as in each row.
    const VECTORS: [(&str, i64, &str, &str); 4] = [
        (
            "whsec_test_secret_1",
            1_700_000_000,
            r#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}"#,
            "80d01916fbe31e77c6de3b50cac218fe70e1f2c5367cf7e3590c0901b7f67951",
        ),
        (
            "whsec_Zm9vYmFyYmF6cXV4",
            1_614_265_330,
            "",
            "0f1743b00c3b382ed2f52e16b69b7c1a04bf37a3b9027da8f9ab784b3dfb561e",
        ),
        (
            // multi-byte UTF-8 body: 2-, 3- and 4-byte sequences
            "whsec_plJ3nmyCDGBKInavdOK4cTi2gC1uk0Gf",
            1_712_345_678,
            r#"{"name":"Zoë Łukasz 東京 💳"}"#,
            "978e64ad0168466a3f6e0a772d89bf4e9ad6ed02b412f61f2c8e6d1255762f2c",
        ),
        (
            // an 86-byte secret: longer than SHA-256's 64-byte block, so HMAC hashes the key
            "whsec_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            1_000_000_000,
            r#"{"long":"key"}"#,
            "89de67ac8e9f8d87a1d5e816baa35553760dfb45ac8da7c12f672c0587931ead",
        ),
    ];

    #[test]
    fn independent_python_vectors_verify() {
        for (secret, t, body, v1) in VECTORS {
            // GIVEN a header carrying the independently computed v1
            let h = headers(&format!("t={t},v1={v1}"));
            // WHEN verified at that time
            let verified = verifier(&[secret]).verify(&h, body.as_bytes(), t).unwrap();
            // THEN the body comes back unchanged
            assert_eq!(verified.body, body);
        }
    }

    #[test]
    fn sign_stripe_reproduces_python_vectors() {
        for (secret, t, body, v1) in VECTORS {
            // GIVEN a vector WHEN signed here THEN the header matches byte for byte
            assert_eq!(
                sign_stripe(secret, t, body.as_bytes()),
                format!("t={t},v1={v1}")
            );
        }
    }

    #[test]
    fn sign_then_verify_round_trips() {
        // GIVEN any secret, time and body
        let body = "ünïcödé body".as_bytes();
        let h = headers(&sign_stripe(OTHER_SECRET, 42, body));
        // WHEN signed and verified THEN it is accepted
        assert_eq!(
            verifier(&[OTHER_SECRET])
                .verify(&h, body, 42)
                .unwrap()
                .timestamp,
            42
        );
    }

    #[test]
    fn whole_secret_string_is_the_key_not_its_decoding() {
        // GIVEN a signature made with the secret minus its `whsec_` prefix
        let stripped = SECRET.trim_start_matches("whsec_");
        let h = headers(&sign_stripe(stripped, NOW, BODY));
        // WHEN verified against the configured whole secret THEN it does not match
        assert_eq!(
            verifier(&[SECRET])
                .verify(&h, BODY, NOW)
                .unwrap_err()
                .code(),
            "mismatch"
        );
    }

    #[test]
    fn configuration_errors_are_typed() {
        // GIVEN no secrets, or an empty one WHEN built THEN each is refused
        assert_eq!(
            StripeVerifier::new(vec![], Tolerance::DEFAULT).unwrap_err(),
            ConfigError::NoSecrets {
                provider: Provider::Stripe
            }
        );
        assert_eq!(
            StripeVerifier::new(vec![SECRET.into(), String::new()], Tolerance::DEFAULT)
                .unwrap_err()
                .to_string(),
            "stripe webhook secret 2 of 2 is empty"
        );
    }

    #[test]
    fn no_error_message_or_debug_output_contains_the_secret() {
        // GIVEN a verifier whose secret has whitespace (so every note is exercised)
        let padded = format!(" {SECRET}\n");
        let v = verifier(&[&padded]);
        let sig = sign_stripe(&padded, NOW, BODY);
        let mut dup = HeaderMap::new();
        dup.append("Stripe-Signature", HeaderValue::from_static("t=1"));
        dup.append("Stripe-Signature", HeaderValue::from_static("t=2"));
        let mut not_text = HeaderMap::new();
        not_text.insert(
            "Stripe-Signature",
            HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        let cases: Vec<(HeaderMap, &[u8], i64)> = vec![
            (HeaderMap::new(), BODY, NOW),
            (headers(""), BODY, NOW),
            (dup, BODY, NOW),
            (not_text, BODY, NOW),
            (headers("v1=ab"), BODY, NOW),
            (headers("t=1,t=2,v1=ab"), BODY, NOW),
            (headers("t=x,v1=ab"), BODY, NOW),
            (headers(&format!("t={NOW}")), BODY, NOW),
            (headers(&format!("t={NOW},v1=xyz")), BODY, NOW),
            (headers(&sig), BODY, NOW + 1000),
            (headers(&sig), BODY, NOW - 1000),
            (headers(&sign_stripe(SECRET, NOW, BODY)), BODY, NOW),
            (headers(&sign_stripe(&padded, NOW, b"\xff")), b"\xff", NOW),
        ];
        // WHEN each bad delivery is verified
        let errors: Vec<VerifyError> = cases
            .iter()
            .map(|(h, body, now)| v.verify(h, body, *now).unwrap_err())
            .collect();
        // THEN every variant was produced
        let mut codes: Vec<&str> = errors.iter().map(VerifyError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 13, "{codes:?}");
        // AND no message (nor the verifier's Debug) reveals the secret or a signature
        let good = good_v1();
        let mut texts: Vec<String> = errors.iter().map(|e| format!("{e} {e:?}")).collect();
        texts.push(format!("{v:?}"));
        texts.push(
            StripeVerifier::new(vec![SECRET.into(), String::new()], Tolerance::DEFAULT)
                .unwrap_err()
                .to_string(),
        );
        for text in texts {
            assert!(!text.contains(SECRET), "{text}");
            assert!(!text.contains("whsec_"), "{text}");
            assert!(!text.contains(&good), "{text}");
        }
    }
}

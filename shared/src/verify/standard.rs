//! The Standard Webhooks scheme (also Svix's): HMAC-SHA256 keyed with the
//! base64-decoded secret over `"{webhook-id}.{webhook-timestamp}.{raw body}"`.
//!
//! `webhook-signature` is a space-separated list of `version,base64` entries;
//! only `v1` entries count (others, such as `v1a` or `v2`, are skipped), and any
//! `v1` matching any configured secret is accepted, so secrets roll without
//! dropping deliveries. The signed `webhook-id` becomes the delivery id.
//!
//! Order of checks: headers, then timestamp tolerance, then the HMAC over the
//! raw bytes, and only then UTF-8 — so a non-UTF-8 body is reported as such only
//! when its signature is genuine.

use std::fmt;

use base64::Engine as _;
use http::{HeaderMap, HeaderName};

use super::{
    BASE64, ConfigError, Keys, Provider, Scheme, Tolerance, V1Signatures, Verified, VerifyError,
    parse_unix_seconds, single_header, standard_key, utf8_body,
};

/// The delivery id header.
const ID: HeaderName = HeaderName::from_static("webhook-id");
/// The signed timestamp header.
const TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// The signature list header.
const SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
/// The signature header's name, for messages.
const SIGNATURE_DISPLAY: &str = "webhook-signature";
/// The timestamp header's name, for messages.
const TIMESTAMP_DISPLAY: &str = "webhook-timestamp";
/// What a well-formed v1 signature looks like, for messages.
const V1_SHAPE: &str = "base64 of 32 bytes";

/// Verifies Standard Webhooks deliveries against one or more secrets.
///
/// Each secret is decoded and its HMAC key state computed once here, then cloned
/// per request, so verification does no allocation and no key schedule per call.
#[derive(Clone)]
pub struct StandardVerifier {
    keys: Keys,
    tolerance: Tolerance,
}

impl StandardVerifier {
    /// A verifier accepting signatures by any of `secrets` (`whsec_<base64>` or
    /// bare base64); refuses an empty list and empty or non-base64 secrets.
    pub fn new(secrets: Vec<String>, tolerance: Tolerance) -> Result<Self, ConfigError> {
        let keys = Keys::new(Provider::Standard, &secrets, standard_key)?;
        Ok(Self { keys, tolerance })
    }

    /// The timestamp tolerance this verifier applies.
    pub fn tolerance(&self) -> Tolerance {
        self.tolerance
    }
}

impl fmt::Debug for StandardVerifier {
    /// Shows the shape of the configuration, never the secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardVerifier")
            .field("secrets", &self.keys.macs.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl Scheme for StandardVerifier {
    fn verify<'a>(
        &self,
        headers: &'a HeaderMap,
        body: &'a [u8],
        now: i64,
    ) -> Result<Verified<'a>, VerifyError> {
        let id = single_header(headers, &ID, "webhook-id")?;
        let t = single_header(headers, &TIMESTAMP, TIMESTAMP_DISPLAY)?;
        let signatures = single_header(headers, &SIGNATURE, SIGNATURE_DISPLAY)?;
        let timestamp = parse_unix_seconds(t, "`webhook-timestamp`")?;
        let given = V1Signatures::scan(
            v1_values(signatures),
            decode_v1,
            SIGNATURE_DISPLAY,
            V1_SHAPE,
        )?;
        self.tolerance.check(timestamp, now)?;

        // One HMAC per secret over the raw bytes; each v1 compared in constant time.
        let parts: [&[u8]; 5] = [id.as_bytes(), b".", t.as_bytes(), b".", body];
        if self.keys.any(&parts, |expected| {
            given.contains(expected, || v1_values(signatures).filter_map(decode_v1))
        }) {
            return Ok(Verified {
                body: utf8_body(body)?,
                timestamp,
                delivery_id: Some(id),
            });
        }
        Err(self.keys.mismatch())
    }
}

/// The base64 part of every `v1,` entry; other versions are skipped.
fn v1_values(header: &str) -> impl Iterator<Item = &str> {
    header
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .map(|(_, signature)| signature)
}

/// A v1 signature as its 32 bytes, if it is standard base64 of exactly 32 bytes.
fn decode_v1(value: &str) -> Option<[u8; 32]> {
    // Room for any 44-character encoding; longer input fails to fit and is refused.
    let mut buf = [0u8; 48];
    let len = BASE64.decode_slice(value, &mut buf).ok()?;
    buf.get(..len)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::super::sign_standard;
    use super::*;

    // The Standard Webhooks specification's published vectors.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_T: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    const SPEC2_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SPEC2_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SPEC2_T: i64 = 1_649_367_553;
    const SPEC2_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SPEC2_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn verifier(secrets: &[&str]) -> StandardVerifier {
        let secrets = secrets.iter().map(|s| s.to_string()).collect();
        StandardVerifier::new(secrets, Tolerance::DEFAULT).unwrap()
    }

    fn headers(id: Option<&str>, t: Option<&str>, sig: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("webhook-id", id),
            ("webhook-timestamp", t),
            ("webhook-signature", sig),
        ] {
            if let Some(value) = value {
                h.insert(name, HeaderValue::from_str(value).unwrap());
            }
        }
        h
    }

    fn spec_headers(sig: &str) -> HeaderMap {
        headers(Some(SPEC_ID), Some(&SPEC_T.to_string()), Some(sig))
    }

    /// Verifies the spec's first id and timestamp with `sig` over `body`, at the signing time.
    fn spec_verify(sig: &str, body: &[u8]) -> Result<(), VerifyError> {
        verifier(&[SPEC_SECRET])
            .verify(&spec_headers(sig), body, SPEC_T)
            .map(|_| ())
    }

    #[test]
    fn spec_vector_one_verifies() {
        // GIVEN the spec's first vector WHEN verified at its timestamp
        let h = spec_headers(SPEC_SIG);
        let verified = verifier(&[SPEC_SECRET])
            .verify(&h, SPEC_BODY, SPEC_T)
            .unwrap();
        // THEN body, timestamp and the signed webhook-id come back
        assert_eq!(verified.body.as_bytes(), SPEC_BODY);
        assert_eq!(verified.timestamp, SPEC_T);
        assert_eq!(verified.delivery_id, Some(SPEC_ID));
    }

    #[test]
    fn spec_vector_two_verifies() {
        // GIVEN the spec's second vector
        let h = headers(Some(SPEC2_ID), Some(&SPEC2_T.to_string()), Some(SPEC2_SIG));
        // WHEN verified at its timestamp THEN it is accepted
        let verified = verifier(&[SPEC2_SECRET])
            .verify(&h, SPEC2_BODY, SPEC2_T)
            .unwrap();
        assert_eq!(verified.delivery_id, Some(SPEC2_ID));
    }

    #[test]
    fn sign_standard_reproduces_spec_vectors() {
        // GIVEN the spec's inputs WHEN signed here THEN the published signatures come out
        assert_eq!(
            sign_standard(SPEC_SECRET, SPEC_ID, SPEC_T, SPEC_BODY).unwrap(),
            SPEC_SIG
        );
        assert_eq!(
            sign_standard(SPEC2_SECRET, SPEC2_ID, SPEC2_T, SPEC2_BODY).unwrap(),
            SPEC2_SIG
        );
    }

    #[test]
    fn sign_then_verify_round_trips() {
        // GIVEN a body signed by sign_standard
        let body = "{\"name\":\"Zoë 東京\"}".as_bytes();
        let sig = sign_standard(SPEC2_SECRET, "msg_round", 42, body).unwrap();
        let h = headers(Some("msg_round"), Some("42"), Some(&sig));
        // WHEN verified THEN it is accepted
        let verified = verifier(&[SPEC2_SECRET]).verify(&h, body, 42).unwrap();
        assert_eq!(verified.delivery_id, Some("msg_round"));
    }

    #[test]
    fn sign_standard_refuses_a_bad_secret() {
        // GIVEN a secret that is not base64 WHEN signing THEN it is a typed error
        assert!(matches!(
            sign_standard("whsec_not base64!", "msg", 1, b"{}"),
            Err(ConfigError::StandardSecretNotBase64 { .. })
        ));
    }

    #[test]
    fn one_valid_among_several_signatures_is_accepted() {
        // GIVEN a wrong v1, a malformed v1 and the right v1, space-separated
        let wrong = format!("v1,{}", BASE64.encode([7u8; 32]));
        let list = format!("{wrong} v1,%%% {SPEC_SIG}");
        // WHEN verified THEN the right one is found
        assert!(spec_verify(&list, SPEC_BODY).is_ok());
    }

    #[test]
    fn other_versions_are_skipped() {
        // GIVEN the right signature presented under other versions only
        let b64 = SPEC_SIG.trim_start_matches("v1,");
        let others = format!("v1a,{b64} v2,{b64}");
        // WHEN verified THEN there is no v1 to check
        assert_eq!(
            spec_verify(&others, SPEC_BODY).unwrap_err().to_string(),
            "`webhook-signature` header has no v1 signature"
        );
        // AND with a v1 added after them, it is the v1 that is checked
        assert!(spec_verify(&format!("{others} {SPEC_SIG}"), SPEC_BODY).is_ok());
    }

    #[test]
    fn missing_each_header_names_it() {
        let t = SPEC_T.to_string();
        for (h, name) in [
            (headers(None, Some(&t), Some(SPEC_SIG)), "webhook-id"),
            (
                headers(Some(SPEC_ID), None, Some(SPEC_SIG)),
                "webhook-timestamp",
            ),
            (headers(Some(SPEC_ID), Some(&t), None), "webhook-signature"),
        ] {
            // GIVEN a delivery without one header WHEN verified
            let err = verifier(&[SPEC_SECRET])
                .verify(&h, SPEC_BODY, SPEC_T)
                .unwrap_err();
            // THEN that header is named
            assert_eq!(err.to_string(), format!("missing `{name}` header"));
        }
    }

    #[test]
    fn empty_webhook_id_is_rejected() {
        // GIVEN an empty webhook-id WHEN verified THEN it is refused before any HMAC
        let h = headers(Some(""), Some(&SPEC_T.to_string()), Some(SPEC_SIG));
        let err = verifier(&[SPEC_SECRET])
            .verify(&h, SPEC_BODY, SPEC_T)
            .unwrap_err();
        assert_eq!(err.to_string(), "`webhook-id` header is empty");
    }

    #[test]
    fn non_numeric_timestamp_is_rejected() {
        // GIVEN a timestamp that is not plain digits
        let h = headers(Some(SPEC_ID), Some("2021-02-25"), Some(SPEC_SIG));
        // WHEN verified THEN the header is named
        let err = verifier(&[SPEC_SECRET])
            .verify(&h, SPEC_BODY, SPEC_T)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`webhook-timestamp` is not a number (expected unix seconds)"
        );
    }

    #[test]
    fn bad_base64_entries_alone_are_malformed() {
        // GIVEN only v1 entries that are not base64 of 32 bytes
        let short = format!("v1,{}", BASE64.encode([1u8; 31]));
        for sig in ["v1,***", "v1,", short.as_str()] {
            // WHEN verified THEN the encoding is named
            assert_eq!(
                spec_verify(sig, SPEC_BODY).unwrap_err().to_string(),
                "`webhook-signature` v1 signature is not base64 of 32 bytes",
                "{sig}"
            );
        }
    }

    #[test]
    fn stale_timestamp_is_rejected_with_exact_message() {
        // GIVEN the spec vector verified 1712 s after it was signed
        let h = spec_headers(SPEC_SIG);
        let err = verifier(&[SPEC_SECRET])
            .verify(&h, SPEC_BODY, SPEC_T + 1712)
            .unwrap_err();
        // THEN it is stale
        assert_eq!(
            err.to_string(),
            "timestamp 1712 s older than the 300 s tolerance"
        );
    }

    #[test]
    fn future_timestamp_is_rejected_with_exact_message() {
        // GIVEN the spec vector verified 301 s before it was signed
        let h = spec_headers(SPEC_SIG);
        let err = verifier(&[SPEC_SECRET])
            .verify(&h, SPEC_BODY, SPEC_T - 301)
            .unwrap_err();
        // THEN it is too far in the future
        assert_eq!(
            err.to_string(),
            "timestamp 301 s in the future, beyond the 300 s tolerance"
        );
    }

    #[test]
    fn inside_tolerance_is_accepted_on_both_sides() {
        // GIVEN the spec vector WHEN verified 300 s either side THEN it is accepted
        let h = spec_headers(SPEC_SIG);
        for now in [SPEC_T - 300, SPEC_T + 300] {
            assert!(verifier(&[SPEC_SECRET]).verify(&h, SPEC_BODY, now).is_ok());
        }
    }

    #[test]
    fn tampered_body_is_a_mismatch() {
        // GIVEN the spec signature over a different body
        // WHEN verified THEN no signature matches
        assert_eq!(
            spec_verify(SPEC_SIG, br#"{"test": 2432232315}"#)
                .unwrap_err()
                .code(),
            "mismatch"
        );
    }

    #[test]
    fn tampered_id_or_timestamp_is_a_mismatch() {
        // GIVEN the spec signature with another webhook-id, or another (in-window) timestamp
        let t = SPEC_T.to_string();
        let later = (SPEC_T + 1).to_string();
        for h in [
            headers(Some("msg_other"), Some(&t), Some(SPEC_SIG)),
            headers(Some(SPEC_ID), Some(&later), Some(SPEC_SIG)),
        ] {
            // WHEN verified THEN both are signed fields, so no signature matches
            let err = verifier(&[SPEC_SECRET])
                .verify(&h, SPEC_BODY, SPEC_T)
                .unwrap_err();
            assert_eq!(err.code(), "mismatch");
        }
    }

    #[test]
    fn wrong_secret_is_a_mismatch() {
        // GIVEN a verifier with the second vector's secret
        let h = spec_headers(SPEC_SIG);
        // WHEN the first vector is verified
        let err = verifier(&[SPEC2_SECRET])
            .verify(&h, SPEC_BODY, SPEC_T)
            .unwrap_err();
        // THEN it is a mismatch without a whitespace note
        assert_eq!(
            err,
            VerifyError::Mismatch {
                secret_has_whitespace: false
            }
        );
    }

    #[test]
    fn rotation_accepts_either_secret() {
        // GIVEN both secrets configured WHEN each vector arrives THEN both verify
        let v = verifier(&[SPEC2_SECRET, SPEC_SECRET]);
        assert!(v.verify(&spec_headers(SPEC_SIG), SPEC_BODY, SPEC_T).is_ok());
        let h2 = headers(Some(SPEC2_ID), Some(&SPEC2_T.to_string()), Some(SPEC2_SIG));
        assert!(v.verify(&h2, SPEC2_BODY, SPEC2_T).is_ok());
    }

    #[test]
    fn secret_without_whsec_prefix_is_accepted() {
        // GIVEN the spec secret configured without its `whsec_` prefix
        let bare = SPEC_SECRET.trim_start_matches("whsec_");
        // WHEN the spec vector is verified THEN it matches
        let h = spec_headers(SPEC_SIG);
        assert!(verifier(&[bare]).verify(&h, SPEC_BODY, SPEC_T).is_ok());
        // AND signing with the bare secret gives the same signature
        assert_eq!(
            sign_standard(bare, SPEC_ID, SPEC_T, SPEC_BODY).unwrap(),
            SPEC_SIG
        );
    }

    #[test]
    fn non_utf8_body_signed_correctly_is_a_clean_error() {
        // GIVEN a genuine signature over bytes that are not UTF-8
        let body = b"\xc3\x28";
        let sig = sign_standard(SPEC_SECRET, SPEC_ID, SPEC_T, body).unwrap();
        // WHEN verified THEN the body, not the signature, is refused
        assert_eq!(
            spec_verify(&sig, body).unwrap_err(),
            VerifyError::BodyNotUtf8 { valid_up_to: 0 }
        );
    }

    #[test]
    fn configuration_errors_are_typed_and_secret_free() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // GIVEN bad secret lists WHEN built THEN each is refused with its own error
        let cases = [
            (
                StandardVerifier::new(vec![], Tolerance::DEFAULT),
                ConfigError::NoSecrets {
                    provider: Provider::Standard,
                },
            ),
            (
                StandardVerifier::new(s(&[SPEC_SECRET, "whsec_"]), Tolerance::DEFAULT),
                ConfigError::EmptySecret {
                    provider: Provider::Standard,
                    position: 2,
                    count: 2,
                },
            ),
            (
                StandardVerifier::new(s(&["whsec_MfKQ9r8GKYq?"]), Tolerance::DEFAULT),
                ConfigError::StandardSecretNotBase64 {
                    position: 1,
                    count: 1,
                    has_whitespace: false,
                },
            ),
            (
                StandardVerifier::new(s(&[&format!("{SPEC_SECRET}\n")]), Tolerance::DEFAULT),
                ConfigError::StandardSecretNotBase64 {
                    position: 1,
                    count: 1,
                    has_whitespace: true,
                },
            ),
        ];
        for (got, want) in cases {
            let err = got.unwrap_err();
            assert_eq!(err, want);
            // AND no message reveals a secret
            let text = format!("{err} {err:?}");
            assert!(!text.contains("MfKQ9r8GKYq"), "{text}");
            assert!(!text.contains("whsec_M"), "{text}");
        }
    }

    #[test]
    fn no_error_message_or_debug_output_contains_the_secret() {
        // GIVEN the spec verifier and one bad delivery per failure
        let v = verifier(&[SPEC_SECRET]);
        let t = SPEC_T.to_string();
        let non_utf8_sig = sign_standard(SPEC_SECRET, SPEC_ID, SPEC_T, b"\xff").unwrap();
        let cases: Vec<(HeaderMap, &[u8], i64)> = vec![
            (headers(None, Some(&t), Some(SPEC_SIG)), SPEC_BODY, SPEC_T),
            (
                headers(Some(" "), Some(&t), Some(SPEC_SIG)),
                SPEC_BODY,
                SPEC_T,
            ),
            (
                headers(Some(SPEC_ID), Some("x"), Some(SPEC_SIG)),
                SPEC_BODY,
                SPEC_T,
            ),
            (
                headers(Some(SPEC_ID), Some(&t), Some("v2,abc")),
                SPEC_BODY,
                SPEC_T,
            ),
            (
                headers(Some(SPEC_ID), Some(&t), Some("v1,abc")),
                SPEC_BODY,
                SPEC_T,
            ),
            (spec_headers(SPEC_SIG), SPEC_BODY, SPEC_T + 1000),
            (spec_headers(SPEC_SIG), SPEC_BODY, SPEC_T - 1000),
            (spec_headers(SPEC_SIG), b"{}", SPEC_T),
            (spec_headers(&non_utf8_sig), b"\xff", SPEC_T),
        ];
        // WHEN each is verified
        let texts: Vec<String> = cases
            .iter()
            .map(|(h, body, now)| {
                let e = v.verify(h, body, *now).unwrap_err();
                format!("{e} {e:?}")
            })
            .chain([format!("{v:?}")])
            .collect();
        // THEN nothing reveals the secret, its key or the expected signature
        let key_b64 = SPEC_SECRET.trim_start_matches("whsec_");
        let sig_b64 = SPEC_SIG.trim_start_matches("v1,");
        for text in texts {
            assert!(!text.contains(key_b64), "{text}");
            assert!(!text.contains("whsec_"), "{text}");
            assert!(!text.contains(sig_b64), "{text}");
        }
    }
}

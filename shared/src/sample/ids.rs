//! Fresh identifiers in the shapes Stripe, SQS and API Gateway use.

/// The characters of Stripe's ids.
const ALPHANUMERIC: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` random characters from `alphabet`, uniformly: random bytes come from
/// v4 UUIDs without their fixed version and variant bytes, and bytes past the
/// largest multiple of the alphabet's size are skipped rather than folded.
fn random_from(alphabet: &[u8], len: usize) -> String {
    let size = alphabet.len().clamp(1, 256);
    let limit = 256 - 256 % size;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for (i, byte) in uuid::Uuid::new_v4().into_bytes().into_iter().enumerate() {
            let byte = usize::from(byte);
            if i == 6 || i == 8 || byte >= limit {
                continue;
            }
            if out.len() == len {
                break;
            }
            if let Some(&c) = alphabet.get(byte % size) {
                out.push(char::from(c));
            }
        }
    }
    out
}

/// `len` random letters and digits.
pub fn alphanumeric(len: usize) -> String {
    random_from(ALPHANUMERIC, len)
}

/// `len` random upper-case hexadecimal digits.
pub fn upper_hex(len: usize) -> String {
    random_from(b"0123456789ABCDEF", len)
}

/// `len` random lower-case hexadecimal digits.
pub fn lower_hex(len: usize) -> String {
    random_from(b"0123456789abcdef", len)
}

/// `len` random decimal digits.
pub fn digits(len: usize) -> String {
    random_from(b"0123456789", len)
}

/// `len` random characters of the RFC 4648 base32 alphabet, as AWS's unique ids use.
pub fn upper_base32(len: usize) -> String {
    random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", len)
}

/// `len` random lower-case letters and digits.
pub fn lower_alphanumeric(len: usize) -> String {
    random_from(b"0123456789abcdefghijklmnopqrstuvwxyz", len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_have_the_requested_length_and_alphabet() {
        // GIVEN each generator WHEN asked for 40 characters THEN it gives 40 of its alphabet
        for (s, ok) in [
            (alphanumeric(40), ALPHANUMERIC.as_slice()),
            (upper_hex(40), b"0123456789ABCDEF".as_slice()),
            (digits(40), b"0123456789".as_slice()),
        ] {
            assert_eq!(s.len(), 40);
            assert!(s.bytes().all(|b| ok.contains(&b)), "{s}");
        }
    }

    #[test]
    fn random_ids_do_not_repeat() {
        // GIVEN many 14-character ids THEN none repeats
        let mut all: Vec<String> = (0..2000).map(|_| alphanumeric(14)).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 2000);
    }
}

//! A forward-only JSON reader for the envelope: it decodes the few top-level
//! fields receive needs and skips everything else, without building a tree.
//!
//! Why hand-written: the envelope parse runs on every delivery and must cost a
//! fraction of the HMAC over the same bytes. On the 3 KB Stripe event of the
//! `receive_path` bench (x86-64): HMAC-SHA256 ≈ 1.8 µs; serde_json with
//! borrowed fields and `&RawValue` ≈ 1.8 µs; sonic-rs derive with `LazyValue`
//! ≈ 2.8 µs; this reader ≈ 0.5 µs. The difference is how the bulk of the body,
//! `data.object`, is passed over: both libraries validate every token of it,
//! this reader finds its end with the 64-byte bitmask scan of simdjson's first
//! stage (quotes, escapes, brackets) — AVX2 when the CPU has it, else
//! `sonic-simd`'s portable vectors (SSE2 on x86-64, NEON on Graviton).
//!
//! What is checked: every token the envelope itself is made of (keys, the
//! decoded values, separators, nesting, trailing bytes) strictly; inside a
//! skipped value only that strings close and brackets balance. The body is
//! signed by the provider, and the processors deserialize `data.object` fully
//! with serde_json, so a malformed object still fails — there, not here.

use std::borrow::Cow;

use sonic_simd::{BitMask, Mask, Simd, u8x16, u8x64};

/// A syntax error at a byte offset; the caller turns it into a user-facing
/// message (with serde_json's wording where it agrees the body is invalid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Malformed {
    /// Byte offset of the offending token.
    pub at: usize,
    /// What was expected there.
    pub expected: &'static str,
}

pub(super) type Scan<T> = Result<T, Malformed>;

/// The JSON kind of the value at the cursor, named for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl Kind {
    /// "an object", "a string", … for messages.
    pub fn article(self) -> &'static str {
        match self {
            Kind::Object => "an object",
            Kind::Array => "an array",
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Bool => "a boolean",
            Kind::Null => "null",
        }
    }
}

/// A position in a UTF-8 JSON text.
pub(super) struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn peek_byte(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn err<T>(&self, expected: &'static str) -> Scan<T> {
        Err(Malformed {
            at: self.pos,
            expected,
        })
    }

    /// Skips JSON whitespace and returns the next byte, if any.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        let mut pos = self.pos;
        let next = loop {
            match bytes.get(pos) {
                Some(b' ' | b'\n' | b'\r' | b'\t') => pos += 1,
                other => break other.copied(),
            }
        };
        self.pos = pos;
        next
    }

    /// Consumes `b` after optional whitespace.
    pub fn expect(&mut self, b: u8, expected: &'static str) -> Scan<()> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(expected)
        }
    }

    /// The kind of the next value, without consuming it.
    pub fn kind(&mut self) -> Scan<Kind> {
        Ok(match self.peek() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b'-' | b'0'..=b'9') => Kind::Number,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            _ => return self.err("a JSON value"),
        })
    }

    /// Is the rest of the input whitespace only?
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Opens an object: consumes `{` and reports whether it is empty (then also
    /// consumes `}`).
    pub fn open_object(&mut self) -> Scan<bool> {
        self.expect(b'{', "`{`")?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(false);
        }
        Ok(true)
    }

    /// Reads the next key of an open object and its `:`.
    #[inline(always)]
    pub fn key(&mut self) -> Scan<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return self.err("a string key");
        }
        self.pos += 1;
        let key = self.string_body()?;
        if self.peek_byte() == Some(b':') {
            self.pos += 1;
        } else {
            self.expect(b':', "`:` after an object key")?;
        }
        Ok(key)
    }

    /// After a member's value: `true` if another member follows (`,` consumed),
    /// `false` at the closing `}` (consumed).
    pub fn next_member(&mut self) -> Scan<bool> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b'}') => {
                self.pos += 1;
                Ok(false)
            }
            _ => self.err("`,` or `}` after an object member"),
        }
    }

    /// Reads a string value, borrowing it when it holds no escapes.
    pub fn string(&mut self) -> Scan<Cow<'a, str>> {
        self.expect(b'"', "a string")?;
        self.string_body()
    }

    /// Reads a string value if one is next (`None` at `null`); another kind
    /// is returned for the caller to report.
    #[inline(always)]
    pub fn string_or_null(&mut self) -> Scan<Result<Option<Cow<'a, str>>, Kind>> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                self.string_body().map(|s| Ok(Some(s)))
            }
            Some(b'n') => self.literal(b"null").map(|()| Ok(None)),
            _ => self.kind().map(Err),
        }
    }

    /// The rest of a string whose opening quote has been consumed.
    #[inline(always)]
    fn string_body(&mut self) -> Scan<Cow<'a, str>> {
        let start = self.pos;
        self.pos = string_special(self.bytes(), self.pos);
        match self.peek_byte() {
            Some(b'"') => {
                let s = self.slice(start, self.pos)?;
                self.pos += 1;
                Ok(Cow::Borrowed(s))
            }
            Some(b'\\') => self.escaped_string(start).map(Cow::Owned),
            Some(_) => self.err("no control characters in a string"),
            None => self.err("a closing `\"`"),
        }
    }

    /// Decodes a string whose first escape is at the cursor.
    #[cold]
    fn escaped_string(&mut self, start: usize) -> Scan<String> {
        let mut out = String::with_capacity(self.pos - start + 8);
        out.push_str(self.slice(start, self.pos)?);
        loop {
            let run = self.pos;
            let bytes = self.bytes();
            while let Some(&b) = bytes.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(self.slice(run, self.pos)?);
            match self.peek_byte() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.peek_byte() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            out.push(self.unicode_escape()?);
                            continue;
                        }
                        _ => return self.err("a valid escape sequence"),
                    };
                    self.pos += 1;
                    out.push(c);
                }
                Some(_) => return self.err("no control characters in a string"),
                None => return self.err("a closing `\"`"),
            }
        }
    }

    /// Decodes the four hex digits after `\u` (and a following low-surrogate escape).
    fn unicode_escape(&mut self) -> Scan<char> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if self.bytes().get(self.pos..self.pos + 2) != Some(b"\\u") {
                return self.err("a low surrogate after a high surrogate escape");
            }
            self.pos += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return self.err("a low surrogate after a high surrogate escape");
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        match char::from_u32(code) {
            Some(c) => Ok(c),
            None => self.err("a valid unicode escape"),
        }
    }

    fn hex4(&mut self) -> Scan<u32> {
        let Some(digits) = self.bytes().get(self.pos..self.pos + 4) else {
            return self.err("four hex digits");
        };
        let mut v = 0u32;
        for &d in digits {
            let n = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return self.err("four hex digits"),
            };
            v = v * 16 + u32::from(n);
        }
        self.pos += 4;
        Ok(v)
    }

    /// Reads an integer that fits `i64`; `None` when the number has a fraction
    /// or exponent or does not fit (the caller reports a wrong type).
    pub fn integer(&mut self) -> Scan<Option<i64>> {
        self.peek();
        let text = self.number()?;
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let mut value: i64 = 0;
        for d in digits.bytes() {
            if !d.is_ascii_digit() {
                return Ok(None);
            }
            let d = i64::from(d - b'0');
            value = match value.checked_mul(10).and_then(|v| {
                if negative {
                    v.checked_sub(d)
                } else {
                    v.checked_add(d)
                }
            }) {
                Some(v) => v,
                None => return Ok(None),
            };
        }
        Ok(Some(value))
    }

    /// Skips one number, checking its grammar, and returns its text.
    fn number(&mut self) -> Scan<&'a str> {
        let start = self.pos;
        let bytes = self.bytes();
        let digits = |pos: &mut usize| {
            let from = *pos;
            while bytes.get(*pos).is_some_and(u8::is_ascii_digit) {
                *pos += 1;
            }
            *pos - from
        };
        let mut pos = self.pos;
        if bytes.get(pos) == Some(&b'-') {
            pos += 1;
        }
        match bytes.get(pos) {
            Some(b'0') => pos += 1,
            Some(b'1'..=b'9') => {
                digits(&mut pos);
            }
            _ => {
                self.pos = pos;
                return self.err("a digit");
            }
        }
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            if digits(&mut pos) == 0 {
                self.pos = pos;
                return self.err("a digit after the decimal point");
            }
        }
        if matches!(bytes.get(pos), Some(b'e' | b'E')) {
            pos += 1;
            if matches!(bytes.get(pos), Some(b'+' | b'-')) {
                pos += 1;
            }
            if digits(&mut pos) == 0 {
                self.pos = pos;
                return self.err("a digit in the exponent");
            }
        }
        self.pos = pos;
        self.slice(start, pos)
    }

    /// Reads `true`, `false` or `null` (as `None`).
    pub fn bool_or_null(&mut self) -> Scan<Option<bool>> {
        match self.peek() {
            Some(b't') => self.literal(b"true").map(|()| Some(true)),
            Some(b'f') => self.literal(b"false").map(|()| Some(false)),
            _ => self.literal(b"null").map(|()| None),
        }
    }

    /// Consumes `null` if it is next.
    pub fn null(&mut self) -> Scan<bool> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn literal(&mut self, word: &'static [u8]) -> Scan<()> {
        if self.bytes().get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.err("a JSON value")
        }
    }

    /// Skips one value of any kind and returns its exact text.
    pub fn skip(&mut self) -> Scan<&'a str> {
        let kind = self.kind()?;
        let start = self.pos;
        match kind {
            Kind::Object | Kind::Array => {
                let end = skip_container(self.bytes(), self.pos + 1).ok_or(Malformed {
                    at: start,
                    expected: "a closed object or array",
                })?;
                let close = if kind == Kind::Object { b'}' } else { b']' };
                self.close_at(end, close)?;
            }
            Kind::String => self.skip_string()?,
            Kind::Number => {
                self.number()?;
            }
            Kind::Bool | Kind::Null => {
                self.bool_or_null()?;
            }
        }
        self.slice(start, self.pos)
    }

    /// Skips the rest of an object whose members have been read up to a member
    /// boundary, and returns the position just past its `}`.
    pub fn skip_rest_of_object(&mut self) -> Scan<()> {
        let at = self.pos;
        let end = skip_container(self.bytes(), self.pos).ok_or(Malformed {
            at,
            expected: "a closed object",
        })?;
        self.close_at(end, b'}')
    }

    /// Moves past a skipped container ending at `end` if its last byte is
    /// `close`: the block scan counts `}` and `]` alike, but the container's
    /// own brackets are the envelope's and must pair.
    fn close_at(&mut self, end: usize, close: u8) -> Scan<()> {
        let last = end.saturating_sub(1);
        if self.bytes().get(last) != Some(&close) {
            self.pos = last;
            return self.err(if close == b'}' { "`}`" } else { "`]`" });
        }
        self.pos = end;
        Ok(())
    }

    /// Skips a string without decoding it.
    fn skip_string(&mut self) -> Scan<()> {
        self.expect(b'"', "a string")?;
        loop {
            self.pos = string_special(self.bytes(), self.pos);
            match self.peek_byte() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => self.pos += 2,
                Some(_) => return self.err("no control characters in a string"),
                None => return self.err("a closing `\"`"),
            }
        }
    }

    /// The text between two byte offsets (always on token boundaries, so on
    /// char boundaries; checked anyway).
    pub fn slice(&self, from: usize, to: usize) -> Scan<&'a str> {
        self.src.get(from..to).ok_or(Malformed {
            at: from,
            expected: "valid UTF-8 boundaries",
        })
    }
}

/// The offset of the first `"`, `\\` or control character at or after `pos`
/// (the end of the input if none): where a string's plain run stops.
#[inline]
fn string_special(src: &[u8], mut pos: usize) -> usize {
    while let Some(chunk) = src.get(pos..pos + 16) {
        // SAFETY: `chunk` is exactly 16 bytes, the width of one `u8x16` load.
        let v = unsafe { u8x16::from_slice_unaligned_unchecked(chunk) };
        let special =
            (v.eq(&u8x16::splat(b'"')) | v.eq(&u8x16::splat(b'\\')) | v.le(&u8x16::splat(0x1f)))
                .bitmask();
        if !special.all_zero() {
            return pos + special.first_offset();
        }
        pos += 16;
    }
    while let Some(&b) = src.get(pos) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        pos += 1;
    }
    pos
}

const EVEN_BITS: u64 = 0x5555_5555_5555_5555;

/// Bit i set ⇔ an odd number of bits at or below i are set in `x`: turns
/// quote positions into an "inside a string" mask.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The characters escaped by a backslash in this block (simdjson's odd-run
/// rule), carrying a trailing escape into the next block.
#[inline(always)]
fn escaped_chars(backslash: u64, carry: &mut u64) -> u64 {
    if backslash == 0 && *carry == 0 {
        return 0;
    }
    let backslash = backslash & !*carry;
    let follows_escape = (backslash << 1) | *carry;
    let odd_starts = backslash & !EVEN_BITS & !follows_escape;
    let (seq_on_even, overflow) = odd_starts.overflowing_add(backslash);
    *carry = u64::from(overflow);
    (EVEN_BITS ^ (seq_on_even << 1)) & follows_escape
}

/// Where one 64-byte block holds the bytes that matter to skipping: bit i
/// stands for byte i.
struct Masks {
    quote: u64,
    backslash: u64,
    /// `{` or `[`.
    open: u64,
    /// `}` or `]`.
    close: u64,
}

/// The masks with `sonic-simd`'s portable vectors (SSE2 on baseline x86-64,
/// NEON on aarch64).
#[inline(always)]
fn masks_portable(chunk: &[u8; 64]) -> Masks {
    // SAFETY: `chunk` is exactly 64 bytes, the width of one `u8x64` load.
    let v = unsafe { u8x64::from_slice_unaligned_unchecked(chunk) };
    let eq = |b: u8| v.eq(&u8x64::splat(b));
    Masks {
        quote: eq(b'"').bitmask(),
        backslash: eq(b'\\').bitmask(),
        open: (eq(b'{') | eq(b'[')).bitmask(),
        close: (eq(b'}') | eq(b']')).bitmask(),
    }
}

/// The masks with AVX2: half the vector instructions of the SSE2 baseline.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn masks_avx2(chunk: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8,
    };
    let (lo, hi) = chunk.split_at(32);
    // SAFETY: each half is 32 bytes, the width of one unaligned 256-bit load.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_si256(lo.as_ptr().cast::<__m256i>()),
            _mm256_loadu_si256(hi.as_ptr().cast::<__m256i>()),
        )
    };
    let eq = |v: __m256i, b: u8| _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b as i8));
    let either = |v: __m256i, a: u8, b: u8| _mm256_or_si256(eq(v, a), eq(v, b));
    let bits = |lo: __m256i, hi: __m256i| {
        u64::from(_mm256_movemask_epi8(lo) as u32)
            | (u64::from(_mm256_movemask_epi8(hi) as u32) << 32)
    };
    Masks {
        quote: bits(eq(lo, b'"'), eq(hi, b'"')),
        backslash: bits(eq(lo, b'\\'), eq(hi, b'\\')),
        open: bits(either(lo, b'{', b'['), either(hi, b'{', b'[')),
        close: bits(either(lo, b'}', b']'), either(hi, b'}', b']')),
    }
}

/// From `pos`, just inside an object or array (outside any string, at depth
/// one), the offset just past the bracket that closes it; `None` if the input
/// ends first. Brackets inside strings are ignored; `{`/`[` and `}`/`]` are
/// counted together, so the pairing of kinds is not checked (the callers
/// check the container's own closing bracket).
pub(super) fn skip_container(src: &[u8], pos: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { skip_container_avx2(src, pos) };
    }
    skip_blocks(src, pos, masks_portable)
}

/// [`skip_container`] compiled for AVX2, so that [`masks_avx2`] inlines.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn skip_container_avx2(src: &[u8], pos: usize) -> Option<usize> {
    skip_blocks(src, pos, |chunk| masks_avx2(chunk))
}

/// The block loop shared by both mask implementations.
#[inline(always)]
fn skip_blocks(src: &[u8], mut pos: usize, masks: impl Fn(&[u8; 64]) -> Masks) -> Option<usize> {
    let mut depth: u32 = 1;
    let mut escape_carry = 0u64;
    let mut in_string = 0u64;
    let mut tail = [0u8; 64];
    loop {
        let chunk: &[u8; 64] = match src.get(pos..pos + 64) {
            Some(c) => c.try_into().ok()?,
            None => {
                let rest = src.get(pos..).filter(|r| !r.is_empty())?;
                tail.get_mut(..rest.len())?.copy_from_slice(rest);
                &tail
            }
        };
        let m = masks(chunk);
        let escaped = escaped_chars(m.backslash, &mut escape_carry);
        let strings = prefix_xor(m.quote & !escaped) ^ in_string;
        in_string = ((strings as i64) >> 63) as u64;
        let close = m.close & !strings;
        let mut brackets = (m.open | close) & !strings;
        // Walk the brackets in order: depth can only reach zero at a close.
        while brackets != 0 {
            let bit = brackets & brackets.wrapping_neg();
            // Branch-free: +1 for an open, -1 for a close.
            depth = (depth + 1) - 2 * u32::from(close & bit != 0);
            if depth == 0 {
                return Some(pos + bit.trailing_zeros() as usize + 1);
            }
            brackets ^= bit;
        }
        if src.len() <= pos + 64 {
            return None;
        }
        pos += 64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end found by the dispatched skipper, checked against the portable one.
    fn end_of(json: &str) -> Option<usize> {
        let end = skip_container(json.as_bytes(), 1);
        assert_eq!(
            end,
            skip_blocks(json.as_bytes(), 1, masks_portable),
            "{json}"
        );
        end
    }

    #[test]
    fn skip_finds_the_matching_bracket_past_strings_and_escapes() {
        // GIVEN containers whose strings hold brackets, quotes and backslashes
        for json in [
            r#"{}"#,
            r#"{"a":"}"}"#,
            r#"{"a":"\"}"}"#,
            r#"{"a":"\\"}"#,
            r#"{"a":"\\\"}"}"#,
            r#"[[],{"x":[1,2,{"y":"]"}]}]"#,
        ] {
            // WHEN skipped followed by more text THEN it ends at its own close
            let padded = format!("{json}, \"after\": {{}} }}");
            assert_eq!(end_of(&padded), Some(json.len()), "{json}");
        }
    }

    #[test]
    fn skip_carries_strings_and_escapes_across_64_byte_blocks() {
        // GIVEN a string and escape run straddling each block boundary
        for pad in 0..140 {
            let json = format!(
                r#"{{"k":"{}\\\\\"}}{}","n":[{{}}]}}"#,
                "x".repeat(pad),
                "]".repeat(pad % 7)
            );
            let padded = format!("{json}}}]]");
            // WHEN skipped THEN the end is exact whatever the alignment
            assert_eq!(end_of(&padded), Some(json.len()), "pad {pad}");
        }
    }

    #[test]
    fn skip_reports_an_unclosed_container() {
        assert_eq!(end_of(r#"{"a":{"b":1}"#), None);
        assert_eq!(end_of(r#"{"a":"}}}}"#), None);
        assert_eq!(end_of(&format!("[{}", "1,".repeat(100))), None);
    }

    #[test]
    fn strings_decode_escapes_and_borrow_when_plain() {
        let mut c = Cursor::new(r#""plain" "a\"b\\c\/\n\u00e9\ud83d\ude00""#);
        assert!(matches!(c.string(), Ok(Cow::Borrowed("plain"))));
        assert_eq!(c.string().unwrap(), "a\"b\\c/\né😀");
        for bad in [
            r#""\x""#,
            r#""\ud83d""#,
            r#""\u12"#,
            "\"a\u{1}\"",
            r#""open"#,
        ] {
            assert!(Cursor::new(bad).string().is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_follow_the_json_grammar() {
        assert_eq!(Cursor::new("1721954070").integer(), Ok(Some(1721954070)));
        assert_eq!(Cursor::new("-5").integer(), Ok(Some(-5)));
        assert_eq!(Cursor::new("1.5").integer(), Ok(None));
        assert_eq!(Cursor::new("1e3").integer(), Ok(None));
        assert_eq!(Cursor::new("99999999999999999999").integer(), Ok(None));
        assert_eq!(
            Cursor::new("-9223372036854775808").integer(),
            Ok(Some(i64::MIN))
        );
        assert_eq!(Cursor::new("9223372036854775808").integer(), Ok(None));
        for bad in ["-", "01x", "1.", "1e", "+1"] {
            let mut c = Cursor::new(bad);
            let ok = c.skip().is_ok() && c.at_end();
            assert!(!ok, "{bad}");
        }
    }
}

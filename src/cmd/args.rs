//! Argument parsing shared by every command, with Redis's rules and errors.

use super::error::CmdError;
use crate::keyspace::float::parse_double;
use crate::keyspace::value::parse_strict_i64;

pub type Arg = bytes::Bytes;

/// An integer argument (`ERR value is not an integer or out of range`).
pub fn int(a: &[u8]) -> Result<i64, CmdError> {
    parse_strict_i64(a).ok_or(CmdError::NotInteger)
}

/// A double argument (`ERR value is not a valid float`).
pub fn float(a: &[u8]) -> Result<f64, CmdError> {
    parse_double(a).ok_or(CmdError::NotFloat)
}

/// A blocking command's timeout in seconds, read as Redis 7.0 does: a long double
/// (strtold: decimal or hex, `inf`), times 1000, rounded up to whole milliseconds.
/// Returns milliseconds; 0 means block forever.
/// Errors: `ERR timeout is not a float or out of range`, `ERR timeout is negative`
/// (also for values whose milliseconds overflow a C long long, as Redis's cast does).
pub fn timeout_ms(a: &[u8]) -> Result<u64, CmdError> {
    let secs = parse_long_double(a)
        .ok_or_else(|| CmdError::other("ERR timeout is not a float or out of range"))?;
    let ms = (secs * 1000.0).ceil();
    // 2^63: the first value a C long long cannot hold (x86 turns it into LLONG_MIN).
    if !(ms < 9_223_372_036_854_775_808.0) || ms < 0.0 {
        return Err(CmdError::other("ERR timeout is negative"));
    }
    Ok(ms as u64)
}

/// Redis's `string2ld` approximated with a double: the whole string, no leading
/// space, not NaN, shorter than 5 KiB. A long double's wider exponent range is
/// kept where it matters for timeouts: a decimal that overflows a double counts as
/// huge, one that underflows it as tiny (not zero).
fn parse_long_double(a: &[u8]) -> Option<f64> {
    if a.is_empty() || a.len() >= 5 * 1024 || a[0].is_ascii_whitespace() {
        return None;
    }
    let text = std::str::from_utf8(a).ok()?;
    let (neg, body) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let sign = if neg { -1.0 } else { 1.0 };
    if body.len() > 2 && body[..2].eq_ignore_ascii_case("0x") {
        return parse_hex_float(&body[2..]).map(|v| sign * v);
    }
    if body.starts_with(['+', '-']) {
        return None;
    }
    let v: f64 = body.parse().ok()?;
    if v.is_nan() {
        return None;
    }
    let mantissa = body.split(['e', 'E']).next().unwrap_or("");
    let finite_text = mantissa.bytes().any(|c| c.is_ascii_digit());
    if v == 0.0 && mantissa.bytes().any(|c| (b'1'..=b'9').contains(&c)) {
        return Some(sign * f64::MIN_POSITIVE);
    }
    if v.is_infinite() && finite_text {
        return Some(sign * f64::MAX);
    }
    Some(sign * v)
}

/// strtold's hexadecimal form after `0x`: hex digits, an optional fraction and an
/// optional binary exponent `p[+-]digits`.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = match s.find(['p', 'P']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int_part, frac_part) = mant.split_once('.').unwrap_or((mant, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut v = 0.0f64;
    for c in int_part.chars() {
        v = v * 16.0 + c.to_digit(16)? as f64;
    }
    let mut scale = 1.0 / 16.0;
    for c in frac_part.chars() {
        v += c.to_digit(16)? as f64 * scale;
        scale /= 16.0;
    }
    if let Some(e) = exp {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let e: i32 = e.parse().unwrap_or(if e.starts_with('-') {
            i32::MIN
        } else {
            i32::MAX
        });
        v *= 2f64.powi(e);
    }
    Some(v)
}

/// Case-insensitive keyword match.
pub fn is(a: &[u8], word: &str) -> bool {
    a.eq_ignore_ascii_case(word.as_bytes())
}

/// Lowercased command or option name for error texts.
pub fn lower(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_lowercase()
}

/// Redis's stringmatchlen: glob-style matching with `* ? [...] [^...] \x`, optionally
/// case-insensitive.
pub fn glob_match(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    fn eq(a: u8, b: u8, nocase: bool) -> bool {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    }
    fn go(p: &[u8], s: &[u8], nocase: bool, depth: usize) -> bool {
        if depth > 1000 {
            return false;
        }
        let (mut pi, mut si) = (0, 0);
        while pi < p.len() {
            match p[pi] {
                b'*' => {
                    while pi + 1 < p.len() && p[pi + 1] == b'*' {
                        pi += 1;
                    }
                    if pi + 1 == p.len() {
                        return true;
                    }
                    for start in si..=s.len() {
                        if go(&p[pi + 1..], &s[start..], nocase, depth + 1) {
                            return true;
                        }
                    }
                    return false;
                }
                b'?' => {
                    if si >= s.len() {
                        return false;
                    }
                    si += 1;
                }
                b'[' => {
                    if si >= s.len() {
                        return false;
                    }
                    pi += 1;
                    let not = pi < p.len() && p[pi] == b'^';
                    if not {
                        pi += 1;
                    }
                    let mut matched = false;
                    loop {
                        if pi >= p.len() {
                            pi -= 1; // Redis treats an unterminated class as ending here
                            break;
                        }
                        if p[pi] == b'\\' && pi + 2 < p.len() {
                            pi += 1;
                            if p[pi] == s[si] {
                                matched = true;
                            }
                        } else if p[pi] == b']' {
                            break;
                        } else if pi + 2 < p.len() && p[pi + 1] == b'-' {
                            let (mut lo, mut hi) = (p[pi], p[pi + 2]);
                            let mut c = s[si];
                            if lo > hi {
                                std::mem::swap(&mut lo, &mut hi);
                            }
                            if nocase {
                                lo = lo.to_ascii_lowercase();
                                hi = hi.to_ascii_lowercase();
                                c = c.to_ascii_lowercase();
                            }
                            pi += 2;
                            if c >= lo && c <= hi {
                                matched = true;
                            }
                        } else if eq(p[pi], s[si], nocase) {
                            matched = true;
                        }
                        pi += 1;
                    }
                    if not {
                        matched = !matched;
                    }
                    if !matched {
                        return false;
                    }
                    si += 1;
                }
                b'\\' if pi + 1 < p.len() => {
                    pi += 1;
                    if si >= s.len() || !eq(p[pi], s[si], nocase) {
                        return false;
                    }
                    si += 1;
                }
                c => {
                    if si >= s.len() || !eq(c, s[si], nocase) {
                        return false;
                    }
                    si += 1;
                }
            }
            pi += 1;
        }
        si == s.len()
    }
    go(pattern, s, nocase, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*", b"anything", false));
        assert!(glob_match(b"h?llo", b"hello", false));
        assert!(glob_match(b"h*llo", b"heeeello", false));
        assert!(glob_match(b"h[ae]llo", b"hallo", false));
        assert!(!glob_match(b"h[^e]llo", b"hello", false));
        assert!(glob_match(b"h[a-b]llo", b"hbllo", false));
        assert!(glob_match(b"h\\*llo", b"h*llo", false));
        assert!(!glob_match(b"h\\*llo", b"hello", false));
        assert!(glob_match(b"MAXMEMORY*", b"maxmemory-policy", true));
        assert!(!glob_match(b"a*b", b"acd", false));
        assert!(glob_match(b"", b"", false));
    }
}

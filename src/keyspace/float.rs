//! Number formatting and parsing exactly as Redis 7.0 does it.
//!
//! Doubles (sorted-set scores, HRANDFIELD...) print with `d2string`: integers in
//! (-2^52, 2^52) as integers, everything else as `%.17g`. INCRBYFLOAT and
//! HINCRBYFLOAT compute in x87 80-bit `long double` and print with `%.17Lf`.

use rustc_apfloat::ieee::X87DoubleExtended;
use rustc_apfloat::{Float, Round, Status};

/// Redis 7.0 `d2string`.
pub fn format_double(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf".into() } else { "inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    if v > -4503599627370495.0 && v < 4503599627370496.0 && v == (v as i64) as f64 {
        return (v as i64).to_string();
    }
    format_g17(v)
}

/// C's `%.17g` for a finite, non-zero double.
pub fn format_g17(v: f64) -> String {
    const P: i32 = 17;
    let e = format!("{:.*e}", (P - 1) as usize, v);
    let (mantissa, exp) = e.split_once('e').expect("exponent form");
    let x: i32 = exp.parse().expect("exponent");
    if x >= -4 && x < P {
        let s = format!("{:.*}", (P - 1 - x) as usize, v);
        strip_fraction_zeros(s)
    } else {
        let m = strip_fraction_zeros(mantissa.to_string());
        format!("{m}e{}{:02}", if x < 0 { '-' } else { '+' }, x.abs())
    }
}

fn strip_fraction_zeros(mut s: String) -> String {
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

/// Redis's `getDoubleFromObject` (strtod with its checks): no leading space, the
/// whole string consumed, no overflow to ±inf or underflow to 0, not NaN.
/// `inf`, `+inf`, `-inf`, `infinity` are accepted.
pub fn parse_double(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    if text.is_empty() || text.as_bytes()[0].is_ascii_whitespace() {
        return None;
    }
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Some(if text.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if lower.starts_with("nan") || lower.starts_with("inf") || body.starts_with(['+', '-']) {
        return None;
    }
    // Rust's grammar is strtod's decimal grammar minus hex floats; reject what strtod
    // would reject or flag with ERANGE.
    if !body
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let v: f64 = text.parse().ok()?;
    if v.is_infinite() {
        return None; // overflow
    }
    if v == 0.0 && has_nonzero_digit(body) {
        return None; // underflow
    }
    Some(v)
}

fn has_nonzero_digit(s: &str) -> bool {
    let mantissa = s.split(['e', 'E']).next().unwrap_or("");
    mantissa.bytes().any(|c| (b'1'..=b'9').contains(&c))
}

/// Why an increment of a long double failed (the caller words the error: INCRBYFLOAT
/// and HINCRBYFLOAT phrase a bad current value differently).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncrFloatError {
    /// The increment is not a valid float.
    IncrNotFloat,
    /// The stored value is not a valid float.
    CurrentNotFloat,
    /// The sum is NaN or infinite.
    NanOrInfinity,
}

/// Redis's INCRBYFLOAT arithmetic: parses `current` and `incr` as C `long double`
/// (x87 80-bit, `strtold` with Redis's `string2ld` checks), adds them and formats the
/// sum like `ld2string(..., LD_STR_HUMAN)` (`%.17Lf`, trailing zeros stripped, "-0"
/// printed as "0"). The increment is checked first, as HINCRBYFLOAT does; INCRBYFLOAT
/// words both parse failures the same.
pub fn incr_long_double(current: &[u8], incr: &[u8]) -> Result<Vec<u8>, IncrFloatError> {
    let incr = parse_long_double(incr).ok_or(IncrFloatError::IncrNotFloat)?;
    let current = parse_long_double(current).ok_or(IncrFloatError::CurrentNotFloat)?;
    let sum = current.add_r(incr, Round::NearestTiesToEven).value;
    if sum.is_nan() || sum.is_infinite() {
        return Err(IncrFloatError::NanOrInfinity);
    }
    Ok(format_long_double(sum).into_bytes())
}

/// Redis's `string2ld`: `strtold` over the whole string (at most 5119 bytes), no
/// leading space, no overflow, no underflow to zero, not NaN. Accepts what glibc's
/// `strtold` accepts: decimal and hexadecimal (`0x1.8p3`, exponent optional) forms,
/// `inf` and `infinity`.
pub fn parse_long_double(s: &[u8]) -> Option<X87DoubleExtended> {
    // MAX_LONG_DOUBLE_CHARS in Redis.
    if s.is_empty() || s.len() >= 5 * 1024 {
        return None;
    }
    let (neg, body) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let value = if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        X87DoubleExtended::INFINITY
    } else {
        let normalized = strtold_syntax(body)?;
        let parsed = X87DoubleExtended::from_str_r(&normalized, Round::NearestTiesToEven).ok()?;
        let v = parsed.value;
        // strtold flags these with ERANGE and Redis refuses them.
        if v.is_infinite() || (v.is_zero() && parsed.status.contains(Status::UNDERFLOW)) {
            return None;
        }
        v
    };
    Some(if neg { -value } else { value })
}

/// Checks an unsigned number against strtold's grammar and rewrites it in the form
/// rustc_apfloat parses (a hex float needs an explicit binary exponent there).
fn strtold_syntax(body: &[u8]) -> Option<String> {
    let (hex, digits) = match body {
        [b'0', b'x' | b'X', rest @ ..] => (true, rest),
        _ => (false, body),
    };
    let is_digit = |c: u8| {
        if hex {
            c.is_ascii_hexdigit()
        } else {
            c.is_ascii_digit()
        }
    };
    let mut i = 0;
    let mut any_digit = false;
    let mut dot = false;
    while i < digits.len() {
        let c = digits[i];
        if is_digit(c) {
            any_digit = true;
        } else if c == b'.' && !dot {
            dot = true;
        } else {
            break;
        }
        i += 1;
    }
    if !any_digit {
        return None;
    }
    let mantissa = std::str::from_utf8(&digits[..i]).ok()?;
    let rest = &digits[i..];
    let exponent = if rest.is_empty() {
        None
    } else {
        let marker = if hex { b'p' } else { b'e' };
        if !rest[0].eq_ignore_ascii_case(&marker) {
            return None;
        }
        let e = &rest[1..];
        let unsigned = e.strip_prefix(b"-").or(e.strip_prefix(b"+")).unwrap_or(e);
        if unsigned.is_empty() || !unsigned.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(std::str::from_utf8(e).ok()?)
    };
    Some(match (hex, exponent) {
        (true, e) => format!("0x{mantissa}p{}", e.unwrap_or("0")),
        (false, Some(e)) => format!("{mantissa}e{e}"),
        (false, None) => mantissa.to_string(),
    })
}

/// `%.17Lf` of a finite long double with trailing zeros (and a bare '.') removed and
/// "-0" turned into "0", as Redis's `ld2string` in `LD_STR_HUMAN` mode. The decimal
/// expansion is exact and rounds half to even on the exact binary value, like glibc.
pub fn format_long_double(v: X87DoubleExtended) -> String {
    let bits = v.to_bits();
    let negative = bits >> 79 & 1 == 1;
    let biased = (bits >> 64 & 0x7fff) as i32;
    let mantissa = bits as u64;
    // value = mantissa * 2^exp2; the integer bit is explicit, denormals use exponent 1.
    let exp2 = biased.max(1) - 16383 - 63;
    const SCALE: u128 = 100_000_000_000_000_000; // 10^17
    let (int_part, frac) = if mantissa == 0 {
        (String::from("0"), 0)
    } else if exp2 >= 0 {
        (shifted_decimal(mantissa, exp2 as u32), 0)
    } else {
        // mantissa * 10^17 < 2^121, so the scaled value fits in a u128.
        let scaled = mantissa as u128 * SCALE;
        let shift = (-exp2) as u32;
        let q = if shift >= 128 {
            0 // below half of the last place: scaled < 2^121 <= 2^(shift-1)
        } else {
            let q = scaled >> shift;
            let rem = scaled & ((1u128 << shift) - 1);
            let half = 1u128 << (shift - 1);
            if rem > half || (rem == half && q & 1 == 1) {
                q + 1
            } else {
                q
            }
        };
        ((q / SCALE).to_string(), q % SCALE)
    };
    let mut out = String::new();
    if negative && (int_part != "0" || frac != 0) {
        out.push('-');
    }
    out.push_str(&int_part);
    if frac != 0 {
        let digits = format!("{frac:017}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

/// The decimal digits of `m * 2^shift`.
fn shifted_decimal(m: u64, shift: u32) -> String {
    // Little-endian base-2^32 limbs of m << shift.
    let mut limbs = vec![0u32; (shift / 32) as usize];
    let wide = (m as u128) << (shift % 32);
    let mut w = wide;
    while w != 0 {
        limbs.push(w as u32);
        w >>= 32;
    }
    // Repeated division by 10^9 yields base-10^9 chunks, least significant first.
    const CHUNK: u64 = 1_000_000_000;
    let mut chunks = Vec::new();
    while !limbs.is_empty() {
        let mut rem = 0u64;
        for limb in limbs.iter_mut().rev() {
            let cur = (rem << 32) | *limb as u64;
            *limb = (cur / CHUNK) as u32;
            rem = cur % CHUNK;
        }
        chunks.push(rem as u32);
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
    }
    let mut out = chunks.pop().map(|c| c.to_string()).unwrap_or_default();
    for c in chunks.iter().rev() {
        out.push_str(&format!("{c:09}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(cur: &str, by: &str) -> Result<String, IncrFloatError> {
        incr_long_double(cur.as_bytes(), by.as_bytes()).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn incrbyfloat_matches_redis_7_0() {
        // (current, increment, reply) observed from redis-server 7.0.15.
        let cases = [
            ("0", "0.1", "0.1"),
            ("0.1", "0.2", "0.3"),
            ("0", "1e20", "100000000000000000000"),
            ("0", "1.5e-7", "0.00000015"),
            // An exact tie at the 18th decimal rounds to even.
            ("0", "0.000003814697265625", "0.00000381469726562"),
            ("0", "0.000003814697265635", "0.00000381469726563"),
            ("0x10", "1", "17"),
            ("0", "0x1p-3", "0.125"),
            ("0", "0x1.8", "1.5"),
            ("0", "0X1P+2", "4"),
            ("0", "1e-4940", "0"),
            ("0", "1e-4950", "0"),
            ("0", "-0", "0"),
            ("-0", "-0", "0"),
            ("0", "-1e-20", "0"),
            ("0", "1e-20", "0"),
            ("10.5", "0.1", "10.6"),
            ("5.0e3", "2.0e2", "5200"),
            ("0", ".5", "0.5"),
            ("0", "5.", "5"),
            ("0", "+5", "5"),
            ("0", "1.7976931348623157e308", "179769313486231569995921046774104434048386446944329178485314420765176628523124396354701868608387085564428793419425520689308708363451136055357897278026477617073498977686288394835618163294045594434929537447290627480669417384648879122776218333598953852832103282504751611691208117720159985926376802466863339536384"),
            ("1.1", "2.2", "3.3"),
            ("123456789012345678901234567890", "1", "123456789012345678899921813504"),
            ("0", "9223372036854775807", "9223372036854775807"),
            ("0", "-9223372036854775808", "-9223372036854775808"),
            ("0", "1e-17", "0.00000000000000001"),
            ("0", "5e-18", "0"),
            ("0", "1.5e-17", "0.00000000000000002"),
            ("0", "2.5e-17", "0.00000000000000002"),
            ("0", "0.123456789012345678901", "0.12345678901234568"),
            ("0", "1e17", "100000000000000000"),
            ("0", "12345.6789", "12345.67889999999999961"),
            ("0", "1E2", "100"),
            ("0", "0.1e-2", "0.001"),
            ("3", "-3", "0"),
            ("0", "1.1e-4945", "0"),
            ("0", "3.6e-4951", "0"),
            ("0", "99999999999999999999.5", "100000000000000000000"),
            ("0", "0.00000000000000000499999", "0"),
        ];
        for (cur, by, want) in cases {
            assert_eq!(incr(cur, by).as_deref(), Ok(want), "{cur} + {by}");
        }
        let huge = incr("0", "1e4000").unwrap();
        assert_eq!(huge.len(), 4000);
        assert!(huge.starts_with("99999999999999999999654638730996237849324925835069576313015"));
        assert!(huge.ends_with("2729951206648276349901340672"));
    }

    #[test]
    fn incrbyfloat_errors_match_redis() {
        use IncrFloatError::*;
        for bad in [
            "0x",
            "1e",
            " 1",
            "1 ",
            "nan",
            "1e5000",
            "1e-5000",
            "abc",
            "infinit",
            "1e+",
            "0x1p",
            "1.19e4932",
            "",
            "1.2.3",
            "--1",
            "0x1p1.5",
            "1\0",
        ] {
            assert_eq!(incr("0", bad), Err(IncrNotFloat), "{bad:?}");
            assert_eq!(incr(bad, "1"), Err(CurrentNotFloat), "{bad:?}");
        }
        assert_eq!(incr("nan", "x"), Err(IncrNotFloat));
        for inf in ["inf", "-inf", "infinity", "INF", "+Infinity"] {
            assert_eq!(incr("0", inf), Err(NanOrInfinity), "{inf}");
        }
        assert_eq!(incr("1.18e4932", "1.18e4932"), Err(NanOrInfinity));
        assert_eq!(incr("0", &"1".repeat(5120)), Err(IncrNotFloat));
    }

    #[test]
    fn d2string_matches_redis_7_0() {
        // Values observed from redis-server 7.0.15 (ZADD then ZRANGE WITHSCORES).
        assert_eq!(format_double(0.1), "0.10000000000000001");
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(1.5e-5), "1.5e-05");
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(
            format_double(123456789012345678.0),
            "1.2345678901234568e+17"
        );
        assert_eq!(format_double(1e21), "1e+21");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_double(-0.0), "-0");
        assert_eq!(format_double(-2.5), "-2.5");
        assert_eq!(format_double(4503599627370496.0), "4503599627370496");
        assert_eq!(format_double(0.0001), "0.0001");
        assert_eq!(format_double(0.00001), "1.0000000000000001e-05");
    }

    #[test]
    fn strtod_rules() {
        assert_eq!(parse_double(b"1.5"), Some(1.5));
        assert_eq!(parse_double(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_double(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_double(b"Infinity"), Some(f64::INFINITY));
        assert_eq!(parse_double(b".5"), Some(0.5));
        assert_eq!(parse_double(b"5."), Some(5.0));
        assert_eq!(parse_double(b"1e3"), Some(1000.0));
        assert_eq!(parse_double(b"0"), Some(0.0));
        assert_eq!(parse_double(b"0e10"), Some(0.0));
        for bad in [
            &b"nan"[..],
            b" 1",
            b"1 ",
            b"",
            b"abc",
            b"1e400",
            b"1e-400",
            b"--1",
            b"+-1",
            b"1.2.3",
            b"inf1",
        ] {
            assert_eq!(parse_double(bad), None, "{:?}", std::str::from_utf8(bad));
        }
    }
}

//! Typed values and the names Redis gives their types and encodings.

use super::slab_map::SlabMap;
use super::zset::ZSet;
use std::collections::VecDeque;

pub type Bytes = Box<[u8]>;

#[derive(Debug, PartialEq)]
pub enum Value {
    Str(Vec<u8>),
    List(Box<VecDeque<Bytes>>),
    Hash(Box<SlabMap<Bytes>>),
    Set(Box<SlabMap<()>>),
    ZSet(Box<ZSet>),
}

/// Redis's default thresholds for the compact encodings (redis.conf).
pub const HASH_MAX_LISTPACK_ENTRIES: usize = 128;
pub const HASH_MAX_LISTPACK_VALUE: usize = 64;
pub const SET_MAX_INTSET_ENTRIES: usize = 512;
pub const ZSET_MAX_LISTPACK_ENTRIES: usize = 128;
pub const ZSET_MAX_LISTPACK_VALUE: usize = 64;

impl Value {
    /// TYPE's answer.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
        }
    }

    /// OBJECT ENCODING's answer, as Redis 7.0 would give for the same contents.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(s) => {
                if s.len() <= 20 && parse_strict_i64(s).is_some() {
                    "int"
                } else if s.len() <= 44 {
                    "embstr"
                } else {
                    "raw"
                }
            }
            Value::List(_) => "quicklist",
            Value::Hash(h) => {
                if h.len() <= HASH_MAX_LISTPACK_ENTRIES
                    && h.iter().all(|(k, v)| {
                        k.len() <= HASH_MAX_LISTPACK_VALUE && v.len() <= HASH_MAX_LISTPACK_VALUE
                    })
                {
                    "listpack"
                } else {
                    "hashtable"
                }
            }
            Value::Set(s) => {
                if s.len() <= SET_MAX_INTSET_ENTRIES
                    && s.keys().all(|k| parse_strict_i64(k).is_some())
                {
                    "intset"
                } else {
                    "hashtable"
                }
            }
            Value::ZSet(z) => {
                // Redis converts a zset to a skiplist once and never back.
                if z.is_compact() {
                    "listpack"
                } else {
                    "skiplist"
                }
            }
        }
    }

    /// True when Redis would hold this value in a compact encoding, where *SCAN
    /// returns every element in one call.
    pub fn is_compact(&self) -> bool {
        matches!(self.encoding(), "listpack" | "intset" | "int" | "embstr")
    }

    /// Bytes this value occupies, approximately (MEMORY USAGE).
    pub fn memory_usage(&self) -> usize {
        const SLOT: usize = 40;
        match self {
            Value::Str(s) => s.capacity(),
            Value::List(l) => l.capacity() * 16 + l.iter().map(|e| e.len()).sum::<usize>(),
            Value::Hash(h) => {
                h.capacity_slots() * SLOT + h.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            }
            Value::Set(s) => s.capacity_slots() * SLOT + s.keys().map(|k| k.len()).sum::<usize>(),
            Value::ZSet(z) => z.memory_usage(),
        }
    }
}

/// Redis's `string2ll`: an optional '-', no leading zeros (except "0"), no spaces,
/// no '+', fits in i64.
pub fn parse_strict_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = if s[0] == b'-' {
        (true, &s[1..])
    } else {
        (false, s)
    };
    if digits.is_empty() || digits[0] == b'0' {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else if v > i64::MAX as u64 {
        None
    } else {
        Some(v as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_integers() {
        assert_eq!(parse_strict_i64(b"0"), Some(0));
        assert_eq!(parse_strict_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_strict_i64(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b"9223372036854775808"[..],
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"",
            b"-",
            b"1.0",
        ] {
            assert_eq!(
                parse_strict_i64(bad),
                None,
                "{:?}",
                std::str::from_utf8(bad)
            );
        }
    }
}

//! SLOWLOG: commands slower than slowlog-log-slower-than microseconds.

use bytes::Bytes;
use std::collections::VecDeque;

pub struct SlowEntry {
    pub id: u64,
    pub time: u64,
    pub usec: u64,
    pub args: Vec<Bytes>,
    pub addr: String,
    pub name: String,
}

#[derive(Default)]
pub struct SlowLog {
    pub entries: VecDeque<SlowEntry>,
    pub next_id: u64,
}

/// Redis keeps at most 32 arguments, each cut to 128 bytes.
const MAX_ARGS: usize = 32;
const MAX_ARG_LEN: usize = 128;

impl SlowLog {
    pub fn push(&mut self, usec: u64, args: &[Bytes], addr: String, name: String, max_len: usize) {
        let mut kept: Vec<Bytes> = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if i == MAX_ARGS - 1 && args.len() > MAX_ARGS {
                kept.push(Bytes::from(format!(
                    "... ({} more arguments)",
                    args.len() - MAX_ARGS + 1
                )));
                break;
            }
            if a.len() > MAX_ARG_LEN {
                let mut s = a[..MAX_ARG_LEN].to_vec();
                s.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - MAX_ARG_LEN).as_bytes(),
                );
                kept.push(Bytes::from(s));
            } else {
                kept.push(a.clone());
            }
        }
        let time = crate::shard::now_ms() / 1000;
        self.entries.push_front(SlowEntry {
            id: self.next_id,
            time,
            usec,
            args: kept,
            addr,
            name,
        });
        self.next_id += 1;
        self.entries.truncate(max_len);
    }
}

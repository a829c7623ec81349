//! One shard: the keyspace as a state machine fed by a write path.
//!
//! Today a shard has a single replica and its write path applies entries directly
//! (the next issue puts an openraft log in between, without changing this API):
//! every change to the keyspace, including expiry and eviction, is a
//! [`WriteEntry`] built here, stamped with the time and a random seed, and run
//! through [`cmd::apply`]. Reads run against the local keyspace.
//!
//! Callers hold the shard's lock for a whole command (or MULTI block), so a write,
//! the checks before it (WATCH) and the notifications after it are atomic.

use crate::cmd::{self, ApplyLimits};
use crate::keyspace::access::AccessConfig;
use crate::keyspace::evict::{choose_victim, EvictionPolicy, EvictionPool};
use crate::keyspace::memory::used_memory;
use crate::keyspace::rng::Rng;
use crate::keyspace::Keyspace;
use crate::resp::Reply;
use bytes::Bytes;
use proto::{Op, WriteEntry};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock unix milliseconds: the leader's clock, stamped into entries.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Settings of the write path that may change at run time (CONFIG SET).
#[derive(Clone, Copy, Debug)]
pub struct ShardSettings {
    pub maxmemory: u64,
    pub policy: EvictionPolicy,
    pub samples: u32,
    pub access: AccessConfig,
    pub limits: ApplyLimits,
}

impl Default for ShardSettings {
    fn default() -> Self {
        ShardSettings {
            maxmemory: 0,
            policy: EvictionPolicy::NoEviction,
            samples: 5,
            access: AccessConfig::default(),
            limits: ApplyLimits::default(),
        }
    }
}

pub struct Shard {
    state: Mutex<ShardState>,
}

pub struct ShardState {
    pub ks: Keyspace,
    settings: ShardSettings,
    seeds: Rng,
    pool: EvictionPool,
    /// Entries applied so far (the log index once there is a log).
    pub applied: u64,
}

/// The OOM refusal for a denyoom command under memory pressure.
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

impl Default for Shard {
    fn default() -> Self {
        Self::new()
    }
}

impl Shard {
    pub fn new() -> Shard {
        Shard {
            state: Mutex::new(ShardState {
                ks: Keyspace::new(),
                settings: ShardSettings::default(),
                seeds: Rng::new(Rng::local_seed()),
                pool: EvictionPool::new(),
                applied: 0,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, ShardState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One slow active-expire cycle (Redis's activeExpireCycle): sample keys with a
    /// TTL 20 at a time, delete the expired ones through the write path, go on while
    /// more than 10% of a sample was expired and the time budget lasts. The lock is
    /// taken per round, so clients are served between rounds.
    pub fn active_expire_cycle(&self, budget: Duration) -> usize {
        const KEYS_PER_LOOP: usize = 20;
        let start = Instant::now();
        let mut deleted = 0;
        loop {
            let mut st = self.lock();
            let now = now_ms();
            let sample = KEYS_PER_LOOP.min(st.ks.volatile_len());
            if sample == 0 {
                break;
            }
            let mut expired: Vec<Bytes> = Vec::new();
            let mut rng = Rng::new(st.seeds.next_u64());
            for _ in 0..sample {
                if let Some((k, e)) = st.ks.random_volatile(|| rng.next_u64()) {
                    if e.expire_at().is_some_and(|at| at <= now)
                        && !expired.iter().any(|x| x[..] == k[..])
                    {
                        expired.push(Bytes::copy_from_slice(k));
                    }
                }
            }
            let n = expired.len();
            if n > 0 {
                st.propose(Op::ExpireKeys(expired), now);
                deleted += n;
            }
            drop(st);
            if n * 100 / sample <= 10 || start.elapsed() >= budget {
                break;
            }
        }
        deleted
    }
}

impl ShardState {
    pub fn settings(&self) -> ShardSettings {
        self.settings
    }

    pub fn set_settings(&mut self, s: ShardSettings) {
        self.settings = s;
        self.ks.access_config = s.access;
    }

    /// The write path: stamps `now` and a fresh seed into an entry, applies it and
    /// returns apply's replies.
    pub fn propose(&mut self, op: Op, now: u64) -> Vec<Reply> {
        let entry = WriteEntry {
            time_ms: now,
            seed: self.seeds.next_u64(),
            op,
        };
        self.applied += 1;
        cmd::apply(&mut self.ks, &entry, self.settings.limits)
    }

    /// Runs commands (one, or a MULTI block) as one atomic entry.
    pub fn write(&mut self, cmds: Vec<Vec<Bytes>>, now: u64) -> Vec<Reply> {
        self.propose(Op::Exec(cmds), now)
    }

    /// Redis's performEvictions, run before a command when maxmemory is set: evicts
    /// through the write path until used memory is under the limit. Returns false if
    /// it could not get under (the caller refuses denyoom commands with OOM).
    pub fn make_room(&mut self, now: u64) -> bool {
        let s = self.settings;
        if s.maxmemory == 0 || used_memory() as u64 <= s.maxmemory {
            return true;
        }
        if s.policy == EvictionPolicy::NoEviction {
            return false;
        }
        let mut rng = Rng::new(self.seeds.next_u64());
        while used_memory() as u64 > s.maxmemory {
            let victim = choose_victim(
                &self.ks,
                &mut self.pool,
                s.policy,
                s.samples,
                &s.access,
                now,
                &mut rng,
            );
            match victim {
                Some(k) => {
                    self.propose(Op::EvictKeys(vec![Bytes::copy_from_slice(&k)]), now);
                }
                None => return false,
            }
        }
        true
    }
}

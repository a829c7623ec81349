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

pub mod migration;
pub mod net;
pub mod raft;
pub mod replica;

use crate::cmd::{self, ApplyLimits};
use crate::keyspace::access::AccessConfig;
use crate::keyspace::evict::{choose_victim, EvictionPolicy, EvictionPool};
use crate::keyspace::memory::used_memory;
use crate::keyspace::rng::Rng;
use crate::keyspace::Keyspace;
use crate::resp::Reply;
use bytes::Bytes;
use proto::{Op, WriteEntry};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The leader's clock, stamped into entries; injectable so TTL tests run on a manual
/// clock instead of sleeping.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    System,
    Manual(Arc<AtomicU64>),
    /// The system clock read once per batch of work (`refresh`), as Redis caches
    /// mstime once per event-loop iteration: every command of a pipeline sees the
    /// same time and no command pays for a clock read. Never goes backwards.
    Cached(Arc<AtomicU64>),
}

impl Clock {
    pub fn manual(start_ms: u64) -> Clock {
        Clock::Manual(Arc::new(AtomicU64::new(start_ms)))
    }

    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => now_ms(),
            Clock::Manual(t) | Clock::Cached(t) => t.load(Ordering::Relaxed),
        }
    }

    pub fn cached() -> Clock {
        Clock::Cached(Arc::new(AtomicU64::new(now_ms())))
    }

    /// Brings a cached clock up to the system time.
    pub fn refresh(&self) {
        if let Clock::Cached(t) = self {
            t.fetch_max(now_ms(), Ordering::Relaxed);
        }
    }

    /// Moves a manual clock forward (no effect on the system clock).
    pub fn advance(&self, ms: u64) {
        if let Clock::Manual(t) = self {
            t.fetch_add(ms, Ordering::SeqCst);
        }
    }
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
    clock: Clock,
    /// Bytes in use, compared with maxmemory: the process's counting allocator in
    /// production, a function of the keyspace in tests.
    memory: fn(&Keyspace) -> usize,
    settings: ShardSettings,
    seeds: Rng,
    pool: EvictionPool,
    /// Entries applied so far.
    pub applied: u64,
    /// The Raft position of the state: the last applied log id and membership (both
    /// part of a snapshot; empty for a shard without a log).
    pub raft_applied: Option<raft::LogId>,
    pub membership: raft::StoredMembership,
    /// The latest time stamped into an applied entry, and when (monotonic) this
    /// replica applied it. A new leader never stamps an older time; reads judge TTLs
    /// by a time never behind it plus the real time elapsed since, so a replica whose
    /// wall clock is slow does not show keys that expired meanwhile (found by the chaos
    /// suite's clock fault: jepsen/README.md, bugs found).
    log_time: u64,
    log_time_at: Option<Instant>,
    /// The slot migrations this shard takes part in: the slots it refuses and the
    /// steps applied (replicated; part of snapshots).
    pub migrations: migration::Migrations,
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
        Shard::with(Clock::System, |_| used_memory())
    }

    /// A shard on a given clock and memory gauge (tests inject both).
    pub fn with(clock: Clock, memory: fn(&Keyspace) -> usize) -> Shard {
        Shard {
            state: Mutex::new(ShardState {
                ks: Keyspace::new(),
                clock,
                memory,
                settings: ShardSettings::default(),
                seeds: Rng::new(Rng::local_seed()),
                pool: EvictionPool::new(),
                applied: 0,
                raft_applied: None,
                membership: Default::default(),
                log_time: 0,
                log_time_at: None,
                migrations: Default::default(),
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
        let start = Instant::now();
        let mut deleted = 0;
        loop {
            let mut st = self.lock();
            let (expired, sample) = st.expired_sample();
            let n = expired.len();
            if n > 0 {
                st.propose(Op::ExpireKeys(expired));
                deleted += n;
            }
            drop(st);
            if sample == 0 || n * 100 / sample <= 10 || start.elapsed() >= budget {
                break;
            }
        }
        deleted
    }
}

impl ShardState {
    /// One round of active expiry's sampling: up to 20 random keys with a TTL, and
    /// which of them are expired now. Returns (expired keys, sample size).
    pub fn expired_sample(&mut self) -> (Vec<Bytes>, usize) {
        const KEYS_PER_LOOP: usize = 20;
        let now = self.now();
        let sample = KEYS_PER_LOOP.min(self.ks.volatile_len());
        let mut expired: Vec<Bytes> = Vec::new();
        let mut rng = Rng::new(self.seeds.next_u64());
        for _ in 0..sample {
            if let Some((k, e)) = self.ks.random_volatile(|| rng.next_u64()) {
                if e.expire_at().is_some_and(|at| at < now)
                    && !expired.iter().any(|x| x[..] == k[..])
                {
                    expired.push(Bytes::copy_from_slice(k));
                }
            }
        }
        (expired, sample)
    }

    /// Eviction victims to bring used memory under maxmemory, chosen as Redis's
    /// performEvictions would, without deleting them (a replicated shard proposes
    /// them). Stops at `max` victims.
    pub fn choose_victims(&mut self, max: usize) -> Vec<Bytes> {
        let s = self.settings;
        let used = (self.memory)(&self.ks) as u64;
        if s.maxmemory == 0 || used <= s.maxmemory || s.policy == EvictionPolicy::NoEviction {
            return Vec::new();
        }
        let mut rng = Rng::new(self.seeds.next_u64());
        let now = self.now();
        let mut out: Vec<Bytes> = Vec::new();
        while out.len() < max {
            match choose_victim(
                &self.ks,
                &mut self.pool,
                s.policy,
                s.samples,
                &s.access,
                now,
                &mut rng,
            ) {
                Some(k) if !out.iter().any(|x| x[..] == k[..]) => {
                    out.push(Bytes::copy_from_slice(&k))
                }
                _ => break,
            }
        }
        out
    }

    /// Whether used memory is over maxmemory (0 = no limit).
    pub fn over_maxmemory(&self) -> bool {
        self.settings.maxmemory > 0 && (self.memory)(&self.ks) as u64 > self.settings.maxmemory
    }

    pub fn settings(&self) -> ShardSettings {
        self.settings
    }

    pub fn set_settings(&mut self, s: ShardSettings) {
        self.settings = s;
        self.ks.access_config = s.access;
    }

    /// The shard's time as reads judge TTLs by it: the local clock, but never behind
    /// the log's latest stamp plus the real time elapsed since it was applied here, so
    /// a replica whose clock is slow still sees keys expire. A manual clock (tests) is
    /// the only time source.
    pub fn now(&self) -> u64 {
        let chained = match (&self.clock, self.log_time_at) {
            (Clock::Manual(_), _) | (_, None) => self.log_time,
            (_, Some(at)) => self.log_time + at.elapsed().as_millis() as u64,
        };
        self.clock.now_ms().max(chained)
    }

    /// Brings a cached clock up to the system time (work that did not come from a
    /// client read batch, e.g. a forwarded write).
    pub fn refresh_clock(&self) {
        self.clock.refresh();
    }

    /// The write path: stamps the time and a fresh seed into an entry, applies it and
    /// returns apply's replies.
    pub fn propose(&mut self, op: Op) -> Vec<Reply> {
        self.propose_entry(op).0
    }

    fn propose_entry(&mut self, op: Op) -> (Vec<Reply>, WriteEntry) {
        let entry = self.stamp(op);
        let replies = self.apply(&entry);
        (replies, entry)
    }

    /// Makes an operation an entry: the leader's time and a fresh seed. The stamp is
    /// the leader's clock, never behind the log's latest stamp, but not carried
    /// forward from it (as reads are, `now`): a clock that ran ahead must not push
    /// every later stamp ahead for good, or any restart or pause afterwards (which
    /// re-anchors the log's time) would let keys outlive their deadlines.
    pub fn stamp(&mut self, op: Op) -> WriteEntry {
        WriteEntry {
            time_ms: self.clock.now_ms().max(self.log_time),
            seed: self.seeds.next_u64(),
            op,
        }
    }

    /// Applies an entry (on every replica, in log order): a pure function of the state
    /// and the entry.
    pub fn apply(&mut self, entry: &WriteEntry) -> Vec<Reply> {
        self.applied += 1;
        if entry.time_ms > self.log_time {
            self.log_time = entry.time_ms;
            self.log_time_at = Some(Instant::now());
        }
        match &entry.op {
            Op::Migrate(m) => return vec![self.migrations.apply(&mut self.ks, m, entry.time_ms)],
            // A transaction's keys share a slot: refused whole.
            Op::ExecWatched { cmds, .. } if self.migrations.refuses_any(cmds) => {
                return cmds
                    .iter()
                    .map(|_| Reply::error(migration::TRYAGAIN))
                    .collect();
            }
            // Merged batches of independent commands: each is refused or run on its
            // own, with the seed it would have had in the batch.
            Op::Exec(cmds) if self.migrations.refuses_any(cmds) => {
                return cmds
                    .iter()
                    .enumerate()
                    .map(|(i, argv)| {
                        if self.migrations.refuses_command(argv) {
                            return Reply::error(migration::TRYAGAIN);
                        }
                        let one = WriteEntry {
                            time_ms: entry.time_ms,
                            seed: cmd::command_seed(entry.seed, i),
                            op: Op::Exec(vec![argv.clone()]),
                        };
                        cmd::apply(&mut self.ks, &one, self.settings.limits)
                            .pop()
                            .unwrap_or(Reply::NilArray)
                    })
                    .collect();
            }
            _ => {}
        }
        cmd::apply(&mut self.ks, entry, self.settings.limits)
    }

    /// Runs commands (one, or a MULTI block) as one atomic entry.
    pub fn write(&mut self, cmds: Vec<Vec<Bytes>>) -> Vec<Reply> {
        self.propose(Op::Exec(cmds))
    }

    /// Runs one command as an entry and hands its arguments back, so the caller can
    /// still use them (slowlog, blocking) without copying them first.
    pub fn write_one(&mut self, args: Vec<Bytes>) -> (Reply, Vec<Bytes>) {
        let (mut replies, entry) = self.propose_entry(Op::Exec(vec![args]));
        let reply = replies.pop().expect("one reply per command");
        match entry.op {
            Op::Exec(mut cmds) => (reply, cmds.pop().expect("the command")),
            _ => unreachable!("an Exec entry stays an Exec entry"),
        }
    }

    /// Redis's performEvictions, run before a command when maxmemory is set: evicts
    /// through the write path until used memory is under the limit. Returns false if
    /// it could not get under (the caller refuses denyoom commands with OOM).
    pub fn make_room(&mut self) -> bool {
        let s = self.settings;
        let used = self.memory;
        if s.maxmemory == 0 || used(&self.ks) as u64 <= s.maxmemory {
            return true;
        }
        if s.policy == EvictionPolicy::NoEviction {
            return false;
        }
        let mut rng = Rng::new(self.seeds.next_u64());
        let now = self.now();
        while used(&self.ks) as u64 > s.maxmemory {
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
                    self.propose(Op::EvictKeys(vec![Bytes::copy_from_slice(&k)]));
                }
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_at(t: u64) -> (Shard, Clock) {
        let clock = Clock::manual(t);
        (Shard::with(clock.clone(), |ks| ks.len() * 100), clock)
    }

    use crate::cmd::testing::argv;

    #[test]
    fn cached_clock_moves_only_on_refresh_and_never_back() {
        let c = Clock::cached();
        let t0 = c.now_ms();
        assert!(t0 > 1_600_000_000_000, "starts at the system time");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now_ms(), t0, "no refresh, no change");
        c.refresh();
        assert!(c.now_ms() >= t0 + 5);
        if let Clock::Cached(t) = &c {
            t.store(u64::MAX - 1, Ordering::Relaxed); // a time ahead of the system clock
        }
        c.refresh();
        assert_eq!(
            c.now_ms(),
            u64::MAX - 1,
            "refresh never moves the clock back"
        );
    }

    /// A replica whose wall clock is 60 s slow serves a key until its deadline in the
    /// log's time, not 60 s longer (the chaos suite's clock fault found the longer).
    #[test]
    fn a_slow_clock_runs_on_from_the_logs_time() {
        let slow = now_ms() - 60_000;
        let clock = Clock::Cached(Arc::new(AtomicU64::new(slow)));
        let shard = Shard::with(clock, |_| 0);
        let mut st = shard.lock();
        let t = now_ms();
        let entry = WriteEntry {
            time_ms: t,
            seed: 1,
            op: Op::Exec(vec![argv(&["SET", "k", "v", "PX", "30"])]),
        };
        st.apply(&entry);
        assert!(st.now() >= t, "never behind the log's time");
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            st.now() >= t + 40,
            "runs on in real time from the log's time"
        );
        let now = st.now();
        assert!(
            !st.ks.exists(b"k", now),
            "the key's 30 ms have passed in the log's time"
        );
    }

    /// A stamp from a clock that ran ahead holds later stamps back until the clock
    /// catches up, but is not carried forward: otherwise the offset would stay in the
    /// log for good, and a replica re-anchoring the log's time after a restart or a
    /// pause would let keys outlive their deadlines (the chaos suite's long runs).
    #[test]
    fn a_fast_stamp_is_not_carried_forward_into_later_stamps() {
        let shard = Shard::with(Clock::cached(), |_| 0);
        let mut st = shard.lock();
        let ahead = now_ms() + 9_000;
        st.apply(&WriteEntry {
            time_ms: ahead,
            seed: 1,
            op: Op::Exec(vec![argv(&["SET", "a", "v"])]),
        });
        std::thread::sleep(Duration::from_millis(20));
        st.refresh_clock();
        let e = st.stamp(Op::Exec(vec![argv(&["SET", "b", "v"])]));
        assert_eq!(
            e.time_ms, ahead,
            "held at the log's latest stamp, not run on"
        );
        assert!(st.now() >= ahead + 20, "reads still run on from it");
    }

    #[test]
    fn active_expiry_deletes_through_the_write_path_on_a_manual_clock() {
        let (shard, clock) = shard_at(1_000_000);
        {
            let mut st = shard.lock();
            for i in 0..200 {
                let k = format!("k{i}");
                let cmd = if i % 2 == 0 {
                    argv(&["SET", &k, "v", "PX", "100"])
                } else {
                    argv(&["SET", &k, "v"])
                };
                st.write(vec![cmd]);
            }
            assert_eq!(st.ks.volatile_len(), 100);
        }
        // Nothing is due yet: a cycle deletes nothing.
        assert_eq!(shard.active_expire_cycle(Duration::from_secs(1)), 0);
        clock.advance(101);
        let applied_before = shard.lock().applied;
        let mut deleted = 0;
        for _ in 0..100 {
            deleted += shard.active_expire_cycle(Duration::from_secs(1));
            if shard.lock().ks.volatile_len() == 0 {
                break;
            }
        }
        let st = shard.lock();
        assert_eq!(deleted, 100);
        assert_eq!(st.ks.len(), 100);
        assert_eq!(
            st.ks
                .stats
                .expired_keys
                .load(std::sync::atomic::Ordering::Relaxed),
            100
        );
        assert!(
            st.applied > applied_before,
            "expiry went through the write path"
        );
    }

    #[test]
    fn eviction_gets_under_maxmemory_and_noeviction_refuses() {
        let (shard, _clock) = shard_at(5_000_000);
        let mut st = shard.lock();
        for i in 0..100 {
            st.write(vec![argv(&["SET", &format!("k{i}"), "v"])]);
        }
        let mut s = st.settings();
        s.maxmemory = 5_000; // the test gauge is 100 bytes a key
        s.policy = EvictionPolicy::NoEviction;
        st.set_settings(s);
        assert!(!st.make_room());
        assert_eq!(st.ks.len(), 100);
        for policy in [
            EvictionPolicy::AllKeysLru,
            EvictionPolicy::AllKeysLfu,
            EvictionPolicy::AllKeysRandom,
        ] {
            s.policy = policy;
            s.access.lfu = policy.is_lfu();
            st.set_settings(s);
            assert!(st.make_room(), "{policy:?}");
            assert_eq!(st.ks.len() as u64, s.maxmemory / 100, "{policy:?}");
            s.maxmemory = s.maxmemory * 8 / 10;
        }
        // volatile-*: only keys with a TTL may go; with none, eviction fails.
        s.policy = EvictionPolicy::VolatileLru;
        s.maxmemory = 100;
        st.set_settings(s);
        assert!(!st.make_room());
        assert_eq!(
            st.ks
                .stats
                .evicted_keys
                .load(std::sync::atomic::Ordering::Relaxed),
            50 + 10 + 8
        );
    }
}

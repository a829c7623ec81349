//! INFO [section ...]: Redis's sections and field names, so that tools that parse
//! INFO (redis-cli, exporters, client libraries) read shardis as a Redis. Fields with
//! no meaning here (fork, AOF, RDB) show the values of a Redis without persistence.

use super::super::Server;
use crate::keyspace::memory::{bytes_to_human, used_memory};
use crate::shard::now_ms;
use bytes::Bytes;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Sections in output order; `true` if shown by INFO without arguments.
const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("modules", true),
    ("commandstats", false),
    ("errorstats", true),
    ("cluster", true),
    ("raft", true),
    ("keyspace", true),
];

/// The sections an INFO call asks for, lowercased names in output order.
pub fn selected(args: &[Bytes]) -> Vec<&'static str> {
    let asked: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let has = |w: &str| asked.iter().any(|a| a == w);
    let all = has("all") || has("everything");
    let default = asked.is_empty() || has("default");
    SECTIONS
        .iter()
        .filter(|(name, in_default)| all || (default && *in_default) || has(name))
        .map(|(name, _)| *name)
        .collect()
}

/// INFO's text for the given arguments (after the command name).
pub fn info(server: &Server, args: &[Bytes]) -> String {
    let mut out = String::new();
    for section in selected(args) {
        let (title, body) = match section {
            "server" => ("Server", server_section(server)),
            "clients" => ("Clients", clients_section(server)),
            "memory" => ("Memory", memory_section(server)),
            "persistence" => ("Persistence", persistence_section(server)),
            "stats" => ("Stats", stats_section(server)),
            "replication" => ("Replication", replication_section(server)),
            "cpu" => ("CPU", cpu_section()),
            "modules" => ("Modules", Vec::new()),
            "commandstats" => ("Commandstats", commandstats_section(server)),
            "errorstats" => ("Errorstats", errorstats_section(server)),
            "cluster" => (
                "Cluster",
                vec![(
                    "cluster_enabled".into(),
                    u8::from(server.is_cluster()).to_string(),
                )],
            ),
            "raft" if !server.is_cluster() => continue,
            "raft" => ("Raft", raft_section(server)),
            _ => ("Keyspace", keyspace_section(server)),
        };
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let _ = write!(out, "# {title}\r\n");
        for (k, v) in body {
            let _ = write!(out, "{k}:{v}\r\n");
        }
    }
    out
}

type Fields = Vec<(String, String)>;

fn fields<const N: usize>(list: [(&str, String); N]) -> Fields {
    list.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Unix seconds at which the server started (also LASTSAVE: nothing was ever saved).
pub fn start_time_secs(server: &Server) -> u64 {
    (now_ms() / 1000).saturating_sub(server.started.elapsed().as_secs())
}

fn server_section(server: &Server) -> Fields {
    let c = server.config();
    let uptime = server.started.elapsed().as_secs();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let os = format!(
        "{} {} {}",
        capitalize(std::env::consts::OS),
        release.trim(),
        std::env::consts::ARCH
    );
    let now = now_ms();
    fields([
        ("redis_version", super::REDIS_VERSION.to_string()),
        ("redis_git_sha1", "00000000".into()),
        ("redis_git_dirty", "0".into()),
        ("redis_build_id", "0".into()),
        ("redis_mode", "standalone".into()),
        ("os", os),
        ("arch_bits", (usize::BITS).to_string()),
        ("monotonic_clock", "POSIX clock_gettime".into()),
        ("multiplexing_api", "epoll".into()),
        ("atomicvar_api", "c11-builtin".into()),
        ("gcc_version", "0.0.0".into()),
        ("process_id", std::process::id().to_string()),
        ("process_supervised", "no".into()),
        ("run_id", server.run_id.clone()),
        ("tcp_port", server.tcp_port.to_string()),
        (
            "server_time_usec",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros())
                .to_string(),
        ),
        ("uptime_in_seconds", uptime.to_string()),
        ("uptime_in_days", (uptime / 86400).to_string()),
        ("hz", c.hz.to_string()),
        ("configured_hz", c.hz.to_string()),
        // Redis's LRU clock: seconds, 24 bits.
        ("lru_clock", ((now / 1000) & ((1 << 24) - 1)).to_string()),
        (
            "executable",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("config_file", String::new()),
        ("io_threads_active", "0".into()),
    ])
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn clients_section(server: &Server) -> Fields {
    let all = server.clients.all();
    let (mut pubsub, mut watching, mut max_qbuf) = (0, 0, 0);
    for h in &all {
        let i = h.info.lock().unwrap();
        pubsub += i.is_pubsub() as usize;
        watching += (i.watch > 0) as usize;
        max_qbuf = max_qbuf.max(i.qbuf);
    }
    let (blocked, watched_keys) = {
        let w = server.waiters.lock().unwrap();
        (w.blocked_count(), w.watching_keys())
    };
    fields([
        ("connected_clients", all.len().to_string()),
        ("cluster_connections", "0".into()),
        ("maxclients", server.config().maxclients.to_string()),
        ("client_recent_max_input_buffer", max_qbuf.to_string()),
        ("client_recent_max_output_buffer", "0".into()),
        ("blocked_clients", blocked.to_string()),
        ("tracking_clients", "0".into()),
        ("pubsub_clients", pubsub.to_string()),
        ("watching_clients", watching.to_string()),
        ("clients_in_timeout_table", blocked.to_string()),
        ("total_watched_keys", watched_keys.to_string()),
        ("total_blocking_keys", "0".into()),
    ])
}

/// Resident set size from /proc (0 where there is none).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn total_system_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

fn memory_section(server: &Server) -> Fields {
    let used = used_memory() as u64;
    server.stats.track_memory_peak(used);
    let peak = server.stats.memory_peak.load(Ordering::Relaxed).max(1);
    let rss = rss_bytes();
    let total = total_system_memory();
    let c = server.config();
    fields([
        ("used_memory", used.to_string()),
        ("used_memory_human", bytes_to_human(used)),
        ("used_memory_rss", rss.to_string()),
        ("used_memory_rss_human", bytes_to_human(rss)),
        ("used_memory_peak", peak.to_string()),
        ("used_memory_peak_human", bytes_to_human(peak)),
        (
            "used_memory_peak_perc",
            format!("{:.2}%", used as f64 * 100.0 / peak as f64),
        ),
        ("total_system_memory", total.to_string()),
        ("total_system_memory_human", bytes_to_human(total)),
        ("maxmemory", c.maxmemory.to_string()),
        ("maxmemory_human", bytes_to_human(c.maxmemory)),
        ("maxmemory_policy", c.maxmemory_policy.name().to_string()),
        (
            "mem_fragmentation_ratio",
            format!("{:.2}", rss as f64 / used.max(1) as f64),
        ),
        (
            "mem_fragmentation_bytes",
            (rss as i64 - used as i64).to_string(),
        ),
        ("mem_not_counted_for_evict", "0".into()),
        ("mem_allocator", "jemalloc-5.3.0".into()),
        ("active_defrag_running", "0".into()),
        ("lazyfree_pending_objects", "0".into()),
        ("lazyfreed_objects", "0".into()),
    ])
}

fn persistence_section(server: &Server) -> Fields {
    fields([
        ("loading", "0".into()),
        ("async_loading", "0".into()),
        ("current_cow_peak", "0".into()),
        ("current_cow_size", "0".into()),
        ("current_cow_size_age", "0".into()),
        ("current_fork_perc", "0.00".into()),
        ("current_save_keys_processed", "0".into()),
        ("current_save_keys_total", "0".into()),
        ("rdb_changes_since_last_save", "0".into()),
        ("rdb_bgsave_in_progress", "0".into()),
        ("rdb_last_save_time", start_time_secs(server).to_string()),
        ("rdb_last_bgsave_status", "ok".into()),
        ("rdb_last_bgsave_time_sec", "-1".into()),
        ("rdb_current_bgsave_time_sec", "-1".into()),
        ("rdb_saves", "0".into()),
        ("rdb_last_cow_size", "0".into()),
        ("rdb_last_load_keys_expired", "0".into()),
        ("rdb_last_load_keys_loaded", "0".into()),
        ("aof_enabled", "0".into()),
        ("aof_rewrite_in_progress", "0".into()),
        ("aof_rewrite_scheduled", "0".into()),
        ("aof_last_rewrite_time_sec", "-1".into()),
        ("aof_current_rewrite_time_sec", "-1".into()),
        ("aof_last_bgrewrite_status", "ok".into()),
        ("aof_rewrites", "0".into()),
        ("aof_rewrites_consecutive_failures", "0".into()),
        ("aof_last_write_status", "ok".into()),
        ("aof_last_cow_size", "0".into()),
        ("module_fork_in_progress", "0".into()),
        ("module_fork_last_cow_size", "0".into()),
    ])
}

fn stats_section(server: &Server) -> Fields {
    let s = &server.stats;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    let (expired, evicted, hits, misses) = {
        let mut sums = [0u64; 4];
        for h in server.hosted() {
            let st = h.shard.lock();
            let k = &st.ks.stats;
            for (sum, a) in sums.iter_mut().zip([
                &k.expired_keys,
                &k.evicted_keys,
                &k.keyspace_hits,
                &k.keyspace_misses,
            ]) {
                *sum += a.load(Ordering::Relaxed);
            }
        }
        let [e, v, h, m] = sums.map(|x| x.to_string());
        (e, v, h, m)
    };
    let ps = &server.pubsub;
    use super::super::pubsub::Kind;
    fields([
        ("total_connections_received", n(&s.connections_received)),
        ("total_commands_processed", n(&s.commands_processed)),
        ("instantaneous_ops_per_sec", "0".into()),
        ("total_net_input_bytes", n(&s.net_input_bytes)),
        ("total_net_output_bytes", n(&s.net_output_bytes)),
        ("total_net_repl_input_bytes", "0".into()),
        ("total_net_repl_output_bytes", "0".into()),
        ("instantaneous_input_kbps", "0.00".into()),
        ("instantaneous_output_kbps", "0.00".into()),
        ("instantaneous_input_repl_kbps", "0.00".into()),
        ("instantaneous_output_repl_kbps", "0.00".into()),
        ("rejected_connections", n(&s.rejected_connections)),
        ("sync_full", "0".into()),
        ("sync_partial_ok", "0".into()),
        ("sync_partial_err", "0".into()),
        ("expired_keys", expired),
        ("expired_stale_perc", "0.00".into()),
        ("expired_time_cap_reached_count", "0".into()),
        ("expire_cycle_cpu_milliseconds", "0".into()),
        ("evicted_keys", evicted),
        ("evicted_clients", "0".into()),
        ("total_eviction_exceeded_time", "0".into()),
        ("current_eviction_exceeded_time", "0".into()),
        ("keyspace_hits", hits),
        ("keyspace_misses", misses),
        (
            "pubsub_channels",
            ps.channels(Kind::Channel, None).len().to_string(),
        ),
        ("pubsub_patterns", ps.numpat().to_string()),
        (
            "pubsubshard_channels",
            ps.channels(Kind::Shard, None).len().to_string(),
        ),
        ("latest_fork_usec", "0".into()),
        ("total_forks", "0".into()),
        ("migrate_cached_sockets", "0".into()),
        ("slave_expires_tracked_keys", "0".into()),
        ("active_defrag_hits", "0".into()),
        ("active_defrag_misses", "0".into()),
        ("active_defrag_key_hits", "0".into()),
        ("active_defrag_key_misses", "0".into()),
        ("total_active_defrag_time", "0".into()),
        ("current_active_defrag_time", "0".into()),
        ("tracking_total_keys", "0".into()),
        ("tracking_total_items", "0".into()),
        ("tracking_total_prefixes", "0".into()),
        ("unexpected_error_replies", "0".into()),
        ("total_error_replies", n(&s.total_error_replies)),
        ("dump_payload_sanitizations", "0".into()),
        ("total_reads_processed", n(&s.commands_processed)),
        ("total_writes_processed", n(&s.commands_processed)),
        ("io_threaded_reads_processed", "0".into()),
        ("io_threaded_writes_processed", "0".into()),
    ])
}

/// Cluster mode: one line per hosted shard replica, `shard<id>:role=...,term=...`
/// (as Redis lists replicas as `slave0:ip=...`), the meta group's as `shard0`.
fn raft_section(server: &Server) -> Fields {
    let mut f = Vec::new();
    let hosted = server.hosted();
    let leads = hosted
        .iter()
        .filter(|h| h.replica.as_ref().is_some_and(|r| r.is_leader()))
        .count();
    f.push(("raft_shards".into(), hosted.len().to_string()));
    f.push(("raft_leaderships".into(), leads.to_string()));
    let line = |status: Vec<(String, String)>| {
        status
            .into_iter()
            .map(|(k, v)| format!("{}={v}", k.trim_start_matches("raft_")))
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Some(c) = server.cluster() {
        let meta = c.meta_status();
        if !meta.is_empty() {
            f.push(("shard0".into(), line(meta)));
        }
    }
    for h in &hosted {
        let Some(r) = &h.replica else { continue };
        f.push((format!("shard{}", h.id), line(r.status())));
    }
    f
}

fn replication_section(server: &Server) -> Fields {
    if server.is_cluster() {
        // Cluster mode: every node is a master of the shards it leads and a replica of
        // the others (per shard in the raft section, as CLUSTER NODES shows them).
        let hosted = server.hosted();
        let led: Vec<String> = hosted
            .iter()
            .filter(|h| h.replica.as_ref().is_some_and(|r| r.is_leader()))
            .map(|h| h.id.to_string())
            .collect();
        return fields([
            (
                "role",
                if led.is_empty() { "slave" } else { "master" }.into(),
            ),
            ("leader_of_shards", led.join(",")),
            (
                "replica_of_shards",
                hosted.len().saturating_sub(led.len()).to_string(),
            ),
        ]);
    }
    fields([
        ("role", "master".into()),
        ("connected_slaves", "0".into()),
        ("master_failover_state", "no-failover".into()),
        ("master_replid", server.run_id.clone()),
        ("master_replid2", "0".repeat(40)),
        ("master_repl_offset", "0".into()),
        ("second_repl_offset", "-1".into()),
        ("repl_backlog_active", "0".into()),
        ("repl_backlog_size", "1048576".into()),
        ("repl_backlog_first_byte_offset", "0".into()),
        ("repl_backlog_histlen", "0".into()),
    ])
}

/// (user, system, children user, children system) CPU seconds from a /proc stat
/// file, whose fields 14 to 17 count clock ticks (100 per second on Linux).
pub fn parse_proc_stat(text: &str) -> Option<[f64; 4]> {
    // The command name (field 2) may hold spaces; fields resume after its ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Option<f64> { Some(f.get(i)?.parse::<f64>().ok()? / 100.0) };
    // `rest` starts at field 3.
    Some([tick(11)?, tick(12)?, tick(13)?, tick(14)?])
}

fn cpu_section() -> Fields {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| parse_proc_stat(&t))
            .unwrap_or([0.0; 4])
    };
    let proc = read("/proc/self/stat");
    let main = read("/proc/thread-self/stat");
    let secs = |v: f64| format!("{v:.6}");
    fields([
        ("used_cpu_sys", secs(proc[1])),
        ("used_cpu_user", secs(proc[0])),
        ("used_cpu_sys_children", secs(proc[3])),
        ("used_cpu_user_children", secs(proc[2])),
        ("used_cpu_sys_main_thread", secs(main[1])),
        ("used_cpu_user_main_thread", secs(main[0])),
    ])
}

fn commandstats_section(server: &Server) -> Fields {
    let m = server.stats.commands.lock().unwrap();
    let mut names: Vec<&&str> = m.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let s = m[*name];
            let per_call = if s.calls == 0 {
                0.0
            } else {
                s.usec as f64 / s.calls as f64
            };
            (
                format!("cmdstat_{name}"),
                format!(
                    "calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}",
                    s.calls, s.usec, s.rejected_calls, s.failed_calls
                ),
            )
        })
        .collect()
}

fn errorstats_section(server: &Server) -> Fields {
    server
        .stats
        .errors
        .lock()
        .unwrap()
        .iter()
        .map(|(code, n)| (format!("errorstat_{code}"), format!("count={n}")))
        .collect()
}

fn keyspace_section(server: &Server) -> Fields {
    let (mut keys, mut expires) = (0, 0);
    for h in server.hosted() {
        let st = h.shard.lock();
        keys += st.ks.len();
        expires += st.ks.volatile_len();
    }
    if keys == 0 {
        return Vec::new();
    }
    vec![(
        "db0".into(),
        format!("keys={keys},expires={expires},avg_ttl=0"),
    )]
}

//! Server settings under their redis.conf names: parsed from a redis.conf-style file
//! and flags, read and changed with CONFIG GET / CONFIG SET.

use crate::cmd::args::glob_match;

pub use crate::keyspace::evict::EvictionPolicy;

#[derive(Clone, Debug)]
pub struct Config {
    pub port: u16,
    pub bind: Vec<String>,
    pub dir: String,
    pub maxmemory: u64,
    pub maxmemory_policy: EvictionPolicy,
    pub maxmemory_samples: u32,
    pub lfu_log_factor: u32,
    pub lfu_decay_time: u32,
    pub hz: u32,
    pub requirepass: String,
    pub maxclients: u32,
    pub timeout: u64,
    pub proto_max_bulk_len: u64,
    pub client_query_buffer_limit: u64,
    pub slowlog_log_slower_than: i64,
    pub slowlog_max_len: u64,
    pub loglevel: String,
    /// Threads serving connections (Redis's io-threads). 1, as in Redis, suits a
    /// machine that also runs the clients; raise it on a dedicated host.
    pub io_threads: u32,
    /// Cluster mode (a replicated shard) when non-zero: this node's Raft id.
    pub node_id: u64,
    /// The peer port (Raft traffic, forwarded requests); 0 picks a free one.
    pub peer_port: u16,
    /// The members of a new cluster, `id=host:port@peerport,...` (first start only;
    /// every initial member gets the same list, as etcd's initial-cluster).
    pub initial_cluster: String,
    /// Shards of a new cluster (0: twice the initial member count).
    pub shards: u64,
    /// Replicas per shard (fewer when the cluster has fewer nodes).
    pub replicas: u64,
    /// The client address other nodes and clients are told (`-MOVED`); defaults to
    /// the first bind address and the port.
    pub advertise_addr: String,
    /// The peer address other nodes dial; defaults to the first bind address and the
    /// peer port.
    pub peer_advertise_addr: String,
    /// Peers must prove they know this secret (empty: no check).
    pub cluster_secret: String,
    /// When a write is acknowledged: `always` (durable on a majority), `everysec`, `no`.
    pub appendfsync: String,
    /// Raft election timeout in milliseconds (randomized between it and twice it).
    pub election_timeout: u64,
    /// Raft heartbeat interval in milliseconds.
    pub heartbeat_interval: u64,
    /// `readindex` (default) or `lease`: how the leader proves a read linearizable.
    pub read_mode: String,
    /// `forward` (default): a node runs a command for a shard it does not lead by
    /// forwarding it; `redirect`: it answers `-MOVED slot leader` (cluster-aware
    /// clients).
    pub follower_mode: String,
    /// Log entries between snapshots.
    pub snapshot_entries: u64,
    /// A running node's client address (`host:port`): a node with no cluster yet asks
    /// it to be added (membership).
    pub join: String,
    /// Move shard replicas to nodes that join (and off nodes that leave) on its own;
    /// `no`: only on `shardis admin rebalance` (leaving nodes are always drained).
    pub auto_rebalance: bool,
    /// Bytes a second a shard leader sends a replica it is adding (a replica move's
    /// catch-up), so moves do not crowd out clients; 0: unpaced.
    pub rebalance_rate: u64,
    /// Bytes a second the bulk copy of a slot migration sends; 0: unpaced.
    pub migration_rate: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 6379,
            bind: vec!["127.0.0.1".into()],
            dir: ".".into(),
            maxmemory: 0,
            maxmemory_policy: EvictionPolicy::NoEviction,
            maxmemory_samples: 5,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
            hz: 10,
            requirepass: String::new(),
            maxclients: 10000,
            timeout: 0,
            proto_max_bulk_len: 512 * 1024 * 1024,
            client_query_buffer_limit: 1024 * 1024 * 1024,
            slowlog_log_slower_than: 10000,
            slowlog_max_len: 128,
            loglevel: "notice".into(),
            io_threads: 1,
            node_id: 0,
            peer_port: 0,
            initial_cluster: String::new(),
            shards: 0,
            replicas: 3,
            advertise_addr: String::new(),
            peer_advertise_addr: String::new(),
            cluster_secret: String::new(),
            appendfsync: "always".into(),
            election_timeout: 200,
            heartbeat_interval: 50,
            read_mode: "readindex".into(),
            follower_mode: "forward".into(),
            snapshot_entries: 100_000,
            join: String::new(),
            auto_rebalance: true,
            rebalance_rate: 8 * 1024 * 1024,
            migration_rate: 0,
        }
    }
}

/// Redis's `memtoull`: `100`, `1k` (1000), `1kb` (1024), `5mb`, `1gb`, case-insensitive.
pub fn parse_memory(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let units: [(&str, u64); 6] = [
        ("kb", 1024),
        ("mb", 1024 * 1024),
        ("gb", 1024 * 1024 * 1024),
        ("k", 1000),
        ("m", 1_000_000),
        ("g", 1_000_000_000),
    ];
    for (suffix, mul) in units {
        if let Some(num) = lower.strip_suffix(suffix) {
            return num.parse::<u64>().ok()?.checked_mul(mul);
        }
    }
    if let Some(num) = lower.strip_suffix('b') {
        return num.parse().ok();
    }
    lower.parse().ok()
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("argument must be 'yes' or 'no'".into()),
    }
}

type Getter = fn(&Config) -> String;
type Setter = fn(&mut Config, &str) -> Result<(), String>;

/// One setting: its redis.conf name, how to read it, how to change it.
pub struct Param {
    pub name: &'static str,
    pub get: Getter,
    pub set: Setter,
    /// Settable only at startup (file or flags), not by CONFIG SET.
    pub immutable: bool,
}

fn num<T: std::str::FromStr>(s: &str, min: i64, max: i64) -> Result<T, String> {
    let v: i64 = s
        .parse()
        .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
    if v < min || v > max {
        return Err(format!(
            "argument must be between {min} and {max} inclusive"
        ));
    }
    s.parse()
        .map_err(|_| "argument couldn't be parsed into an integer".to_string())
}

fn mem(s: &str) -> Result<u64, String> {
    parse_memory(s).ok_or_else(|| "argument must be a memory value".to_string())
}

pub static PARAMS: &[Param] = &[
    Param {
        name: "port",
        get: |c| c.port.to_string(),
        set: |c, v| Ok(c.port = num(v, 0, 65535)?),
        immutable: true,
    },
    Param {
        name: "bind",
        get: |c| c.bind.join(" "),
        set: |c, v| Ok(c.bind = v.split_whitespace().map(String::from).collect()),
        immutable: true,
    },
    Param {
        name: "dir",
        get: |c| c.dir.clone(),
        set: |c, v| Ok(c.dir = v.to_string()),
        immutable: true,
    },
    Param {
        name: "maxmemory",
        get: |c| c.maxmemory.to_string(),
        set: |c, v| Ok(c.maxmemory = mem(v)?),
        immutable: false,
    },
    Param {
        name: "maxmemory-policy",
        get: |c| c.maxmemory_policy.name().to_string(),
        set: |c, v| {
            c.maxmemory_policy = EvictionPolicy::parse(v).ok_or("argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction")?;
            Ok(())
        },
        immutable: false,
    },
    Param {
        name: "maxmemory-samples",
        get: |c| c.maxmemory_samples.to_string(),
        set: |c, v| Ok(c.maxmemory_samples = num(v, 1, 64)?),
        immutable: false,
    },
    Param {
        name: "lfu-log-factor",
        get: |c| c.lfu_log_factor.to_string(),
        set: |c, v| Ok(c.lfu_log_factor = num(v, 0, i32::MAX as i64)?),
        immutable: false,
    },
    Param {
        name: "lfu-decay-time",
        get: |c| c.lfu_decay_time.to_string(),
        set: |c, v| Ok(c.lfu_decay_time = num(v, 0, i32::MAX as i64)?),
        immutable: false,
    },
    Param {
        name: "hz",
        get: |c| c.hz.to_string(),
        set: |c, v| Ok(c.hz = num::<u32>(v, 0, i32::MAX as i64)?.clamp(1, 500)),
        immutable: false,
    },
    Param {
        name: "requirepass",
        get: |c| c.requirepass.clone(),
        set: |c, v| Ok(c.requirepass = v.to_string()),
        immutable: false,
    },
    Param {
        name: "maxclients",
        get: |c| c.maxclients.to_string(),
        set: |c, v| Ok(c.maxclients = num(v, 1, u32::MAX as i64)?),
        immutable: false,
    },
    Param {
        name: "timeout",
        get: |c| c.timeout.to_string(),
        set: |c, v| Ok(c.timeout = num(v, 0, i32::MAX as i64)?),
        immutable: false,
    },
    Param {
        name: "proto-max-bulk-len",
        get: |c| c.proto_max_bulk_len.to_string(),
        set: |c, v| {
            let n = mem(v)?;
            if n < 1024 * 1024 {
                return Err(
                    "argument must be between 1048576 and 9223372036854775807 inclusive".into(),
                );
            }
            c.proto_max_bulk_len = n;
            Ok(())
        },
        immutable: false,
    },
    Param {
        name: "client-query-buffer-limit",
        get: |c| c.client_query_buffer_limit.to_string(),
        set: |c, v| {
            let n = mem(v)?;
            if n < 1024 * 1024 {
                return Err(
                    "argument must be between 1048576 and 9223372036854775807 inclusive".into(),
                );
            }
            c.client_query_buffer_limit = n;
            Ok(())
        },
        immutable: false,
    },
    Param {
        name: "slowlog-log-slower-than",
        get: |c| c.slowlog_log_slower_than.to_string(),
        set: |c, v| Ok(c.slowlog_log_slower_than = num(v, -1, i64::MAX)?),
        immutable: false,
    },
    Param {
        name: "slowlog-max-len",
        get: |c| c.slowlog_max_len.to_string(),
        set: |c, v| Ok(c.slowlog_max_len = num(v, 0, i64::MAX)?),
        immutable: false,
    },
    Param {
        name: "loglevel",
        get: |c| c.loglevel.clone(),
        set: |c, v| {
            match v.to_ascii_lowercase().as_str() {
            l @ ("debug" | "verbose" | "notice" | "warning" | "nothing") => Ok(c.loglevel = l.to_string()),
            _ => Err("argument(s) must be one of the following: debug, verbose, notice, warning, nothing".into()),
        }
        },
        immutable: false,
    },
    Param {
        name: "daemonize",
        get: |_| "no".into(),
        set: |_, v| {
            if parse_bool(v)? {
                Err("daemonize is not supported; run under a supervisor".into())
            } else {
                Ok(())
            }
        },
        immutable: true,
    },
    Param {
        name: "io-threads",
        get: |c| c.io_threads.to_string(),
        set: |c, v| {
            c.io_threads = num(v, 1, 128)?;
            Ok(())
        },
        immutable: true,
    },
    // Persistence settings tools ask for (redis-benchmark reads `save` and
    // `appendonly`): a single node keeps data in memory only; the replicated log
    // arrives with the next milestone.
    Param {
        name: "save",
        get: |_| String::new(),
        set: |_, v| {
            if v.trim().is_empty() {
                Ok(())
            } else {
                Err("RDB snapshots are not supported".into())
            }
        },
        immutable: false,
    },
    Param {
        name: "appendonly",
        get: |_| "no".into(),
        set: |_, v| {
            if parse_bool(v)? {
                Err("the append only file is not supported".into())
            } else {
                Ok(())
            }
        },
        immutable: false,
    },
    Param {
        name: "node-id",
        get: |c| c.node_id.to_string(),
        set: |c, v| Ok(c.node_id = num(v, 0, i64::MAX)?),
        immutable: true,
    },
    Param {
        name: "peer-port",
        get: |c| c.peer_port.to_string(),
        set: |c, v| Ok(c.peer_port = num(v, 0, 65535)?),
        immutable: true,
    },
    Param {
        name: "initial-cluster",
        get: |c| c.initial_cluster.clone(),
        set: |c, v| {
            crate::router::parse_initial_cluster(v)
                .map_err(|e| format!("Invalid initial-cluster: {e}"))?;
            Ok(c.initial_cluster = v.trim().to_string())
        },
        immutable: true,
    },
    Param {
        name: "shards",
        get: |c| c.shards.to_string(),
        set: |c, v| Ok(c.shards = num(v, 0, proto::SLOTS as i64)?),
        immutable: true,
    },
    Param {
        name: "replicas",
        get: |c| c.replicas.to_string(),
        set: |c, v| Ok(c.replicas = num(v, 1, 7)?),
        immutable: true,
    },
    Param {
        name: "advertise-addr",
        get: |c| c.advertise_addr.clone(),
        set: |c, v| Ok(c.advertise_addr = v.trim().to_string()),
        immutable: true,
    },
    Param {
        name: "peer-advertise-addr",
        get: |c| c.peer_advertise_addr.clone(),
        set: |c, v| Ok(c.peer_advertise_addr = v.trim().to_string()),
        immutable: true,
    },
    Param {
        name: "cluster-secret",
        get: |c| {
            if c.cluster_secret.is_empty() {
                ""
            } else {
                "(set)"
            }
            .into()
        },
        set: |c, v| Ok(c.cluster_secret = v.to_string()),
        immutable: true,
    },
    Param {
        name: "appendfsync",
        get: |c| c.appendfsync.clone(),
        set: |c, v| match v.to_ascii_lowercase().as_str() {
            p @ ("always" | "everysec" | "no") => Ok(c.appendfsync = p.to_string()),
            _ => Err("argument(s) must be one of the following: always, everysec, no".into()),
        },
        immutable: true,
    },
    Param {
        name: "election-timeout",
        get: |c| c.election_timeout.to_string(),
        set: |c, v| Ok(c.election_timeout = num(v, 10, 600_000)?),
        immutable: true,
    },
    Param {
        name: "heartbeat-interval",
        get: |c| c.heartbeat_interval.to_string(),
        set: |c, v| Ok(c.heartbeat_interval = num(v, 1, 60_000)?),
        immutable: true,
    },
    Param {
        name: "read-mode",
        get: |c| c.read_mode.clone(),
        set: |c, v| match v.to_ascii_lowercase().as_str() {
            m @ ("readindex" | "lease") => Ok(c.read_mode = m.to_string()),
            _ => Err("argument(s) must be one of the following: readindex, lease".into()),
        },
        immutable: true,
    },
    Param {
        name: "follower-mode",
        get: |c| c.follower_mode.clone(),
        set: |c, v| match v.to_ascii_lowercase().as_str() {
            m @ ("forward" | "redirect") => Ok(c.follower_mode = m.to_string()),
            _ => Err("argument(s) must be one of the following: forward, redirect".into()),
        },
        immutable: true,
    },
    Param {
        name: "join",
        get: |c| c.join.clone(),
        set: |c, v| Ok(c.join = v.trim().to_string()),
        immutable: true,
    },
    Param {
        name: "auto-rebalance",
        get: |c| {
            if c.auto_rebalance {
                "yes".into()
            } else {
                "no".into()
            }
        },
        set: |c, v| Ok(c.auto_rebalance = parse_bool(v)?),
        immutable: false,
    },
    Param {
        name: "rebalance-rate",
        get: |c| c.rebalance_rate.to_string(),
        set: |c, v| Ok(c.rebalance_rate = mem(v)?),
        immutable: false,
    },
    Param {
        name: "migration-rate",
        get: |c| c.migration_rate.to_string(),
        set: |c, v| Ok(c.migration_rate = mem(v)?),
        immutable: false,
    },
    Param {
        name: "snapshot-entries",
        get: |c| c.snapshot_entries.to_string(),
        set: |c, v| Ok(c.snapshot_entries = num(v, 1, i64::MAX)?),
        immutable: true,
    },
];

pub fn param(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

impl Config {
    /// CONFIG GET: (name, value) for every setting matching any of the glob patterns.
    pub fn get_matching(&self, patterns: &[&[u8]]) -> Vec<(&'static str, String)> {
        PARAMS
            .iter()
            .filter(|p| {
                patterns
                    .iter()
                    .any(|pat| glob_match(pat, p.name.as_bytes(), true))
            })
            .map(|p| (p.name, (p.get)(self)))
            .collect()
    }

    /// Sets one setting by name; `Err` carries Redis's reason text.
    pub fn set(&mut self, name: &str, value: &str, at_startup: bool) -> Result<(), String> {
        let p = param(name).ok_or_else(|| {
            format!("Unknown option or number of arguments for CONFIG SET - '{name}'")
        })?;
        if p.immutable && !at_startup {
            return Err("can't set immutable config".into());
        }
        (p.set)(self, value)
    }

    /// Reads a redis.conf-style file: `name value...` per line, `#` comments, quoted
    /// values allowed. Unknown names are errors, as in Redis.
    pub fn load_file(&mut self, text: &str) -> Result<(), String> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words = crate::resp::split_args(line.as_bytes())
                .ok_or_else(|| format!("line {}: unbalanced quotes", n + 1))?;
            let Some((name, values)) = words.split_first() else {
                continue;
            };
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            let value = values
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            self.set(&name, &value, true)
                .map_err(|e| format!("line {}: '{}': {e}", n + 1, line))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units_as_redis() {
        assert_eq!(parse_memory("100"), Some(100));
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("1kb"), Some(1024));
        assert_eq!(parse_memory("100mb"), Some(100 * 1024 * 1024));
        assert_eq!(parse_memory("1GB"), Some(1 << 30));
        assert_eq!(parse_memory("1x"), None);
        assert_eq!(parse_memory("-1"), None);
    }

    #[test]
    fn file_and_get_set() {
        let mut c = Config::default();
        c.load_file("# comment\nport 7000\nmaxmemory 100mb\nmaxmemory-policy allkeys-lru\nrequirepass \"a b\"\n").unwrap();
        assert_eq!(c.port, 7000);
        assert_eq!(c.maxmemory, 100 * 1024 * 1024);
        assert_eq!(c.requirepass, "a b");
        assert!(c.load_file("nosuch 1\n").is_err());
        let got = c.get_matching(&[b"maxmemory*"]);
        assert_eq!(got[0], ("maxmemory", "104857600".to_string()));
        assert_eq!(got.len(), 3);
        assert_eq!(
            c.set("port", "1", false),
            Err("can't set immutable config".into())
        );
        assert!(c.set("maxmemory-samples", "0", false).is_err());
    }
}

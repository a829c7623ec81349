//! Connection, server, transaction and pub/sub commands: their table entries. They
//! act on connections and the server, so the server layer runs them by name
//! (`Handler::Server`, see `server::commands`). Flags, ACL categories, tips, groups,
//! `since` and summaries are Redis 7's own, so that COMMAND answers as Redis does.

use super::table::{flags::*, CommandSpec, Handler, Keys};

/// A server-run command without keys.
const fn srv(
    name: &'static str,
    arity: i32,
    flags: u32,
    acl: &'static [&'static str],
    group: &'static str,
    since: &'static str,
    summary: &'static str,
) -> CommandSpec {
    CommandSpec {
        acl,
        group,
        since,
        summary,
        ..CommandSpec::new(name, arity, flags, Keys::NONE, Handler::Server)
    }
}

const CONN: &[&str] = &["fast", "connection"];
const TX: &[&str] = &["fast", "transaction"];
const PUBSUB_SLOW: &[&str] = &["pubsub", "slow"];
const ADMIN_SLOW: &[&str] = &["admin", "slow", "dangerous"];
const ADMIN_CONN: &[&str] = &["admin", "slow", "dangerous", "connection"];
const SLOW_CONN: &[&str] = &["slow", "connection"];
/// Flags shared by most connection-level commands.
const NSLS: u32 = NOSCRIPT | LOADING | STALE;

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        tips: &["request_policy:all_shards", "response_policy:all_succeeded"],
        ..srv("ping", -1, FAST, CONN, "connection", "1.0.0", "Ping the server")
    },
    srv("echo", 2, LOADING | STALE | FAST, CONN, "connection", "1.0.0", "Echo the given string"),
    srv("quit", -1, NSLS | FAST | NO_AUTH | ALLOW_BUSY, CONN, "connection", "1.0.0", "Close the connection"),
    srv("select", 2, LOADING | STALE | FAST, CONN, "connection", "1.0.0", "Change the selected database for the current connection"),
    srv("hello", -1, NSLS | FAST | NO_AUTH | ALLOW_BUSY, CONN, "connection", "6.0.0", "Handshake with Redis"),
    srv("auth", -2, NSLS | FAST | NO_AUTH | ALLOW_BUSY, CONN, "connection", "1.0.0", "Authenticate to the server"),
    srv("reset", 1, NSLS | FAST | NO_AUTH | ALLOW_BUSY, CONN, "connection", "6.2.0", "Reset the connection"),
    srv("multi", 1, NSLS | FAST | ALLOW_BUSY, TX, "transactions", "1.2.0", "Mark the start of a transaction block"),
    srv("exec", 1, NSLS | SKIP_SLOWLOG, &["slow", "transaction"], "transactions", "1.2.0", "Execute all commands issued after MULTI"),
    srv("discard", 1, NSLS | FAST | ALLOW_BUSY, TX, "transactions", "2.0.0", "Discard all commands issued after MULTI"),
    CommandSpec {
        keys: Keys::ALL,
        key_flags: &["RO"],
        ..srv("watch", -2, NSLS | FAST | ALLOW_BUSY, TX, "transactions", "2.2.0", "Watch the given keys to determine execution of the MULTI/EXEC block")
    },
    srv("unwatch", 1, NSLS | FAST | ALLOW_BUSY, TX, "transactions", "2.2.0", "Forget about all watched keys"),
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..srv("time", 1, LOADING | STALE | FAST, &["fast"], "server", "2.6.0", "Return the current server time")
    },
    srv("shutdown", -1, ADMIN | NSLS | NO_MULTI | ALLOW_BUSY, &["admin", "slow", "dangerous"], "server", "1.0.0", "Synchronously save the dataset to disk and then shut down the server"),
    CommandSpec {
        tips: &["request_policy:all_shards", "response_policy:agg_min"],
        ..srv("wait", 3, NOSCRIPT, SLOW_CONN, "generic", "3.0.0", "Wait for the synchronous replication of all the write commands sent in the context of the current connection")
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..srv("lastsave", 1, LOADING | STALE | FAST, &["admin", "fast", "dangerous"], "server", "1.0.0", "Get the UNIX time stamp of the last successful save to disk")
    },
    CommandSpec {
        tips: &["nondeterministic_output", "request_policy:all_shards", "response_policy:special"],
        ..srv("info", -1, LOADING | STALE, &["slow", "dangerous"], "server", "1.0.0", "Get information and statistics about the server")
    },
    srv("readonly", 1, LOADING | STALE | FAST, CONN, "cluster", "3.0.0", "Enables read queries for a connection to a cluster replica node"),
    srv("readwrite", 1, LOADING | STALE | FAST, CONN, "cluster", "3.0.0", "Disables read queries for a connection to a cluster replica node"),
    srv("asking", 1, FAST, CONN, "cluster", "3.0.0", "Sent by cluster clients after an -ASK redirect"),
    srv("shardis", -2, ADMIN | NO_MULTI, &["admin", "slow", "dangerous"], "cluster", "1.0.0", "shardis cluster administration: STATUS, PROGRESS, RESHARD, MOVE, SPLIT"),
    CommandSpec {
        subcommands: CLUSTER_SUBCOMMANDS,
        ..srv("cluster", -2, 0, &["slow"], "cluster", "3.0.0", "A container for cluster commands")
    },
    srv("subscribe", -2, PUBSUB | NSLS, PUBSUB_SLOW, "pubsub", "2.0.0", "Listen for messages published to the given channels"),
    srv("unsubscribe", -1, PUBSUB | NSLS, PUBSUB_SLOW, "pubsub", "2.0.0", "Stop listening for messages posted to the given channels"),
    srv("psubscribe", -2, PUBSUB | NSLS, PUBSUB_SLOW, "pubsub", "2.0.0", "Listen for messages published to channels matching the given patterns"),
    srv("punsubscribe", -1, PUBSUB | NSLS, PUBSUB_SLOW, "pubsub", "2.0.0", "Stop listening for messages posted to channels matching the given patterns"),
    CommandSpec {
        keys: Keys::ALL,
        key_flags: &["not_key"],
        ..srv("ssubscribe", -2, PUBSUB | NSLS, PUBSUB_SLOW, "pubsub", "7.0.0", "Listen for messages published to the given shard channels")
    },
    CommandSpec {
        keys: Keys::ALL,
        key_flags: &["not_key"],
        ..srv("sunsubscribe", -1, PUBSUB | NSLS, PUBSUB_SLOW, "pubsub", "7.0.0", "Stop listening for messages posted to the given shard channels")
    },
    srv("publish", 3, PUBSUB | LOADING | STALE | FAST, &["pubsub", "fast"], "pubsub", "2.0.0", "Post a message to a channel"),
    CommandSpec {
        keys: Keys::ONE,
        key_flags: &["not_key"],
        ..srv("spublish", 3, PUBSUB | LOADING | STALE | FAST, &["pubsub", "fast"], "pubsub", "7.0.0", "Post a message to a shard channel")
    },
    CommandSpec {
        subcommands: PUBSUB_SUBCOMMANDS,
        ..srv("pubsub", -2, 0, &["slow"], "pubsub", "2.8.0", "A container for Pub/Sub commands")
    },
    CommandSpec {
        subcommands: CLIENT_SUBCOMMANDS,
        ..srv("client", -2, 0, &["slow"], "connection", "2.4.0", "A container for client connection commands")
    },
    CommandSpec {
        subcommands: CONFIG_SUBCOMMANDS,
        ..srv("config", -2, 0, &["slow"], "server", "2.0.0", "A container for server configuration commands")
    },
    CommandSpec {
        subcommands: COMMAND_SUBCOMMANDS,
        tips: &["nondeterministic_output_order"],
        ..srv("command", -1, LOADING | STALE, SLOW_CONN, "server", "2.8.13", "Get array of Redis command details")
    },
    CommandSpec {
        subcommands: SLOWLOG_SUBCOMMANDS,
        ..srv("slowlog", -2, 0, &["slow"], "server", "2.2.12", "A container for slow log commands")
    },
];

static PUBSUB_SUBCOMMANDS: &[CommandSpec] = &[
    srv(
        "pubsub|channels",
        -2,
        PUBSUB | LOADING | STALE,
        PUBSUB_SLOW,
        "pubsub",
        "2.8.0",
        "List active channels",
    ),
    srv(
        "pubsub|numsub",
        -2,
        PUBSUB | LOADING | STALE,
        PUBSUB_SLOW,
        "pubsub",
        "2.8.0",
        "Get the count of subscribers for channels",
    ),
    srv(
        "pubsub|numpat",
        2,
        PUBSUB | LOADING | STALE,
        PUBSUB_SLOW,
        "pubsub",
        "2.8.0",
        "Get the count of unique patterns pattern subscriptions",
    ),
    srv(
        "pubsub|shardchannels",
        -2,
        PUBSUB | LOADING | STALE,
        PUBSUB_SLOW,
        "pubsub",
        "7.0.0",
        "List active shard channels",
    ),
    srv(
        "pubsub|shardnumsub",
        -2,
        PUBSUB | LOADING | STALE,
        PUBSUB_SLOW,
        "pubsub",
        "7.0.0",
        "Get the count of subscribers for shard channels",
    ),
    srv(
        "pubsub|help",
        2,
        LOADING | STALE,
        &["slow"],
        "pubsub",
        "6.2.0",
        "Show helpful text about the different subcommands",
    ),
];

static CLIENT_SUBCOMMANDS: &[CommandSpec] = &[
    srv("client|id", 2, NSLS, SLOW_CONN, "connection", "5.0.0", "Returns the client ID for the current connection"),
    srv("client|setname", 3, NSLS, SLOW_CONN, "connection", "2.6.9", "Set the current connection name"),
    srv("client|getname", 2, NSLS, SLOW_CONN, "connection", "2.6.9", "Get the current connection name"),
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..srv("client|list", -2, ADMIN | NSLS, ADMIN_CONN, "connection", "2.4.0", "Get the list of client connections")
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..srv("client|info", 2, NSLS, SLOW_CONN, "connection", "6.2.0", "Returns information about the current client connection.")
    },
    srv("client|kill", -3, ADMIN | NSLS, ADMIN_CONN, "connection", "2.4.0", "Kill the connection of a client"),
    srv("client|setinfo", -4, NSLS, SLOW_CONN, "connection", "7.2.0", "Set client or connection specific info"),
    srv("client|no-evict", 3, ADMIN | NSLS, ADMIN_CONN, "connection", "7.0.0", "Set client eviction mode for the current connection"),
    srv("client|no-touch", 3, NSLS, SLOW_CONN, "connection", "7.2.0", "Controls whether commands sent by the client will alter the LRU/LFU of the keys they access."),
    srv("client|reply", 3, NSLS, SLOW_CONN, "connection", "3.2.0", "Instruct the server whether to reply to commands"),
    srv("client|help", 2, LOADING | STALE, SLOW_CONN, "connection", "5.0.0", "Show helpful text about the different subcommands"),
];

static CONFIG_SUBCOMMANDS: &[CommandSpec] = &[
    srv(
        "config|get",
        -3,
        ADMIN | NSLS,
        ADMIN_SLOW,
        "server",
        "2.0.0",
        "Get the values of configuration parameters",
    ),
    CommandSpec {
        tips: &["request_policy:all_nodes", "response_policy:all_succeeded"],
        ..srv(
            "config|set",
            -4,
            ADMIN | NSLS,
            ADMIN_SLOW,
            "server",
            "2.0.0",
            "Set configuration parameters to the given values",
        )
    },
    srv(
        "config|resetstat",
        2,
        ADMIN | NSLS,
        ADMIN_SLOW,
        "server",
        "2.0.0",
        "Reset the stats returned by INFO",
    ),
    srv(
        "config|rewrite",
        2,
        ADMIN | NSLS,
        ADMIN_SLOW,
        "server",
        "2.8.0",
        "Rewrite the configuration file with the in memory configuration",
    ),
    srv(
        "config|help",
        2,
        LOADING | STALE,
        &["slow"],
        "server",
        "5.0.0",
        "Show helpful text about the different subcommands",
    ),
];

static COMMAND_SUBCOMMANDS: &[CommandSpec] = &[
    srv(
        "command|count",
        2,
        LOADING | STALE,
        SLOW_CONN,
        "server",
        "2.8.13",
        "Get total number of Redis commands",
    ),
    CommandSpec {
        tips: &["nondeterministic_output_order"],
        ..srv(
            "command|info",
            -2,
            LOADING | STALE,
            SLOW_CONN,
            "server",
            "2.8.13",
            "Get array of specific Redis command details, or all when no argument is given.",
        )
    },
    CommandSpec {
        tips: &["nondeterministic_output_order"],
        ..srv(
            "command|docs",
            -2,
            LOADING | STALE,
            SLOW_CONN,
            "server",
            "7.0.0",
            "Get array of specific Redis command documentation",
        )
    },
    CommandSpec {
        tips: &["nondeterministic_output_order"],
        ..srv(
            "command|list",
            -2,
            LOADING | STALE,
            SLOW_CONN,
            "server",
            "7.0.0",
            "Get an array of Redis command names",
        )
    },
    srv(
        "command|getkeys",
        -4,
        LOADING | STALE,
        SLOW_CONN,
        "server",
        "2.8.13",
        "Extract keys given a full Redis command",
    ),
    srv(
        "command|getkeysandflags",
        -4,
        LOADING | STALE,
        SLOW_CONN,
        "server",
        "7.0.0",
        "Extract keys and access flags given a full Redis command",
    ),
    srv(
        "command|help",
        2,
        LOADING | STALE,
        SLOW_CONN,
        "server",
        "5.0.0",
        "Show helpful text about the different subcommands",
    ),
];

static SLOWLOG_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        tips: &["request_policy:all_nodes", "nondeterministic_output"],
        ..srv(
            "slowlog|get",
            -2,
            ADMIN | LOADING | STALE,
            ADMIN_SLOW,
            "server",
            "2.2.12",
            "Get the slow log's entries",
        )
    },
    CommandSpec {
        tips: &[
            "request_policy:all_nodes",
            "response_policy:agg_sum",
            "nondeterministic_output",
        ],
        ..srv(
            "slowlog|len",
            2,
            ADMIN | LOADING | STALE,
            ADMIN_SLOW,
            "server",
            "2.2.12",
            "Get the slow log's length",
        )
    },
    CommandSpec {
        tips: &["request_policy:all_nodes", "response_policy:all_succeeded"],
        ..srv(
            "slowlog|reset",
            2,
            ADMIN | LOADING | STALE,
            ADMIN_SLOW,
            "server",
            "2.2.12",
            "Clear all entries from the slow log",
        )
    },
    srv(
        "slowlog|help",
        2,
        LOADING | STALE,
        &["slow"],
        "server",
        "6.2.0",
        "Show helpful text about the different subcommands",
    ),
];

/// The CLUSTER subcommands shardis answers (server::commands::cluster_cmd).
static CLUSTER_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..srv(
            "cluster|info",
            2,
            STALE,
            &["slow"],
            "cluster",
            "3.0.0",
            "Provides info about Redis Cluster node state",
        )
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..srv(
            "cluster|slots",
            2,
            STALE,
            &["slow"],
            "cluster",
            "3.0.0",
            "Get array of Cluster slot to node mappings",
        )
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..srv(
            "cluster|shards",
            2,
            STALE,
            &["slow"],
            "cluster",
            "7.0.0",
            "Get array of cluster slots to node mappings",
        )
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..srv(
            "cluster|nodes",
            2,
            STALE,
            &["slow"],
            "cluster",
            "3.0.0",
            "Get Cluster config for the node",
        )
    },
    srv(
        "cluster|myid",
        2,
        STALE,
        &["slow"],
        "cluster",
        "3.0.0",
        "Return the node id",
    ),
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..srv(
            "cluster|myshardid",
            2,
            STALE,
            &["slow"],
            "cluster",
            "7.2.0",
            "Returns the shard ID of a node",
        )
    },
    srv(
        "cluster|keyslot",
        3,
        STALE,
        &["slow"],
        "cluster",
        "3.0.0",
        "Returns the hash slot of the specified key",
    ),
    srv(
        "cluster|countkeysinslot",
        3,
        STALE,
        &["slow"],
        "cluster",
        "3.0.0",
        "Return the number of local keys in the specified hash slot",
    ),
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..srv(
            "cluster|getkeysinslot",
            4,
            STALE,
            &["slow"],
            "cluster",
            "3.0.0",
            "Return local key names in the specified hash slot",
        )
    },
    srv(
        "cluster|help",
        2,
        LOADING | STALE,
        &["slow"],
        "cluster",
        "5.0.0",
        "Show helpful text about the different subcommands",
    ),
];

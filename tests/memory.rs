//! Memory accounting and maxmemory against the real binary: used_memory tracks the
//! process's real heap, eviction keeps it under maxmemory, noeviction refuses writes
//! with Redis's OOM error.

mod common;

use common::{encode_cmd, Frame, RawConn, Server};

/// Sends `n` SETs in pipelined batches; returns the replies that were errors.
fn load(conn: &mut RawConn, n: usize, prefix: &str, value_len: usize) -> Vec<Frame> {
    let value = "x".repeat(value_len);
    let mut errors = Vec::new();
    let batch = 10_000;
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let mut buf = Vec::new();
        for j in i..end {
            buf.extend(encode_cmd(&[
                "SET",
                &format!("{prefix}:{j:07}"),
                &format!("{value}{j}"),
            ]));
        }
        conn.send_raw(&buf);
        for _ in i..end {
            let r = conn.read();
            if r.is_error() {
                errors.push(r);
            }
        }
        i = end;
    }
    errors
}

fn info_field(conn: &mut RawConn, section: &str, field: &str) -> u64 {
    let Frame::Bulk(text) = conn.cmd(&["INFO", section]) else {
        panic!("INFO {section} is not a bulk string")
    };
    let text = String::from_utf8(text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO {section} has no {field}:\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("INFO {field} is not a number"))
}

fn rss_bytes(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb * 1024
}

#[test]
fn used_memory_tracks_the_real_heap_for_a_million_small_keys() {
    let server = Server::shardis(&[]);
    let mut conn = RawConn::connect(server.port);
    let (rss0, used0) = (
        rss_bytes(server.pid()),
        info_field(&mut conn, "memory", "used_memory"),
    );
    assert!(load(&mut conn, 1_000_000, "key", 4).is_empty());
    assert_eq!(conn.cmd(&["DBSIZE"]), Frame::Int(1_000_000));
    let (rss1, used1) = (
        rss_bytes(server.pid()),
        info_field(&mut conn, "memory", "used_memory"),
    );
    let grew_used = used1 - used0;
    let grew_rss = rss1.saturating_sub(rss0);
    let ratio = grew_used as f64 / grew_rss as f64;
    println!("1M keys: used_memory grew {grew_used} B, RSS grew {grew_rss} B, ratio {ratio:.3}");
    assert!(
        (0.8..=1.2).contains(&ratio),
        "used_memory grew {grew_used} B but RSS grew {grew_rss} B (ratio {ratio:.3})"
    );
}

#[test]
fn eviction_keeps_used_memory_under_maxmemory() {
    for policy in ["allkeys-lru", "allkeys-lfu", "allkeys-random"] {
        let server = Server::shardis(&["--maxmemory", "8mb", "--maxmemory-policy", policy]);
        let mut conn = RawConn::connect(server.port);
        assert!(
            load(&mut conn, 200_000, "k", 40).is_empty(),
            "{policy}: writes refused"
        );
        let used = info_field(&mut conn, "memory", "used_memory");
        let evicted = info_field(&mut conn, "stats", "evicted_keys");
        let Frame::Int(keys) = conn.cmd(&["DBSIZE"]) else {
            panic!("DBSIZE")
        };
        println!("{policy}: used_memory {used}, evicted {evicted}, keys {keys}");
        assert!(evicted > 0, "{policy}: nothing was evicted");
        assert_eq!(
            evicted + keys as u64,
            200_000,
            "{policy}: keys lost other than by eviction"
        );
        // Between commands the limit may be passed by one command's worth.
        assert!(
            used <= 8 * 1024 * 1024 + 64 * 1024,
            "{policy}: used_memory {used} over maxmemory"
        );
    }
}

#[test]
fn noeviction_refuses_writes_with_oom_but_serves_reads_and_deletes() {
    let server = Server::shardis(&["--maxmemory", "4mb"]);
    let mut conn = RawConn::connect(server.port);
    let errors = load(&mut conn, 100_000, "k", 40);
    assert!(!errors.is_empty(), "no write was refused over maxmemory");
    assert!(errors
        .iter()
        .all(|e| *e == Frame::error("OOM command not allowed when used memory > 'maxmemory'.")));
    assert_eq!(
        conn.cmd(&["GET", "k:0000000"]),
        Frame::bulk(format!("{}0", "x".repeat(40)))
    );
    assert_eq!(conn.cmd(&["DEL", "k:0000000"]), Frame::Int(1));
    assert_eq!(info_field(&mut conn, "stats", "evicted_keys"), 0);
    // Raising the limit lets writes through again.
    assert_eq!(
        conn.cmd(&["CONFIG", "SET", "maxmemory", "0"]),
        Frame::simple("OK")
    );
    assert_eq!(conn.cmd(&["SET", "after", "1"]), Frame::simple("OK"));
}

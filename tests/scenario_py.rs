//! The redis-py application scenario (tests/scenario.py) against a real redis-server
//! (which checks the script itself) and then against shardis. Skipped with a notice
//! when python3 or redis-py is missing, unless `SHARDIS_REQUIRE_REDIS=1`.

mod common;

use common::Server;
use std::process::Command;

const NEEDS: &[&str] = &[
    "hello",
    "get",
    "set",
    "del",
    "ttl",
    "expire",
    "exists",
    "hset",
    "hget",
    "hgetall",
    "hincrby",
    "hdel",
    "hexists",
    "lpush",
    "brpop",
    "llen",
    "multi",
    "exec",
    "incr",
    "zadd",
    "zincrby",
    "zrevrange",
    "zrevrank",
    "zscore",
    "zcount",
    "zrangebyscore",
    "zrem",
    "zcard",
];

fn python_with_redis() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import redis"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if common::env_flag("SHARDIS_REQUIRE_REDIS") {
            panic!("python3 with the redis module is required (SHARDIS_REQUIRE_REDIS=1)");
        }
        eprintln!("SKIP: python3 or its redis module not found (pip install redis)");
    }
    ok
}

fn run_scenario(server: &Server) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scenario.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(server.port.to_string())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "scenario against {} failed:\n{}{}\n--- server output ---\n{}",
        server.kind,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.output()
    );
}

#[test]
fn redis_py_application_scenario() {
    if !python_with_redis() {
        return;
    }
    if let Some(redis) = Server::redis(&[]) {
        run_scenario(&redis);
    }
    if common::has_commands("redis_py_application_scenario", NEEDS) {
        run_scenario(&Server::shardis(&[]));
    }
}

//! The shardis binary as a client sees it: RESP2 and RESP3 through the `redis` crate,
//! pipelining, binary safety, inline commands, protocol errors, connection limits,
//! idle timeouts, AUTH, signals and config files. Every test runs its own process.

mod common;

use common::{Frame, Server};
use redis::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn nil_for(resp3: bool) -> Frame {
    if resp3 {
        Frame::Null
    } else {
        Frame::NilBulk
    }
}

fn basics(resp3: bool) {
    let s = Server::shardis(&[]);
    let mut con = s.client(resp3).get_connection().expect("connect");
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let v: Value = redis::cmd("PING").arg("hi").query(&mut con).unwrap();
    assert_eq!(v, Value::BulkString(b"hi".to_vec()));
    let v: Value = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    assert_eq!(v, Value::Okay);
    let v: Value = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, Value::BulkString(b"v".to_vec()));
    let v: Value = redis::cmd("GET").arg("missing").query(&mut con).unwrap();
    assert_eq!(v, Value::Nil);
    if common::has_commands("basics: ECHO", &["echo"]) {
        let v: Value = redis::cmd("ECHO").arg("").query(&mut con).unwrap();
        assert_eq!(v, Value::BulkString(Vec::new()));
    }
    // The same on the wire, frame types included.
    let mut raw = s.raw();
    if resp3 {
        let hello = raw.cmd(&["HELLO", "3"]);
        assert!(matches!(hello, Frame::Map(_)), "HELLO 3 gave {hello}");
    }
    assert_eq!(raw.cmd(&["GET", "missing"]), nil_for(resp3));
    assert_eq!(raw.cmd(&["SET", "k", "w", "GET"]), Frame::bulk("v"));
    assert_eq!(raw.cmd(&["ping"]), Frame::simple("PONG"));
}

#[test]
fn basics_resp2() {
    basics(false);
}

#[test]
fn basics_resp3() {
    if common::has_commands("basics_resp3", &["hello"]) {
        basics(true);
    }
}

#[test]
fn pipeline_of_10k_commands() {
    let s = Server::shardis(&[]);
    let mut con = s.client(false).get_connection().unwrap();
    let mut p = redis::pipe();
    for i in 0..5000 {
        p.cmd("SET").arg(format!("key:{i}")).arg(i);
        p.cmd("GET").arg(format!("key:{i}"));
    }
    let replies: Vec<Value> = p.query(&mut con).unwrap();
    assert_eq!(replies.len(), 10_000);
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(pair[0], Value::Okay, "SET #{i}");
        assert_eq!(pair[1], Value::BulkString(i.to_string().into_bytes()));
    }
    // One write carrying the whole pipeline: replies in order, none lost.
    let mut raw = s.raw();
    let mut req = Vec::new();
    for i in 0..10_000 {
        req.extend(common::encode_cmd(&["PING", &i.to_string()]));
    }
    raw.send_raw(&req);
    for i in 0..10_000 {
        assert_eq!(raw.read(), Frame::bulk(i.to_string()));
    }
}

#[test]
fn binary_safe_keys_and_values() {
    let s = Server::shardis(&[]);
    let mut raw = s.raw();
    let all: Vec<u8> = (0..=255u8).collect();
    assert_eq!(raw.cmd(&[&b"SET"[..], &all, &all]), Frame::simple("OK"));
    assert_eq!(raw.cmd(&[&b"GET"[..], &all]), Frame::Bulk(all.clone()));
    for b in 0..=255u8 {
        let key = [b'b', b];
        raw.send(&[&b"SET"[..], &key, &[b, b'\r', b'\n', b]]);
    }
    for _ in 0..=255u8 {
        assert_eq!(raw.read(), Frame::simple("OK"));
    }
    for b in 0..=255u8 {
        assert_eq!(
            raw.cmd(&[&b"GET"[..], &[b'b', b]]),
            Frame::Bulk(vec![b, b'\r', b'\n', b])
        );
    }
    assert_eq!(raw.cmd(&["SET", "", ""]), Frame::simple("OK"));
    assert_eq!(raw.cmd(&["GET", ""]), Frame::bulk(""));

    let big: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let mut con = s.client(false).get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut con)
        .unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg("big").query(&mut con).unwrap();
    assert!(got == big, "10 MB value came back different");
}

#[test]
fn inline_commands() {
    let s = Server::shardis(&[]);
    let mut raw = s.raw();
    raw.send_raw(b"PING\r\n");
    assert_eq!(raw.read(), Frame::simple("PONG"));
    raw.send_raw(b"SET a \"x y\"\r\n");
    assert_eq!(raw.read(), Frame::simple("OK"));
    raw.send_raw(b"GET a\n");
    assert_eq!(raw.read(), Frame::bulk("x y"));
    // Empty lines are skipped; escapes inside double quotes are decoded.
    raw.send_raw(b"\r\n\r\nSET 'b' \"\\x41\\n\"\r\nGET b\r\n");
    assert_eq!(raw.read(), Frame::simple("OK"));
    assert_eq!(raw.read(), Frame::bulk("A\n"));
    raw.send_raw(b"SET c \"unbalanced\r\n");
    assert_eq!(
        raw.read(),
        Frame::error("ERR Protocol error: unbalanced quotes in request")
    );
    assert!(raw.closed_within(Duration::from_secs(5)));
}

#[test]
fn protocol_error_closes_only_that_connection() {
    let s = Server::shardis(&[]);
    let mut other = s.raw();
    assert_eq!(other.cmd(&["SET", "k", "v"]), Frame::simple("OK"));
    let mut bad = s.raw();
    bad.send_raw(b"*abc\r\n");
    assert_eq!(
        bad.read(),
        Frame::error("ERR Protocol error: invalid multibulk length")
    );
    assert!(bad.closed_within(Duration::from_secs(5)), "still open");
    let mut bad2 = s.raw();
    bad2.send_raw(b"*1\r\n+PING\r\n");
    assert_eq!(
        bad2.read(),
        Frame::error("ERR Protocol error: expected '$', got '+'")
    );
    assert!(bad2.closed_within(Duration::from_secs(5)));
    assert_eq!(other.cmd(&["GET", "k"]), Frame::bulk("v"));
}

#[test]
fn unknown_command_and_wrong_arity_keep_the_connection() {
    let s = Server::shardis(&[]);
    let mut raw = s.raw();
    assert_eq!(
        raw.cmd(&["NOSUCH", "a", "b"]),
        Frame::error("ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' ")
    );
    assert_eq!(
        raw.cmd(&["nosuch"]),
        Frame::error("ERR unknown command 'nosuch', with args beginning with: ")
    );
    assert_eq!(
        raw.cmd(&["GET"]),
        Frame::error("ERR wrong number of arguments for 'get' command")
    );
    assert_eq!(
        raw.cmd(&["get", "a", "b"]),
        Frame::error("ERR wrong number of arguments for 'get' command")
    );
    assert_eq!(
        raw.cmd(&["SET", "k"]),
        Frame::error("ERR wrong number of arguments for 'set' command")
    );
    assert_eq!(raw.cmd(&["PING"]), Frame::simple("PONG"));
}

#[test]
fn max_clients_reached() {
    let s = Server::shardis(&["--maxclients", "2"]);
    // The readiness probe's connection may still be registered for a moment.
    std::thread::sleep(Duration::from_millis(200));
    let mut a = s.raw();
    let mut b = s.raw();
    assert_eq!(a.cmd(&["PING"]), Frame::simple("PONG"));
    assert_eq!(b.cmd(&["PING"]), Frame::simple("PONG"));
    let mut c = s.raw();
    assert_eq!(
        c.try_read().expect("an error line before the close"),
        Frame::error("ERR max number of clients reached")
    );
    assert!(c.closed_within(Duration::from_secs(5)));
    drop(a);
    // A slot frees once the server has seen the close.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = s.raw();
        d.send(&["PING"]);
        match d.try_read() {
            Ok(Frame::Simple(p)) if p == b"PONG" => break,
            other => assert!(
                std::time::Instant::now() < deadline,
                "no slot after a client left: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.cmd(&["PING"]), Frame::simple("PONG"));
}

#[test]
fn idle_clients_time_out() {
    let s = Server::shardis(&["--timeout", "1"]);
    let mut idle = s.raw();
    assert_eq!(idle.cmd(&["PING"]), Frame::simple("PONG"));
    // Redis closes a client idle for more than `timeout` seconds, checked by cron.
    assert!(
        idle.closed_within(Duration::from_secs(6)),
        "an idle client was not closed within 6 s with --timeout 1"
    );
    let mut fresh = s.raw();
    assert_eq!(fresh.cmd(&["PING"]), Frame::simple("PONG"));
}

#[test]
fn requirepass_and_auth() {
    let s = Server::shardis(&["--requirepass", "s3cret"]);
    let mut raw = s.raw();
    let noauth = Frame::error("NOAUTH Authentication required.");
    assert_eq!(raw.cmd(&["GET", "k"]), noauth);
    assert_eq!(raw.cmd(&["SET", "k", "v"]), noauth);
    assert_eq!(raw.cmd(&["PING"]), noauth);
    if !common::has_commands("requirepass_and_auth: AUTH", &["auth"]) {
        return;
    }
    let wrongpass = Frame::error("WRONGPASS invalid username-password pair or user is disabled.");
    assert_eq!(raw.cmd(&["AUTH", "nope"]), wrongpass);
    assert_eq!(raw.cmd(&["AUTH", "default", "nope"]), wrongpass);
    assert_eq!(raw.cmd(&["GET", "k"]), noauth);
    assert_eq!(raw.cmd(&["AUTH", "s3cret"]), Frame::simple("OK"));
    assert_eq!(raw.cmd(&["SET", "k", "v"]), Frame::simple("OK"));
    assert_eq!(raw.cmd(&["GET", "k"]), Frame::bulk("v"));
    let mut other = s.raw();
    assert_eq!(
        other.cmd(&["AUTH", "default", "s3cret"]),
        Frame::simple("OK")
    );
    assert_eq!(other.cmd(&["GET", "k"]), Frame::bulk("v"));
    // The redis crate authenticates from the URL.
    let client = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/", s.port)).unwrap();
    let mut con = client.get_connection().expect("connect with password");
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v");
}

#[test]
fn sigterm_exits_zero() {
    let mut s = Server::shardis(&[]);
    let mut raw = s.raw();
    assert_eq!(raw.cmd(&["SET", "k", "v"]), Frame::simple("OK"));
    s.signal("TERM");
    let status = s
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no exit 5 s after SIGTERM.\n{}", s.output()));
    assert!(status.success(), "exit status {status:?}\n{}", s.output());
    assert!(raw.closed_within(Duration::from_secs(2)));
}

#[test]
fn sigint_exits_zero() {
    let mut s = Server::shardis(&[]);
    s.signal("INT");
    let status = s
        .wait_exit(Duration::from_secs(5))
        .expect("exit after SIGINT");
    assert!(status.success(), "exit status {status:?}\n{}", s.output());
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("shardis-test-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn config_file_is_loaded() {
    let path = temp_file(
        "good.conf",
        "# a redis.conf-style file\nrequirepass \"pass word\"\n\nmaxclients 100\ntimeout 0\nmaxmemory 100mb\nmaxmemory-policy allkeys-lru\n",
    );
    let s = Server::shardis_with_config(&path);
    let mut raw = s.raw();
    assert_eq!(
        raw.cmd(&["GET", "k"]),
        Frame::error("NOAUTH Authentication required.")
    );
    if common::has_commands("config_file_is_loaded: AUTH, CONFIG", &["auth", "config"]) {
        assert_eq!(raw.cmd(&["AUTH", "pass word"]), Frame::simple("OK"));
        let got = raw.cmd(&["CONFIG", "GET", "maxmemory*"]);
        let text = got.to_string();
        assert!(text.contains("\"104857600\""), "{text}");
        assert!(text.contains("\"allkeys-lru\""), "{text}");
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn bad_config_file_fails_startup() {
    let path = temp_file("bad.conf", "port 7000\nnosuchsetting 1\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardis"))
        .arg("server")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "stderr: {err}");
}

#[test]
fn quit_like_close_mid_request_is_harmless() {
    let s = Server::shardis(&[]);
    {
        let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        t.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nabc")
            .unwrap();
    }
    let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    t.write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap();
    let mut buf = [0u8; 5];
    t.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"$-1\r\n");
}

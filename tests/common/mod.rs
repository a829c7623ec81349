//! Shared test infrastructure: real server processes on free loopback ports (shardis
//! and, when installed, a reference redis-server), a raw RESP client that keeps the
//! exact frame types, and the switches that decide what a missing dependency means.
//!
//! Every wait has a deadline, and a failure says what it waited for and shows the
//! server's output. Each test starts its own processes; `Drop` kills them.
//!
//! Environment:
//! - `SHARDIS_REQUIRE_REDIS=1`: a missing redis-server (or python3 with redis-py) is a
//!   failure instead of a skip (CI sets it).
//! - `SHARDIS_REQUIRE_ALL=1`: a command a test needs but this build's command table
//!   lacks is a failure instead of a skip (CI sets it; branches that do not have every
//!   family yet run without it).
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const START_DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
/// How long a raw client waits for a reply before the test fails.
pub const REPLY_DEADLINE: Duration = Duration::from_secs(20);

pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A free loopback port: bind port 0, read it, release it. Another process may take
/// it before the server binds; [`Server::start`] retries in that case.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// True when this build's command table has every one of `names`. Otherwise prints
/// a SKIP notice and returns false, or panics under `SHARDIS_REQUIRE_ALL=1`.
pub fn has_commands(test: &str, names: &[&str]) -> bool {
    let missing = missing_commands(names);
    if missing.is_empty() {
        return true;
    }
    if env_flag("SHARDIS_REQUIRE_ALL") {
        panic!("{test}: this build lacks commands {missing:?} (SHARDIS_REQUIRE_ALL=1)");
    }
    eprintln!("SKIP: {test}: this build lacks commands {missing:?}");
    false
}

pub fn missing_commands<'a>(names: &[&'a str]) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|n| shardis::cmd::lookup(n.as_bytes()).is_none())
        .collect()
}

/// A server process that is killed when dropped.
pub struct Server {
    pub kind: &'static str,
    pub port: u16,
    child: Option<Child>,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    /// shardis on a free port with extra `--name value` settings.
    pub fn shardis(settings: &[&str]) -> Server {
        let bin = env!("CARGO_BIN_EXE_shardis");
        Server::start("shardis", |port| {
            let mut c = Command::new(bin);
            c.args(["server", "--port", &port.to_string()])
                .args(settings);
            c
        })
    }

    /// shardis started with `--config <file>` (and the port as a flag).
    pub fn shardis_with_config(path: &std::path::Path) -> Server {
        let bin = env!("CARGO_BIN_EXE_shardis");
        let path = path.to_path_buf();
        Server::start("shardis", move |port| {
            let mut c = Command::new(bin);
            c.arg("server").arg("--config").arg(&path);
            c.args(["--port", &port.to_string()]);
            c
        })
    }

    /// A reference redis-server without persistence, or `None` with a SKIP notice when
    /// it is not installed (a panic under `SHARDIS_REQUIRE_REDIS=1`).
    pub fn redis(settings: &[&str]) -> Option<Server> {
        let bin = redis_server_path()?;
        Some(Server::start("redis-server", |port| {
            let mut c = Command::new(&bin);
            c.args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(settings);
            c
        }))
    }

    fn start(kind: &'static str, build: impl Fn(u16) -> Command) -> Server {
        let mut last_output = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = build(port);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn {kind}: {e}"));
            let output = Arc::new(Mutex::new(Vec::new()));
            collect(child.stdout.take().unwrap(), output.clone());
            collect(child.stderr.take().unwrap(), output.clone());
            let mut server = Server {
                kind,
                port,
                child: Some(child),
                output,
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(exited) => {
                    last_output = server.output();
                    if exited && last_output.to_ascii_lowercase().contains("in use") {
                        continue; // lost the port race: try another port
                    }
                    panic!(
                        "{kind} on 127.0.0.1:{port} did not answer PING within {:?} ({}).\n--- its output ---\n{last_output}",
                        START_DEADLINE,
                        if exited { "it exited" } else { "still running" }
                    );
                }
            }
        }
        panic!("{kind}: no free port after 5 attempts.\n--- last output ---\n{last_output}");
    }

    /// Connects and sends PING every 20 ms until any reply arrives (a `-NOAUTH` counts:
    /// the server is serving). `Err(true)` if the process exited first.
    fn wait_ready(&mut self) -> Result<(), bool> {
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if self.try_wait().is_some() {
                return Err(true);
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 64];
                if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
                    && matches!(s.read(&mut buf), Ok(n) if n > 0)
                {
                    return Ok(());
                }
            }
            std::thread::sleep(POLL);
        }
        Err(false)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Waits for the process to exit, polling until `deadline` elapses.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            std::thread::sleep(POLL);
        }
        None
    }

    /// Sends a signal with the `kill` utility (no libc dependency).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} {} failed", self.pid());
    }

    pub fn raw(&self) -> RawConn {
        RawConn::connect(self.port)
    }

    /// A `redis` crate client in RESP2 or RESP3.
    pub fn client(&self, resp3: bool) -> redis::Client {
        let url = if resp3 {
            format!("redis://127.0.0.1:{}/?protocol=resp3", self.port)
        } else {
            format!("redis://127.0.0.1:{}/", self.port)
        };
        redis::Client::open(url).expect("client url")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
}

fn redis_server_path() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if env_flag("SHARDIS_REQUIRE_REDIS") {
            panic!("redis-server not found on PATH and SHARDIS_REQUIRE_REDIS=1");
        }
        eprintln!("SKIP: redis-server not found");
    }
    found
}

/// A RESP2/RESP3 frame as received, keeping the wire type of every part so that two
/// servers' replies compare exactly (a double keeps its text).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Frame {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    /// `$-1`
    NilBulk,
    /// `*-1`
    NilArray,
    /// RESP3 `_`
    Null,
    Array(Vec<Frame>),
    Set(Vec<Frame>),
    Push(Vec<Frame>),
    Map(Vec<(Frame, Frame)>),
    Double(Vec<u8>),
    Bool(bool),
    BigNumber(Vec<u8>),
    Verbatim(Vec<u8>),
}

impl Frame {
    pub fn bulk(s: impl AsRef<[u8]>) -> Frame {
        Frame::Bulk(s.as_ref().to_vec())
    }

    pub fn simple(s: &str) -> Frame {
        Frame::Simple(s.as_bytes().to_vec())
    }

    pub fn error(s: &str) -> Frame {
        Frame::Error(s.as_bytes().to_vec())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }

    /// The frame's wire type, for shape-only comparisons.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Simple(_) => "simple",
            Frame::Error(_) => "error",
            Frame::Int(_) => "int",
            Frame::Bulk(_) => "bulk",
            Frame::NilBulk => "nil-bulk",
            Frame::NilArray => "nil-array",
            Frame::Null => "null",
            Frame::Array(_) => "array",
            Frame::Set(_) => "set",
            Frame::Push(_) => "push",
            Frame::Map(_) => "map",
            Frame::Double(_) => "double",
            Frame::Bool(_) => "bool",
            Frame::BigNumber(_) => "bignum",
            Frame::Verbatim(_) => "verbatim",
        }
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn items(f: &mut std::fmt::Formatter<'_>, open: &str, v: &[Frame]) -> std::fmt::Result {
            write!(f, "{open}")?;
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write!(f, "{x}")?;
            }
            write!(f, "]")
        }
        match self {
            Frame::Simple(s) => write!(f, "+{}", show(s)),
            Frame::Error(s) => write!(f, "-{}", show(s)),
            Frame::Int(n) => write!(f, ":{n}"),
            Frame::Bulk(b) => write!(f, "\"{}\"", show(b)),
            Frame::NilBulk => write!(f, "$-1"),
            Frame::NilArray => write!(f, "*-1"),
            Frame::Null => write!(f, "_"),
            Frame::Array(v) => items(f, "[", v),
            Frame::Set(v) => items(f, "~[", v),
            Frame::Push(v) => items(f, ">[", v),
            Frame::Map(v) => {
                write!(f, "%{{")?;
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {x}")?;
                }
                write!(f, "}}")
            }
            Frame::Double(d) => write!(f, ",{}", show(d)),
            Frame::Bool(b) => write!(f, "#{}", if *b { 't' } else { 'f' }),
            Frame::BigNumber(n) => write!(f, "({}", show(n)),
            Frame::Verbatim(v) => write!(f, "={}", show(v)),
        }
    }
}

/// Bytes as text with non-printable bytes escaped, truncated for messages.
pub fn show(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b.iter().take(200) {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > 200 {
        s.push_str(&format!("...({} bytes)", b.len()));
    }
    s
}

/// A command line for messages: `SET "k" "v"`.
pub fn show_cmd(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|a| format!("\"{}\"", show(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Encodes a command as a RESP multibulk request.
pub fn encode_cmd<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one frame. EOF before any byte is `UnexpectedEof`.
pub fn read_frame(r: &mut impl BufRead) -> io::Result<Frame> {
    let line = read_line(r)?;
    let (tag, rest) = line.split_first().ok_or_else(|| bad("empty frame line"))?;
    let rest = rest.to_vec();
    Ok(match tag {
        b'+' => Frame::Simple(rest),
        b'-' => Frame::Error(rest),
        b':' => Frame::Int(num(&rest)?),
        b',' => Frame::Double(rest),
        b'(' => Frame::BigNumber(rest),
        b'_' => Frame::Null,
        b'#' => match &rest[..] {
            b"t" => Frame::Bool(true),
            b"f" => Frame::Bool(false),
            _ => return Err(bad("bad boolean")),
        },
        b'$' | b'=' => {
            let n = num(&rest)?;
            if n < 0 {
                return Ok(Frame::NilBulk);
            }
            let mut payload = vec![0u8; n as usize + 2];
            r.read_exact(&mut payload)?;
            if &payload[n as usize..] != b"\r\n" {
                return Err(bad("bulk not followed by CRLF"));
            }
            payload.truncate(n as usize);
            if *tag == b'=' {
                Frame::Verbatim(payload)
            } else {
                Frame::Bulk(payload)
            }
        }
        b'*' | b'~' | b'>' => {
            let n = num(&rest)?;
            if n < 0 {
                return Ok(Frame::NilArray);
            }
            let items = (0..n)
                .map(|_| read_frame(r))
                .collect::<io::Result<Vec<_>>>()?;
            match tag {
                b'*' => Frame::Array(items),
                b'~' => Frame::Set(items),
                _ => Frame::Push(items),
            }
        }
        b'%' => {
            let n = num(&rest)?;
            let mut pairs = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                let k = read_frame(r)?;
                let v = read_frame(r)?;
                pairs.push((k, v));
            }
            Frame::Map(pairs)
        }
        other => return Err(bad(&format!("unknown frame type byte {other:#x}"))),
    })
}

fn read_line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF"));
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad("line not terminated by CRLF"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn num(s: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad number"))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A raw RESP connection: what is sent and received is exactly what is on the wire.
pub struct RawConn {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl RawConn {
    /// A connection, or `None` if nothing listens there (a node that was killed).
    pub fn try_connect(port: u16) -> Option<RawConn> {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(REPLY_DEADLINE)).ok()?;
        s.set_nodelay(true).ok()?;
        Some(RawConn {
            reader: BufReader::new(s.try_clone().ok()?),
            writer: s,
        })
    }

    pub fn connect(port: u16) -> RawConn {
        let s = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
        s.set_read_timeout(Some(REPLY_DEADLINE)).unwrap();
        s.set_nodelay(true).unwrap();
        RawConn {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to server");
    }

    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        self.send_raw(&encode_cmd(args));
    }

    pub fn read(&mut self) -> Frame {
        read_frame(&mut self.reader).unwrap_or_else(|e| panic!("reading a reply: {e}"))
    }

    pub fn try_read(&mut self) -> io::Result<Frame> {
        read_frame(&mut self.reader)
    }

    /// Sends one command and reads its reply.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Frame {
        self.send(args);
        self.read()
    }

    /// Sends one command and reads its reply; None if the connection fails (the
    /// server died or closed it).
    pub fn try_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Option<Frame> {
        self.writer.write_all(&encode_cmd(args)).ok()?;
        self.try_read().ok()
    }

    /// True once the server has closed the connection (EOF within the deadline).
    pub fn closed_within(&mut self, deadline: Duration) -> bool {
        self.writer.set_read_timeout(Some(deadline)).unwrap();
        let mut buf = [0u8; 1];
        let closed = match self.reader.read(&mut buf) {
            Ok(n) => n == 0,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        };
        self.writer.set_read_timeout(Some(REPLY_DEADLINE)).unwrap();
        closed
    }
}

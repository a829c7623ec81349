//! Workloads: what the clients do and how the result is checked. Each is one file
//! implementing `Workload`; `client.rs` runs the processes and records the history.
//!
//! - `register.rs`: GET / SET / compare-and-set (WATCH + MULTI), checked for
//!   linearizability, keys rotated after ~200 operations.
//! - `set.rs`: SADD of unique elements, final SMEMBERS: nothing lost, nothing invented.
//! - `list_append.rs`: RPUSH + LRANGE in one MULTI: no lost, duplicated or reordered
//!   appends.
//! - `ttl.rs`: SET PX and GET: a key is never readable after its deadline.

pub mod client;
pub mod list_append;
pub mod register;
pub mod set;
pub mod ttl;

use crate::checker::Verdict;
use crate::history::Op;
use crate::rng::Rng;
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One operation to invoke.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub f: &'static str,
    pub value: Value,
    pub key: String,
    /// Has no effect on the data (a failed or lost read is simply a fail).
    pub read_only: bool,
}

/// How an operation that got an answer ended.
pub enum Done {
    Ok(Value),
    /// Definitely did not happen (a cas whose value did not match).
    Fail(String),
}

pub trait Workload: Send + Sync {
    fn name(&self) -> &'static str;
    fn next(&self, rng: &mut Rng) -> Invocation;
    /// Must the operation go to a node hosting the key's shard? (WATCH must.)
    fn needs_host(&self) -> bool {
        false
    }
    fn run<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        inv: &'a Invocation,
    ) -> BoxFuture<'a, redis::RedisResult<Done>>;
    /// Keys to read once the cluster has healed, and how (the `read` op).
    fn final_keys(&self) -> Vec<String> {
        Vec::new()
    }
    fn final_read<'a>(
        &'a self,
        _conn: &'a mut MultiplexedConnection,
        key: &'a str,
    ) -> BoxFuture<'a, redis::RedisResult<Value>> {
        Box::pin(async move {
            Err((
                redis::ErrorKind::ClientError,
                "no final read",
                key.to_string(),
            )
                .into())
        })
    }
    fn check(&self, history: &[Op], budget: Duration) -> Verdict;
}

pub fn by_name(name: &str) -> Option<Box<dyn Workload>> {
    Some(match name {
        "register" => Box::new(register::Register::default()),
        "set" => Box::new(set::Set::default()),
        "list-append" => Box::new(list_append::ListAppend::default()),
        "ttl" => Box::new(ttl::Ttl::default()),
        _ => return None,
    })
}

pub const NAMES: &[&str] = &["register", "set", "list-append", "ttl"];

/// Keys in use, each retired after `per_key` operations and replaced by a fresh one,
/// so that no key's history grows past what the checker can search.
pub struct KeyPool {
    prefix: &'static str,
    per_key: u32,
    state: Mutex<(Vec<(String, u32)>, u64)>,
}

impl KeyPool {
    pub fn new(prefix: &'static str, active: usize, per_key: u32) -> KeyPool {
        let keys = (0..active as u64)
            .map(|i| (format!("{prefix}{i}"), 0))
            .collect();
        KeyPool {
            prefix,
            per_key,
            state: Mutex::new((keys, active as u64)),
        }
    }

    pub fn choose(&self, rng: &mut Rng) -> String {
        let mut s = self.state.lock().unwrap();
        let (keys, next) = &mut *s;
        let i = rng.below(keys.len() as u64) as usize;
        let key = keys[i].0.clone();
        keys[i].1 += 1;
        if keys[i].1 >= self.per_key {
            keys[i] = (format!("{}{}", self.prefix, *next), 0);
            *next += 1;
        }
        key
    }

    /// Every key ever used.
    pub fn all(&self) -> Vec<String> {
        let n = self.state.lock().unwrap().1;
        (0..n).map(|i| format!("{}{i}", self.prefix)).collect()
    }
}

/// MULTI, the commands, EXEC, as one pipeline. None: EXEC was aborted by WATCH. An
/// error reply to EXEC stays an error with its own code (the client library's
/// transaction helper turns every one into a plain `ERR`, which would make an
/// `UNKNOWN` outcome look like a definite failure).
pub async fn transaction(
    conn: &mut MultiplexedConnection,
    cmds: Vec<redis::Cmd>,
) -> redis::RedisResult<Option<Vec<redis::Value>>> {
    use redis::aio::ConnectionLike;
    let n = cmds.len();
    let mut p = redis::pipe();
    p.cmd("MULTI");
    for c in cmds {
        p.add_command(c);
    }
    p.cmd("EXEC");
    let mut replies = conn.req_packed_commands(&p, 0, n + 2).await?;
    match replies.pop() {
        Some(redis::Value::Nil) => Ok(None),
        Some(redis::Value::Array(items)) => Ok(Some(items)),
        Some(redis::Value::ServerError(e)) => Err(e.into()),
        other => Err((
            redis::ErrorKind::TypeError,
            "unexpected EXEC reply",
            format!("{other:?}"),
        )
            .into()),
    }
}

pub fn int(v: &redis::Value) -> Option<i64> {
    match v {
        redis::Value::Int(i) => Some(*i),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        redis::Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// A reply that is an array of integers (SMEMBERS, LRANGE).
pub fn ints(v: &redis::Value) -> redis::RedisResult<Vec<i64>> {
    let bad = || -> redis::RedisError {
        (
            redis::ErrorKind::TypeError,
            "expected an array of integers",
            format!("{v:?}"),
        )
            .into()
    };
    match v {
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().map(|i| int(i).ok_or_else(bad)).collect()
        }
        _ => Err(bad()),
    }
}

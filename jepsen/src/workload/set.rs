//! A set: SADD of unique elements to a few keys; after the heal, SMEMBERS of each.
//! Every acknowledged add must be there, and nothing that was never added.

use super::{ints, BoxFuture, Done, Invocation, Workload};
use crate::checker::{set, Verdict};
use crate::history::Op;
use crate::rng::Rng;
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const KEYS: u64 = 6;

#[derive(Default)]
pub struct Set {
    next: AtomicU64,
}

impl Workload for Set {
    fn name(&self) -> &'static str {
        "set"
    }

    fn next(&self, rng: &mut Rng) -> Invocation {
        let key = format!("s{}", rng.below(KEYS));
        let e = self.next.fetch_add(1, Ordering::Relaxed);
        Invocation {
            f: "add",
            value: json!([key, e]),
            key,
            read_only: false,
        }
    }

    fn run<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        inv: &'a Invocation,
    ) -> BoxFuture<'a, redis::RedisResult<Done>> {
        Box::pin(async move {
            let _: i64 = redis::cmd("SADD")
                .arg(&inv.key)
                .arg(inv.value[1].as_u64().unwrap_or(0))
                .query_async(conn)
                .await?;
            Ok(Done::Ok(inv.value.clone()))
        })
    }

    fn final_keys(&self) -> Vec<String> {
        (0..KEYS).map(|i| format!("s{i}")).collect()
    }

    fn final_read<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        key: &'a str,
    ) -> BoxFuture<'a, redis::RedisResult<Value>> {
        Box::pin(async move {
            let v: redis::Value = redis::cmd("SMEMBERS").arg(key).query_async(conn).await?;
            let mut elements = ints(&v)?;
            elements.sort();
            Ok(json!([key, elements]))
        })
    }

    fn check(&self, history: &[Op], _budget: Duration) -> Verdict {
        set::check_set(history)
    }
}

//! Expiry: SET k v PX px (0.1–3 s) and GET k on a few keys. A value must never be
//! readable once its deadline (the write's acknowledgement + px) has passed, also
//! across failovers and with skewed clocks.

use super::{int, BoxFuture, Done, Invocation, Workload};
use crate::checker::{ttl, Verdict};
use crate::history::Op;
use crate::rng::Rng;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const KEYS: u64 = 6;

/// Allowance for the server's millisecond rounding of the deadline.
pub const SLACK: Duration = Duration::from_millis(2);

#[derive(Default)]
pub struct Ttl {
    next: AtomicU64,
}

impl Workload for Ttl {
    fn name(&self) -> &'static str {
        "ttl"
    }

    fn next(&self, rng: &mut Rng) -> Invocation {
        let key = format!("t{}", rng.below(KEYS));
        if rng.chance(0.6) {
            return Invocation {
                f: "read",
                value: json!([key, null]),
                key,
                read_only: true,
            };
        }
        let v = self.next.fetch_add(1, Ordering::Relaxed);
        Invocation {
            f: "write",
            value: json!([key, v, rng.range(100, 3000)]),
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
            let k = inv.key.as_str();
            if inv.f == "read" {
                let v: redis::Value = redis::cmd("GET").arg(k).query_async(conn).await?;
                return Ok(Done::Ok(json!([k, int(&v)])));
            }
            let _: () = redis::cmd("SET")
                .arg(k)
                .arg(inv.value[1].as_u64().unwrap_or(0))
                .arg("PX")
                .arg(inv.value[2].as_u64().unwrap_or(1000))
                .query_async(conn)
                .await?;
            Ok(Done::Ok(inv.value.clone()))
        })
    }

    fn check(&self, history: &[Op], _budget: Duration) -> Verdict {
        ttl::check_ttl(history, SLACK)
    }
}

//! Registers: GET, SET and a compare-and-set made of WATCH, GET, MULTI, SET, EXEC, on
//! independent keys of 5 possible values, checked for linearizability per key.

use super::{int, transaction, BoxFuture, Done, Invocation, KeyPool, Workload};
use crate::checker::{linear, Verdict};
use crate::history::Op;
use crate::rng::Rng;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use std::time::Duration;

pub struct Register {
    keys: KeyPool,
}

impl Default for Register {
    fn default() -> Register {
        Register {
            keys: KeyPool::new("r", 8, 200),
        }
    }
}

impl Workload for Register {
    fn name(&self) -> &'static str {
        "register"
    }

    fn next(&self, rng: &mut Rng) -> Invocation {
        let key = self.keys.choose(rng);
        let (f, value, read_only) = match rng.below(10) {
            0..=4 => ("read", json!([key, null]), true),
            5..=7 => ("write", json!([key, rng.below(5)]), false),
            _ => ("cas", json!([key, [rng.below(5), rng.below(5)]]), false),
        };
        Invocation {
            f,
            value,
            key,
            read_only,
        }
    }

    fn needs_host(&self) -> bool {
        true
    }

    fn run<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        inv: &'a Invocation,
    ) -> BoxFuture<'a, redis::RedisResult<Done>> {
        Box::pin(async move {
            let k = inv.key.as_str();
            match inv.f {
                "read" => {
                    let v: redis::Value = redis::cmd("GET").arg(k).query_async(conn).await?;
                    Ok(Done::Ok(json!([k, int(&v)])))
                }
                "write" => {
                    let v = inv.value[1].as_i64().unwrap_or(0);
                    let _: () = redis::cmd("SET").arg(k).arg(v).query_async(conn).await?;
                    Ok(Done::Ok(inv.value.clone()))
                }
                _ => {
                    let (old, new) = (inv.value[1][0].as_i64(), inv.value[1][1].as_i64());
                    let _: () = redis::cmd("WATCH").arg(k).query_async(conn).await?;
                    let v: redis::Value = redis::cmd("GET").arg(k).query_async(conn).await?;
                    let current = int(&v);
                    if current != old {
                        let _: () = redis::cmd("UNWATCH").query_async(conn).await?;
                        return Ok(Done::Fail(format!(
                            "cas: expected {old:?}, found {current:?}"
                        )));
                    }
                    let mut set = redis::cmd("SET");
                    set.arg(k).arg(new);
                    match transaction(conn, vec![set]).await? {
                        None => Ok(Done::Fail("cas: EXEC aborted by WATCH".into())),
                        Some(_) => Ok(Done::Ok(inv.value.clone())),
                    }
                }
            }
        })
    }

    fn check(&self, history: &[Op], budget: Duration) -> Verdict {
        linear::check_register(history, budget)
    }
}

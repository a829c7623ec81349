//! Lists: MULTI, RPUSH k v, LRANGE k 0 -1, EXEC, so each append also observes the
//! list it extended; after the heal, LRANGE of each key. No append may be lost,
//! duplicated or reordered.

use super::{ints, transaction, BoxFuture, Done, Invocation, KeyPool, Workload};
use crate::checker::{list_append, Verdict};
use crate::history::Op;
use crate::rng::Rng;
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct ListAppend {
    keys: KeyPool,
    next: AtomicU64,
}

impl Default for ListAppend {
    fn default() -> ListAppend {
        ListAppend {
            keys: KeyPool::new("l", 6, 200),
            next: AtomicU64::new(0),
        }
    }
}

impl Workload for ListAppend {
    fn name(&self) -> &'static str {
        "list-append"
    }

    fn next(&self, rng: &mut Rng) -> Invocation {
        let key = self.keys.choose(rng);
        let v = self.next.fetch_add(1, Ordering::Relaxed);
        Invocation {
            f: "append",
            value: json!([key, v]),
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
            let v = inv.value[1].as_u64().unwrap_or(0);
            let mut push = redis::cmd("RPUSH");
            push.arg(&inv.key).arg(v);
            let mut range = redis::cmd("LRANGE");
            range.arg(&inv.key).arg(0).arg(-1);
            let list = match transaction(conn, vec![push, range]).await? {
                Some(parts) if parts.len() == 2 => ints(&parts[1])?,
                other => {
                    return Err((
                        redis::ErrorKind::TypeError,
                        "unexpected EXEC reply",
                        format!("{other:?}"),
                    )
                        .into())
                }
            };
            Ok(Done::Ok(json!([inv.key, v, list])))
        })
    }

    fn final_keys(&self) -> Vec<String> {
        self.keys.all()
    }

    fn final_read<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        key: &'a str,
    ) -> BoxFuture<'a, redis::RedisResult<Value>> {
        Box::pin(async move {
            let v: redis::Value = redis::cmd("LRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query_async(conn)
                .await?;
            Ok(json!([key, ints(&v)?]))
        })
    }

    fn check(&self, history: &[Op], _budget: Duration) -> Verdict {
        list_append::check_list_append(history)
    }
}

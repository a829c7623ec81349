"""An application's use of Redis through redis-py with its default protocol:
cache-aside, sessions in hashes with EXPIRE, an LPUSH/BRPOP job queue, an INCR+EXPIRE
rate limiter in MULTI, and a ZSET leaderboard.

Usage: python3 tests/scenario.py PORT   (exit 0 = every check passed)
"""
import sys
import threading
import time

import redis


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def cache_aside(r):
    loads = []

    def load_user(uid):
        key = f"cache:user:{uid}"
        hit = r.get(key)
        if hit is not None:
            return hit.decode()
        loads.append(uid)
        value = f"user-{uid}"
        r.set(key, value, ex=60)
        return value

    check(load_user(1) == "user-1", "first load")
    check(load_user(1) == "user-1", "cached load")
    check(loads == [1], f"loaded from the source once, got {loads}")
    check(0 < r.ttl("cache:user:1") <= 60, "cache entry has a TTL")
    r.delete("cache:user:1")  # invalidation
    check(load_user(1) == "user-1" and loads == [1, 1], "reload after invalidation")
    check(r.get("cache:user:missing") is None, "miss is None")


def sessions(r):
    sid = "session:abc"
    r.hset(sid, mapping={"user": "42", "role": "admin", "csrf": "x" * 32})
    r.expire(sid, 1800)
    check(r.hget(sid, "user") == b"42", "session field")
    check(r.hgetall(sid) == {b"user": b"42", b"role": b"admin", b"csrf": b"x" * 32},
          "whole session")
    check(1700 < r.ttl(sid) <= 1800, "session TTL")
    r.hset(sid, "role", "user")
    check(r.ttl(sid) > 1700, "HSET keeps the TTL")
    check(r.hincrby(sid, "hits", 1) == 1 and r.hincrby(sid, "hits", 2) == 3, "counter")
    check(r.hdel(sid, "csrf") == 1 and not r.hexists(sid, "csrf"), "HDEL")
    r.expire(sid, 1)
    time.sleep(1.3)
    check(r.exists(sid) == 0 and r.hgetall(sid) == {}, "session expired")


def job_queue(port):
    producer = redis.Redis(port=port)
    worker = redis.Redis(port=port)
    done = []

    def work():
        while True:
            item = worker.brpop(["jobs:high", "jobs"], timeout=5)
            if item is None:
                return
            _, job = item
            if job == b"stop":
                return
            done.append(job.decode())

    t = threading.Thread(target=work)
    t.start()
    time.sleep(0.2)  # the worker is now blocked on an empty queue
    for i in range(5):
        producer.lpush("jobs", f"job-{i}")
    producer.lpush("jobs:high", "urgent")
    time.sleep(0.2)
    producer.lpush("jobs", "stop")
    t.join(10)
    check(not t.is_alive(), "worker finished")
    check(sorted(done) == sorted([f"job-{i}" for i in range(5)] + ["urgent"]),
          f"all jobs processed once: {done}")
    fifo = [j for j in done if j.startswith("job-")]
    check(fifo == [f"job-{i}" for i in range(5)], f"LPUSH+BRPOP is FIFO: {fifo}")
    check(producer.llen("jobs") == 0, "queue drained")
    check(producer.brpop("jobs", timeout=0.1) is None, "BRPOP times out with None")


def rate_limit(r):
    def allow(user, limit=5, window=10):
        key = f"rate:{user}"
        pipe = r.pipeline(transaction=True)  # MULTI ... EXEC
        pipe.incr(key)
        pipe.expire(key, window, nx=True)
        count, _ = pipe.execute()
        return count <= limit

    results = [allow("u1") for _ in range(7)]
    check(results == [True] * 5 + [False] * 2, f"limiter: {results}")
    check(0 < r.ttl("rate:u1") <= 10, "window TTL set once")
    check(allow("u2"), "other users unaffected")


def leaderboard(r):
    board = "leaderboard"
    r.zadd(board, {"alice": 100, "bob": 80, "carol": 120, "dave": 80})
    r.zincrby(board, 50, "bob")
    top = r.zrevrange(board, 0, 2, withscores=True)
    check(top == [(b"bob", 130.0), (b"carol", 120.0), (b"alice", 100.0)], f"top 3: {top}")
    check(r.zrevrank(board, "dave") == 3, "rank of last")
    check(r.zscore(board, "alice") == 100.0, "score")
    check(r.zcount(board, 90, "+inf") == 3, "count by score")
    check(r.zrangebyscore(board, "-inf", 100) == [b"dave", b"alice"], "range by score")
    r.zrem(board, "dave")
    check(r.zcard(board) == 3, "ZREM")


def main():
    port = int(sys.argv[1])
    r = redis.Redis(port=port)
    check(r.ping() is True, "PING")
    for key in ["cache:user:1", "session:abc", "jobs", "jobs:high", "rate:u1", "rate:u2",
                "leaderboard"]:
        r.delete(key)
    cache_aside(r)
    sessions(r)
    job_queue(port)
    rate_limit(r)
    leaderboard(r)
    print("scenario: all checks passed")


if __name__ == "__main__":
    main()

//! RESP codec throughput: decoding a pipeline of SET requests and encoding replies.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shardis::resp::{encode, DecodeLimits, Decoder, Protocol, Reply};

fn set_pipeline(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let key = format!("key:{i:08}");
        out.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$16\r\nvalue-0123456789\r\n",
                key.len()
            )
            .as_bytes(),
        );
    }
    out
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for n in [1usize, 16, 1000] {
        let input = set_pipeline(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("set_pipeline_{n}"), |b| {
            b.iter_batched(
                || BytesMut::from(&input[..]),
                |mut buf| {
                    let mut d = Decoder::new();
                    let limits = DecodeLimits::default();
                    let mut count = 0;
                    while let Some(req) = d.decode(&mut buf, &limits).unwrap() {
                        count += req.len();
                    }
                    count
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn encode_replies(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let cases: Vec<(&str, Reply)> = vec![
        ("ok", Reply::ok()),
        ("int", Reply::Int(1_234_567)),
        ("bulk_16", Reply::bulk("value-0123456789")),
        (
            "array_100_bulks",
            Reply::bulk_array((0..100).map(|i| format!("member:{i}"))),
        ),
        (
            "map_100",
            Reply::Map(
                (0..100)
                    .map(|i| (Reply::bulk(format!("f{i}")), Reply::Double(i as f64 * 0.5)))
                    .collect(),
            ),
        ),
    ];
    for (name, reply) in &cases {
        for (pname, proto) in [("resp2", Protocol::Resp2), ("resp3", Protocol::Resp3)] {
            g.bench_function(format!("{name}_{pname}"), |b| {
                let mut out = BytesMut::with_capacity(64 * 1024);
                b.iter(|| {
                    out.clear();
                    encode(reply, proto, &mut out);
                    out.len()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, decode, encode_replies);
criterion_main!(benches);

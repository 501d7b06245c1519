//! The probe's transaction core and response parser, over generated data.
//!
//! `cargo bench --bench probe_core`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use probe::message::parse_response;
use probe::transaction::{Action, ClientTx, Lookup, Method, Table, TxConfig};
use std::hint::black_box;
use std::time::{Duration, Instant};

const RESPONSE: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;rport=40000;branch=z9hG4bK1a2b3c4d-0-0;received=127.0.0.1\r\n\
From: <sip:srewatch@127.0.0.1>;tag=0f1e2d3c4b5a6978\r\n\
To: <sip:127.0.0.1:5060>;tag=1d24a28a0bded6c40d31e6db8aab9ac6.bd2a0000\r\n\
Call-ID: 8c1f0e2d3b4a59687766554433221100@srewatch\r\n\
CSeq: 1 OPTIONS\r\n\
Server: srewatch-test-cp cp1\r\n\
Content-Length: 0\r\n\r\n";

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_response");
    g.throughput(Throughput::Elements(1));
    g.bench_function("codec_owned", |b| {
        b.iter(|| parse_response(black_box(RESPONSE)).unwrap())
    });
    g.finish();
}

/// One transaction's life in a table holding `n` outstanding ones: insert, match the response
/// by branch, feed it to the state machine, remove.
fn table(c: &mut Criterion) {
    let mut g = c.benchmark_group("transaction");
    g.throughput(Throughput::Elements(1));
    for n in [16usize, 65_536] {
        let cfg = TxConfig::new(Duration::from_secs(2), false);
        let now = Instant::now();
        let mut t: Table<ClientTx> = Table::new("bench").unwrap();
        for _ in 0..n {
            t.insert(Method::Options, ClientTx::new(Method::Options, &cfg, now));
        }
        g.bench_function(
            format!("insert_match_complete_remove/{n}_outstanding"),
            |b| {
                b.iter(|| {
                    let (slot, branch) =
                        t.insert(Method::Options, ClientTx::new(Method::Options, &cfg, now));
                    let Lookup::Found(s) = t.lookup(black_box(branch.as_bytes()), Method::Options)
                    else {
                        panic!("not found")
                    };
                    let a = t.get_mut(s).unwrap().on_response(200, now);
                    assert!(matches!(a, Action::Done { .. }));
                    t.remove(slot).unwrap()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, parse, table);
criterion_main!(benches);

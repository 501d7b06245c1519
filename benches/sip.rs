//! Hot paths of the bench: building a request from its template, reading a response with the
//! codec (the full reader and the bench's view of it), the responder's answer, and a
//! transaction's life in the table (insert, match, remove). Run with `cargo bench --bench sip`; figures in docs/bench.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use probe::bench::read_answer;
use probe::bench::{BenchTx, Core};
use probe::fast::{reason, Template};
use probe::sip::build::{to_tag_of, write_response};
use probe::sip::{read_request, read_response, Transport};
use probe::transaction::{ClientTx, Lookup, Method, Table, TxConfig};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// What Kamailio (sl_send_reply) answers to the bench's OPTIONS.
const KAMAILIO_200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK1a2b3c4d-2a-0;rport=40000;received=127.0.0.1\r\n\
From: <sip:srewatch-bench@127.0.0.1>;tag=00000007\r\n\
To: <sip:127.0.0.1:5060>;tag=a6a1c5f60faecf035a1ae5b6e96e979a-1fa2\r\n\
Call-ID: 0000000000000007-deadbeef@127.0.0.1\r\n\
CSeq: 1000000007 OPTIONS\r\n\
Server: srewatch-test-cp cp1\r\n\
Content-Length: 0\r\n\r\n";

fn template(m: Method) -> Template {
    Template::new(
        m,
        "sip:127.0.0.1:5060",
        "127.0.0.1:40000".parse().unwrap(),
        Transport::Udp,
        0xdeadbeef,
    )
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("build");
    g.throughput(Throughput::Elements(1));
    let t = template(Method::Options);
    let table: Table<()> = Table::new("1a2b3c4d").unwrap();
    let mut out = Vec::with_capacity(1500);
    let mut seq = 0u64;
    g.bench_function("options_request", |b| {
        b.iter(|| {
            seq += 1;
            let branch = table.branch(probe::transaction::Slot {
                index: (seq & 0xffff) as u32,
                gen: (seq >> 16) as u32,
            });
            t.write(&mut out, branch.as_bytes(), seq);
            black_box(out.len())
        })
    });
    let ti = template(Method::Invite);
    g.bench_function("ack_of_503", |b| {
        b.iter(|| {
            seq += 1;
            ti.write_ack(
                &mut out,
                b"z9hG4bK1a2b3c4d-2a-0",
                seq,
                b"<sip:127.0.0.1:5060>;tag=a6a1c5f60faecf035a1ae5b6e96e979a-1fa2",
            );
            black_box(out.len())
        })
    });
    g.bench_function("cancel", |b| {
        b.iter(|| {
            seq += 1;
            ti.write_cancel(&mut out, b"z9hG4bK1a2b3c4d-2a-0", seq);
            black_box(out.len())
        })
    });
    g.bench_function("ack_and_bye_of_2xx", |b| {
        let to = b"<sip:127.0.0.1:5060>;tag=a6a1c5f60faecf035a1ae5b6e96e979a-1fa2";
        let contact = b"sip:uas@127.0.0.1:5060;transport=udp";
        let mut bye = Vec::with_capacity(1500);
        b.iter(|| {
            seq += 1;
            let route = b"Route: <sip:127.0.0.1:5060;lr>\r\n";
            ti.write_ack_2xx(
                &mut out,
                Some(contact),
                b"z9hG4bK1a2b3c4d-2a-0-a",
                route,
                seq,
                to,
            );
            ti.write_bye(
                &mut bye,
                Some(contact),
                b"z9hG4bK1a2b3c4d-2b-0",
                route,
                seq,
                to,
            );
            black_box(out.len() + bye.len())
        })
    });
    g.finish();
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("response");
    g.throughput(Throughput::Elements(1));
    g.bench_function("read_response", |b| {
        b.iter(|| {
            let r = read_response(black_box(KAMAILIO_200)).unwrap();
            black_box((r.status, r.via.branch.len(), r.cseq))
        })
    });
    g.bench_function("bench_view", |b| {
        b.iter(|| {
            let (r, _) = read_answer(black_box(KAMAILIO_200)).unwrap();
            black_box((r.status, r.via.branch.len(), r.cseq))
        })
    });
    // The responder's side: read a request, write the answer.
    let t = template(Method::Options);
    let mut req = Vec::new();
    t.write(&mut req, b"z9hG4bK1a2b3c4d-2a-0", 7);
    let mut out = Vec::with_capacity(1500);
    g.bench_function("responder_answer", |b| {
        b.iter(|| {
            let r = read_request(black_box(&req)).unwrap();
            write_response(&mut out, &r, 200, reason(200), &to_tag_of(&r), None);
            black_box(out.len())
        })
    });
    g.finish();
}

fn transactions(c: &mut Criterion) {
    let mut g = c.benchmark_group("transaction");
    g.throughput(Throughput::Elements(1));
    let cfg = TxConfig::new(Duration::from_secs(32), false);
    let now = Instant::now();
    // A table with 10,000 outstanding, as in a run at 100k/s with 100 ms of latency.
    let mut table: Table<BenchTx> = Table::new("1a2b3c4d").unwrap();
    let mut branches = Vec::new();
    for i in 0..10_000u64 {
        let (_, b) = table.insert(
            Method::Options,
            BenchTx {
                core: Core::Tx(ClientTx::new(Method::Options, &cfg, now)),
                from_ns: i,
                seq: i,
                step: 0,
                aux: probe::bench::NO_AUX,
            },
        );
        branches.push(b);
    }
    let mut i = 0u64;
    g.bench_function("insert_match_remove", |b| {
        b.iter(|| {
            i += 1;
            let (slot, branch) = table.insert(
                Method::Options,
                BenchTx {
                    core: Core::Tx(ClientTx::new(Method::Options, &cfg, now)),
                    from_ns: i,
                    seq: i,
                    step: 0,
                    aux: probe::bench::NO_AUX,
                },
            );
            let found = table.lookup(black_box(branch.as_bytes()), Method::Options);
            assert_eq!(found, Lookup::Found(slot));
            let bt = table.get_mut(slot).unwrap();
            if let Core::Tx(tx) = &mut bt.core {
                black_box(tx.on_response(200, now));
            }
            black_box(table.remove(slot).is_some())
        })
    });
    g.bench_function("match_only", |b| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 7919) % branches.len();
            black_box(table.lookup(branches[k].as_bytes(), Method::Options))
        })
    });
    g.bench_function("late_response", |b| {
        b.iter(|| {
            black_box(table.lookup(
                black_box(b"z9hG4bK1a2b3c4d-2a-ffff".as_slice()),
                Method::Options,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, build, parse, transactions);
criterion_main!(benches);

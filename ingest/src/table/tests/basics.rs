//! The window on hand-written snapshots: change detection, the join, rollups, the
//! completeness rule, the parse-ahead pipeline and the saved state.

use super::pipeline::chunk_starts;
use super::*;

pub(super) const T: i64 = 1652193060; // 2022-05-10T14:31:00Z, the guide's counters.csv rows

pub(super) struct Harness {
    pub(super) table: Table,
    pub(super) now: Instant,
}

impl Harness {
    pub(super) fn new(cfg: TableConfig) -> Self {
        Harness {
            table: Table::new(cfg),
            now: Instant::now(),
        }
    }
    fn quiet() -> Self {
        Self::new(TableConfig {
            settle_minutes: 1000,
            ..TableConfig::default()
        })
    }
    pub(super) fn feed(&mut self, kind: Kind, data: &str) -> (Vec<(Bucket, String)>, FileReport) {
        let mut got = Vec::new();
        let rep = self.table.ingest(
            kind,
            data.as_bytes(),
            false,
            self.now,
            &mut |b, bytes, n| {
                let text = String::from_utf8(bytes.to_vec()).unwrap();
                assert_eq!(text.lines().count(), n);
                got.extend(text.lines().map(|l| (b, l.to_string())));
            },
        );
        (got, rep)
    }
    pub(super) fn lines(&mut self, kind: Kind, data: &str) -> Vec<String> {
        self.feed(kind, data)
            .0
            .into_iter()
            .map(|(_, l)| l)
            .collect()
    }
    pub(super) fn tick(&mut self, after: Duration) -> Vec<String> {
        self.now += after;
        let mut got = Vec::new();
        self.table.tick(self.now, &mut |_, bytes, _| {
            got.extend(
                String::from_utf8(bytes.to_vec())
                    .unwrap()
                    .lines()
                    .map(String::from),
            )
        });
        got
    }
    pub(super) fn finish(&mut self) -> Vec<(Bucket, String)> {
        let mut got = Vec::new();
        self.table.finish(self.now, &mut |b, bytes, _| {
            got.extend(
                String::from_utf8(bytes.to_vec())
                    .unwrap()
                    .lines()
                    .map(|l| (b, l.to_string())),
            )
        });
        got
    }
}

pub(super) fn row(host: &str, stat: &str, t: i64, vals: &[&str]) -> String {
    format!("{host},{stat},2022-05-10T16:31:00,{t},{}\n", vals.join(","))
}

fn counters_lines(meas: &str, host: &str, t: i64, vals: &[u64]) -> Vec<String> {
    vals.iter()
        .enumerate()
        .map(|(i, v)| format!("{meas},hostname={host} value={v}i {}", t - 60 * i as i64))
        .collect()
}

#[test]
fn same_name_is_equality() {
    for n in 0..40usize {
        let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
        assert!(same_name(&a, &a.clone()), "{n}");
        assert!(!same_name(&a, &a[..n.saturating_sub(1)]) || n == 0, "{n}");
        for at in 0..n {
            let mut b = a.clone();
            b[at] ^= 0x20;
            assert!(!same_name(&a, &b), "{n} at {at}");
        }
    }
}

#[test]
fn chunks_are_whole_lines() {
    let data = b"aa\nbbbb\n\ncc\ndddddd\ne";
    for size in 0..30 {
        for end in [data.len(), data.len() - 1] {
            let cuts = chunk_starts(data, end, size);
            assert_eq!((cuts[0], *cuts.last().unwrap()), (0, end), "{size}");
            for w in cuts.windows(2) {
                assert!(w[0] < w[1], "{size}: {cuts:?}");
                assert!(w[1] == end || data[w[1] - 1] == b'\n', "{size}: {cuts:?}");
                // About `size` bytes: a chunk ends at the first newline past `size`.
                if w[1] != end {
                    let nl = w[0] + size.max(1) - 1;
                    assert_eq!(w[1], nl + memchr::memchr(b'\n', &data[nl..]).unwrap() + 1);
                }
            }
        }
    }
    assert_eq!(chunk_starts(data, data.len(), 1), [0, 3, 8, 9, 12, 19, 20]);
}

#[test]
fn guide_counters_rows_give_exact_points() {
    let mut h = Harness::quiet();
    let data = "sre32-cp2-testbed,custom.fleg_relay,2022-05-10T16:31:00,1652193060,,,,,,,,,,,,,\n\
sre32-cp2-testbed,profiling.cp.CAC test.Extract Contacts,2022-05-10T16:31:00,1652193060,12,11,13,12,12,12,12,12,12,12,12,12,12,12\n";
    let (got, rep) = h.feed(Kind::Counters, data);
    let mut want: Vec<(Bucket, String)> =
        counters_lines("custom.fleg_relay", "sre32-cp2-testbed", T, &[0; 13])
            .into_iter()
            .map(|l| (Bucket::Counters, l))
            .collect();
    want.extend(
        counters_lines(
            "profiling.cp.CAC\\ test.Extract\\ Contacts",
            "sre32-cp2-testbed",
            T,
            &[12, 11, 13, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12],
        )
        .into_iter()
        .map(|l| (Bucket::Counters, l)),
    );
    assert_eq!(got, want);
    assert_eq!(rep.rows, 2);
    assert_eq!(rep.points, [27, 0, 0]);
    // The same snapshot again: nothing new.
    assert_eq!(h.lines(Kind::Counters, data), Vec::<String>::new());
}

/// The next row's stat is guessed from the stat that followed the previous row's last
/// time; every order of stats per host, wrong guesses included, gives each row's own points.
#[test]
fn stats_in_another_order_per_host_are_each_their_own() {
    let orders: [&[&str]; 5] = [
        &["a", "b", "c", "d"],
        &["a", "c", "b", "d"],
        &["a", "b", "c", "d"],
        &["d", "c", "b", "a", "e"],
        &["b", "b", "a"],
    ];
    for pipeline in [false, true] {
        let mut h = Harness::new(TableConfig {
            settle_minutes: 1000,
            parse_ahead_bytes: if pipeline { 0 } else { usize::MAX },
            parse_chunk_bytes: 40,
            ..TableConfig::default()
        });
        let mut data = String::new();
        let mut want = Vec::new();
        for (i, stats) in orders.iter().enumerate() {
            let host = format!("cp{i}");
            for (j, stat) in stats.iter().enumerate() {
                let v = (10 * i + j) as u64;
                data += &row(&host, stat, T, &[&v.to_string(), "7"]);
                // The second "b" of cp4 is a duplicate.
                if !(i == 4 && j == 1) {
                    want.extend(counters_lines(stat, &host, T, &[v, 7]));
                }
            }
        }
        let (got, rep) = h.feed(Kind::Counters, &data);
        let got: Vec<String> = got.into_iter().map(|(_, l)| l).collect();
        assert_eq!(got, want, "pipeline {pipeline}");
        assert_eq!(
            (rep.rows, rep.bad[Reason::Duplicate.index()]),
            (19, 1),
            "pipeline {pipeline}"
        );
    }
}

/// A first counters snapshot on two threads: its points are recorded in jobs that either
/// thread writes ([`defer`]), for any size of chunk; the counters lines come out exactly
/// as one thread writes them, in the same order, with a joined samples series and a bad
/// row alike.
#[test]
fn a_first_snapshot_on_two_threads_gives_the_same_lines_in_order() {
    let mut data = String::new();
    for h in 0..30u64 {
        for s in 0..40u64 {
            if (h, s) == (7, 3) {
                data += "cp7,bad,t,1652193060,x\n";
            }
            let vals: Vec<String> = (0..15u64)
                .map(|i| match (h + s + i) % 5 {
                    0 => String::new(),
                    _ => ((h * 1000 + s * 10 + i) * 7919 % 100_000).to_string(),
                })
                .collect();
            let vals: Vec<&str> = vals.iter().map(String::as_str).collect();
            data += &row(&format!("cp{h}"), &format!("stat {s}"), T, &vals);
        }
    }
    let samples = row("cp1", "stat 2", T, &["1.5", "2"]);
    let run = |pipeline: bool, chunk_bytes: usize| {
        let mut h = Harness::new(TableConfig {
            settle_minutes: 1000,
            parse_ahead_bytes: if pipeline { 0 } else { usize::MAX },
            parse_chunk_bytes: 700,
            chunk_bytes,
            ..TableConfig::default()
        });
        assert_eq!(h.feed(Kind::Samples, &samples).0, []);
        let (got, rep) = h.feed(Kind::Counters, &data);
        let of = |b: Bucket| -> Vec<String> {
            got.iter()
                .filter(|(x, _)| *x == b)
                .map(|(_, l)| l.clone())
                .collect()
        };
        (
            of(Bucket::Counters),
            of(Bucket::Samples),
            rep.rows,
            rep.points,
            rep.bad_total(),
        )
    };
    let one = run(false, 256 * 1024);
    assert_eq!((one.2, one.3, one.4), (1200, [18_000, 2, 0], 1));
    assert_eq!(
        one.0[..2],
        [
            format!("stat\\ 0,hostname=cp0 value=0i {T}"),
            format!("stat\\ 0,hostname=cp0 value=7919i {}", T - 60),
        ]
    );
    for chunk_bytes in [1, 3000, 256 * 1024] {
        assert!(run(true, chunk_bytes) == one, "chunk_bytes {chunk_bytes}");
    }
}

/// Lines are put together in a 256-byte stack buffer; a longer series name takes the
/// other path with the same lines.
#[test]
fn long_names_give_the_same_lines() {
    for len in [1, 150, 200, 207, 208, 209, 300] {
        let mut h = Harness::quiet();
        let stat = "s".repeat(len);
        let data = format!("h1,{stat},t,{},5,,4294967296\n", T);
        let got = h.lines(Kind::Counters, &data);
        assert_eq!(
            got,
            counters_lines(&stat, "h1", T, &[5, 0, 4294967296]),
            "len {len}"
        );
    }
}

/// [`Table::counters_points`] writes a line prefix of up to [`points::PREFIX_FAST`] bytes in whole
/// 32-byte blocks and longer ones piece by piece: on both sides of each block boundary and
/// of 256 bytes, every line (escaped names, counts of every digit length up to
/// `i64::MAX`) is byte for byte what [`LineEncoder::push`] writes for the same point, for
/// a new series (15 points per row) and a rewrite (2 points), in chunks of one row.
#[test]
fn line_prefixes_around_256_bytes_are_the_encoders_lines() {
    let host = "cp=1 x";
    let counts: [u64; 15] = [
        0,
        9,
        10,
        99,
        100,
        4_294_967_295,
        4_294_967_296,
        i64::MAX as u64,
        1,
        12_345_678_901_234,
        18,
        999_999_999,
        1_000_000_000,
        55,
        7,
    ];
    let encoded = |stat: &str, x: u64, ts: i64| {
        let mut e = LineEncoder::new();
        assert!(e.push(
            stat,
            &[("hostname", host)],
            &[("value", Field::Int(x as i64))],
            ts
        ));
        String::from_utf8(e.take().to_vec()).unwrap()
    };
    // The prefix (measurement, tag and " value=") of a stat: the line of 0 at time 0
    // without "0i 0\n".
    let prefix_len = |stat: &str| encoded(stat, 0, 0).len() - "0i 0\n".len();
    // Escaped: the space (2 bytes), the comma (2 bytes, in a quoted CSV field).
    let base = "a b,c";
    let short = prefix_len(base);
    assert_eq!(short, "a\\ b\\,c,hostname=cp\\=1\\ x value=".len());
    for target in [
        32,
        33,
        63,
        64,
        65,
        255,
        points::PREFIX_FAST,
        points::PREFIX_FAST + 1,
        300,
        1000,
    ] {
        let stat = format!("{base}{}", "z".repeat(target - short));
        assert_eq!(prefix_len(&stat), target);
        let mut h = Harness::new(TableConfig {
            settle_minutes: 1000,
            chunk_bytes: 1,
            ..TableConfig::default()
        });
        let vals: Vec<String> = counts.iter().map(|c| c.to_string()).collect();
        let data = format!(
            "{host},\"{stat}\",t,{T},{}\n{host},other,t,{T},{}\n",
            vals.join(","),
            vals.join(",")
        );
        let got = h.lines(Kind::Counters, &data);
        let mut want: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(i, &x)| encoded(&stat, x, T - 60 * i as i64))
            .collect();
        want.extend(
            counts
                .iter()
                .enumerate()
                .map(|(i, &x)| encoded("other", x, T - 60 * i as i64)),
        );
        let want: Vec<String> = want.iter().map(|l| l.trim_end().to_string()).collect();
        assert_eq!(got, want, "prefix of {target} bytes");
        // A minute later: a new count and a revised one (the older ones repeat).
        let next = |stat: &str| {
            format!(
                "{host},{stat},t,{},{},{}\n",
                T + 60,
                u64::MAX >> 1,
                vals[..14].join(",").replacen('0', "1", 1)
            )
        };
        let got = h.lines(
            Kind::Counters,
            &(next(&format!("\"{stat}\"")) + &next("other")),
        );
        let mut want = Vec::new();
        for s in [stat.as_str(), "other"] {
            want.push(encoded(s, u64::MAX >> 1, T + 60));
            want.push(encoded(s, 1, T));
        }
        let want: Vec<String> = want.iter().map(|l| l.trim_end().to_string()).collect();
        assert_eq!(got, want, "prefix of {target} bytes, a minute later");
    }
}

#[test]
fn rewrite_one_minute_later_emits_new_and_revised_only() {
    let mut h = Harness::quiet();
    h.lines(
        Kind::Counters,
        &row("cp1", "request.INVITE", T, &["5", "7", "9"]),
    );
    // One minute later: values shift right, a new v0, v1 (the old partial v0) revised.
    let got = h.lines(
        Kind::Counters,
        &row("cp1", "request.INVITE", T + 60, &["2", "6", "7", "9"]),
    );
    assert_eq!(
        got,
        vec![
            format!("request.INVITE,hostname=cp1 value=2i {}", T + 60),
            format!("request.INVITE,hostname=cp1 value=6i {T}")
        ]
    );
    // Fewer values than before: nothing is forgotten or re-sent.
    assert!(h
        .lines(
            Kind::Counters,
            &row("cp1", "request.INVITE", T + 60, &["2"])
        )
        .is_empty());
    // A jump past the ring forgets the old minutes: everything in the row is new.
    let (got, rep) = h.feed(
        Kind::Counters,
        &row("cp1", "request.INVITE", T + 60 * 20, &["1", "1"]),
    );
    assert_eq!(rep.points, [2, 0, 4], "{got:?}"); // and the rollups of the 4 minutes that left
                                                  // An older row than the series has seen: minutes still in the ring compare normally,
                                                  // minutes that left it are ignored.
    let (got, rep) = h.feed(
        Kind::Counters,
        &row("cp1", "request.INVITE", T + 60 * 19, &["1", "0"]),
    );
    assert_eq!(
        got,
        vec![(
            Bucket::Counters,
            format!("request.INVITE,hostname=cp1 value=0i {}", T + 60 * 18)
        )]
    );
    assert_eq!(rep.points, [1, 0, 0]);
}

#[test]
fn counts_above_u32_are_exact() {
    let mut h = Harness::quiet();
    let big = u32::MAX as u64;
    let got = h.lines(
        Kind::Counters,
        &row(
            "cp1",
            "s",
            T,
            &[
                &big.to_string(),
                &(big + 1).to_string(),
                "9223372036854775807",
            ],
        ),
    );
    assert_eq!(
        got,
        counters_lines("s", "cp1", T, &[big, big + 1, i64::MAX as u64])
    );
    assert!(h
        .lines(
            Kind::Counters,
            &row(
                "cp1",
                "s",
                T,
                &[
                    &big.to_string(),
                    &(big + 1).to_string(),
                    "9223372036854775807"
                ]
            )
        )
        .is_empty());
    let got = h.lines(
        Kind::Counters,
        &row(
            "cp1",
            "s",
            T,
            &["1", &(big + 2).to_string(), "9223372036854775807"],
        ),
    );
    assert_eq!(
        got,
        vec![
            format!("s,hostname=cp1 value=1i {T}"),
            format!("s,hostname=cp1 value={}i {}", big + 2, T - 60)
        ]
    );
    assert_eq!(h.table.series.big.len(), 2);
}

#[test]
fn oldest_first_order() {
    let mut h = Harness::new(TableConfig {
        value_order: ValueOrder::OldestFirst,
        settle_minutes: 1000,
        ..TableConfig::default()
    });
    let got = h.lines(Kind::Counters, &row("cp1", "s", T, &["1", "2", "3"]));
    assert_eq!(
        got,
        vec![
            format!("s,hostname=cp1 value=1i {}", T - 120),
            format!("s,hostname=cp1 value=2i {}", T - 60),
            format!("s,hostname=cp1 value=3i {T}")
        ]
    );
}

#[test]
fn samples_join_with_counters() {
    let mut h = Harness::quiet();
    h.lines(
        Kind::Counters,
        &row("cp1", "profiling.cp.INVITE", T, &["2", "3", ""]),
    );
    // samples.csv times are not aligned: 1652193081 is in minute T.
    let got = h.lines(
        Kind::Samples,
        &row(
            "cp1",
            "profiling.cp.INVITE",
            T + 21,
            &["0.106", "13.214", "0.5"],
        ),
    );
    assert_eq!(
            got,
            vec![
                format!("profiling.cp.INVITE,hostname=cp1 value=0.106,elapsed_time=0.212,occurrences=2i {T}"),
                format!(
                    "profiling.cp.INVITE,hostname=cp1 value=13.214,elapsed_time={},occurrences=3i {}",
                    13.214f64 * 3.0,
                    T - 60
                ),
                format!(
                    "profiling.cp.INVITE,hostname=cp1 value=0.5,elapsed_time=0,occurrences=0i {}",
                    T - 120
                ),
            ]
        );
    // The counters value of minute T is revised: the samples point follows.
    let got = h.lines(
        Kind::Counters,
        &row("cp1", "profiling.cp.INVITE", T, &["4", "3", ""]),
    );
    assert_eq!(
            got,
            vec![
                format!("profiling.cp.INVITE,hostname=cp1 value=4i {T}"),
                format!("profiling.cp.INVITE,hostname=cp1 value=0.106,elapsed_time=0.424,occurrences=4i {T}")
            ]
        );
    // An empty samples field is no data: no point.
    let got = h.lines(
        Kind::Samples,
        &row("cp2", "profiling.cp.INVITE", T, &["", ""]),
    );
    assert!(got.is_empty());
}

#[test]
fn stats_without_counters_are_values() {
    let mut h = Harness::quiet();
    h.lines(Kind::Counters, &row("cp1", "request.INVITE", T, &["1"]));
    let got = h.lines(
        Kind::Samples,
        &row(
            "sre32-cp1-testbed",
            "system.disk./boot",
            T + 1,
            &["66700.000", "0.000"],
        ),
    );
    assert_eq!(
        got,
        vec![
            format!("system.disk./boot,hostname=sre32-cp1-testbed value=66700 {T}"),
            format!(
                "system.disk./boot,hostname=sre32-cp1-testbed value=0 {}",
                T - 60
            )
        ]
    );
    assert!(h.table.next_deadline().is_none());
}

#[test]
fn samples_wait_for_counters_of_their_minute() {
    let mut h = Harness::new(TableConfig {
        join_wait: Duration::from_secs(30),
        settle_minutes: 1000,
        ..TableConfig::default()
    });
    h.lines(
        Kind::Counters,
        &row("cp1", "profiling.cp.loop", T, &["2", "4"]),
    );
    // samples.csv is already one minute ahead: its v0 waits for the counters rewrite.
    let got = h.lines(
        Kind::Samples,
        &row("cp1", "profiling.cp.loop", T + 61, &["0.5", "0.25", "1"]),
    );
    assert_eq!(
        got,
        vec![
            format!(
                "profiling.cp.loop,hostname=cp1 value=0.25,elapsed_time=0.5,occurrences=2i {T}"
            ),
            format!(
                "profiling.cp.loop,hostname=cp1 value=1,elapsed_time=4,occurrences=4i {}",
                T - 60
            ),
        ]
    );
    assert!(h.tick(Duration::from_secs(29)).is_empty());
    // The counters rewrite arrives in time: the joined point, never a `value`.
    let got = h.lines(
        Kind::Counters,
        &row("cp1", "profiling.cp.loop", T + 60, &["8", "2", "4"]),
    );
    assert_eq!(
        got,
        vec![
            format!("profiling.cp.loop,hostname=cp1 value=8i {}", T + 60),
            format!(
                "profiling.cp.loop,hostname=cp1 value=0.5,elapsed_time=4,occurrences=8i {}",
                T + 60
            ),
        ]
    );
    assert!(h.tick(Duration::from_secs(5)).is_empty());

    // Next minute the counters rewrite is late beyond join_wait: `value`, then the join.
    h.lines(
        Kind::Samples,
        &row("cp1", "profiling.cp.loop", T + 121, &["3", "0.5"]),
    );
    assert!(h.tick(Duration::from_secs(29)).is_empty());
    assert_eq!(
        h.tick(Duration::from_secs(1)),
        vec![format!(
            "profiling.cp.loop,hostname=cp1 value=3 {}",
            T + 120
        )]
    );
    let got = h.lines(
        Kind::Counters,
        &row("cp1", "profiling.cp.loop", T + 120, &["1", "8"]),
    );
    assert_eq!(
        got,
        vec![
            format!("profiling.cp.loop,hostname=cp1 value=1i {}", T + 120),
            format!(
                "profiling.cp.loop,hostname=cp1 value=3,elapsed_time=3,occurrences=1i {}",
                T + 120
            ),
        ]
    );
}

#[test]
fn stats_without_counters_wait_only_until_counters_reach_their_minute() {
    let mut h = Harness::new(TableConfig {
        join_wait: Duration::from_secs(30),
        settle_minutes: 1000,
        ..TableConfig::default()
    });
    h.lines(Kind::Counters, &row("cp1", "request.INVITE", T, &["1"]));
    // samples.csv is a minute ahead: the new minute waits for counters.csv.
    let got = h.lines(
        Kind::Samples,
        &row("cp1", "system.cpu", T + 61, &["0.5", "0.25"]),
    );
    assert_eq!(got, vec![format!("system.cpu,hostname=cp1 value=0.25 {T}")]);
    assert!(h.table.next_deadline().is_some());
    // counters.csv reaches the minute without system.cpu: written now, not after join_wait.
    let got = h.lines(
        Kind::Counters,
        &row("cp1", "request.INVITE", T + 60, &["2", "1"]),
    );
    assert_eq!(
        got,
        vec![
            format!("request.INVITE,hostname=cp1 value=2i {}", T + 60),
            format!("system.cpu,hostname=cp1 value=0.5 {}", T + 60),
        ]
    );
    assert!(h.table.next_deadline().is_none());
    assert!(h.tick(Duration::from_secs(30)).is_empty());
}

#[test]
fn samples_before_any_counters_wait_then_finish_writes_values() {
    let mut h = Harness::quiet();
    assert!(h
        .lines(
            Kind::Samples,
            &row("cp1", "accounting.openCalls", T, &["3800.000", "3566.667"])
        )
        .is_empty());
    let got = h.finish();
    assert_eq!(
            got,
            vec![
                (Bucket::Samples, format!("accounting.openCalls,hostname=cp1 value=3800 {T}")),
                (Bucket::Samples, format!("accounting.openCalls,hostname=cp1 value=3566.667 {}", T - 60)),
                (Bucket::Rollups, format!("accounting.openCalls,file=samples hosts=1i,occurrences=0i,mean=3566.667,p50=3566.667,p90=3566.667,p99=3566.667,max=3566.667 {}", T - 60)),
                (Bucket::Rollups, format!("accounting.openCalls,file=samples hosts=1i,occurrences=0i,mean=3800,p50=3800,p90=3800,p99=3800,max=3800 {T}")),
            ]
        );
}

#[test]
fn bad_and_duplicate_rows_are_counted_and_skipped() {
    let mut h = Harness::quiet();
    let data = format!(
        "{}{}h,s,t,x,1\nh,s\n{}",
        row("h", "s", T, &["1"]),
        row("h", "s", T, &["2"]),
        row("h", "u", T, &["-1"])
    );
    let (got, rep) = h.feed(Kind::Counters, &data);
    assert_eq!(
        got,
        vec![(Bucket::Counters, format!("s,hostname=h value=1i {T}"))]
    );
    assert_eq!(rep.rows, 1);
    assert_eq!(rep.bad[Reason::Duplicate.index()], 1);
    assert_eq!(rep.bad[Reason::BadTimestamp.index()], 1);
    assert_eq!(rep.bad[Reason::MissingFields.index()], 1);
    assert_eq!(rep.bad[Reason::Negative.index()], 1);
    assert_eq!(rep.bad_total(), 4);
    assert_eq!(
        rep.first_reasons(),
        vec![
            (Reason::Duplicate, 2),
            (Reason::BadTimestamp, 3),
            (Reason::MissingFields, 4),
            (Reason::Negative, 5)
        ]
    );
    // The next snapshot is a new file: the same series is allowed again.
    let (_, rep) = h.feed(Kind::Counters, &row("h", "s", T, &["1"]));
    assert_eq!(rep.bad_total(), 0);
}

#[test]
fn names_are_escaped() {
    let mut h = Harness::quiet();
    let got = h.lines(
        Kind::Counters,
        &format!("\"cp 1,a=b\",\"response.http.<GET>/x, y=\\z ü\",t,{T},7\n"),
    );
    assert_eq!(
        got,
        vec![format!(
            "response.http.<GET>/x\\,\\ y=\\\\z\\ ü,hostname=cp\\ 1\\,a\\=b value=7i {T}"
        )]
    );
}

#[test]
fn samples_rollups_wait_for_the_join() {
    let mut h = Harness::new(TableConfig {
        join_wait: Duration::from_secs(30),
        settle_minutes: 1,
        ..TableConfig::default()
    });
    // samples.csv before any counters.csv: the values wait, and so do their rollups.
    let got = h.feed(
        Kind::Samples,
        &row("cp1", "profiling.cp.loop", T + 61, &["1", "0.5"]),
    );
    assert!(got.0.is_empty(), "{:#?}", got.0);
    let (got, _) = h.feed(
        Kind::Counters,
        &row("cp1", "profiling.cp.loop", T + 60, &["2", "4"]),
    );
    let mut samples: Vec<_> = got
        .iter()
        .filter(|(b, l)| *b != Bucket::Counters && !l.contains("file=counters"))
        .cloned()
        .collect();
    samples.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
            samples,
            vec![
                (Bucket::Rollups, format!("profiling.cp.loop,file=samples hosts=1i,occurrences=4i,mean=0.5,p50=0.5,p90=0.5,p99=0.5,max=0.5 {T}")),
                (Bucket::Samples, format!("profiling.cp.loop,hostname=cp1 value=0.5,elapsed_time=2,occurrences=4i {T}")),
                (Bucket::Samples, format!("profiling.cp.loop,hostname=cp1 value=1,elapsed_time=2,occurrences=2i {}", T + 60)),
            ]
        );
    // counters.csv has reached T + 60 (without system.cpu): that minute's value and rollup
    // (with profiling.cp.loop's, now settled) are written at once; T + 120 waits, then is written as `value` (not settled yet).
    let (got, _) = h.feed(
        Kind::Samples,
        &row("cp1", "system.cpu", T + 121, &["0.25", "0.75"]),
    );
    let want = [
            (Bucket::Samples, format!("system.cpu,hostname=cp1 value=0.75 {}", T + 60)),
            (Bucket::Rollups, format!("profiling.cp.loop,file=samples hosts=1i,occurrences=2i,mean=1,p50=1,p90=1,p99=1,max=1 {}", T + 60)),
            (Bucket::Rollups, format!("system.cpu,file=samples hosts=1i,occurrences=0i,mean=0.75,p50=0.75,p90=0.75,p99=0.75,max=0.75 {}", T + 60)),
        ];
    assert_eq!(got, want, "{got:#?}");
    assert_eq!(
        h.tick(Duration::from_secs(30)),
        vec![format!("system.cpu,hostname=cp1 value=0.25 {}", T + 120)]
    );
}

#[test]
fn samples_rollups_follow_a_counters_revision_at_once() {
    let mut h = Harness::new(TableConfig {
        settle_minutes: 1,
        ..TableConfig::default()
    });
    h.lines(
        Kind::Counters,
        &row("cp1", "profiling.cp.loop", T, &["3", "4"]),
    );
    // samples.csv one minute ahead: minute T settles with the occurrences known so far (3).
    let (got, _) = h.feed(
        Kind::Samples,
        &row("cp1", "profiling.cp.loop", T + 61, &["1", "0.5", "0.25"]),
    );
    let roll = |occ: u64| {
        format!("profiling.cp.loop,file=samples hosts=1i,occurrences={occ}i,mean=0.5,p50=0.5,p90=0.5,p99=0.5,max=0.5 {T}")
    };
    assert!(got.contains(&(Bucket::Rollups, roll(3))), "{got:#?}");
    // counters.csv revises minute T to 6: the joined point and the settled rollup, at once.
    let (got, _) = h.feed(
        Kind::Counters,
        &row("cp1", "profiling.cp.loop", T + 60, &["2", "6", "4"]),
    );
    let rollups: Vec<_> = got
        .iter()
        .filter(|(b, _)| *b == Bucket::Rollups)
        .map(|(_, l)| l.clone())
        .collect();
    assert!(rollups.contains(&roll(6)), "{rollups:#?}");
    assert!(got.contains(&(
        Bucket::Samples,
        format!("profiling.cp.loop,hostname=cp1 value=0.5,elapsed_time=3,occurrences=6i {T}")
    )));
}

#[test]
fn counters_rollups_settle_and_revise() {
    let mut h = Harness::new(TableConfig {
        settle_minutes: 1,
        ..TableConfig::default()
    });
    let data = format!(
        "{}{}",
        row("cp1", "request.INVITE", T, &["5", "7"]),
        row("cp2", "request.INVITE", T, &["1", "2"])
    );
    let (got, _) = h.feed(Kind::Counters, &data);
    let rollups: Vec<_> = got
        .iter()
        .filter(|(b, _)| *b == Bucket::Rollups)
        .map(|(_, l)| l.clone())
        .collect();
    assert_eq!(
        rollups,
        vec![format!(
            "request.INVITE,file=counters sum=9i,hosts=2i {}",
            T - 60
        )]
    );
    // Same data: nothing. A revision of the settled minute: the rollup is rewritten.
    assert!(h.lines(Kind::Counters, &data).is_empty());
    let data = format!(
        "{}{}",
        row("cp1", "request.INVITE", T, &["5", "8"]),
        row("cp2", "request.INVITE", T, &["1", "2"])
    );
    let got = h.lines(Kind::Counters, &data);
    assert_eq!(
        got,
        vec![
            format!("request.INVITE,hostname=cp1 value=8i {}", T - 60),
            format!("request.INVITE,file=counters sum=10i,hosts=2i {}", T - 60)
        ]
    );
    // One minute later, minute T settles.
    let got = h.lines(
        Kind::Counters,
        &row("cp1", "request.INVITE", T + 60, &["1", "5", "8"]),
    );
    assert_eq!(
        got,
        vec![
            format!("request.INVITE,hostname=cp1 value=1i {}", T + 60),
            format!("request.INVITE,file=counters sum=6i,hosts=2i {T}")
        ]
    );
}

#[test]
fn a_lagging_hosts_minutes_outside_the_window_are_not_in_the_rollups() {
    // Every series has a row, so the rollups are the sums made while the rows were
    // applied. cp2's row is 3 minutes behind the file's minute: its two oldest values
    // (T-16 and T-17 minutes) are outside the window, in the ring slots of T and T-1.
    let mut h = Harness::quiet();
    let ones = ["1"; 15];
    let data = format!(
        "{}{}{}",
        row("cp1", "s", T, &ones),
        row("cp2", "s", T - 180, &["100"; 15]),
        row("cp3", "s", T, &ones)
    );
    let (_, rep) = h.feed(Kind::Counters, &data);
    assert_eq!((rep.rows, rep.points[0]), (3, 45));
    let got: Vec<String> = h
        .finish()
        .into_iter()
        .filter(|(b, _)| *b == Bucket::Rollups)
        .map(|(_, l)| l)
        .collect();
    let mut want = vec![format!("s,file=counters sum=100i,hosts=1i {}", T - 15 * 60)];
    for i in (3..=14).rev() {
        want.push(format!("s,file=counters sum=102i,hosts=3i {}", T - i * 60));
    }
    for i in (0..=2).rev() {
        want.push(format!("s,file=counters sum=2i,hosts=2i {}", T - i * 60));
    }
    assert_eq!(got, want);
}

#[test]
fn rollups_are_written_before_their_minutes_leave_the_ring() {
    let mut h = Harness::quiet();
    h.lines(Kind::Counters, &row("cp1", "s", T, &["1", "2"]));
    let got = h.lines(Kind::Counters, &row("cp1", "s", T + 60 * 30, &["3"]));
    assert_eq!(
        got,
        vec![
            format!("s,hostname=cp1 value=3i {}", T + 60 * 30),
            format!("s,file=counters sum=2i,hosts=1i {}", T - 60),
            format!("s,file=counters sum=1i,hosts=1i {T}"),
        ]
    );
}

#[test]
fn samples_rollups_weight_by_occurrences() {
    let mut h = Harness::quiet();
    let mut counters = String::new();
    let mut samples = String::new();
    // Ten hosts: averages 0.1 .. 1.0 (HDR-exact in thousandths), occurrences 1..10.
    for i in 1..=10 {
        counters += &row(
            &format!("cp{i}"),
            "profiling.cp.INVITE",
            T,
            &[&i.to_string()],
        );
        samples += &row(
            &format!("cp{i}"),
            "profiling.cp.INVITE",
            T,
            &[&format!("{:.3}", i as f64 / 10.0)],
        );
    }
    // A host with zero occurrences counts as a host but carries no weight.
    counters += &row("cp11", "profiling.cp.INVITE", T, &["0"]);
    samples += &row("cp11", "profiling.cp.INVITE", T, &["9.000"]);
    h.lines(Kind::Counters, &counters);
    h.lines(Kind::Samples, &samples);
    let got = h.finish();
    let rollups: Vec<_> = got
        .into_iter()
        .filter(|(b, _)| *b == Bucket::Rollups)
        .map(|(_, l)| l)
        .collect();
    // Weighted by occurrences: 55 events; mean = sum(i * i/10) / 55 = 38.5 / 55 = 0.7.
    // p50: the 28th event falls in host 7 (cumulative 1+..+7 = 28) -> 0.7;
    // p90: event 49.5 -> host 10 (cumulative 45 at host 9) -> 1.0; p99 -> 1.0; max 1.0.
    let mean = (1..=10).map(|i| i as f64 * (i as f64 / 10.0)).sum::<f64>() / 55.0;
    assert_eq!(
            rollups,
            vec![
                format!("profiling.cp.INVITE,file=counters sum=55i,hosts=11i {T}"),
                format!("profiling.cp.INVITE,file=samples hosts=11i,occurrences=55i,mean={mean},p50=0.7,p90=1,p99=1,max=1 {T}"),
            ]
        );
}

//! Validation before any state changes.

use super::*;

const T: i64 = 1652193060;
/// 2100-01-01T00:00:00Z
const FUTURE: i64 = 4102444800;

fn row(host: &str, stat: &str, t: i64, vals: &[u64]) -> String {
    let v: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
    format!("{host},{stat},2022-05-10T16:31:00,{t},{}\n", v.join(","))
}

/// The platform's counters.csv after `k` minutes: two hosts, two stats, 15 values each
/// (value of minute m = a small function of host, stat and m; v0 partial, final a minute later).
fn file(k: i64) -> Vec<String> {
    let t = T + 60 * k;
    let mut rows = Vec::new();
    for (h, host) in ["cp1", "cp2"].iter().enumerate() {
        for (s, stat) in ["request.INVITE", "request.BYE"].iter().enumerate() {
            let vals: Vec<u64> = (0..15)
                .map(|i| {
                    let m = (k - i + 100) as u64;
                    let full = m * 7 + h as u64 * 3 + s as u64 * 11;
                    if i == 0 {
                        full / 2
                    } else {
                        full
                    }
                })
                .collect();
            rows.push(row(host, stat, t, &vals));
        }
    }
    rows
}

fn run(odd_at: Option<(i64, bool)>) -> (Vec<Vec<(Bucket, String)>>, [u64; Reason::COUNT]) {
    let mut t = Table::new(TableConfig {
        settle_minutes: 1,
        ..TableConfig::default()
    });
    let now = Instant::now();
    let mut steps = Vec::new();
    let mut bad = [0; Reason::COUNT];
    for k in 0..10 {
        let mut rows = file(k);
        if let Some((at, after)) = odd_at {
            if at == k {
                // A copy of cp1's request.INVITE row with unix time 2100-01-01.
                let odd = rows[0].replace(&format!(",{},", T + 60 * k), &format!(",{FUTURE},"));
                rows.insert(if after { 1 } else { 0 }, odd);
            }
        }
        let data = rows.concat();
        let mut got = Vec::new();
        let wall = T + 60 * k + 20;
        let rep = t.ingest_at(
            Kind::Counters,
            data.as_bytes(),
            Tail::Wait,
            now,
            wall,
            &mut |b, l, _| {
                got.extend(
                    String::from_utf8(l.to_vec())
                        .unwrap()
                        .lines()
                        .map(|l| (b, l.to_string())),
                )
            },
        );
        assert_eq!(rep.records, rep.rows + rep.bad_total());
        for (a, b) in bad.iter_mut().zip(rep.bad) {
            *a += b;
        }
        got.sort_by(|a, b| a.1.cmp(&b.1));
        steps.push(got);
    }
    (steps, bad)
}

/// A copy of one row dated 2100-01-01, in one rewrite only, before (and
/// after) the real row. Every later point and rollup must be exactly the clean run's.
#[test]
fn a_row_from_the_far_future_moves_nothing() {
    let (clean, bad) = run(None);
    assert_eq!(bad, [0; Reason::COUNT]);
    for after in [false, true] {
        let (got, bad) = run(Some((2, after)));
        let mut want = [0; Reason::COUNT];
        want[Reason::Future.index()] = 1;
        assert_eq!(
            bad, want,
            "the odd row is counted as future (after={after})"
        );
        for (k, (g, c)) in got.iter().zip(&clean).enumerate() {
            assert_eq!(g, c, "rewrite {k}, odd row after the real one: {after}");
        }
    }
}

fn feed(t: &mut Table, data: &str, wall: i64) -> (Vec<String>, FileReport) {
    let mut got = Vec::new();
    let rep = t.ingest_at(
        Kind::Counters,
        data.as_bytes(),
        Tail::Wait,
        Instant::now(),
        wall,
        &mut |_, l, _| {
            got.extend(
                String::from_utf8(l.to_vec())
                    .unwrap()
                    .lines()
                    .map(String::from),
            )
        },
    );
    assert_eq!(rep.records, rep.rows + rep.bad_total());
    got.sort();
    (got, rep)
}

/// A row within the wall clock's tolerance but ahead of the other rows moves neither the
/// file's minute (rollups are not settled early) nor anything else; rows older than the
/// window and a duplicate are rejected with their reasons and change nothing.
#[test]
fn odd_rows_are_rejected_and_cannot_steer_the_file() {
    let mut t = Table::new(TableConfig {
        settle_minutes: 2,
        ..TableConfig::default()
    });
    let wall = T + 30;
    let data = format!(
        "{}{}",
        row("cp1", "a", T, &[5, 4, 3]),
        row("cp2", "a", T, &[1, 1, 1])
    );
    let (got, _) = feed(&mut t, &data, wall);
    assert_eq!(got.len(), 7, "{got:?}"); // 6 points and the settled minute T-2's rollup
                                         // Next rewrite: cp3's row is 4 minutes ahead (within the 5-minute tolerance); a row
                                         // 16 minutes old; a row 6 minutes ahead of the wall clock; a duplicate of cp1.
    let data = format!(
        "{}{}{}{}{}{}",
        row("cp1", "a", T + 60, &[6, 5, 4, 3]),
        row("cp2", "a", T + 60, &[1, 1, 1, 1]),
        row("cp3", "a", T + 60 * 4, &[9]),
        row("cp4", "a", T + 60 - 16 * 60, &[9]),
        row("cp5", "a", T + 60 * 7, &[9]),
        row("cp1", "a", T + 60, &[7, 7, 7, 7]),
    );
    let (got, rep) = feed(&mut t, &data, wall + 60);
    assert_eq!(
        got,
        vec![
            format!("a,file=counters sum=5i,hosts=2i {}", T - 60),
            format!("a,hostname=cp1 value=6i {}", T + 60),
            format!("a,hostname=cp2 value=1i {}", T + 60),
            format!("a,hostname=cp3 value=9i {}", T + 240),
        ]
    );
    assert_eq!(
        rep.first_reasons(),
        vec![
            (Reason::TooOld, 4),
            (Reason::Future, 5),
            (Reason::Duplicate, 6)
        ]
    );
    assert_eq!(
        t.files[0].top,
        (T + 60) / 60,
        "the file's minute is the one most rows carry"
    );
}

/// The EM node's clock steps back or forward (NTP step): the platform's files jump with it,
/// and ingest follows them at once, never stalling.
#[test]
fn clock_steps_do_not_stall() {
    for step in [-40i64, -5, 40] {
        let mut t = Table::new(TableConfig {
            settle_minutes: 1,
            ..TableConfig::default()
        });
        for k in 0..3 {
            let tk = T + 60 * k;
            feed(&mut t, &row("cp1", "a", tk, &[k as u64 + 10, 1]), tk + 20);
        }
        for k in 3..8 {
            let tk = T + 60 * (k + step);
            let (got, rep) = feed(&mut t, &row("cp1", "a", tk, &[k as u64 + 10, 1]), tk + 20);
            assert_eq!(rep.rows, 1, "step {step}, rewrite {k}");
            assert!(
                got.contains(&format!("a,hostname=cp1 value={}i {tk}", k + 10)),
                "step {step}, rewrite {k}: {got:?}"
            );
        }
    }
}

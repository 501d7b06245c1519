//! `srewatch ingest` end to end through a real InfluxDB storage engine (Debian's InfluxDB 1.6
//! behind nginx, `tests/util/influx.rs`): the stored points, under InfluxDB's semantics (fields
//! of one point merge, last write wins per field), must be exactly the final files' points,
//! field for field.

use crate::util::influx::{Fields, Influx, Key};
use crate::util::{srewatch, tempdir, Proc};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const T1: i64 = 1652193120;
const T0: i64 = T1 - 60;
const TM: i64 = T1 - 120;

/// The storage semantics on their own: InfluxDB merges the fields of two writes of one point.
/// Proves the harness sees the semantics the schema must be designed for.
#[test]
fn influx_merges_the_fields_of_one_point() {
    let dir = tempdir();
    let ix = Influx::start(dir.path(), &["b"]);
    assert_eq!(ix.write_v2("b", "s", "m,hostname=h value=1.5 60\n"), 204);
    assert_eq!(
        ix.write_v2(
            "b",
            "s",
            "m,hostname=h elapsed_time=3.0,occurrences=2i 60\n"
        ),
        204
    );
    let got = ix.points("b");
    let want: BTreeMap<Key, Fields> = [(
        key("m", &[("hostname", "h")], 60),
        fields(&[("elapsed_time", 3.0), ("occurrences", 2.0), ("value", 1.5)]),
    )]
    .into();
    assert_eq!(got, want);
}

fn key(m: &str, tags: &[(&str, &str)], t: i64) -> Key {
    (
        m.to_string(),
        tags.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        t,
    )
}

fn fields(f: &[(&str, f64)]) -> Fields {
    f.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn write(path: &Path, rows: &[String]) {
    crate::util::replace(path, &rows.concat());
}

fn row(host: &str, stat: &str, t: i64, vals: &[&str]) -> String {
    format!("{host},{stat},2022-05-10T16:31:00,{t},{}\n", vals.join(","))
}

/// Waits until `db` holds `key` with field `f` = `v`.
fn wait_for(ix: &Influx, db: &str, k: &Key, f: &str, v: f64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = ix.points(db);
        if p.get(k).and_then(|x| x.get(f)) == Some(&v) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: timed out; {db}: {p:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn close(a: &BTreeMap<Key, Fields>, b: &BTreeMap<Key, Fields>) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ka, fa), (kb, fb))| {
            ka == kb
                && fa.len() == fb.len()
                && fa.iter().zip(fb).all(|((na, va), (nb, vb))| {
                    na == nb && (va - vb).abs() <= 1e-12 * va.abs().max(vb.abs()).max(1.0)
                })
        })
}

/// samples.csv ahead of counters.csv past `join_wait` (points written as `value`, then a
/// samples revision, then joined), counters revisions, and counters values revised to 0 (a
/// settled samples rollup whose hosts all lose their weight): InfluxDB must end up holding
/// exactly the points of the final files, no stale field anywhere.
#[test]
fn stored_points_equal_the_final_files_points() {
    let dir = tempdir();
    let ix = Influx::start(dir.path(), &["counters", "samples", "rollups"]);
    let data = dir.path().join("sre");
    std::fs::create_dir(&data).unwrap();
    let _p = follow(dir.path(), &ix, &data, "srewatch.log");
    let (c, s) = (data.join("counters.csv"), data.join("samples.csv"));
    let (inv, cpu) = ("profiling.cp.INVITE", "system.cpu");
    let h1 = [("hostname", "cp1")];
    let h2 = [("hostname", "cp2")];

    // Minute T0: both files, counters first.
    write(
        &c,
        &[
            row("cp1", inv, T0, &["4", "10"]),
            row("cp2", inv, T0, &["2", "3"]),
        ],
    );
    write(
        &s,
        &[
            row("cp1", inv, T0 + 1, &["0.5", "0.25"]),
            row("cp2", inv, T0 + 1, &["1.0", "2.0"]),
            row("cp1", cpu, T0 + 1, &["0.3", "0.4"]),
        ],
    );
    wait_for(&ix, "samples", &key(cpu, &h1, T0), "value", 0.3, "T0");
    // Minute T1: samples.csv first, its new minute waits past join_wait: written as `value`.
    let samples = |v0: &str| {
        [
            row("cp1", inv, T1 + 1, &[v0, "0.5", "0.25"]),
            row("cp2", inv, T1 + 1, &["3.0", "1.0", "2.0"]),
            row("cp1", cpu, T1 + 1, &["0.1", "0.3", "0.4"]),
        ]
    };
    write(&s, &samples("0.75"));
    wait_for(
        &ix,
        "samples",
        &key(inv, &h1, T1),
        "value",
        0.75,
        "T1 value",
    );
    // samples.csv revises cp1's T1 average, still ahead of counters.csv.
    write(&s, &samples("0.8"));
    wait_for(
        &ix,
        "samples",
        &key(inv, &h1, T1),
        "value",
        0.8,
        "T1 revised",
    );
    // counters.csv reaches T1 (the join), cp2's T0 revised to 0.
    write(
        &c,
        &[
            row("cp1", inv, T1, &["5", "6", "10"]),
            row("cp2", inv, T1, &["1", "0", "3"]),
        ],
    );
    wait_for(
        &ix,
        "counters",
        &key(inv, &h1, T1),
        "value",
        5.0,
        "T1 counters",
    );
    // counters.csv revises TM to 0 for both hosts: TM's samples rollup has no weight left.
    write(
        &c,
        &[
            row("cp1", inv, T1, &["5", "6", "0"]),
            row("cp2", inv, T1, &["1", "0", "0"]),
        ],
    );
    wait_for(
        &ix,
        "counters",
        &key(inv, &h2, TM),
        "value",
        0.0,
        "TM revised",
    );

    // The final files' points.
    let mut want: BTreeMap<&str, BTreeMap<Key, Fields>> = BTreeMap::new();
    let cw = want.entry("counters").or_default();
    for (h, vals) in [(&h1, [5.0, 6.0, 0.0]), (&h2, [1.0, 0.0, 0.0])] {
        for (t, v) in [T1, T0, TM].into_iter().zip(vals) {
            cw.insert(key(inv, h, t), fields(&[("value", v)]));
        }
    }
    let sw = want.entry("samples").or_default();
    for (h, avg, occ) in [
        (&h1, [0.8, 0.5, 0.25], [5.0, 6.0, 0.0]),
        (&h2, [3.0, 1.0, 2.0], [1.0, 0.0, 0.0]),
    ] {
        for (i, t) in [T1, T0, TM].into_iter().enumerate() {
            sw.insert(
                key(inv, h, t),
                fields(&[
                    ("value", avg[i]),
                    ("elapsed_time", avg[i] * occ[i]),
                    ("occurrences", occ[i]),
                ]),
            );
        }
    }
    for (t, v) in [(T1, 0.1), (T0, 0.3), (TM, 0.4)] {
        sw.insert(key(cpu, &h1, t), fields(&[("value", v)]));
    }
    // Rollups of the settled minutes T0 and TM (T1 is the newest minute: not settled).
    let rw = want.entry("rollups").or_default();
    let fc = [("file", "counters")];
    let fs = [("file", "samples")];
    rw.insert(key(inv, &fc, T0), fields(&[("sum", 6.0), ("hosts", 2.0)]));
    rw.insert(key(inv, &fc, TM), fields(&[("sum", 0.0), ("hosts", 2.0)]));
    let roll = |hosts: f64, occ: f64, mean: f64, q: [f64; 4]| {
        fields(&[
            ("hosts", hosts),
            ("occurrences", occ),
            ("mean", mean),
            ("p50", q[0]),
            ("p90", q[1]),
            ("p99", q[2]),
            ("max", q[3]),
        ])
    };
    // T0: cp2 has 0 occurrences, no weight; TM: no host has weight, each host counts once.
    rw.insert(key(inv, &fs, T0), roll(2.0, 6.0, 0.5, [0.5; 4]));
    rw.insert(
        key(inv, &fs, TM),
        roll(2.0, 0.0, 1.125, [0.25, 2.0, 2.0, 2.0]),
    );
    for (t, v) in [(T0, 0.3), (TM, 0.4)] {
        rw.insert(key(cpu, &fs, t), roll(1.0, 0.0, v, [v; 4]));
    }

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ok = want.iter().all(|(db, w)| close(&ix.points(db), w));
        if ok {
            break;
        }
        if Instant::now() > deadline {
            for (db, w) in &want {
                assert_eq!(&ix.points(db), w, "bucket {db}");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `srewatch ingest` following `data` into `ix`, its state in `dir/spool/state`; settle 1 min,
/// rollups only once settled.
fn follow(dir: &Path, ix: &Influx, data: &Path, log: &str) -> Proc {
    follow_rollups(dir, ix, data, log, "rollups = \"settled\"\n")
}

/// [`follow`] with `rollups_line` in `[ingest]` (empty: the default).
fn follow_rollups(dir: &Path, ix: &Influx, data: &Path, log: &str, rollups_line: &str) -> Proc {
    let cfg = dir.join("srewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ingest]\ndir = \"{}\"\ndebounce = \"20ms\"\nrescan_interval = \"1s\"\njoin_wait = \"1s\"\nsettle_time = \"1m\"\n{rollups_line}\n\
             [influxdb]\nurl = \"{}\"\ntoken_env = \"SREWATCH_INFLUX_TEST_TOKEN_UNSET\"\nspool_dir = \"{}\"\n\
             batch_max_delay = \"20ms\"\nretry_base = \"50ms\"\nretry_max = \"200ms\"\n",
            data.display(),
            ix.url(),
            dir.join("spool").display()
        ),
    )
    .unwrap();
    let mut cmd = srewatch();
    cmd.arg("ingest").arg("--config").arg(&cfg);
    cmd.env("SREWATCH_LOG", "info,ingest::files=debug");
    Proc::spawn("srewatch ingest", cmd, &dir.join(log))
}

/// A restart while the current files lack a host the old process had (cp3 vanished from
/// counters.csv; samples.csv a rewrite behind) must not rebuild settled rollups from the
/// current files only (the saved table state keeps cp3): rebuilt, TM's and T0's counters
/// rollups would leave cp3 out (`hosts=2`, sums 13 and 6) and TM's samples rollup would have
/// cp3 unjoined (`occurrences=13`).
#[test]
fn restart_with_a_host_missing_keeps_the_stored_rollups() {
    let dir = tempdir();
    let ix = Influx::start(dir.path(), &["counters", "samples", "rollups"]);
    let data = dir.path().join("sre");
    std::fs::create_dir(&data).unwrap();
    let (c, s) = (data.join("counters.csv"), data.join("samples.csv"));
    let inv = "profiling.cp.INVITE";
    let t2 = T1 + 60;
    let (fc, fs) = ([("file", "counters")], [("file", "samples")]);

    let mut p = follow(dir.path(), &ix, &data, "srewatch-1.log");
    // Minute T0: three hosts in both files. TM settles.
    write(
        &c,
        &[
            row("cp1", inv, T0, &["4", "10"]),
            row("cp2", inv, T0, &["2", "3"]),
            row("cp3", inv, T0, &["5", "7"]),
        ],
    );
    write(
        &s,
        &[
            row("cp1", inv, T0 + 1, &["0.5", "0.25"]),
            row("cp2", inv, T0 + 1, &["1.0", "2.0"]),
            row("cp3", inv, T0 + 1, &["0.75", "1.5"]),
        ],
    );
    wait_for(
        &ix,
        "rollups",
        &key(inv, &fs, TM),
        "occurrences",
        20.0,
        "TM samples rollup",
    );
    // Minute T1 in counters.csv only, cp3 gone: T0 settles with cp3's value still known.
    write(
        &c,
        &[
            row("cp1", inv, T1, &["6", "4", "10"]),
            row("cp2", inv, T1, &["1", "2", "3"]),
        ],
    );
    wait_for(
        &ix,
        "rollups",
        &key(inv, &fc, T0),
        "sum",
        11.0,
        "T0 counters rollup",
    );
    let before = ix.points("rollups");
    assert_eq!(
        p.terminate(Duration::from_secs(15)).and_then(|s| s.code()),
        Some(0)
    );

    // The new process reads the same files: counters.csv without cp3, samples.csv behind.
    let mut p = follow(dir.path(), &ix, &data, "srewatch-2.log");
    let log = dir.path().join("srewatch-2.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    // Both files read as they were (one "Ingested snapshot" each) before the platform goes on.
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("Ingested snapshot")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "srewatch did not read both files"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Then the platform goes on: samples.csv reaches T1 (T0 settles), counters.csv T2 (T1
    // settles); cp3 stays gone.
    write(
        &s,
        &[
            row("cp1", inv, T1 + 1, &["0.125", "0.5", "0.25"]),
            row("cp2", inv, T1 + 1, &["0.5", "1.0", "2.0"]),
        ],
    );
    write(
        &c,
        &[
            row("cp1", inv, t2, &["1", "6", "4", "10"]),
            row("cp2", inv, t2, &["1", "1", "2", "3"]),
        ],
    );
    wait_for(
        &ix,
        "rollups",
        &key(inv, &fc, T1),
        "sum",
        7.0,
        "T1 counters rollup",
    );
    wait_for(
        &ix,
        "rollups",
        &key(inv, &fs, T0),
        "hosts",
        3.0,
        "T0 samples rollup",
    );
    assert_eq!(
        p.terminate(Duration::from_secs(15)).and_then(|s| s.code()),
        Some(0)
    );

    let roll = |hosts: f64, occ: f64, mean: f64, q: [f64; 4]| {
        fields(&[
            ("hosts", hosts),
            ("occurrences", occ),
            ("mean", mean),
            ("p50", q[0]),
            ("p90", q[1]),
            ("p99", q[2]),
            ("max", q[3]),
        ])
    };
    let want: BTreeMap<Key, Fields> = [
        (key(inv, &fc, TM), fields(&[("sum", 20.0), ("hosts", 3.0)])),
        (key(inv, &fc, T0), fields(&[("sum", 11.0), ("hosts", 3.0)])),
        (key(inv, &fc, T1), fields(&[("sum", 7.0), ("hosts", 2.0)])),
        // TM: 0.25 x10, 2.0 x3, 1.5 x7; T0: 0.5 x4, 1.0 x2, 0.75 x5.
        (
            key(inv, &fs, TM),
            roll(3.0, 20.0, 19.0 / 20.0, [0.25, 2.0, 2.0, 2.0]),
        ),
        (
            key(inv, &fs, T0),
            roll(3.0, 11.0, 7.75 / 11.0, [0.75, 1.0, 1.0, 1.0]),
        ),
    ]
    .into();
    let got = ix.points("rollups");
    assert!(close(&got, &want), "rollups: got {got:#?}\nwant {want:#?}");
    for k in [key(inv, &fc, TM), key(inv, &fc, T0), key(inv, &fs, TM)] {
        assert_eq!(got[&k], before[&k], "{k:?} changed across the restart");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Table state restored"), "log:\n{text}");
}

/// Through the real service: `srewatch run` against InfluxDB 1.6 with
/// the guide's buckets `counters`, `samples` and `rollups` but not the health bucket
/// (`srewatch`). The health points are refused (404); the counters points of the file and of
/// its rewrite arrive all the same, the refusal is logged once for that bucket, and `/metrics`
/// names the bucket and the answer.
#[test]
fn run_without_the_health_bucket_still_delivers_the_files() {
    let dir = tempdir();
    let ix = Influx::start(dir.path(), &["counters", "samples", "rollups"]);
    let data = dir.path().join("sre");
    std::fs::create_dir(&data).unwrap();
    let metrics_port = crate::util::free_tcp_port();
    let cfg = dir.path().join("srewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[service]\nprobe = false\nkamailio = false\nhealth_interval = \"1s\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\n\
             [ingest]\ndir = \"{}\"\ndebounce = \"20ms\"\nrescan_interval = \"1s\"\njoin_wait = \"1s\"\nsettle_time = \"1m\"\n\n\
             [influxdb]\nurl = \"{}\"\ntoken_env = \"SREWATCH_INFLUX_TEST_TOKEN_UNSET\"\nspool_dir = \"{}\"\n\
             batch_max_delay = \"20ms\"\nretry_base = \"50ms\"\nretry_max = \"200ms\"\n",
            data.display(),
            ix.url(),
            dir.path().join("spool").display()
        ),
    )
    .unwrap();
    let mut cmd = srewatch();
    cmd.arg("run").arg("--config").arg(&cfg);
    let log = dir.path().join("run.log");
    let _p = Proc::spawn("srewatch run", cmd, &log);
    // Let the first health points be refused before the files are written (`InfluxDB refuse`
    // is also how the sink before per-bucket delivery logged it).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("InfluxDB refuse")
    {
        assert!(Instant::now() < deadline, "no refusal logged");
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = data.join("counters.csv");
    let inv = "profiling.cp.INVITE";
    let (h1, h2) = ([("hostname", "cp1")], [("hostname", "cp2")]);
    write(
        &c,
        &[
            row("cp1", inv, T0, &["4", "10"]),
            row("cp2", inv, T0, &["2", "3"]),
        ],
    );
    wait_for(&ix, "counters", &key(inv, &h1, T0), "value", 4.0, "T0");
    // The rewrite revises every point.
    let t0 = Instant::now();
    write(
        &c,
        &[
            row("cp1", inv, T0, &["7", "11"]),
            row("cp2", inv, T0, &["5", "6"]),
        ],
    );
    wait_for(&ix, "counters", &key(inv, &h2, TM), "value", 6.0, "rewrite");
    let want: BTreeMap<Key, Fields> = [
        (key(inv, &h1, T0), 7.0),
        (key(inv, &h1, TM), 11.0),
        (key(inv, &h2, T0), 5.0),
        (key(inv, &h2, TM), 6.0),
    ]
    .into_iter()
    .map(|(k, v)| (k, fields(&[("value", v)])))
    .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ix.points("counters") != want {
        assert!(Instant::now() < deadline, "{:#?}", ix.points("counters"));
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "srewatch run without the srewatch bucket: the rewrite's 4 counters points stored {:?} after it",
        t0.elapsed()
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let (status, body) = crate::util::victoria::http(addr, "GET", "/metrics", b"").unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("srewatch_sink_bucket_refused{bucket=\"srewatch\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("srewatch_sink_bucket_refused{bucket=\"counters\""),
        "{text}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let refusals = text
        .lines()
        .filter(|l| l.contains("InfluxDB refuses writes to bucket") && l.contains("srewatch"))
        .count();
    assert_eq!(refusals, 1, "{text}");
    assert!(text.contains("InfluxDB accepts writes to bucket"), "{text}");
}

/// The `settled` field of the rollups point `k`, as InfluxDB holds it.
fn settled(ix: &Influx, k: &Key) -> Option<bool> {
    let tags: String =
        k.1.iter()
            .map(|(t, v)| format!(" AND \"{t}\" = '{v}'"))
            .collect();
    let q = format!(
        "SELECT settled FROM \"{}\" WHERE time = {}s{tags}",
        k.0, k.2
    );
    let v = ix.query("rollups", &q);
    v["results"][0]["series"][0]["values"][0][1].as_bool()
}

/// Waits until the rollups point `k` has `settled` = `want`.
fn wait_settled(ix: &Influx, k: &Key, want: bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while settled(ix, k) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{what}: timed out; rollups: {:#?}",
            ix.points("rollups")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The rollups lines of `srewatch ingest --once` over `data` with `rollups = "settled"`, as
/// points (without `settled`, which that mode does not write).
fn settled_rollups(dir: &Path, data: &Path) -> BTreeMap<Key, Fields> {
    let cfg = dir.join("settled.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ingest]\ndir = \"{}\"\nsettle_time = \"1m\"\nrollups = \"settled\"\n",
            data.display()
        ),
    )
    .unwrap();
    let out = srewatch()
        .args(["ingest", "--once", "--dir"])
        .arg(data)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut got = BTreeMap::new();
    for l in String::from_utf8(out.stdout).unwrap().lines() {
        if !l.contains(",file=") {
            continue;
        }
        let mut parts = l.split(' ');
        let (series, fs, t) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let (m, tag) = series.split_once(',').unwrap();
        let (tk, tv) = tag.split_once('=').unwrap();
        let f: Fields = fs
            .split(',')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.trim_end_matches('i').parse().unwrap())
            })
            .collect();
        got.insert(key(m, &[(tk, tv)], t.parse().unwrap()), f);
    }
    got
}

/// With the default `rollups = "live"` the newest minute's rollups
/// are in InfluxDB right after its first snapshot and follow each revision; every write of a
/// minute lands on the same point (same series and time), and once the minute has settled
/// that one point holds `settled=true` and exactly the fields the settled mode writes for the
/// same files.
#[test]
fn live_rollups_are_one_point_per_minute_ending_with_the_settled_values() {
    let dir = tempdir();
    let ix = Influx::start(dir.path(), &["counters", "samples", "rollups"]);
    let data = dir.path().join("sre");
    std::fs::create_dir(&data).unwrap();
    // The default: live.
    let _p = follow_rollups(dir.path(), &ix, &data, "srewatch.log", "");
    let (c, s) = (data.join("counters.csv"), data.join("samples.csv"));
    let inv = "profiling.cp.INVITE";
    let (fc, fs) = ([("file", "counters")], [("file", "samples")]);

    // The first snapshot of minute T0: its rollups at once, not settled.
    write(
        &c,
        &[row("cp1", inv, T0, &["4"]), row("cp2", inv, T0, &["2"])],
    );
    write(
        &s,
        &[
            row("cp1", inv, T0 + 1, &["0.5"]),
            row("cp2", inv, T0 + 1, &["1.0"]),
        ],
    );
    wait_for(&ix, "rollups", &key(inv, &fc, T0), "sum", 6.0, "T0 live");
    wait_for(
        &ix,
        "rollups",
        &key(inv, &fs, T0),
        "occurrences",
        6.0,
        "T0 samples live",
    );
    assert_eq!(settled(&ix, &key(inv, &fc, T0)), Some(false));
    assert_eq!(settled(&ix, &key(inv, &fs, T0)), Some(false));
    // A revision of T0: the same point, revised.
    write(
        &c,
        &[row("cp1", inv, T0, &["5"]), row("cp2", inv, T0, &["2"])],
    );
    wait_for(&ix, "rollups", &key(inv, &fc, T0), "sum", 7.0, "T0 revised");
    wait_for(
        &ix,
        "rollups",
        &key(inv, &fs, T0),
        "occurrences",
        7.0,
        "T0 samples revised",
    );
    assert_eq!(settled(&ix, &key(inv, &fc, T0)), Some(false));
    // Minute T1: T0 settles.
    write(
        &c,
        &[
            row("cp1", inv, T1, &["1", "5"]),
            row("cp2", inv, T1, &["3", "2"]),
        ],
    );
    write(
        &s,
        &[
            row("cp1", inv, T1 + 1, &["0.25", "0.5"]),
            row("cp2", inv, T1 + 1, &["2.0", "1.0"]),
        ],
    );
    wait_settled(&ix, &key(inv, &fc, T0), true, "T0 counters settled");
    wait_settled(&ix, &key(inv, &fs, T0), true, "T0 samples settled");
    wait_for(&ix, "rollups", &key(inv, &fc, T1), "sum", 4.0, "T1 live");
    assert_eq!(settled(&ix, &key(inv, &fc, T1)), Some(false));

    // One point per (series, minute): T0 and T1 of each file, and no more.
    let got = ix.points("rollups");
    let keys: Vec<_> = got.keys().cloned().collect();
    assert_eq!(
        keys,
        vec![
            key(inv, &fc, T0),
            key(inv, &fc, T1),
            key(inv, &fs, T0),
            key(inv, &fs, T1),
        ]
    );
    assert_eq!(
        got[&key(inv, &fc, T0)],
        fields(&[("sum", 7.0), ("hosts", 2.0)])
    );
    // T0's point, settled, equals the settled mode's rollup of the same files, field for
    // field (T1 is settled there by the end of `--once`, so only T0 is compared).
    let want = settled_rollups(dir.path(), &data);
    for k in [key(inv, &fc, T0), key(inv, &fs, T0)] {
        let one = |m: &BTreeMap<Key, Fields>| -> BTreeMap<Key, Fields> {
            [(k.clone(), m[&k].clone())].into()
        };
        assert!(
            close(&one(&got), &one(&want)),
            "{k:?}: InfluxDB {:#?}, settled mode {:#?}",
            got[&k],
            want[&k]
        );
    }
    // mean = (0.5 x 5 + 1.0 x 2) / 7
    assert!((got[&key(inv, &fs, T0)]["mean"] - 4.5 / 7.0).abs() < 1e-12);
}

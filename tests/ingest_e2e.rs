//! `srewatch ingest` end to end: the real binary follows a temporary directory rewritten the way
//! the platform does (one minute later: values shift right, a new partial v0, v1 revised) and
//! writes to a real VictoriaMetrics through its InfluxDB API; the series are read back through
//! `/api/v1/export` and compared with a model of the files.
//!
//! VictoriaMetrics runs without deduplication (`Victoria::start_raw`): 1.79.5 with
//! `-dedup.minScrapeInterval` does not give "last write wins" for two writes of one timestamp
//! (a read before its background merge was seen to return an older write), so the tests read
//! every sample ever written and compare, per series and timestamp, the multiset of values with
//! the model's sequence of writes (a partial v0, then its revisions). In the fault tests the
//! number of writes of a point depends on timing (two rewrites read as one snapshot, a batch
//! retried after a timeout), so there every value must be one the model wrote for that point,
//! and its last value must be there.

use crate::util::victoria::{Series, Victoria};
use crate::util::{self, srewatch, tempdir, Proc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HOSTS: [&str; 2] = ["cp1", "cp2"];
/// Stats in both files: `elapsed_time` and `occurrences` in samples.
const JOINED: [&str; 2] = ["profiling.cp.INVITE", "profiling.cp.CAC test,<Start>/x ü"];
/// Only in counters.csv (with empty fields: 0).
const COUNTERS_ONLY: &str = "calls total=all";
/// Only in samples.csv: `value`.
const SAMPLES_ONLY: &str = "system.cpu 負荷";
/// Every bucket's series.
const ALL: &str = r#"{db=~"counters|samples|rollups"}"#;

/// A minute an hour ago: inside VictoriaMetrics' retention.
fn base_minute() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now / 60 * 60 - 3600
}

// ---- What the platform writes: minute `m` is `t0 + 60 m`; `final` values are those of a
// complete minute, `partial` the v0 of a minute still running.

fn count(stat: usize, h: usize, m: i64, partial: bool) -> u64 {
    let v = if stat < JOINED.len() {
        let base = 5 + m as u64 + stat as u64;
        // cp1 carries 3/4 of the weight: p50 is its average, p90 and p99 cp2's.
        if h == 0 {
            3 * base
        } else {
            base
        }
    } else if (m + h as i64) % 3 == 1 {
        0
    } else {
        20 + 2 * m as u64 + h as u64
    };
    if partial && v > 0 {
        v - 1
    } else {
        v
    }
}

/// An average in thousandths (exact in the rollups' HDR histogram, below 2.048).
fn avg_milli(stat: usize, h: usize, m: i64, partial: bool) -> u64 {
    let v = if stat < JOINED.len() {
        100 + 10 * m as u64 + 50 * stat as u64 + 700 * h as u64
    } else {
        200 + 20 * m as u64 + 300 * h as u64
    };
    v + if partial { 5 } else { 0 }
}

fn avg(stat: usize, h: usize, m: i64, partial: bool) -> f64 {
    avg_milli(stat, h, m, partial) as f64 / 1000.0
}

/// Stat names of counters.csv, in the order of [`count`]'s `stat`.
fn counters_names() -> impl Iterator<Item = &'static str> {
    JOINED.into_iter().chain([COUNTERS_ONLY])
}

/// Stat names of samples.csv, in the order of [`avg`]'s `stat`.
fn samples_names() -> impl Iterator<Item = &'static str> {
    JOINED.into_iter().chain([SAMPLES_ONLY])
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// counters.csv of rewrite `k` (minutes `k`..`k-14`, not before 0).
fn counters_csv(t0: i64, k: i64) -> String {
    let mut out = String::new();
    for (h, host) in HOSTS.iter().enumerate() {
        for (s, name) in counters_names().enumerate() {
            out += &format!(
                "{host},{},2022-05-10T16:31:00,{}",
                csv_field(name),
                t0 + 60 * k
            );
            for m in (0.max(k - 14)..=k).rev() {
                match count(s, h, m, m == k) {
                    0 => out += ",",
                    v => out += &format!(",{v}"),
                }
            }
            out += "\n";
        }
    }
    out
}

/// samples.csv of rewrite `k` (unix time one second into the minute, like the platform).
fn samples_csv(t0: i64, k: i64) -> String {
    let mut out = String::new();
    for (h, host) in HOSTS.iter().enumerate() {
        for (s, name) in samples_names().enumerate() {
            out += &format!(
                "{host},{},2022-05-10T16:32:01,{}",
                csv_field(name),
                t0 + 60 * k + 1
            );
            for m in (0.max(k - 14)..=k).rev() {
                out += &format!(",{:.3}", avg(s, h, m, m == k));
            }
            out += "\r\n";
        }
    }
    out
}

// ---- The model: what srewatch must write. A point is written when it is new or its line
// changed; each field of a written line is one sample in VictoriaMetrics.

/// (series name, labels without `__name__`).
type Key = (String, BTreeMap<String, String>);
/// Per series, per timestamp (s), the values written, in order.
type Samples = BTreeMap<Key, BTreeMap<i64, Vec<f64>>>;
/// (bucket, measurement, tag) -> per minute, the fields of the last line written.
type Lines = BTreeMap<(String, String, (String, String)), BTreeMap<i64, Vec<(String, f64)>>>;

#[derive(Default)]
struct Model {
    t0: i64,
    /// Newest minute of each file (None before the file's first snapshot).
    top: [Option<i64>; 2],
    written: Lines,
    samples: Samples,
}

impl Model {
    fn new(t0: i64) -> Self {
        Model {
            t0,
            ..Default::default()
        }
    }

    /// The known count of a joined stat and minute (counters.csv up to its newest minute).
    fn known_count(&self, s: usize, h: usize, m: i64) -> Option<u64> {
        let top = self.top[0]?;
        (m <= top).then(|| count(s, h, m, m == top))
    }

    fn known_avg(&self, s: usize, h: usize, m: i64) -> Option<f64> {
        let top = self.top[1]?;
        (m <= top).then(|| avg(s, h, m, m == top))
    }

    fn put(&mut self, bucket: &str, meas: &str, tag: (&str, &str), m: i64, f: Vec<(&str, f64)>) {
        let fields: Vec<(String, f64)> = f.into_iter().map(|(k, v)| (k.into(), v)).collect();
        let key = (
            bucket.to_string(),
            meas.to_string(),
            (tag.0.to_string(), tag.1.to_string()),
        );
        let slot = self.written.entry(key).or_default();
        if slot.get(&m) == Some(&fields) {
            return;
        }
        for (field, v) in &fields {
            let labels = BTreeMap::from([
                ("db".to_string(), bucket.to_string()),
                (tag.0.to_string(), tag.1.to_string()),
            ]);
            self.samples
                .entry((format!("{meas}_{field}"), labels))
                .or_default()
                .entry(self.t0 + 60 * m)
                .or_default()
                .push(*v);
        }
        slot.insert(m, fields);
    }

    /// counters.csv rewrite `k` has been read.
    fn counters(&mut self, k: i64) {
        self.top[0] = Some(k);
        self.update();
    }

    /// samples.csv rewrite `k` has been read.
    fn samples(&mut self, k: i64) {
        self.top[1] = Some(k);
        self.update();
    }

    fn update(&mut self) {
        let newest = self.top[0].max(self.top[1]).unwrap_or(0);
        for m in 0..=newest {
            for (h, host) in HOSTS.iter().enumerate() {
                for (s, name) in counters_names().enumerate() {
                    if let Some(c) = self.known_count(s, h, m) {
                        self.put(
                            "counters",
                            name,
                            ("hostname", host),
                            m,
                            vec![("value", c as f64)],
                        );
                    }
                    if s < JOINED.len() {
                        if let (Some(a), Some(c)) =
                            (self.known_avg(s, h, m), self.known_count(s, h, m))
                        {
                            self.put(
                                "samples",
                                name,
                                ("hostname", host),
                                m,
                                vec![
                                    ("value", a),
                                    ("elapsed_time", a * c as f64),
                                    ("occurrences", c as f64),
                                ],
                            );
                        }
                    } else if let (Some(a), true) =
                        (self.known_avg(s, h, m), self.top[0].is_some_and(|t| t >= m))
                    {
                        self.put(
                            "samples",
                            SAMPLES_ONLY,
                            ("hostname", host),
                            m,
                            vec![("value", a)],
                        );
                    }
                }
            }
            // Rollups: written once the file's newest minute is a minute later (settle_time 1m).
            if self.top[0].is_some_and(|t| t > m) {
                for (s, name) in counters_names().enumerate() {
                    let sum: u64 = (0..HOSTS.len())
                        .map(|h| self.known_count(s, h, m).unwrap())
                        .sum();
                    self.put(
                        "rollups",
                        name,
                        ("file", "counters"),
                        m,
                        vec![("sum", sum as f64), ("hosts", 2.0)],
                    );
                }
            }
            // Samples rollups: settled, and no value of the minute waiting for counters.csv.
            if self.top[1].is_some_and(|t| t > m) && self.top[0].is_some_and(|t| t >= m) {
                for (s, name) in samples_names().enumerate() {
                    // Weight: the occurrences of the joined point, 1 while it waits for them.
                    let counts: Vec<Option<u64>> = (0..HOSTS.len())
                        .map(|h| self.known_count(s, h, m).filter(|_| s < JOINED.len()))
                        .collect();
                    let mut weights: Vec<u64> = counts.iter().map(|c| c.unwrap_or(1)).collect();
                    if weights.iter().all(|&w| w == 0) {
                        weights.fill(1); // no host has weight: each counts once
                    }
                    let avgs: Vec<f64> = (0..HOSTS.len())
                        .map(|h| self.known_avg(s, h, m).unwrap())
                        .collect();
                    let wtotal: u64 = weights.iter().sum();
                    let wsum: f64 = avgs.iter().zip(&weights).map(|(a, w)| a * *w as f64).sum();
                    let q = |p: f64| weighted_quantile(&avgs, &weights, p);
                    let mut f = vec![
                        ("hosts", 2.0),
                        ("occurrences", counts.iter().flatten().sum::<u64>() as f64),
                    ];
                    f.extend([
                        ("mean", wsum / wtotal as f64),
                        ("p50", q(0.5)),
                        ("p90", q(0.9)),
                        ("p99", q(0.99)),
                        ("max", avgs.iter().copied().fold(f64::MIN, f64::max)),
                    ]);
                    self.put("rollups", name, ("file", "samples"), m, f);
                }
            }
        }
    }

    fn total(&self) -> usize {
        self.samples
            .values()
            .flat_map(|t| t.values())
            .map(Vec::len)
            .sum()
    }
}

/// The smallest value whose cumulative weight reaches `p` of the total.
fn weighted_quantile(v: &[f64], w: &[u64], p: f64) -> f64 {
    let mut pairs: Vec<(f64, u64)> = v.iter().copied().zip(w.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let total: u64 = w.iter().sum();
    let want = ((p * total as f64).ceil() as u64).max(1);
    let mut acc = 0;
    for (x, n) in pairs {
        acc += n;
        if acc >= want {
            return x;
        }
    }
    unreachable!()
}

// ---- Reading back.

fn read_back(vm: &Victoria) -> Samples {
    let mut out = Samples::new();
    for Series {
        mut metric,
        values,
        timestamps,
    } in vm.export(ALL)
    {
        let name = metric.remove("__name__").unwrap();
        let per_ts = out.entry((name, metric)).or_default();
        for (t, v) in timestamps.iter().zip(values) {
            assert_eq!(t % 1000, 0, "timestamps are whole seconds");
            per_ts.entry(t / 1000).or_default().push(v);
        }
    }
    out
}

fn total(s: &Samples) -> usize {
    s.values().flat_map(|t| t.values()).map(Vec::len).sum()
}

/// VictoriaMetrics stores floats as decimals of at most 15 significant digits or so
/// (`123.35999999999999` reads back as `123.36`); integers are exact.
fn same(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

/// Every written sample is there, nothing else: same series, timestamps and multisets of values.
fn assert_exact(got: &Samples, want: &Samples) {
    let mut bad = Vec::new();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "series"
    );
    for (key, w) in want {
        let g = &got[key];
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            w.keys().collect::<Vec<_>>(),
            "timestamps of {key:?}"
        );
        for (t, wv) in w {
            let (gs, ws) = (sorted(&g[t]), sorted(wv));
            if !(gs.len() == ws.len() && gs.iter().zip(&ws).all(|(a, b)| same(*a, *b))) {
                bad.push(format!(
                    "{key:?} at {t}: got {gs:?}, want the writes {wv:?}"
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} differences:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Every series and timestamp is there, nothing else; each value is one the model wrote for that
/// point and its last write is there (it may have been written more or fewer times).
fn every_point(got: &Samples, want: &Samples) -> Result<(), String> {
    if got.keys().ne(want.keys()) {
        return Err(format!(
            "series: got {:?}, want {:?}",
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        ));
    }
    for (key, w) in want {
        let g = &got[key];
        if g.keys().ne(w.keys()) {
            return Err(format!(
                "timestamps of {key:?}: got {:?}, want {:?}",
                g.keys().collect::<Vec<_>>(),
                w.keys().collect::<Vec<_>>()
            ));
        }
        for (t, wv) in w {
            let last = *wv.last().unwrap();
            if !g[t].iter().any(|v| same(*v, last)) {
                return Err(format!(
                    "{key:?} at {t}: the last value {last} is missing: got {:?}",
                    g[t]
                ));
            }
            if let Some(v) = g[t].iter().find(|v| !wv.iter().any(|x| same(*x, **v))) {
                return Err(format!(
                    "{key:?} at {t}: {v} was never in the files; got {:?}, want {wv:?}",
                    g[t]
                ));
            }
        }
    }
    Ok(())
}

/// Polls until `ok` holds for what the server has, or panics after `within` with `what`.
fn wait_for(vm: &Victoria, what: &str, within: Duration, ok: impl Fn(&Samples) -> bool) -> Samples {
    let start = Instant::now();
    loop {
        let got = read_back(vm);
        if ok(&got) {
            return got;
        }
        assert!(
            start.elapsed() < within,
            "{what}: timed out with {} samples; vm log:\n{}",
            total(&got),
            vm.log_tail()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

// ---- srewatch.

struct Ingest {
    data: PathBuf,
    spool: PathBuf,
    log: PathBuf,
    proc: Proc,
}

impl Ingest {
    fn start(dir: &Path, url: &str) -> Ingest {
        let data = dir.join("sre");
        std::fs::create_dir_all(&data).unwrap();
        let spool = dir.join("spool");
        let cfg = dir.join("srewatch.toml");
        std::fs::write(
            &cfg,
            format!(
                "[ingest]\ndir = \"{}\"\ndebounce = \"20ms\"\nrescan_interval = \"1s\"\nquiet_time = \"200ms\"\njoin_wait = \"10s\"\nsettle_time = \"1m\"\nrollups = \"settled\"\n\n\
                 [influxdb]\nurl = \"{url}\"\ntoken_env = \"SREWATCH_E2E_TOKEN_UNSET\"\ndb_param = true\nspool_dir = \"{}\"\n\
                 batch_max_delay = \"20ms\"\nconnect_timeout = \"500ms\"\nrequest_timeout = \"2s\"\nretry_base = \"50ms\"\nretry_max = \"200ms\"\n",
                data.display(),
                spool.display()
            ),
        )
        .unwrap();
        let log = dir.join("srewatch.log");
        let mut cmd = srewatch();
        cmd.env("RUST_LOG", "info")
            .arg("ingest")
            .arg("--config")
            .arg(&cfg);
        let proc = Proc::spawn("srewatch ingest", cmd, &log);
        Ingest {
            data,
            spool,
            log,
            proc,
        }
    }

    fn rewrite(&self, file: &str, body: &str) {
        let tmp = self.data.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, self.data.join(file)).unwrap();
    }

    fn spooled(&self) -> usize {
        std::fs::read_dir(&self.spool)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "batch"))
                    .count()
            })
            .unwrap_or(0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM: srewatch flushes and exits 0.
    fn stop(mut self) {
        let st = self.proc.terminate(Duration::from_secs(10));
        assert!(
            st.is_some_and(|s| s.success()),
            "srewatch ingest: {st:?}; log:\n{}",
            self.log()
        );
    }
}

/// The first rewrite holds minutes 0..=2 (a backlog), then one minute per rewrite.
const FIRST: i64 = 2;
const LAST: i64 = 6;

/// Rewrites both files for minutes `FIRST..=LAST`, waiting after each file until its points have
/// arrived (so the order of the writes is fixed and the multisets can be compared exactly), and
/// compares. Returns what arrived and `t0`.
fn rewrite_exactly(counters_first: bool) -> (Samples, i64) {
    let dir = tempdir();
    let vm = Victoria::start_raw(dir.path());
    let ing = Ingest::start(dir.path(), &vm.url());
    let t0 = base_minute() - 60 * LAST;
    let mut model = Model::new(t0);
    for k in FIRST..=LAST {
        for counters in [counters_first, !counters_first] {
            if counters {
                ing.rewrite("counters.csv", &counters_csv(t0, k));
                model.counters(k);
            } else {
                ing.rewrite("samples.csv", &samples_csv(t0, k));
                model.samples(k);
            }
            let n = model.total();
            // Within 5 s, half of join_wait: a samples value waiting for its counters value is
            // released by the counters snapshot, not by its timeout.
            wait_for(
                &vm,
                &format!("rewrite {k}, counters {counters}"),
                Duration::from_secs(5),
                |g| total(g) >= n,
            );
        }
    }
    // A little longer, to catch a write too many.
    std::thread::sleep(Duration::from_millis(300));
    let got = read_back(&vm);
    assert_exact(&got, &model.samples);
    ing.stop();
    (got, t0)
}

#[test]
fn samples_before_counters_arrive_exactly() {
    let (got, _) = rewrite_exactly(false);
    assert_eq!(got.len(), 6 + 14 + 27, "series");
}

#[test]
fn rewrites_arrive_exactly() {
    let (got, t0) = rewrite_exactly(true);
    // 6 counters series (3 stats x 2 hosts), 14 samples (2 joined stats x 2 hosts x 3 fields, 1
    // stat x 2 hosts), 27 rollups (3 x sum, hosts; 3 x hosts, occurrences, mean, p50, p90, p99,
    // max).
    assert_eq!(got.len(), 6 + 14 + 27, "series");
    // By hand, so the model is not alone in saying it: profiling.cp.INVITE on cp1 counted
    // 3 x (5 + m): minutes 0 and 1 came in the first file as final values, minute 3 was written
    // as the partial v0 (23) and revised to 24, minute 6 is the last v0 (32).
    let key = |name: &str, db: &str, tag: (&str, &str)| {
        (
            name.to_string(),
            BTreeMap::from([
                ("db".to_string(), db.to_string()),
                (tag.0.to_string(), tag.1.to_string()),
            ]),
        )
    };
    let inv = &got[&key("profiling.cp.INVITE_value", "counters", ("hostname", "cp1"))];
    assert_eq!(inv.len(), 7, "minutes 0..=6");
    assert_eq!(inv[&t0], vec![15.0]);
    assert_eq!(sorted(&inv[&(t0 + 180)]), vec![23.0, 24.0]);
    assert_eq!(inv[&(t0 + 360)], vec![32.0]);
    // Names with a comma, `<`, `/` and UTF-8 come back as written; the rollup of minute 5 (the
    // last settled): sum 3 x 11 + 11 = 44 over 2 hosts.
    let cac = &got[&key(
        "profiling.cp.CAC test,<Start>/x ü_sum",
        "rollups",
        ("file", "counters"),
    )];
    assert_eq!(cac[&(t0 + 300)], vec![44.0]);
    assert!(!cac.contains_key(&(t0 + 360)), "minute 6 has not settled");
    let cpu = &got[&key("system.cpu 負荷_value", "samples", ("hostname", "cp2"))];
    assert_eq!(sorted(&cpu[&(t0 + 120)]), vec![0.54, 0.545]);
}

/// Waits until every point has arrived, then checks again a little later.
fn assert_every_point_arrives(vm: &Victoria, want: &Samples) {
    wait_for(vm, "every point", Duration::from_secs(20), |g| {
        every_point(g, want).is_ok()
    });
    std::thread::sleep(Duration::from_millis(300));
    if let Err(e) = every_point(&read_back(vm), want) {
        panic!("{e}");
    }
}

/// Waits until srewatch has spooled something (the server is down).
fn wait_spooled(ing: &Ingest) {
    let start = Instant::now();
    while ing.spooled() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing spooled while the server is down; log:\n{}",
            ing.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Rewrites counters.csv then samples.csv for minute `k`, a moment apart.
fn rewrite_both(ing: &Ingest, model: &mut Model, k: i64) {
    ing.rewrite("counters.csv", &counters_csv(model.t0, k));
    model.counters(k);
    std::thread::sleep(Duration::from_millis(100));
    ing.rewrite("samples.csv", &samples_csv(model.t0, k));
    model.samples(k);
    std::thread::sleep(Duration::from_millis(100));
}

#[test]
fn server_down_at_start_then_up() {
    let dir = tempdir();
    let mut vm = Victoria::stopped_raw(dir.path());
    let ing = Ingest::start(dir.path(), &vm.url());
    let mut model = Model::new(base_minute() - 60 * LAST);
    for k in FIRST..=LAST {
        rewrite_both(&ing, &mut model, k);
    }
    wait_spooled(&ing);
    vm.restart();
    assert_every_point_arrives(&vm, &model.samples);
    assert_eq!(ing.spooled(), 0, "spool replayed");
    ing.stop();
}

/// The server up for the first platform minutes (all of them arrive), then down for minute 4,
/// whose points srewatch has spooled when this returns.
fn up_then_down(dir: &Path) -> (Victoria, Ingest, Model) {
    let mut vm = Victoria::start_raw(dir);
    let ing = Ingest::start(dir, &vm.url());
    let mut model = Model::new(base_minute() - 60 * LAST);
    for k in FIRST..=3 {
        rewrite_both(&ing, &mut model, k);
    }
    assert_every_point_arrives(&vm, &model.samples);
    vm.stop();
    rewrite_both(&ing, &mut model, 4);
    wait_spooled(&ing);
    (vm, ing, model)
}

#[test]
fn server_restarted_mid_run() {
    let dir = tempdir();
    let (mut vm, ing, mut model) = up_then_down(dir.path());
    vm.restart();
    for k in 5..=LAST {
        rewrite_both(&ing, &mut model, k);
    }
    assert_every_point_arrives(&vm, &model.samples);
    assert_eq!(ing.spooled(), 0, "spool replayed");
    ing.stop();
}

/// Unescapes a line-protocol token (`\ `, `\,`, `\=`, `\\`) and splits it at unescaped `sep`.
fn lp_split(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (' ' | ',' | '=' | '\\')) => out.last_mut().unwrap().push(n),
                Some(n) => {
                    out.last_mut().unwrap().push('\\');
                    out.last_mut().unwrap().push(n);
                }
                None => out.last_mut().unwrap().push('\\'),
            }
        } else if c == sep {
            out.push(String::new());
        } else {
            out.last_mut().unwrap().push(c);
        }
    }
    out
}

/// The samples VictoriaMetrics makes of `# bucket:`-grouped line protocol (no string fields).
fn lp_samples(text: &str) -> Samples {
    let mut out = Samples::new();
    let mut bucket = String::new();
    for line in text.lines() {
        if let Some(b) = line.strip_prefix("# bucket: ") {
            bucket = b.to_string();
            continue;
        }
        // measurement[,tags] fields ts: split at the unescaped spaces.
        let parts = lp_split(&line.replace("\\,", "\u{1}").replace("\\=", "\u{2}"), ' ');
        let [series, fields, ts] = &parts[..] else {
            panic!("line protocol: {line}")
        };
        let back = |s: &str| s.replace('\u{1}', ",").replace('\u{2}', "=");
        let mut tags = series.split(',');
        let meas = back(tags.next().unwrap());
        let mut labels = BTreeMap::from([("db".to_string(), bucket.clone())]);
        for t in tags {
            let (k, v) = t.split_once('=').unwrap();
            labels.insert(back(k), back(v));
        }
        for f in fields.split(',') {
            let (k, v) = f.split_once('=').unwrap();
            let v: f64 = v.trim_end_matches('i').parse().unwrap();
            out.entry((format!("{meas}_{}", back(k)), labels.clone()))
                .or_default()
                .entry(ts.parse().unwrap())
                .or_default()
                .push(v);
        }
    }
    out
}

#[test]
fn fixtures_once_arrive() {
    let dir = tempdir();
    let vm = Victoria::start_raw(dir.path());
    // The same files through the stdout sink: what must arrive (each rollup once: written
    // only once settled, as `--once` settles every minute at the end).
    let settled = dir.path().join("settled.toml");
    std::fs::write(&settled, "[ingest]\nrollups = \"settled\"\n").unwrap();
    let out = util::run_ok(
        srewatch()
            .args(["ingest", "--once", "--config"])
            .arg(&settled)
            .arg("--dir")
            .arg(crate::util::fixtures().join("csv")),
    );
    let want = lp_samples(out.as_str());
    let points = out.lines().filter(|l| !l.starts_with('#')).count();
    // 22 counters rows and 55 samples rows: 280 counters, 461 samples and 504 rollups points.
    assert_eq!(points, 1245);
    let cfg = dir.path().join("srewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ingest]\nrollups = \"settled\"\n\n[influxdb]\nurl = \"{}\"\ntoken_env = \"SREWATCH_E2E_TOKEN_UNSET\"\ndb_param = true\nspool_dir = \"{}\"\n",
            vm.url(),
            dir.path().join("spool").display()
        ),
    )
    .unwrap();
    let st = srewatch()
        .args(["ingest", "--once", "--config"])
        .arg(&cfg)
        .arg("--dir")
        .arg(crate::util::fixtures().join("csv"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("srewatch.log")).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    let got = read_back(&vm);
    assert_exact(&got, &want);
    assert_eq!(total(&got), total(&want));
}

#[test]
fn srewatch_stopped_while_server_down_then_restarted() {
    let dir = tempdir();
    let (mut vm, ing, mut model) = up_then_down(dir.path());
    // SIGTERM while the server is down: what srewatch holds goes to the spool, exit 0.
    ing.stop();
    vm.restart();
    // The next srewatch replays the spool, then reads the files again (the window is written
    // again: same values).
    let ing = Ingest::start(dir.path(), &vm.url());
    for k in 5..=LAST {
        rewrite_both(&ing, &mut model, k);
    }
    assert_every_point_arrives(&vm, &model.samples);
    assert_eq!(ing.spooled(), 0, "spool replayed");
    ing.stop();
}

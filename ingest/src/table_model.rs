//! Model-based test of the pure stages (csvrow + table) with injected time, no I/O (issue 9).
//!
//! A seeded generator plays the platform: every minute it rewrites counters.csv and
//! samples.csv (15 values per row, v0 partial, revised to its final value a minute later),
//! mixed with injected trouble: rows from the far future or the far past, duplicates with
//! other values, stray quotes, half-written snapshots read as if quiet, a host vanishing for a
//! rewrite, samples.csv read before counters.csv (with and without the join wait running
//! out). A reference model keeps, per point, the value of the last row that should have been
//! accepted. Every emitted line is merged into a store with InfluxDB's semantics (fields of
//! one point merge, last write wins per field), and after each rewrite:
//! - nothing missing, nothing wrong: the store's counters and samples points are exactly the
//!   model's, field for field;
//! - never a wrong value in between: every line emitted while a half-written snapshot or a
//!   troubled file was read carries only values the platform published for that point;
//! - at the end (`finish`), every rollup is exactly the model's.
//!
//! Cases: `SREWATCH_MODEL_CASES` (default 2,000 cases of 4 to 15 rewrites); the longer run is
//! `SREWATCH_MODEL_CASES=100000 cargo test --release -p ingest model_based`. A failing case
//! prints its seed; `SREWATCH_MODEL_SEED=N` replays it alone.
//!
//! Restarts and kill points are not played here: a state export/import of [`Table`] (restart
//! work, issue 9 observation 5) can hook in at [`Case::restart_hook`], which today keeps the
//! table as it is.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

const T0: i64 = 1652193060 / 60;
const HOSTS: usize = 3;
/// (name, in counters.csv, in samples.csv)
const STATS: [(&str, bool, bool); 4] = [
    ("j0", true, true),
    ("j1", true, true),
    ("c0", true, false),
    ("s0", false, true),
];
const FUTURE: i64 = 4102444800;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// (stat index, host index or 0/1 for the rollups' `file=counters`/`file=samples`, minute)
type PKey = (usize, usize, i64);
type Store = BTreeMap<PKey, BTreeMap<&'static str, f64>>;

const FIELDS: [&str; 10] = [
    "value",
    "elapsed_time",
    "occurrences",
    "sum",
    "hosts",
    "mean",
    "p50",
    "p90",
    "p99",
    "max",
];

/// A point's values as published by the platform: counts and thousandths of averages.
#[derive(Clone, Copy)]
struct Pub {
    partial: u64,
    fin: u64,
}

struct Case {
    rng: Rng,
    table: Table,
    now: Instant,
    /// Published values per (file, host, stat, minute).
    published: HashMap<(usize, usize, usize, i64), Pub>,
    /// The model: the last accepted value per (host, stat, minute).
    counts: BTreeMap<(usize, usize, i64), u64>,
    avgs: BTreeMap<(usize, usize, i64), f64>,
    store: [Store; 3],
    log: Vec<String>,
}

fn avg_of(x: u64) -> f64 {
    x as f64 / 1000.0
}

impl Case {
    fn new(seed: u64) -> Case {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let settle = rng.below(4) as i64;
        Case {
            table: Table::new(TableConfig {
                settle_minutes: settle,
                join_wait: Duration::from_secs(30),
                ..TableConfig::default()
            }),
            rng,
            now: Instant::now(),
            published: HashMap::new(),
            counts: BTreeMap::new(),
            avgs: BTreeMap::new(),
            store: Default::default(),
            log: Vec::new(),
        }
    }

    fn value(&mut self, f: usize, h: usize, s: usize, m: i64, k: i64) -> u64 {
        let rng = &mut self.rng;
        let p = *self.published.entry((f, h, s, m)).or_insert_with(|| {
            let gen = |rng: &mut Rng| {
                if f == 0 {
                    if rng.chance(15) {
                        0
                    } else {
                        rng.below(40)
                    }
                } else {
                    rng.below(2000) + 1
                }
            };
            Pub {
                partial: gen(rng),
                fin: gen(rng),
            }
        });
        if m == k {
            p.partial
        } else {
            p.fin
        }
    }

    /// One platform rewrite of file `f` at minute `k`: the rows (host, stat, text).
    fn rows(&mut self, f: usize, k: i64, gone: Option<usize>) -> Vec<(usize, usize, String)> {
        let mut rows = Vec::new();
        for h in 0..HOSTS {
            if gone == Some(h) {
                continue;
            }
            for (s, &(name, c, sm)) in STATS.iter().enumerate() {
                if !(if f == 0 { c } else { sm }) {
                    continue;
                }
                let vals: Vec<String> = (0..15)
                    .map(|i| {
                        let v = self.value(f, h, s, T0 + k - i, T0 + k);
                        if f == 0 {
                            v.to_string()
                        } else {
                            format!("{:.3}", avg_of(v))
                        }
                    })
                    .collect();
                let t = (T0 + k) * 60 + f as i64;
                rows.push((
                    h,
                    s,
                    format!("cp{h},{name},2022-05-10T16:31:00,{t},{}\n", vals.join(",")),
                ));
            }
        }
        rows
    }

    /// The file with injected trouble, and the rows the model accepts from it.
    fn troubled(
        &mut self,
        f: usize,
        k: i64,
        rows: Vec<(usize, usize, String)>,
    ) -> (String, Vec<(usize, usize)>) {
        let mut text = Vec::new();
        let mut accepted = Vec::new();
        let t = (T0 + k) * 60 + f as i64;
        for (h, s, line) in rows {
            let r = &mut self.rng;
            if r.chance(3) {
                // A copy from the far future, before the real row.
                text.push(line.replacen(&format!(",{t},"), &format!(",{FUTURE},"), 1));
                self.log.push(format!("future before cp{h} {s}"));
            }
            if r.chance(3) {
                // A stray quote before one value: the row is spoiled, the next parses.
                let commas: Vec<usize> = line.match_indices(',').map(|(i, _)| i).collect();
                let at = commas[4 + r.below(10) as usize] + 1;
                text.push(format!("{}\"{}", &line[..at], &line[at..]));
                self.log.push(format!("quote cp{h} {s}"));
                continue;
            }
            text.push(line.clone());
            accepted.push((h, s));
            let r = &mut self.rng;
            if r.chance(3) {
                // A duplicate with other values, after the real row: rejected.
                let at = line.match_indices(',').nth(3).unwrap().0;
                text.push(format!("{}{}", &line[..at], line[at..].replace(",1", ",7")));
                self.log.push(format!("duplicate cp{h} {s}"));
            }
            if r.chance(3) {
                text.push(line.replacen(&format!(",{t},"), &format!(",{FUTURE},"), 1));
                self.log.push(format!("future after cp{h} {s}"));
            }
            if r.chance(2) {
                // A row 40 minutes old (a new host, so nothing else could reject it).
                text.push(line.replacen(&format!("cp{h},"), "old,", 1).replacen(
                    &format!(",{t},"),
                    &format!(",{},", t - 40 * 60),
                    1,
                ));
                self.log.push(format!("old row cp{h} {s}"));
            }
        }
        (text.concat(), accepted)
    }

    fn apply(&mut self, f: usize, k: i64, accepted: &[(usize, usize)]) {
        for &(h, s) in accepted {
            for i in 0..15 {
                let m = T0 + k - i;
                let v = self.value(f, h, s, m, T0 + k);
                if f == 0 {
                    self.counts.insert((h, s, m), v);
                } else {
                    self.avgs.insert((h, s, m), avg_of(v));
                }
            }
        }
    }

    fn ingest(&mut self, f: usize, data: &[u8], tail: Tail, k: i64) -> Vec<(usize, String)> {
        let kind = if f == 0 {
            Kind::Counters
        } else {
            Kind::Samples
        };
        let mut got = Vec::new();
        let rep = self.table.ingest_at(
            kind,
            data,
            tail,
            self.now,
            (T0 + k) * 60 + 20,
            &mut |b, l, _| {
                got.extend(
                    String::from_utf8(l.to_vec())
                        .unwrap()
                        .lines()
                        .map(|l| (b as usize, l.to_string())),
                )
            },
        );
        assert_eq!(
            rep.records,
            rep.rows + rep.bad_total(),
            "rows in = ingested + rejected"
        );
        got
    }

    fn tick(&mut self, after: Duration) -> Vec<(usize, String)> {
        self.now += after;
        let mut got = Vec::new();
        self.table.tick(self.now, &mut |b, l, _| {
            got.extend(
                String::from_utf8(l.to_vec())
                    .unwrap()
                    .lines()
                    .map(|l| (b as usize, l.to_string())),
            )
        });
        got
    }

    /// Merges lines into the store; checks each carries only published values.
    fn merge(&mut self, lines: Vec<(usize, String)>) {
        for (b, l) in lines {
            let (series, rest) = l.split_once(' ').unwrap();
            let (fields, ts) = rest.rsplit_once(' ').unwrap();
            let (meas, tag) = series.split_once(',').unwrap();
            let m = ts.parse::<i64>().unwrap() / 60;
            let mut fs = BTreeMap::new();
            for kv in fields.split(',') {
                let (k, v) = kv.split_once('=').unwrap();
                let k = FIELDS.iter().find(|f| **f == k).unwrap();
                fs.insert(*k, v.trim_end_matches('i').parse::<f64>().unwrap());
            }
            let s = STATS.iter().position(|x| x.0 == meas).unwrap();
            let t = if b == 2 {
                (tag == "file=samples") as usize
            } else {
                let h: usize = tag.strip_prefix("hostname=cp").unwrap().parse().unwrap();
                self.check_published(b, h, s, m, &fs, &l);
                h
            };
            self.store[b].entry((s, t, m)).or_default().extend(fs);
        }
    }

    fn check_published(
        &self,
        b: usize,
        h: usize,
        s: usize,
        m: i64,
        fs: &BTreeMap<&str, f64>,
        line: &str,
    ) {
        let ok = |f: usize, v: f64| {
            self.published.get(&(f, h, s, m)).is_some_and(|p| {
                let conv = |x: u64| if f == 0 { x as f64 } else { avg_of(x) };
                conv(p.partial) == v || conv(p.fin) == v
            })
        };
        let good = if b == 0 {
            ok(0, fs["value"])
        } else {
            ok(1, fs["value"])
                && fs
                    .get("occurrences")
                    .is_none_or(|&o| ok(0, o) && fs.get("elapsed_time") == Some(&(fs["value"] * o)))
        };
        assert!(
            good,
            "a value the platform never published: {line}\n{:#?}",
            self.log
        );
    }

    /// The store's counters and samples points must be exactly the model's.
    fn check_points(&self, what: &str) {
        let mut want: [Store; 2] = Default::default();
        for (&(h, s, m), &c) in &self.counts {
            want[0].insert((s, h, m), [("value", c as f64)].into());
        }
        for (&(h, s, m), &a) in &self.avgs {
            let mut f: BTreeMap<&str, f64> = [("value", a)].into();
            if let Some(&c) = self.counts.get(&(h, s, m)) {
                f.insert("elapsed_time", a * c as f64);
                f.insert("occurrences", c as f64);
            }
            want[1].insert((s, h, m), f);
        }
        for (b, w) in want.iter().enumerate() {
            let got = &self.store[b];
            if got != w {
                let missing: Vec<_> = w.iter().filter(|(k, v)| got.get(*k) != Some(v)).collect();
                let extra: Vec<_> = got.iter().filter(|(k, v)| w.get(*k) != Some(v)).collect();
                panic!(
                    "{what}, bucket {b}: want {missing:#?}\ngot {extra:#?}\n{:#?}",
                    self.log
                );
            }
        }
    }

    /// After `finish`: every rollup is the model's.
    fn check_rollups(&self) {
        let mut want = Store::new();
        let minutes: BTreeSet<i64> = self
            .counts
            .keys()
            .map(|k| k.2)
            .chain(self.avgs.keys().map(|k| k.2))
            .collect();
        for &m in &minutes {
            for (s, &(_, c, sm)) in STATS.iter().enumerate() {
                let hs: Vec<usize> = (0..HOSTS).collect();
                if c {
                    let have: Vec<u64> = hs
                        .iter()
                        .filter_map(|&h| self.counts.get(&(h, s, m)).copied())
                        .collect();
                    if !have.is_empty() {
                        want.insert(
                            (s, 0, m),
                            [
                                ("sum", have.iter().sum::<u64>() as f64),
                                ("hosts", have.len() as f64),
                            ]
                            .into(),
                        );
                    }
                }
                if sm {
                    let have: Vec<(f64, Option<u64>)> = hs
                        .iter()
                        .filter_map(|&h| {
                            self.avgs
                                .get(&(h, s, m))
                                .map(|&a| (a, self.counts.get(&(h, s, m)).copied()))
                        })
                        .collect();
                    if have.is_empty() {
                        continue;
                    }
                    let mut w: Vec<u64> = have.iter().map(|x| x.1.unwrap_or(1)).collect();
                    if w.iter().all(|&x| x == 0) {
                        w.fill(1);
                    }
                    let occ: u64 = have.iter().filter_map(|x| x.1).sum();
                    let wt: u64 = w.iter().sum();
                    let mean = have
                        .iter()
                        .zip(&w)
                        .map(|(x, &w)| x.0 * w as f64)
                        .sum::<f64>()
                        / wt as f64;
                    let mut pairs: Vec<(f64, u64)> =
                        have.iter().map(|x| x.0).zip(w.iter().copied()).collect();
                    pairs.retain(|p| p.1 > 0);
                    pairs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
                    let q = |p: f64| {
                        let want = ((p * wt as f64).ceil() as u64).max(1);
                        let mut acc = 0;
                        pairs
                            .iter()
                            .find(|x| {
                                acc += x.1;
                                acc >= want
                            })
                            .unwrap()
                            .0
                    };
                    want.insert(
                        (s, 1, m),
                        [
                            ("hosts", have.len() as f64),
                            ("occurrences", occ as f64),
                            ("mean", mean),
                            ("p50", q(0.5)),
                            ("p90", q(0.9)),
                            ("p99", q(0.99)),
                            ("max", pairs.last().unwrap().0),
                        ]
                        .into(),
                    );
                }
            }
        }
        let got = &self.store[2];
        let keys: BTreeSet<_> = got.keys().collect();
        let wkeys: BTreeSet<_> = want.keys().collect();
        assert_eq!(keys, wkeys, "rollup points\n{:#?}", self.log);
        for (k, w) in &want {
            let g = &got[k];
            let same = g.len() == w.len()
                && g.iter()
                    .zip(w)
                    .all(|((a, x), (b, y))| a == b && (x - y).abs() <= 1e-9 * x.abs().max(1.0));
            assert!(same, "rollup {k:?}: got {g:?}, want {w:?}\n{:#?}", self.log);
        }
    }

    /// Where a restart (state export, a new table, import) will be played; a no-op today.
    fn restart_hook(&mut self, _k: i64) {}

    fn play(&mut self) {
        let rewrites = 4 + self.rng.below(12) as i64;
        for k in 0..rewrites {
            self.log.push(format!("rewrite {k}"));
            let gone = self
                .rng
                .chance(10)
                .then(|| self.rng.below(HOSTS as u64) as usize);
            if let Some(h) = gone {
                self.log.push(format!("cp{h} gone"));
            }
            let samples_first = self.rng.chance(30);
            let order = if samples_first { [1, 0] } else { [0, 1] };
            for (i, f) in order.into_iter().enumerate() {
                let rows = self.rows(f, k, gone);
                let (text, accepted) = self.troubled(f, k, rows);
                if k > 0 && self.rng.chance(15) {
                    // Half-written (truncated, then written on) and read as if quiet.
                    let cut = self.rng.below(text.len() as u64) as usize;
                    self.log.push(format!("file {f} cut at {cut}"));
                    let got = self.ingest(f, &text.as_bytes()[..cut], Tail::Quiet, k);
                    self.merge(got);
                }
                let got = self.ingest(f, text.as_bytes(), Tail::Quiet, k);
                self.apply(f, k, &accepted);
                self.merge(got);
                if i == 0 && samples_first && self.rng.chance(50) {
                    // counters.csv late past join_wait.
                    let got = self.tick(Duration::from_secs(31));
                    self.merge(got);
                }
            }
            let got = self.tick(Duration::from_secs(31));
            self.merge(got);
            self.check_points(&format!("after rewrite {k}"));
            self.now += Duration::from_secs(60);
            self.restart_hook(k);
        }
        let mut got = Vec::new();
        self.table.finish(self.now, &mut |b, l, _| {
            got.extend(
                String::from_utf8(l.to_vec())
                    .unwrap()
                    .lines()
                    .map(|l| (b as usize, l.to_string())),
            )
        });
        self.merge(got);
        self.check_points("after finish");
        self.check_rollups();
    }
}

#[test]
fn model_based_random_rewrites_with_trouble() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("SREWATCH_MODEL_SEED") {
        Some(s) => vec![s],
        None => (1..=env("SREWATCH_MODEL_CASES").unwrap_or(2000)).collect(),
    };
    for seed in seeds {
        let r = std::panic::catch_unwind(|| Case::new(seed).play());
        if let Err(e) = r {
            eprintln!("model-based case failed: SREWATCH_MODEL_SEED={seed}");
            std::panic::resume_unwind(e);
        }
    }
}

//! Model-based test of the pure stages (csvrow + table) with injected time, no I/O.
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
//! - at the end (`finish`), every rollup is exactly the model's (a third of the cases write
//!   live rollups, [`RollupMode::Live`]: there the final point also carries `settled=true`,
//!   whatever the live writes before it held).
//!
//! Restarts and kill points (12% of rewrites, at a random step), through the real
//! [`Checkpoint`] and the real table state ([`Table::save_state`], [`Table::load`]): every
//! emitted line goes through [`Checkpoint::filter`] and is in flight until the step ends; then
//! it is acknowledged as `files::Pipeline::commit` does (stored, `ack`, and after a snapshot
//! saved: [`Checkpoint::saved_bytes`] and the table state kept as the files on disk). A restart
//! is clean (all acknowledged and saved) or a kill -9 (a random prefix of the lines in flight
//! reached the server, the rest is lost; in half of them the pipeline first committed while the
//! sink had lost that rest: `forget_pending`, the checkpoint saved, the table state not). The
//! new process writes the saved bytes to a real [`StateDir`], loads them, reads the current
//! files (counters first), runs its first tick and goes on. Restarts happen anywhere: with a
//! host missing from the current files, a row spoiled, a half-written file, samples.csv a
//! rewrite behind counters.csv. Besides the checks above, which now span restarts (rollups
//! included: a restart must not rebuild a settled minute's rollup from the current files only):
//! no line sent after a restart is the point's last acknowledged line unchanged, unless it was
//! acknowledged or in flight after the last save (the re-send bound of `docs/sink.md`), and a
//! clean restart sends nothing at all.
//!
//! In 15% of restarts the table state file is corrupt (one byte flipped): the new process
//! starts from a new table and the checkpoint alone keeps it from re-sending. These are played
//! only where both current files hold every host's row and come from the same rewrite (a new
//! table cannot know a vanished host's values); a clean one re-sends only rollups whose float
//! fields differ in the last bits.
//!
//! Even seeds parse every snapshot in the two-stage pipeline (a second thread splits and parses
//! rows while the table applies them, as for large files), odd seeds on one thread. Over all
//! cases, at least 30% of the good rows must have been applied as repeats
//! ([`FileReport::repeats`]): the checks above cover the repeat path.
//!
//! Cases: `SREWATCH_MODEL_CASES` (default 2,000 cases of 4 to 15 rewrites, about 30 s CPU in
//! debug); the longer run is `SREWATCH_MODEL_CASES=100000 cargo test --release -p ingest
//! model_based`. A failing case prints its seed; `SREWATCH_MODEL_SEED=N` replays it alone.

use super::*;
use crate::checkpoint::{Checkpoint, StateDir, FILES_CHECKPOINT};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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

/// A seeded xorshift generator (also used by the repeat tests in table.rs).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// (stat index, host index or 0/1 for the rollups' `file=counters`/`file=samples`, minute)
type PKey = (usize, usize, i64);
type Store = BTreeMap<PKey, BTreeMap<&'static str, f64>>;

const FIELDS: [&str; 11] = [
    "settled",
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

const BUCKETS: [&str; 3] = ["counters", "samples", "rollups"];

/// A restart planned in the current rewrite: at step `at` (or the rewrite's last step), clean
/// or by kill -9.
#[derive(Clone, Copy)]
struct Plan {
    at: usize,
    kill: bool,
    /// The table state file is corrupt: the new process starts from a new table.
    lose_table: bool,
}

struct Case {
    rng: Rng,
    cfg: TableConfig,
    table: Table,
    /// What the server acknowledged (the real record; filters every emitted line).
    ck: Checkpoint,
    /// The checkpoint file as of the last save ([`Checkpoint::saved_bytes`]; empty: no file).
    saved: Vec<u8>,
    /// The table state file as of the last save ([`Table::save_state`]; empty: no file).
    saved_table: Vec<u8>,
    /// Lines sent and not yet acknowledged (reach the store at the next commit, or a prefix of
    /// them at a kill).
    inflight: Vec<(usize, String)>,
    /// Lines acknowledged or in flight since the last save: what a kill may make the next
    /// start send again.
    unsaved: Vec<String>,
    /// The last acknowledged line per point (what the checkpoint records a hash of).
    acked: HashMap<(usize, PKey), String>,
    /// The last complete text of each file (what a new process reads at start).
    files: [Option<String>; 2],
    /// Whether the current text of each file has every host's row of every stat accepted, and
    /// the rewrite it is from (a restart that loses the table state is played only then).
    whole: [bool; 2],
    rewrite_of: [i64; 2],
    plan: Option<Plan>,
    step: usize,
    /// The real state directory, made at the first restart.
    state: Option<(tempfile::TempDir, StateDir)>,
    restarts: [u64; 2],
    /// Good rows, and of them rows applied as repeats ([`FileReport::repeats`]).
    repeats: [u64; 2],
    /// Lines sent again after clean and after kill -9 restarts.
    resent: [u64; 2],
    now: Instant,
    start: Instant,
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
        let cfg = TableConfig {
            settle_minutes: settle,
            join_wait: Duration::from_secs(30),
            // Half the cases parse every snapshot on the second thread (the two-stage
            // pipeline of large files), half on one thread.
            parse_ahead_bytes: if seed.is_multiple_of(2) {
                0
            } else {
                usize::MAX
            },
            // Chunks of one line to a few hundred: both threads claim chunks, in every order.
            parse_chunk_bytes: [1, 90, 400, 3000][rng.below(4) as usize],
            parallel_series: [0, usize::MAX][rng.below(2) as usize],
            // Output chunks of a line to a few: a first snapshot's points are written by
            // either thread, in jobs of every size (`table::defer`).
            chunk_bytes: [1, 500, 256 * 1024][rng.below(3) as usize],
            // A third of the cases write live rollups (from the seed: the other cases' random
            // plays are those of the settled mode alone).
            rollups: if seed.is_multiple_of(3) {
                RollupMode::Live
            } else {
                RollupMode::Settled
            },
            ..TableConfig::default()
        };
        Case {
            table: Table::new(cfg.clone()),
            cfg,
            ck: Checkpoint::empty(FILES_CHECKPOINT),
            saved: Vec::new(),
            saved_table: Vec::new(),
            inflight: Vec::new(),
            unsaved: Vec::new(),
            acked: HashMap::new(),
            files: [None, None],
            whole: [false; 2],
            rewrite_of: [-1; 2],
            plan: None,
            step: 0,
            state: None,
            restarts: [0; 2],
            repeats: [0; 2],
            resent: [0; 2],
            rng,
            now: Instant::now(),
            start: Instant::now(),
            published: HashMap::new(),
            counts: BTreeMap::new(),
            avgs: BTreeMap::new(),
            store: Default::default(),
            log: Vec::new(),
        }
    }

    /// The wall clock of the model's monotonic `now`.
    fn wall(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH
            + Duration::from_secs(1_600_000_000)
            + self.now.saturating_duration_since(self.start)
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

    /// One snapshot: its lines go through the checkpoint to the sink (in flight).
    fn ingest(&mut self, f: usize, data: &[u8], tail: Tail, k: i64) {
        let kind = if f == 0 {
            Kind::Counters
        } else {
            Kind::Samples
        };
        let mut raw = Vec::new();
        let rep = self.table.ingest_at(
            kind,
            data,
            tail,
            self.now,
            (T0 + k) * 60 + 20,
            &mut |b, l, _| raw.push((b, l)),
        );
        assert_eq!(
            rep.records,
            rep.rows + rep.bad_total(),
            "rows in = ingested + rejected"
        );
        self.repeats[0] += rep.rows;
        self.repeats[1] += rep.repeats;
        self.send(raw);
    }

    fn tick(&mut self, after: Duration) {
        self.now += after;
        let mut raw = Vec::new();
        self.table.tick(self.now, &mut |b, l, _| raw.push((b, l)));
        self.send(raw);
    }

    /// What `files::send` does: the checkpoint drops what the server already has, the rest is
    /// sent (and pending in the checkpoint).
    fn send(&mut self, raw: Vec<(Bucket, bytes::Bytes)>) {
        for (b, lines) in raw {
            let (lines, _) = self.ck.filter(BUCKETS[b as usize], lines);
            let text = std::str::from_utf8(&lines).unwrap();
            self.inflight
                .extend(text.lines().map(|l| (b as usize, l.to_string())));
        }
    }

    /// What `Pipeline::commit` does once the sink acknowledged everything: the lines are
    /// stored, recorded, and (with `save`) the record is written.
    fn commit(&mut self, save: bool) {
        let lines = std::mem::take(&mut self.inflight);
        self.merge(&lines, true);
        self.unsaved.extend(lines.into_iter().map(|l| l.1));
        self.ck.ack();
        if save {
            self.saved = self.ck.saved_bytes();
            self.saved_table = self.table.save_state(self.now, self.wall());
            self.unsaved.clear();
        }
    }

    /// The end of one step (a snapshot with `save`, a tick without): acknowledged as the
    /// pipeline does, or, at the planned point, a restart.
    fn step_end(&mut self, save: bool, last: bool, k: i64) {
        self.step += 1;
        match self.plan {
            Some(p)
                if (p.at <= self.step || last)
                    && (!p.lose_table
                        || (self.whole == [true, true]
                            && self.rewrite_of[0] == self.rewrite_of[1])) =>
            {
                self.plan = None;
                if p.kill {
                    // kill -9: a random prefix of the lines in flight reached the server, the
                    // rest is lost; the checkpoint file is the last one saved.
                    let lines = std::mem::take(&mut self.inflight);
                    let got = self.rng.below(lines.len() as u64 + 1) as usize;
                    self.log.push(format!(
                        "kill -9 at step {}: {got} of {} lines in flight arrived",
                        self.step,
                        lines.len()
                    ));
                    self.merge(&lines[..got], false);
                    self.unsaved.extend(lines.into_iter().map(|l| l.1));
                    if self.rng.chance(50) {
                        // Before dying, the pipeline committed while the sink had lost the rest
                        // (server down, spool unusable): `Pipeline::commit` forgets the pending
                        // lines and saves.
                        self.log
                            .push("sink lost the rest; commit forgot and saved".into());
                        self.ck.forget_pending();
                        self.saved = self.ck.saved_bytes();
                    }
                } else {
                    self.commit(true);
                    self.log
                        .push(format!("clean restart at step {}", self.step));
                }
                self.restart(p, k);
            }
            _ => self.commit(save),
        }
    }

    /// A new process: a new table, the checkpoint loaded from the state directory, the
    /// current files read again (counters first).
    fn restart(&mut self, p: Plan, k: i64) {
        let killed = p.kill;
        self.restarts[killed as usize] += 1;
        let wall = self.wall();
        let (_, state) = self.state.get_or_insert_with(|| {
            let dir = tempfile::tempdir_in(if Path::new("/dev/shm").is_dir() {
                Path::new("/dev/shm").to_path_buf()
            } else {
                std::env::temp_dir()
            })
            .unwrap();
            let state = StateDir::open(dir.path()).unwrap();
            (dir, state)
        });
        if self.saved.is_empty() {
            let _ = std::fs::remove_file(state.path().join(FILES_CHECKPOINT));
        } else {
            state.write_atomic(FILES_CHECKPOINT, &self.saved).unwrap();
        }
        self.ck = Checkpoint::load(state, FILES_CHECKPOINT);
        if self.saved_table.is_empty() {
            let _ = std::fs::remove_file(state.path().join(TABLE_STATE));
        } else {
            let mut t = self.saved_table.clone();
            if p.lose_table {
                let at = self.rng.below(t.len() as u64) as usize;
                t[at] ^= 0x20;
                self.log.push(format!("table state corrupt at byte {at}"));
            }
            state.write_atomic(TABLE_STATE, &t).unwrap();
        }
        self.table = Table::load(state, TABLE_STATE, self.cfg.clone(), self.now, wall);
        let unsaved: BTreeSet<String> = std::mem::take(&mut self.unsaved).into_iter().collect();
        for f in 0..2 {
            if let Some(text) = self.files[f].clone() {
                self.ingest(f, text.as_bytes(), Tail::Quiet, k);
            }
            // Re-sent: every line through the checkpoint. None may be the point's last
            // acknowledged line, unchanged, except the lines since the last save (a kill).
            self.resent[killed as usize] += self.inflight.len() as u64;
            let needless: Vec<&String> = self
                .inflight
                .iter()
                .filter(|(b, l)| {
                    self.acked.get(&(*b, self.parse(*b, l).0)) == Some(l) && !unsaved.contains(l)
                })
                .map(|l| &l.1)
                .collect();
            assert!(
                needless.is_empty(),
                "re-sent after a {} restart though acknowledged and unchanged: {needless:#?}\n{:#?}",
                if killed { "kill -9" } else { "clean" },
                self.log
            );
            if !killed && !p.lose_table {
                // A clean restart from the saved table: nothing sent again.
                assert!(
                    self.inflight.is_empty(),
                    "sent after a clean restart: {:#?}\n{:#?}",
                    self.inflight,
                    self.log
                );
            }
            if !killed && p.lose_table {
                // A clean restart from a new table, of whole files, re-sends nothing but
                // rollups whose float fields differ in the last bits (hosts summed in another
                // order).
                for (b, l) in &self.inflight {
                    let (key, fs) = self.parse(*b, l);
                    let was = self.acked.get(&(*b, key)).map(|a| self.parse(*b, a).1);
                    let close = was.is_some_and(|w| {
                        w.len() == fs.len()
                            && w.iter().zip(&fs).all(|((a, x), (c, y))| {
                                a == c && (x - y).abs() <= 1e-12 * x.abs().max(1.0)
                            })
                    });
                    assert!(
                        *b == 2 && close,
                        "re-sent after a clean restart: {l}, last acknowledged {:?}\n{:#?}",
                        self.acked.get(&(*b, key)),
                        self.log
                    );
                }
            }
            self.commit(true);
        }
        // The run loop's first tick: join waits that ran out while the process was down.
        self.tick(Duration::ZERO);
        self.commit(false);
    }

    /// A line's point key and fields.
    fn parse(&self, b: usize, l: &str) -> (PKey, BTreeMap<&'static str, f64>) {
        let (series, rest) = l.split_once(' ').unwrap();
        let (fields, ts) = rest.rsplit_once(' ').unwrap();
        let (meas, tag) = series.split_once(',').unwrap();
        let m = ts.parse::<i64>().unwrap() / 60;
        let mut fs = BTreeMap::new();
        for kv in fields.split(',') {
            let (k, v) = kv.split_once('=').unwrap();
            let k = FIELDS.iter().find(|f| **f == k).unwrap();
            let v = match v {
                "true" => 1.0,
                "false" => 0.0,
                v => v.trim_end_matches('i').parse::<f64>().unwrap(),
            };
            fs.insert(*k, v);
        }
        let s = STATS.iter().position(|x| x.0 == meas).unwrap();
        let t = if b == 2 {
            (tag == "file=samples") as usize
        } else {
            tag.strip_prefix("hostname=cp").unwrap().parse().unwrap()
        };
        ((s, t, m), fs)
    }

    /// Merges lines into the store; checks each carries only published values. `acked`: the
    /// sink acknowledged them (not only the server received them).
    fn merge(&mut self, lines: &[(usize, String)], acked: bool) {
        for (b, l) in lines {
            let (key, fs) = self.parse(*b, l);
            if *b < 2 {
                self.check_published(*b, key.1, key.0, key.2, &fs, l);
            }
            self.store[*b].entry(key).or_default().extend(fs);
            if acked {
                self.acked.insert((*b, key), l.clone());
            }
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

    /// Live rollups, after each rewrite: every minute with a value has its rollups in the
    /// store already (per stat, `file=counters` for a count, `file=samples` for an average),
    /// the minute under way included.
    fn check_live_rollups(&self, k: i64) {
        if self.cfg.rollups != RollupMode::Live {
            return;
        }
        let want: BTreeSet<PKey> = self
            .counts
            .keys()
            .map(|&(_, s, m)| (s, 0, m))
            .chain(self.avgs.keys().map(|&(_, s, m)| (s, 1, m)))
            .collect();
        let missing: Vec<_> = want
            .iter()
            .filter(|k| !self.store[2].contains_key(k))
            .collect();
        assert!(
            missing.is_empty(),
            "after rewrite {k}: no live rollup for {missing:?}\n{:#?}",
            self.log
        );
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
        if self.cfg.rollups == RollupMode::Live {
            // Every minute written live ends settled: its last write carries `settled=true`.
            for w in want.values_mut() {
                w.insert("settled", 1.0);
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

    /// Plays the case; returns the restarts and the lines re-sent after them (clean, kill -9),
    /// and the good rows and repeats.
    fn play(&mut self) -> ([u64; 2], [u64; 2], [u64; 2]) {
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
            self.step = 0;
            if self.rng.chance(RESTART_PERCENT) {
                self.plan = Some(Plan {
                    at: 1 + self.rng.below(6) as usize,
                    kill: self.rng.chance(50),
                    lose_table: self.rng.chance(15),
                });
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
                    self.ingest(f, &text.as_bytes()[..cut], Tail::Quiet, k);
                    // A process started now reads the half-written file (rows are missing).
                    self.files[f] = Some(text[..cut].to_string());
                    self.whole[f] = false;
                    self.step_end(true, false, k);
                }
                self.ingest(f, text.as_bytes(), Tail::Quiet, k);
                self.apply(f, k, &accepted);
                self.files[f] = Some(text);
                let rows_per_host = STATS
                    .iter()
                    .filter(|x| if f == 0 { x.1 } else { x.2 })
                    .count();
                self.whole[f] = accepted.len() == HOSTS * rows_per_host;
                self.rewrite_of[f] = k;
                self.step_end(true, false, k);
                if i == 0 && samples_first && self.rng.chance(50) {
                    // counters.csv late past join_wait.
                    self.tick(Duration::from_secs(31));
                    self.step_end(false, false, k);
                }
            }
            self.tick(Duration::from_secs(31));
            self.step_end(false, true, k);
            self.check_points(&format!("after rewrite {k}"));
            self.check_live_rollups(k);
            self.now += Duration::from_secs(60);
        }
        let mut raw = Vec::new();
        self.table.finish(self.now, &mut |b, l, _| raw.push((b, l)));
        self.send(raw);
        self.commit(true);
        self.check_points("after finish");
        self.check_rollups();
        (self.restarts, self.resent, self.repeats)
    }
}

/// Percent of rewrites with a restart (half of them by kill -9).
const RESTART_PERCENT: u64 = 12;

#[test]
fn model_based_random_rewrites_with_trouble() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("SREWATCH_MODEL_SEED") {
        Some(s) => vec![s],
        None => (1..=env("SREWATCH_MODEL_CASES").unwrap_or(2000)).collect(),
    };
    let cases = seeds.len() as u64;
    let mut total = ([0u64; 2], [0u64; 2]);
    let mut repeats = [0u64; 2];
    for seed in seeds {
        match std::panic::catch_unwind(|| Case::new(seed).play()) {
            Ok((restarts, resent, reps)) => {
                for i in 0..2 {
                    total.0[i] += restarts[i];
                    total.1[i] += resent[i];
                    repeats[i] += reps[i];
                }
            }
            Err(e) => {
                eprintln!("model-based case failed: SREWATCH_MODEL_SEED={seed}");
                std::panic::resume_unwind(e);
            }
        }
    }
    eprintln!(
        "model-based: {cases} cases; {} clean restarts re-sent {} lines, {} kill -9 restarts re-sent {}",
        total.0[0], total.1[0], total.0[1], total.1[1]
    );
    eprintln!(
        "model-based: {} good rows, {} applied as repeats",
        repeats[0], repeats[1]
    );
    if cases >= 100 {
        assert!(
            total.0[0] >= cases / 4 && total.0[1] >= cases / 4,
            "{total:?}"
        );
        // The repeat path must stay covered: 37.0% of the good rows were applied
        // as repeats in the default 2,000 cases (139,050 of 375,642; 37.0% of the first 100
        // cases, 37.8% of the first 300). Not more, because the first rewrite of a case or
        // after a restart has no memo, a half-written snapshot (15% of rewrites) leaves the
        // memo of the same minute, an odd row inserted puts the rows after it off their
        // positions, and a host gone moves the others. 30% leaves room for the randomness
        // of 100 cases and fails if either file stops repeating (each holds half the rows).
        assert!(
            repeats[1] * 10 >= repeats[0] * 3,
            "only {} of {} good rows applied as repeats",
            repeats[1],
            repeats[0]
        );
    }
}

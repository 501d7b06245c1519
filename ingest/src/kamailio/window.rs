//! Window: per target and per wall-clock minute, turns the cumulative values of successive polls
//! into what operators read.
//!
//! - **Counters**: the minute's `increase` (sum of the increases of the poll intervals that
//!   ended in this minute) and `rate` (that increase divided by the seconds those intervals
//!   cover), plus `total`, the last raw value. The first poll of a target is only a baseline.
//! - **Restarts**: a poll in which any counter went down means Kamailio restarted (or its
//!   statistics were reset). One restart is counted for that poll, and for every counter of that
//!   poll the new value itself is taken as the increase since the restart; an increase is never
//!   negative.
//! - **Gauges**: `last`, `min` and `max` of the values polled in the minute.
//! - **Histograms**: for the configured busiest counters, an HDR histogram of the per-interval
//!   rates in the minute, written as `rate_p50`, `rate_p99` and `rate_max`.
//!
//! A minute is written (stamped with its first second) when the first poll of a later minute
//! arrives, or by [`Window::flush`]. Everything here is pure: timestamps come in as arguments,
//! so tests drive it with exact numbers.

use super::classify::{Classifier, Kind};
use super::parse::Stat;
use crate::lineproto::{round_to, Field, LineEncoder};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Measurement names (see docs/kamailio.md for the schema).
pub const M_COUNTER: &str = "kamailio_counter";
pub const M_GAUGE: &str = "kamailio_gauge";
pub const M_TARGET: &str = "kamailio_target";
pub const M_UP: &str = "kamailio_up";

/// The default busiest counters that get rate histograms.
pub const DEFAULT_HISTOGRAMS: &[&str] = &[
    "core:rcv_requests",
    "core:fwd_requests",
    "sl:sent_replies",
    "core:rcv_requests_options",
    "core:rcv_requests_invite",
];

/// Rates go into the histograms in thousandths per second.
const HIST_SCALE: f64 = 1000.0;
/// Rates are written to the thousandth per second, the histograms' resolution (`rate=4.833`,
/// not `4.833333333333333`).
const RATE_DECIMALS: i32 = 3;

/// FNV-1a: statistic names are short and trusted enough; much cheaper than SipHash.
#[derive(Default)]
struct Fnv(u64);
impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf29ce484222325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        self.0 = h;
    }
}

/// One statistic's window: its name, kind, last values and per-minute aggregates.
///
/// 13 fields, kept flat: one is created per statistic of each target, and the
/// per-minute fields are updated together on every poll.
struct StatState {
    full: Box<str>,
    group_len: usize,
    kind: Kind,
    /// Value and time (ms) of the last poll that had this statistic.
    prev: Option<(i64, i64)>,
    /// Value in the poll under way, if it had this statistic.
    cur: Option<i64>,
    // The minute's accumulators.
    present: bool,
    increase: u64,
    covered_ms: i64,
    last: i64,
    min: i64,
    max: i64,
    hist: Option<Histogram<u64>>,
    /// Exact largest interval rate of the minute (the histogram keeps 3 significant digits).
    rate_max: f64,
}

/// Counts over one minute for the whole target.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MinuteCounts {
    pub polls: u64,
    pub failed: u64,
    pub restarts: u64,
    pub bad_lines: u64,
    pub dropped_stats: u64,
}

/// The per-target window.
pub struct Window {
    classifier: Classifier,
    histograms: Vec<String>,
    max_stats: usize,
    index: HashMap<Box<str>, usize, BuildHasherDefault<Fnv>>,
    stats: Vec<StatState>,
    /// Index of the statistic seen at each position of the previous reply: Kamailio answers in
    /// the same order every time, so most lookups are one string comparison.
    order: Vec<usize>,
    pos: usize,
    /// Minute under way (its first second, Unix time), if any poll happened in it.
    minute: Option<i64>,
    counts: MinuteCounts,
    poll_ts: i64,
    polls_ok: u64,
    restarts_total: u64,
}

/// What one poll changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PollOutcome {
    pub restarted: bool,
    pub stats: usize,
}

impl Window {
    pub fn new(classifier: Classifier, histograms: &[String], max_stats: usize) -> Window {
        Window {
            classifier,
            histograms: histograms.to_vec(),
            max_stats,
            index: HashMap::default(),
            stats: Vec::new(),
            order: Vec::new(),
            pos: 0,
            minute: None,
            counts: MinuteCounts::default(),
            poll_ts: 0,
            polls_ok: 0,
            restarts_total: 0,
        }
    }

    /// Restarts counted over the window's life.
    pub fn restarts_total(&self) -> u64 {
        self.restarts_total
    }

    /// Counts of the minute under way.
    pub fn counts(&self) -> MinuteCounts {
        self.counts
    }

    /// Moves to the minute of `ts_ms`, writing the minute under way first if it is over.
    pub fn roll(&mut self, ts_ms: i64, host: &str, enc: &mut LineEncoder) {
        let m = ts_ms.div_euclid(60_000) * 60;
        match self.minute {
            Some(cur) if cur == m => {}
            Some(cur) if cur > m => {} // the clock went back: stay in the newer minute
            Some(_) => {
                self.flush(host, enc);
                self.minute = Some(m);
            }
            None => self.minute = Some(m),
        }
    }

    /// A poll that failed (no reply, error reply).
    pub fn poll_failed(&mut self, ts_ms: i64, host: &str, enc: &mut LineEncoder) {
        self.roll(ts_ms, host, enc);
        self.counts.failed += 1;
    }

    /// Starts taking in the statistics of one reply received at `ts_ms`.
    pub fn begin_poll(&mut self, ts_ms: i64, host: &str, enc: &mut LineEncoder) {
        self.roll(ts_ms, host, enc);
        self.poll_ts = ts_ms;
        self.pos = 0;
        for s in &mut self.stats {
            s.cur = None;
        }
    }

    /// A line of the reply that is not a statistic.
    pub fn bad_line(&mut self) {
        self.counts.bad_lines += 1;
    }

    /// One statistic of the reply under way. Returns `false` when it was dropped because the
    /// target already has `max_stats` distinct statistics.
    pub fn observe(&mut self, st: &Stat<'_>) -> bool {
        let pos = self.pos;
        self.pos += 1;
        let hit = self
            .order
            .get(pos)
            .copied()
            .filter(|&i| &*self.stats[i].full == st.full);
        let i = match hit {
            Some(i) => i,
            None => {
                let i = match self.index.get(st.full) {
                    Some(&i) => i,
                    None => {
                        if self.stats.len() >= self.max_stats {
                            self.counts.dropped_stats += 1;
                            return false;
                        }
                        let i = self.stats.len();
                        self.stats.push(self.new_stat(st));
                        self.index.insert(st.full.into(), i);
                        i
                    }
                };
                if pos < self.order.len() {
                    self.order[pos] = i;
                } else {
                    self.order.push(i);
                }
                i
            }
        };
        self.stats[i].cur = Some(st.value);
        true
    }

    fn new_stat(&self, st: &Stat<'_>) -> StatState {
        let kind = self.classifier.kind(st.full);
        let hist = (kind == Kind::Counter && self.histograms.iter().any(|h| h == st.full))
            .then(|| Histogram::new(3).expect("3 significant figures is valid"));
        StatState {
            full: st.full.into(),
            group_len: st.group.len(),
            kind,
            prev: None,
            cur: None,
            present: false,
            increase: 0,
            covered_ms: 0,
            last: 0,
            min: 0,
            max: 0,
            hist,
            rate_max: 0.0,
        }
    }

    /// Ends the reply under way: detects a restart and applies the values.
    pub fn end_poll(&mut self) -> PollOutcome {
        self.order.truncate(self.pos);
        let restarted = self.stats.iter().any(|s| {
            s.kind == Kind::Counter && matches!((s.prev, s.cur), (Some((p, _)), Some(c)) if c < p)
        });
        let ts = self.poll_ts;
        let mut n = 0;
        for s in &mut self.stats {
            let Some(v) = s.cur else { continue };
            n += 1;
            match s.kind {
                Kind::Counter => {
                    let delta = match s.prev {
                        Some((p, _)) if !restarted => Some(v.saturating_sub(p).max(0) as u64),
                        // Since the restart: the new value is the increase.
                        _ if restarted => Some(v.max(0) as u64),
                        _ => None, // baseline
                    };
                    if let Some(d) = delta {
                        let since = s.prev.map_or(ts, |(_, t)| t);
                        let dt = (ts - since).max(0);
                        s.increase += d;
                        s.covered_ms += dt;
                        if let (Some(h), true) = (s.hist.as_mut(), dt > 0) {
                            let rate = d as f64 * 1000.0 / dt as f64;
                            // `record` grows the histogram (`saturating_record` would clamp to its current top).
                            let _ = h.record((rate * HIST_SCALE).round() as u64);
                            s.rate_max = s.rate_max.max(rate);
                        }
                    }
                    s.last = v;
                }
                Kind::Gauge => {
                    if s.present {
                        s.min = s.min.min(v);
                        s.max = s.max.max(v);
                    } else {
                        s.min = v;
                        s.max = v;
                    }
                    s.last = v;
                }
            }
            s.present = true;
            s.prev = Some((v, ts));
        }
        if n > 0 {
            // A reply without a single statistic is counted by the caller as a failed poll.
            self.counts.polls += 1;
            self.polls_ok += 1;
        }
        if restarted {
            self.counts.restarts += 1;
            self.restarts_total += 1;
        }
        PollOutcome {
            restarted,
            stats: n,
        }
    }

    /// Writes the minute under way (if any poll happened in it) and starts it afresh.
    pub fn flush(&mut self, host: &str, enc: &mut LineEncoder) {
        let Some(minute) = self.minute else { return };
        for s in &mut self.stats {
            if !s.present {
                continue;
            }
            let tags = [
                ("hostname", host),
                ("group", &s.full[..s.group_len]),
                ("stat", &s.full[..]),
            ];
            match s.kind {
                Kind::Counter => {
                    let mut fields: [(&str, Field<'_>); 6] = [
                        ("total", Field::Int(s.last)),
                        ("", Field::Int(0)),
                        ("", Field::Int(0)),
                        ("", Field::Int(0)),
                        ("", Field::Int(0)),
                        ("", Field::Int(0)),
                    ];
                    if s.covered_ms > 0 || s.increase > 0 {
                        fields[1] = ("increase", Field::Int(s.increase as i64));
                        if s.covered_ms > 0 {
                            fields[2] = (
                                "rate",
                                Field::Float(round_to(
                                    s.increase as f64 * 1000.0 / s.covered_ms as f64,
                                    RATE_DECIMALS,
                                )),
                            );
                        }
                    }
                    if let Some(h) = s.hist.as_mut() {
                        if !h.is_empty() {
                            let q =
                                |v: u64| Field::Float(h.median_equivalent(v) as f64 / HIST_SCALE);
                            fields[3] = ("rate_p50", q(h.value_at_quantile(0.5)));
                            fields[4] = ("rate_p99", q(h.value_at_quantile(0.99)));
                            fields[5] = (
                                "rate_max",
                                Field::Float(round_to(s.rate_max, RATE_DECIMALS)),
                            );
                        }
                        h.reset();
                        s.rate_max = 0.0;
                    }
                    enc.push(M_COUNTER, &tags, &fields, minute);
                }
                Kind::Gauge => {
                    enc.push(
                        M_GAUGE,
                        &tags,
                        &[
                            ("last", Field::Int(s.last)),
                            ("min", Field::Int(s.min)),
                            ("max", Field::Int(s.max)),
                        ],
                        minute,
                    );
                }
            }
            s.present = false;
            s.increase = 0;
            s.covered_ms = 0;
        }
        let c = self.counts;
        enc.push(
            M_TARGET,
            &[("hostname", host)],
            &[
                ("polls", Field::Int(c.polls as i64)),
                ("failed", Field::Int(c.failed as i64)),
                ("restarts", Field::Int(c.restarts as i64)),
                ("bad_lines", Field::Int(c.bad_lines as i64)),
                ("dropped_stats", Field::Int(c.dropped_stats as i64)),
            ],
            minute,
        );
        self.counts = MinuteCounts::default();
        self.minute = None;
    }
}

/// What a restarted srewatch needs to carry on a target's window: the minute under way with its
/// accumulators, and the last value of each statistic (the baseline of the next interval).
/// Saved after every poll in the state directory (see [`crate::checkpoint::StateDir`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowState {
    /// Minute under way (first second), if any poll happened in it.
    pub minute: Option<i64>,
    /// The minute has already been written (clean shutdown): only a later write of the same
    /// minute may follow, with the increase after the restart added.
    pub written: bool,
    /// Time (ms) of the last poll.
    pub poll_ts: i64,
    /// polls, failed, restarts, bad_lines, dropped_stats of the minute.
    pub counts: [u64; 5],
    pub restarts_total: u64,
    pub stats: Vec<StatSaved>,
}

/// One statistic of a [`WindowState`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatSaved {
    pub name: String,
    pub group_len: usize,
    /// Last value and its poll time (ms).
    pub prev: Option<(i64, i64)>,
    pub present: bool,
    pub increase: u64,
    pub covered_ms: i64,
    pub last: i64,
    pub min: i64,
    pub max: i64,
    pub rate_max: f64,
}

/// What [`Window::restore`] took from a saved state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The saved minute is the current one: accumulators and baselines; the minute keeps its
    /// full increase.
    Minute,
    /// The saved minute is over and was never written (srewatch was killed): it is written at
    /// the next poll, and the baselines carry on.
    UnwrittenMinute,
    /// The saved minute is over and was written: only the baselines carry on.
    Baselines,
    /// Too old (or from the future): nothing; the next poll is a new baseline.
    Nothing,
}

impl Window {
    /// The window's state, to save (`written`: the minute under way is about to be written by
    /// a shutdown).
    pub fn export(&self, written: bool) -> WindowState {
        let c = self.counts;
        WindowState {
            minute: self.minute,
            written,
            poll_ts: self.poll_ts,
            counts: [c.polls, c.failed, c.restarts, c.bad_lines, c.dropped_stats],
            restarts_total: self.restarts_total,
            stats: self
                .stats
                .iter()
                .map(|s| StatSaved {
                    name: s.full.to_string(),
                    group_len: s.group_len,
                    prev: s.prev,
                    present: s.present,
                    increase: s.increase,
                    covered_ms: s.covered_ms,
                    last: s.last,
                    min: s.min,
                    max: s.max,
                    rate_max: s.rate_max,
                })
                .collect(),
        }
    }

    /// Takes over a saved state in a new window, at `now_ms`. Baselines are used only when the
    /// last saved poll is at most `max_gap_ms` old (a longer gap starts from a new baseline, as
    /// the first poll of a target always did); the accumulators of the saved minute only when
    /// that minute is the current one, or is over and was never written.
    pub fn restore(&mut self, st: WindowState, now_ms: i64, max_gap_ms: i64) -> Restored {
        let now_minute = now_ms.div_euclid(60_000) * 60;
        let gap = now_ms - st.poll_ts;
        if !self.stats.is_empty() || gap < 0 || gap > max_gap_ms {
            return Restored::Nothing;
        }
        let how = match st.minute {
            Some(m) if m == now_minute => Restored::Minute,
            Some(m) if m < now_minute && !st.written => Restored::UnwrittenMinute,
            _ => Restored::Baselines,
        };
        let keep = how != Restored::Baselines;
        for sv in st.stats.into_iter().take(self.max_stats) {
            let kind = self.classifier.kind(&sv.name);
            let hist = (kind == Kind::Counter && self.histograms.contains(&sv.name))
                .then(|| Histogram::new(3).expect("3 significant figures is valid"));
            let full: Box<str> = sv.name.into();
            self.index.insert(full.clone(), self.stats.len());
            self.stats.push(StatState {
                group_len: sv.group_len.min(full.len()),
                full,
                kind,
                prev: sv.prev,
                cur: None,
                present: keep && sv.present,
                increase: if keep { sv.increase } else { 0 },
                covered_ms: if keep { sv.covered_ms } else { 0 },
                last: sv.last,
                min: sv.min,
                max: sv.max,
                hist,
                rate_max: if keep { sv.rate_max } else { 0.0 },
            });
        }
        self.poll_ts = st.poll_ts;
        self.restarts_total = st.restarts_total;
        if keep {
            let c = st.counts;
            self.counts = MinuteCounts {
                polls: c[0],
                failed: c[1],
                restarts: c[2],
                bad_lines: c[3],
                dropped_stats: c[4],
            };
            self.minute = st.minute;
        }
        how
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kamailio::parse::parse_line;

    fn win() -> Window {
        let h: Vec<String> = DEFAULT_HISTOGRAMS.iter().map(|s| s.to_string()).collect();
        Window::new(Classifier::default(), &h, 1000)
    }

    /// One poll at `ts` seconds with `lines`.
    fn poll(w: &mut Window, enc: &mut LineEncoder, ts_ms: i64, lines: &[&str]) -> PollOutcome {
        w.begin_poll(ts_ms, "cp1", enc);
        for l in lines {
            match parse_line(l.as_bytes()) {
                Ok(s) => {
                    w.observe(&s);
                }
                Err(_) => w.bad_line(),
            }
        }
        w.end_poll()
    }

    fn text(enc: &mut LineEncoder) -> String {
        String::from_utf8(enc.take().to_vec()).unwrap()
    }

    const T0: i64 = 1_652_193_060_000; // 14:31:00 UTC, a minute boundary

    #[test]
    fn counters_gauges_and_minutes() {
        let mut w = win();
        let mut e = LineEncoder::new();
        poll(
            &mut w,
            &mut e,
            T0,
            &["sl:5xx_replies = 4", "shmem:used_size = 100"],
        );
        poll(
            &mut w,
            &mut e,
            T0 + 10_000,
            &["sl:5xx_replies = 10", "shmem:used_size = 300"],
        );
        poll(
            &mut w,
            &mut e,
            T0 + 20_000,
            &["sl:5xx_replies = 34", "shmem:used_size = 50"],
        );
        assert!(e.is_empty(), "nothing before the minute ends");
        // The first poll of the next minute closes the minute; its own interval (24 -> 40)
        // belongs to the new minute.
        poll(
            &mut w,
            &mut e,
            T0 + 60_000,
            &["sl:5xx_replies = 40", "shmem:used_size = 70"],
        );
        assert_eq!(
            text(&mut e),
            "kamailio_counter,hostname=cp1,group=sl,stat=sl:5xx_replies total=34i,increase=30i,rate=1.5 1652193060\n\
             kamailio_gauge,hostname=cp1,group=shmem,stat=shmem:used_size last=50i,min=50i,max=300i 1652193060\n\
             kamailio_target,hostname=cp1 polls=3i,failed=0i,restarts=0i,bad_lines=0i,dropped_stats=0i 1652193060\n"
        );
        w.flush("cp1", &mut e);
        assert_eq!(
            text(&mut e),
            "kamailio_counter,hostname=cp1,group=sl,stat=sl:5xx_replies total=40i,increase=6i,rate=0.15 1652193120\n\
             kamailio_gauge,hostname=cp1,group=shmem,stat=shmem:used_size last=70i,min=70i,max=70i 1652193120\n\
             kamailio_target,hostname=cp1 polls=1i,failed=0i,restarts=0i,bad_lines=0i,dropped_stats=0i 1652193120\n"
        );
        // Flushing twice writes nothing new.
        w.flush("cp1", &mut e);
        assert!(e.is_empty());
    }

    #[test]
    fn restart_counts_once_and_never_goes_negative() {
        let mut w = win();
        let mut e = LineEncoder::new();
        let p = |a: i64, b: i64| {
            [
                format!("core:rcv_requests = {a}"),
                format!("core:fwd_requests = {b}"),
            ]
        };
        let lines = |v: &[String; 2]| [v[0].clone(), v[1].clone()];
        let l0 = lines(&p(1000, 500));
        poll(&mut w, &mut e, T0, &[&l0[0], &l0[1]]);
        let l1 = lines(&p(1100, 550));
        assert!(!poll(&mut w, &mut e, T0 + 10_000, &[&l1[0], &l1[1]]).restarted);
        // Restart: rcv_requests went down to 30; fwd_requests (600) did not go down but the
        // restart still applies to it: its increase since the restart is 600, not 50.
        let l2 = lines(&p(30, 600));
        let out = poll(&mut w, &mut e, T0 + 20_000, &[&l2[0], &l2[1]]);
        assert!(out.restarted);
        let l3 = lines(&p(45, 610));
        assert!(!poll(&mut w, &mut e, T0 + 30_000, &[&l3[0], &l3[1]]).restarted);
        w.flush("cp1", &mut e);
        assert_eq!(w.restarts_total(), 1);
        let t = text(&mut e);
        // rcv: 100 + 30 + 15 = 145 over 30 s; fwd: 50 + 600 + 10 = 660 over 30 s. Rates to the
        // thousandth per second (4.833, not 4.833333333333333).
        assert!(
            t.contains("stat=core:rcv_requests total=45i,increase=145i,rate=4.833,rate_p50="),
            "{t}"
        );
        assert!(
            t.contains("stat=core:fwd_requests total=610i,increase=660i,rate=22,"),
            "{t}"
        );
        assert!(t.contains("polls=4i,failed=0i,restarts=1i,"), "{t}");
        assert!(!t.contains("increase=-"), "{t}");
    }

    #[test]
    fn histogram_of_interval_rates() {
        let mut w = win();
        let mut e = LineEncoder::new();
        // Intervals of 10 s with increases 10, 10, 10, 10, 500: rates 1, 1, 1, 1, 50 per second.
        let vals = [0, 10, 20, 30, 40, 540];
        for (k, v) in vals.iter().enumerate() {
            let l = format!("core:rcv_requests_invite = {v}");
            poll(&mut w, &mut e, T0 + k as i64 * 10_000, &[&l]);
        }
        w.flush("cp1", &mut e);
        let t = text(&mut e);
        assert!(
            t.starts_with(
                "kamailio_counter,hostname=cp1,group=core,stat=core:rcv_requests_invite total=540i,increase=540i,rate=10.8,rate_p50=1,rate_p99=50,rate_max=50 "
            ),
            "{t}"
        );
        // The histogram starts empty in the next minute: one interval of 2/s.
        poll(
            &mut w,
            &mut e,
            T0 + 60_000,
            &["core:rcv_requests_invite = 560"],
        );
        w.flush("cp1", &mut e);
        let t = text(&mut e);
        assert!(
            t.contains(
                "total=560i,increase=20i,rate=2,rate_p50=2,rate_p99=2,rate_max=2 1652193120"
            ),
            "{t}"
        );
    }

    #[test]
    fn failures_bad_lines_and_limits() {
        let mut w = Window::new(Classifier::default(), &[], 2);
        let mut e = LineEncoder::new();
        poll(
            &mut w,
            &mut e,
            T0,
            &["a:x = 1", "junk", "a:y = z", "a:z = 3", "b:w = 4"],
        );
        w.poll_failed(T0 + 10_000, "cp1", &mut e);
        w.poll_failed(T0 + 20_000, "cp1", &mut e);
        // A minute with failures only still gets its target line.
        w.poll_failed(T0 + 60_000, "cp1", &mut e);
        let t = text(&mut e);
        assert!(t.contains("kamailio_counter,hostname=cp1,group=a,stat=a:x total=1i 1652193060\n"));
        assert!(t.contains("kamailio_counter,hostname=cp1,group=a,stat=a:z total=3i 1652193060\n"));
        assert!(!t.contains("b:w"));
        assert!(t.ends_with(
            "kamailio_target,hostname=cp1 polls=1i,failed=2i,restarts=0i,bad_lines=2i,dropped_stats=1i 1652193060\n"
        ), "{t}");
        w.flush("cp1", &mut e);
        assert_eq!(
            text(&mut e),
            "kamailio_target,hostname=cp1 polls=0i,failed=1i,restarts=0i,bad_lines=0i,dropped_stats=0i 1652193120\n"
        );
    }

    #[test]
    fn order_changes_and_gaps() {
        let mut w = win();
        let mut e = LineEncoder::new();
        poll(&mut w, &mut e, T0, &["a:x = 1", "a:y = 10"]);
        // Different order, one stat missing, then back: each keeps its own previous value and time.
        poll(&mut w, &mut e, T0 + 10_000, &["a:y = 20", "a:x = 2"]);
        poll(&mut w, &mut e, T0 + 20_000, &["a:y = 30"]);
        poll(&mut w, &mut e, T0 + 40_000, &["a:x = 5", "a:y = 40"]);
        w.flush("cp1", &mut e);
        let t = text(&mut e);
        assert!(t.contains("stat=a:x total=5i,increase=4i,rate=0.1 "), "{t}");
        assert!(
            t.contains("stat=a:y total=40i,increase=30i,rate=0.75 "),
            "{t}"
        );
    }

    #[test]
    fn restore_keeps_the_minute_or_writes_the_unwritten_one() {
        let opts = |n: i64| [format!("core:rcv_requests_options = {n}")];
        let run = |w: &mut Window, e: &mut LineEncoder, ts: i64, n: i64| {
            let l = opts(n);
            poll(w, e, ts, &[&l[0]]);
        };
        // First run: baseline 100, then 110 in the minute T0.
        let mut w = win();
        let mut e = LineEncoder::new();
        run(&mut w, &mut e, T0 + 1_000, 100);
        run(&mut w, &mut e, T0 + 11_000, 110);
        let saved = w.export(false);

        // Restarted 10 s later in the same minute: 125 at the next poll; the minute's
        // increase is 25 (10 before the restart, 15 across and after it).
        let mut w2 = win();
        assert_eq!(
            w2.restore(saved.clone(), T0 + 21_000, 60_000),
            Restored::Minute
        );
        run(&mut w2, &mut e, T0 + 21_000, 125);
        w2.flush("cp1", &mut e);
        let t = text(&mut e);
        assert!(
            t.contains("stat=core:rcv_requests_options total=125i,increase=25i,rate=1.25,"),
            "{t}"
        );

        // Killed, restarted in the next minute: the saved minute is written first (increase
        // 10), the interval across the restart goes to the new minute.
        let mut w3 = win();
        assert_eq!(
            w3.restore(saved.clone(), T0 + 61_000, 60_000),
            Restored::UnwrittenMinute
        );
        run(&mut w3, &mut e, T0 + 61_000, 130);
        w3.flush("cp1", &mut e);
        let t = text(&mut e);
        assert!(
            t.contains("total=110i,increase=10i,rate=1 1652193060\n"),
            "{t}"
        );
        assert!(t.contains("total=130i,increase=20i,rate=0.4,"), "{t}");

        // Stopped cleanly (minute written), restarted in the next minute: baselines only.
        let mut w4 = win();
        let mut written = saved.clone();
        written.written = true;
        assert_eq!(
            w4.restore(written, T0 + 61_000, 60_000),
            Restored::Baselines
        );
        run(&mut w4, &mut e, T0 + 61_000, 130);
        w4.flush("cp1", &mut e);
        let t = text(&mut e);
        assert!(!t.contains(" 1652193060\n"), "{t}");
        assert!(t.contains("total=130i,increase=20i,"), "{t}");

        // Too old: a new baseline, as without a saved state.
        let mut w5 = win();
        assert_eq!(w5.restore(saved, T0 + 600_000, 60_000), Restored::Nothing);
        run(&mut w5, &mut e, T0 + 600_000, 200);
        w5.flush("cp1", &mut e);
        let t = text(&mut e);
        assert!(t.contains("total=200i 1652193660\n"), "{t}");
    }
}

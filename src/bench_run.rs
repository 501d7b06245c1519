//! A saved bench run: the `--json` summary with its histograms, HdrHistogram interval logs, and
//! the exact merge of runs from several hosts (`srewatch bench merge`).
//!
//! The summary JSON carries every histogram it needs (whole run, per step, per second) in the
//! V2-deflate encoding of HdrHistogram, base64 (the same bytes as one interval-log line), so a
//! report or a merge needs nothing but the JSON files. Merging adds counts and histograms; every
//! percentile is computed again from the added histogram (exact, never an average of
//! percentiles). Counters are added generically (every integer field of a tally), so a counter
//! the bench gains later merges without a change here.

use anyhow::{bail, Context};
use base64::Engine;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use probe::bench::{BenchConfig, BenchResult, Load, Second};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Latency histograms: µs, 3 significant digits (as the bench records them).
pub fn new_hist() -> Histogram<u64> {
    Histogram::new(3).expect("histogram")
}

/// A histogram as base64 of its V2-deflate serialization.
pub fn encode_hist(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serialize to memory");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

pub fn decode_hist(s: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .context("histogram is not base64")?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("cannot decode histogram: {e:?}"))?;
    // Auto-resize so histograms of other bounds can be added.
    let mut out = new_hist();
    out.add(&h)
        .map_err(|e| anyhow::anyhow!("cannot add histogram: {e:?}"))?;
    Ok(out)
}

/// The `latency_us` object of a tally, from its histogram.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0, "min": null, "mean": null, "p50": null, "p90": null,
                      "p99": null, "p99_9": null, "max": null});
    }
    json!({
        "count": h.len(),
        "min": h.min(),
        "mean": h.mean(),
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p99_9": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// The target rate during second `s` (1-based) of an open-loop schedule.
fn target_rate(load: &Load, s: u64) -> Option<f64> {
    let Load::Open(steps) = load else {
        return None;
    };
    let at = Duration::from_secs(s.saturating_sub(1));
    let mut end = Duration::ZERO;
    for st in steps {
        end += st.duration;
        if at < end {
            return Some(st.rate);
        }
    }
    None
}

/// Adds to the summary JSON what a report and a merge need: the wall-clock start, the
/// histograms (whole run, steps, seconds), per-second p50/p90/max and target rate.
pub fn augment(v: &mut Value, cfg: &BenchConfig, r: &BenchResult, start: SystemTime) {
    let start_ms = unix_ms(start);
    let o = v.as_object_mut().expect("summary is an object");
    o.insert("start_unix_ms".into(), json!(start_ms));
    o.insert(
        "runs".into(),
        json!([{"uri": cfg.uri, "start_unix_ms": start_ms, "run_id": run_id(start)}]),
    );
    if let Some(t) = o.get_mut("total").and_then(Value::as_object_mut) {
        t.insert("histogram".into(), json!(encode_hist(&r.total.hist)));
    }
    if let Some(steps) = o.get_mut("steps").and_then(Value::as_array_mut) {
        for (j, s) in steps.iter_mut().zip(&r.steps) {
            if let Some(j) = j.as_object_mut() {
                j.insert("histogram".into(), json!(encode_hist(&s.tally.hist)));
            }
        }
    }
    if let Some(secs) = o.get_mut("seconds").and_then(Value::as_array_mut) {
        for (j, s) in secs.iter_mut().zip(&r.seconds) {
            if let Some(j) = j.as_object_mut() {
                second_fields(j, &s.tally.hist);
                j.insert("unix_s".into(), json!(second_unix(start_ms, s.second)));
                j.insert(
                    "target_rate".into(),
                    json!(target_rate(&cfg.load, s.second)),
                );
                j.insert("histogram".into(), json!(encode_hist(&s.tally.hist)));
            }
        }
    }
}

/// A name for one run, unique across hosts in practice: its start in ns and the process id.
fn run_id(start: SystemTime) -> String {
    let ns = start
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{ns:x}-{}", std::process::id())
}

/// What `bench merge` lets through: by default neither the same run twice nor runs of another
/// target, method or rate schedule.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeRules {
    /// Count a run as often as it is given.
    pub allow_duplicates: bool,
    /// Merge runs of different targets, methods or rate schedules.
    pub allow_mixed: bool,
}

/// The runs a summary holds: their `run_id`s (a merged summary lists each input's), or for a
/// summary without any, its whole text.
fn run_ids(v: &Value) -> Vec<String> {
    let ids: Vec<String> = v["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["run_id"].as_str().map(str::to_string))
        .collect();
    if ids.is_empty() {
        vec![v.to_string()]
    } else {
        ids
    }
}

/// The rate schedule of a summary: open loop or not, and each step's (rate, duration in s).
fn schedule(v: &Value) -> Vec<(Option<f64>, f64)> {
    v["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| (s["rate"].as_f64(), s["duration_s"].as_f64().unwrap_or(0.0)))
        .collect()
}

fn show_schedule(s: &[(Option<f64>, f64)]) -> String {
    let dur = |d: f64| humantime::format_duration(Duration::from_secs_f64(d.max(0.0))).to_string();
    match s {
        [(None, d)] => format!("closed loop for {}", dur(*d)),
        [(_, d), rest @ ..] if rest.iter().all(|r| r.1 == *d) => format!(
            "{} step{} of {}",
            s.len(),
            if s.len() == 1 { "" } else { "s" },
            dur(*d)
        ),
        _ => s.iter().map(|r| dur(r.1)).collect::<Vec<_>>().join(", "),
    }
}

/// Whether two schedules are the same one, each host sending its own share: as many steps, of
/// the same durations, open or closed alike, the rates of one a fixed multiple of the other's.
fn same_schedule(a: &[(Option<f64>, f64)], b: &[(Option<f64>, f64)]) -> bool {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| !close(x.1, y.1)) {
        return false;
    }
    let mut factor = None;
    a.iter().zip(b).all(|(x, y)| match (x.0, y.0) {
        (None, None) => true,
        (Some(x), Some(y)) if x > 0.0 => {
            let f = y / x;
            close(*factor.get_or_insert(f), f)
        }
        _ => false,
    })
}

/// Refuses (unless `rules` allow it) a run given twice, and a run whose target, method or rate
/// schedule is not the first run's: merging those adds what cannot be added. `runs` are
/// (file name, summary).
pub fn check_mergeable(runs: &[(String, Value)], rules: MergeRules) -> anyhow::Result<()> {
    let Some((first_name, first)) = runs.first() else {
        bail!("nothing to merge");
    };
    let mut seen: std::collections::HashMap<String, &str> = Default::default();
    for (name, v) in runs {
        if !rules.allow_duplicates {
            for id in run_ids(v) {
                if let Some(earlier) = seen.insert(id, name) {
                    bail!(
                        "{name} is the same run as {earlier} (give --allow-duplicates to count it twice)"
                    );
                }
            }
        }
        if rules.allow_mixed {
            continue;
        }
        for key in ["target", "method"] {
            let (a, b) = (&first[key], &v[key]);
            if a != b {
                bail!(
                    "{name} has another {key} ({}, not {}) than {first_name} (give --allow-mixed to merge them anyway)",
                    b.as_str().unwrap_or("none"),
                    a.as_str().unwrap_or("none")
                );
            }
        }
        let (a, b) = (schedule(first), schedule(v));
        if !same_schedule(&a, &b) {
            let shown = if show_schedule(&a) == show_schedule(&b) {
                let rates = |s: &[(Option<f64>, f64)]| {
                    s.iter()
                        .map(|r| r.0.map_or("-".into(), |x| format!("{x}/s")))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!("rates {}, not in proportion to {}", rates(&b), rates(&a))
            } else {
                format!("{}, not {}", show_schedule(&b), show_schedule(&a))
            };
            bail!(
                "{name} has another rate schedule ({shown}) than {first_name} (give --allow-mixed to merge them anyway)"
            );
        }
    }
    Ok(())
}

/// The wall-clock second (Unix, rounded to the nearest) in which second `s` of a run began.
fn second_unix(start_ms: u64, s: u64) -> u64 {
    (start_ms + 500) / 1000 + s.saturating_sub(1)
}

fn second_fields(j: &mut Map<String, Value>, h: &Histogram<u64>) {
    let q = |p: f64| {
        if h.is_empty() {
            Value::Null
        } else if p >= 1.0 {
            json!(h.max())
        } else {
            json!(h.value_at_quantile(p))
        }
    };
    j.insert("p50_us".into(), q(0.5));
    j.insert("p90_us".into(), q(0.9));
    j.insert("p99_us".into(), q(0.99));
    j.insert("max_us".into(), q(1.0));
}

/// Writes one interval per second of the run to an HdrHistogram interval log (V2 deflate,
/// base64; `BaseTime` and `StartTime` = the run's start; values in µs).
pub struct IntervalLog<W: Write> {
    out: W,
    serializer: V2DeflateSerializer,
    start: SystemTime,
    started: bool,
}

impl<W: Write> IntervalLog<W> {
    pub fn new(out: W, start: SystemTime) -> Self {
        IntervalLog {
            out,
            serializer: V2DeflateSerializer::new(),
            start,
            started: false,
        }
    }

    /// The interval of `[start + offset, start + offset + 1s)`.
    pub fn write(&mut self, offset: Duration, h: &Histogram<u64>) -> anyhow::Result<()> {
        let mut b = IntervalLogWriterBuilder::new();
        if !self.started {
            b.add_comment("srewatch bench: SIP transaction latency, microseconds")
                .with_start_time(self.start)
                .with_base_time(self.start);
        }
        let mut w = b
            .begin_log_with(&mut self.out, &mut self.serializer)
            .context("cannot write the interval log")?;
        if !self.started {
            w.write_comment("\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"")?;
        }
        self.started = true;
        w.write_histogram(h, offset, Duration::from_secs(1), None)
            .map_err(|e| anyhow::anyhow!("cannot write the interval log: {e:?}"))?;
        Ok(())
    }

    /// Writes one per-second histogram of a run.
    pub fn second(&mut self, s: &Second) -> anyhow::Result<()> {
        self.write(
            Duration::from_secs(s.second.saturating_sub(1)),
            &s.tally.hist,
        )
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Every interval of an interval log: (absolute start, histogram).
#[cfg(test)]
pub fn read_interval_log(text: &[u8]) -> anyhow::Result<Vec<(Duration, Histogram<u64>)>> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let mut base = Duration::ZERO;
    let mut out = Vec::new();
    for e in IntervalLogIterator::new(text) {
        match e.map_err(|e| anyhow::anyhow!("bad interval log: {e:?}"))? {
            LogEntry::BaseTime(t) => base = t,
            LogEntry::StartTime(_) => {}
            LogEntry::Interval(i) => {
                out.push((
                    base + i.start_timestamp(),
                    decode_hist(i.encoded_histogram())?,
                ));
            }
        }
    }
    Ok(out)
}

/// Keys of a tally that are not added: recomputed from the merged figures.
const DERIVED: &[&str] = &[
    "latency_us",
    "held",
    "histogram",
    "duration_s",
    "p50_us",
    "p90_us",
    "p99_us",
    "max_us",
    "second",
    "unix_s",
];

/// Whether an object is a summary of a distribution (percentiles, min, max, mean): such
/// figures cannot be added, so a merge leaves out the ones it cannot recompute.
fn is_summary(o: &Map<String, Value>) -> bool {
    o.keys().any(|k| {
        matches!(k.as_str(), "min" | "max" | "mean")
            || (k.starts_with('p') && k[1..].starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// Adds `b` into `a`: integers and floats added, objects of counts (`by_status`) added key by
/// key, histograms added; derived fields left for [`finish_tally`]; distribution summaries
/// other than `latency_us` left out.
fn add_values(a: &mut Map<String, Value>, b: &Map<String, Value>) -> anyhow::Result<()> {
    for (k, bv) in b {
        if k == "histogram" {
            let mut h = match a.get("histogram").and_then(Value::as_str) {
                Some(s) => decode_hist(s)?,
                None => new_hist(),
            };
            if let Some(s) = bv.as_str() {
                h.add(decode_hist(s)?)
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            }
            a.insert(k.clone(), json!(encode_hist(&h)));
            continue;
        }
        if DERIVED.contains(&k.as_str()) {
            if k == "duration_s" {
                let m = a
                    .get(k)
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
                    .max(bv.as_f64().unwrap_or(0.0));
                a.insert(k.clone(), json!(m));
            } else {
                a.entry(k.clone()).or_insert_with(|| bv.clone());
            }
            continue;
        }
        let Some(av) = a.get_mut(k) else {
            a.insert(k.clone(), bv.clone());
            continue;
        };
        *av = match (&*av, bv) {
            (Value::Null, Value::Object(y)) if is_summary(y) => Value::Null,
            (Value::Null, b) => b.clone(),
            (Value::Number(x), Value::Number(y)) => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => json!(x + y),
                _ => json!(x.as_f64().unwrap_or(0.0) + y.as_f64().unwrap_or(0.0)),
            },
            (Value::Object(x), Value::Object(y)) if is_summary(x) || is_summary(y) => Value::Null,
            (Value::Object(x), Value::Object(y)) => {
                let mut x = x.clone();
                add_values(&mut x, y)?;
                Value::Object(x)
            }
            (Value::Bool(x), Value::Bool(y)) => json!(*x && *y),
            (x, _) => x.clone(),
        };
    }
    Ok(())
}

fn hist_of(t: &Map<String, Value>) -> anyhow::Result<Histogram<u64>> {
    match t.get("histogram").and_then(Value::as_str) {
        Some(s) => decode_hist(s),
        None => bail!("a run has no histograms: write it with this version's `--json`"),
    }
}

/// Percentiles from the merged histogram; `held` by the hold rule.
fn finish_tally(t: &mut Map<String, Value>, rule: Option<(f64, u64)>) -> anyhow::Result<()> {
    let h = hist_of(t)?;
    t.insert("latency_us".into(), latency_json(&h));
    if let (Some((max_fail, p99_max)), Some(_)) = (rule, t.get("held")) {
        let sent = t.get("sent").and_then(Value::as_u64).unwrap_or(0);
        let failures = t.get("failures").and_then(Value::as_u64).unwrap_or(0);
        let held = sent > 0
            && failures as f64 / sent as f64 <= max_fail
            && h.value_at_quantile(0.99) < p99_max;
        t.insert("held".into(), json!(held));
    }
    Ok(())
}

fn obj(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Merges the summaries of runs made at the same time (on several hosts) into one summary of
/// the same shape: counts and histograms added, percentiles recomputed, seconds aligned on
/// wall-clock seconds, steps added by index.
pub fn merge(runs: &[Value]) -> anyhow::Result<Value> {
    let Some(first) = runs.first() else {
        bail!("nothing to merge");
    };
    let mut out = obj(first);
    let rule = out.get("hold_rule").map(|r| {
        (
            r["max_failure_ratio"].as_f64().unwrap_or(0.0),
            r["p99_max_us"].as_u64().unwrap_or(u64::MAX),
        )
    });
    let mut total = Map::new();
    let mut accounting = Map::new();
    let mut steps: Vec<Map<String, Value>> = Vec::new();
    let mut seconds: std::collections::BTreeMap<u64, Map<String, Value>> = Default::default();
    let mut list = Vec::new();
    let (mut elapsed, mut peak, mut lag, mut start) = (0f64, 0u64, 0u64, u64::MAX);
    for (i, r) in runs.iter().enumerate() {
        let o = r
            .as_object()
            .with_context(|| format!("run {} is not a JSON object", i + 1))?;
        let t = o
            .get("total")
            .and_then(Value::as_object)
            .with_context(|| format!("run {} has no total", i + 1))?;
        hist_of(t).with_context(|| format!("run {}", i + 1))?;
        add_values(&mut total, t)?;
        add_values(&mut accounting, &obj(&o["accounting"]))?;
        for (j, s) in o
            .get("steps")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if steps.len() <= j {
                steps.push(Map::new());
            }
            add_values(&mut steps[j], &obj(s))?;
        }
        for s in o
            .get("seconds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let u = s["unix_s"].as_u64().context("a second has no unix_s")?;
            add_values(seconds.entry(u).or_default(), &obj(s))?;
        }
        match o.get("runs").and_then(Value::as_array) {
            Some(a) => list.extend(a.iter().cloned()),
            None => list.push(json!({"uri": o.get("uri")})),
        }
        elapsed = elapsed.max(o["elapsed_s"].as_f64().unwrap_or(0.0));
        peak += o["peak_outstanding"].as_u64().unwrap_or(0);
        lag = lag.max(o["max_send_lag_us"].as_u64().unwrap_or(0));
        start = start.min(o["start_unix_ms"].as_u64().unwrap_or(u64::MAX));
    }
    finish_tally(&mut total, None)?;
    for s in &mut steps {
        finish_tally(s, rule)?;
    }
    let balanced = accounting["sent"].as_u64()
        == Some(
            ["answered", "timed_out", "send_errors", "abandoned"]
                .iter()
                .map(|k| accounting.get(*k).and_then(Value::as_u64).unwrap_or(0))
                .sum(),
        );
    accounting.insert("balanced".into(), json!(balanced));
    let first_unix = seconds.keys().next().copied().unwrap_or(0);
    let mut secs = Vec::new();
    for (u, mut s) in seconds {
        let h = hist_of(&s)?;
        second_fields(&mut s, &h);
        s.insert("unix_s".into(), json!(u));
        s.insert("second".into(), json!(u - first_unix + 1));
        secs.push(Value::Object(s));
    }
    let rate_of = |s: &Map<String, Value>| s.get("rate").and_then(Value::as_f64);
    let highest = steps
        .iter()
        .filter(|s| s.get("held") == Some(&json!(true)))
        .filter_map(rate_of)
        .fold(None, |a: Option<f64>, r| Some(a.map_or(r, |a| a.max(r))));
    let first_failed = steps
        .iter()
        .find(|s| s.get("held") == Some(&json!(false)))
        .and_then(rate_of);
    let uris: Vec<String> = list
        .iter()
        .filter_map(|r| r["uri"].as_str().map(str::to_string))
        .collect();
    let mut uniq = uris.clone();
    uniq.dedup();
    out.insert("uri".into(), json!(uniq.join(" ")));
    // Mixed runs (`--allow-mixed`) name every target and method.
    for key in ["target", "method"] {
        let mut all: Vec<&str> = Vec::new();
        for v in runs.iter().filter_map(|r| r[key].as_str()) {
            if !all.contains(&v) {
                all.push(v);
            }
        }
        if !all.is_empty() {
            out.insert(key.into(), json!(all.join(" ")));
        }
    }
    out.insert("runs".into(), Value::Array(list));
    out.insert("merged".into(), json!(runs.len()));
    out.insert("start_unix_ms".into(), json!(start));
    out.insert("elapsed_s".into(), json!(elapsed));
    out.insert("peak_outstanding".into(), json!(peak));
    out.insert("max_send_lag_us".into(), json!(lag));
    out.insert("accounting".into(), Value::Object(accounting));
    out.insert("total".into(), Value::Object(total));
    out.insert(
        "steps".into(),
        Value::Array(steps.into_iter().map(Value::Object).collect()),
    );
    out.insert("seconds".into(), Value::Array(secs));
    out.insert("highest_held_rate".into(), json!(highest));
    out.insert("first_failed_rate".into(), json!(first_failed));
    Ok(Value::Object(out))
}

/// Sleeps until `at` (`--start-at`); an error when it has passed, since generators that do not
/// start together cannot be merged second by second. `stop` (SIGINT/SIGTERM) ends the wait.
pub fn wait_until(at: SystemTime, stop: &std::sync::atomic::AtomicBool) -> anyhow::Result<()> {
    let shown = humantime::format_rfc3339_millis(at);
    let Ok(mut left) = at.duration_since(SystemTime::now()) else {
        bail!("--start-at {shown} has passed");
    };
    eprintln!(
        "srewatch bench: starting at {shown} (in {:.1}s)",
        left.as_secs_f64()
    );
    while !left.is_zero() {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("stopped before the start time");
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
        left = at.duration_since(SystemTime::now()).unwrap_or_default();
    }
    Ok(())
}

/// Reads a summary written by `--json`.
pub fn load(path: &std::path::Path) -> anyhow::Result<Value> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a bench JSON summary", path.display()))
}

/// Writes the per-second histograms of a (merged) summary as an interval log.
pub fn write_interval_log(v: &Value, out: impl Write) -> anyhow::Result<()> {
    let start_ms = v["start_unix_ms"].as_u64().unwrap_or(0);
    let first = v["seconds"]
        .get(0)
        .and_then(|s| s["unix_s"].as_u64())
        .unwrap_or(start_ms / 1000);
    let base = UNIX_EPOCH + Duration::from_secs(first);
    let mut log = IntervalLog::new(out, base);
    for s in v["seconds"].as_array().into_iter().flatten() {
        let h = hist_of(&obj(s))?;
        let u = s["unix_s"].as_u64().unwrap_or(first);
        log.write(Duration::from_secs(u - first), &h)?;
    }
    log.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_round_trip_and_log() {
        let mut h = new_hist();
        for v in [1u64, 17, 230, 230, 4_100, 99_000] {
            h.record(v).unwrap();
        }
        let back = decode_hist(&encode_hist(&h)).unwrap();
        assert_eq!(back, h);
        let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let mut log = IntervalLog::new(Vec::new(), start);
        log.write(Duration::ZERO, &h).unwrap();
        log.write(Duration::from_secs(1), &back).unwrap();
        let text = log.finish().unwrap();
        let read = read_interval_log(&text).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].0, Duration::from_millis(1_700_000_000_250));
        assert_eq!(read[1].0, Duration::from_millis(1_700_000_001_250));
        assert_eq!(read[1].1, h);
    }

    #[test]
    fn schedules_merge_when_one_is_a_multiple_of_the_other() {
        let ramp = [(Some(100.0), 1.0), (Some(200.0), 1.0)];
        assert!(same_schedule(
            &ramp,
            &[(Some(50.0), 1.0), (Some(100.0), 1.0)]
        ));
        assert!(!same_schedule(
            &ramp,
            &[(Some(100.0), 1.0), (Some(100.0), 1.0)]
        ));
        assert!(!same_schedule(
            &ramp,
            &[(Some(100.0), 1.0), (Some(200.0), 2.0)]
        ));
        assert!(!same_schedule(&ramp, &[(Some(100.0), 1.0)]));
        assert!(same_schedule(&[(None, 10.0)], &[(None, 10.0)]));
        assert!(!same_schedule(&[(None, 10.0)], &[(Some(5.0), 10.0)]));
        let run = |rates: &[f64], id: &str| {
            json!({"target": "127.0.0.1:5060", "method": "options",
                   "runs": [{"run_id": id}],
                   "steps": rates.iter().map(|r| json!({"rate": r, "duration_s": 1.0})).collect::<Vec<_>>()})
        };
        let named = |v: Vec<Value>| {
            v.into_iter()
                .enumerate()
                .map(|(i, v)| (format!("r{i}"), v))
                .collect::<Vec<_>>()
        };
        let strict = MergeRules::default();
        check_mergeable(
            &named(vec![run(&[1.0, 2.0], "x"), run(&[3.0, 6.0], "y")]),
            strict,
        )
        .unwrap();
        let e = check_mergeable(
            &named(vec![run(&[1.0, 2.0], "x"), run(&[3.0, 3.0], "y")]),
            strict,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "r1 has another rate schedule (rates 3/s, 3/s, not in proportion to 1/s, 2/s) than r0 \
             (give --allow-mixed to merge them anyway)"
        );
        // A merged summary holds its inputs' ids: merging it with one of them counts it twice.
        let mut merged = run(&[2.0], "x");
        merged["runs"] = json!([{"run_id": "x"}, {"run_id": "y"}]);
        let e = check_mergeable(&named(vec![run(&[1.0], "y"), merged]), strict).unwrap_err();
        assert_eq!(
            e.to_string(),
            "r1 is the same run as r0 (give --allow-duplicates to count it twice)"
        );
    }

    #[test]
    fn merge_adds_counts_and_histograms() {
        let run = |lat: &[u64], start_ms: u64, status: u64| {
            let mut h = new_hist();
            for &l in lat {
                h.record(l).unwrap();
            }
            json!({
                "uri": "sip:x", "start_unix_ms": start_ms, "elapsed_s": 1.0,
                "peak_outstanding": 3, "max_send_lag_us": 10,
                "hold_rule": {"max_failure_ratio": 0.001, "p99_max_us": 100_000},
                "accounting": {"sent": lat.len(), "answered": lat.len(), "timed_out": 0, "send_errors": 0, "balanced": true},
                "total": {"sent": lat.len(), "by_status": {"200": status}, "histogram": encode_hist(&h), "latency_us": {}},
                "steps": [{"sent": lat.len(), "failures": 0, "rate": 10.0, "held": true, "histogram": encode_hist(&h)}],
                "seconds": [{"second": 1, "unix_s": start_ms / 1000, "sent": lat.len(), "histogram": encode_hist(&h)}],
            })
        };
        let a = run(&[100, 200, 300], 1_000_000, 3);
        let b = run(&[150_000, 5], 1_000_200, 2);
        let m = merge(&[a, b]).unwrap();
        assert_eq!(m["total"]["sent"], 5);
        assert_eq!(m["total"]["by_status"]["200"], 5);
        assert_eq!(m["accounting"]["sent"], 5);
        assert_eq!(m["accounting"]["balanced"], true);
        assert_eq!(m["peak_outstanding"], 6);
        let mut h = new_hist();
        for l in [100u64, 200, 300, 150_000, 5] {
            h.record(l).unwrap();
        }
        assert_eq!(m["total"]["latency_us"], latency_json(&h));
        // One wall-clock second, p99 above the bound: the merged step does not hold.
        assert_eq!(m["seconds"].as_array().unwrap().len(), 1);
        assert_eq!(m["seconds"][0]["sent"], 5);
        assert_eq!(m["steps"][0]["rate"], 20.0);
        assert_eq!(m["steps"][0]["held"], false);
        assert_eq!(m["first_failed_rate"], 20.0);
        // A distribution summary the merge does not know is left out, never added.
        let with = |mut r: Value| {
            r["total"]["other_us"] = json!({"p99": 5, "max": 9});
            r
        };
        let m = merge(&[
            with(run(&[1], 0, 1)),
            with(run(&[2], 0, 1)),
            with(run(&[3], 0, 1)),
        ])
        .unwrap();
        assert_eq!(m["total"]["sent"], 3);
        assert_eq!(m["total"]["other_us"], Value::Null);
    }
}

//! Numbers stored at their precision, and the documented query ranges
//! for per-minute points, both on a real InfluxDB 1.6 (behind nginx, `util::influx`).

use crate::util::influx::Influx;
use crate::util::kamailio::Kamailio;
use crate::util::{self, Proc};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// (measurement, sorted `k=v` tags, time, field) to the value's text as written.
type Written = BTreeMap<(String, String, i64, String), String>;

/// The line protocol of `text` (lines under `# bucket:` comments), the last write of each
/// field of each point. Enough for the points of these tests: no escaped spaces or commas.
fn written(text: &str) -> Written {
    let mut out = Written::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (key, rest) = line.split_once(' ').expect("fields");
        let (fields, ts) = rest.rsplit_once(' ').expect("time");
        let mut parts = key.split(',');
        let m = parts.next().unwrap().to_string();
        let mut tags: Vec<&str> = parts.collect();
        tags.sort();
        for f in fields.split(',') {
            let (k, v) = f.split_once('=').expect("field");
            out.insert(
                (
                    m.clone(),
                    tags.join(","),
                    ts.parse().unwrap(),
                    k.to_string(),
                ),
                v.to_string(),
            );
        }
    }
    out
}

/// Every stored value of `field` in `measurement`: (sorted tags, time, the JSON number's text).
fn stored(i: &Influx, db: &str, measurement: &str, field: &str) -> Vec<(String, i64, String)> {
    let v = i.query(
        db,
        &format!("SELECT \"{field}\" FROM \"{measurement}\" GROUP BY *"),
    );
    let mut out = Vec::new();
    for s in v["results"][0]["series"].as_array().into_iter().flatten() {
        let tags: Vec<String> = s["tags"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(_, v)| !v.as_str().unwrap_or("").is_empty())
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        // serde_json's object is a BTreeMap: the tags come sorted.
        for row in s["values"].as_array().unwrap() {
            if let Value::Number(n) = &row[1] {
                out.push((tags.join(","), row[0].as_i64().unwrap(), n.to_string()));
            }
        }
    }
    out
}

/// Decimals after the point of a plain decimal; `None` for an exponent form.
fn decimals(text: &str) -> Option<usize> {
    if text.contains(['e', 'E']) {
        return None;
    }
    Some(text.split_once('.').map_or(0, |(_, d)| d.len()))
}

fn write_all(i: &Influx, bucket: &str, text: &str) {
    let body: String = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(i.write_v2(bucket, "s", &body), 204, "{body}");
}

/// `srewatch probe run` and `srewatch kamailio poll` against one real Kamailio at the same time:
/// every RTT (ms) is stored with at most 3 decimals (the microsecond), every Kamailio rate with
/// at most 3 (the thousandth per second), the loss ratio with at most 6, and each reads back from
/// InfluxDB as exactly the text written (`rtt_p50_ms=0.908`, never `0.9079999999999999`).
#[test]
fn probe_and_kamailio_values_stored_at_their_precision() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Default::default());
    let cfg = dir.path().join("srewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[probe.target]]\nname = \"cp1\"\nuri = \"{}\"\ninterval = \"50ms\"\ntimeout = \"400ms\"\n",
            k.sip_uri()
        ),
    )
    .unwrap();
    let probe_out = dir.path().join("probe.lp");
    let kam_out = dir.path().join("kamailio.lp");
    let mut poll = util::srewatch();
    poll.args([
        "kamailio",
        "poll",
        "--interval",
        "150ms",
        "--timeout",
        "100ms",
    ])
    .args(["--duration", "2500ms", "--out"])
    .arg(&kam_out)
    .arg(format!("cp1={}", k.jsonrpc_url()));
    let mut poll = Proc::spawn("srewatch kamailio poll", poll, &dir.path().join("poll.log"));
    let mut run = util::srewatch();
    run.args(["probe", "run", "--duration", "2s", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&probe_out);
    let mut run = Proc::spawn("srewatch probe run", run, &dir.path().join("run.log"));
    let start = Instant::now();
    while !(run.exited() && poll.exited()) {
        assert!(start.elapsed() < Duration::from_secs(20), "did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let influx = Influx::start(dir.path(), &["probe", "kamailio"]);
    let probe_text = std::fs::read_to_string(&probe_out).unwrap();
    let kam_text = std::fs::read_to_string(&kam_out).unwrap();
    write_all(&influx, "probe", &probe_text);
    write_all(&influx, "kamailio", &kam_text);
    let mut want = written(&probe_text);
    want.extend(written(&kam_text));

    let checks: &[(&str, &str, &str, usize)] = &[
        ("probe", "probe", "rtt_ms", 3),
        ("probe", "probe_summary", "rtt_p50_ms", 3),
        ("probe", "probe_summary", "rtt_p90_ms", 3),
        ("probe", "probe_summary", "rtt_p99_ms", 3),
        ("probe", "probe_summary", "rtt_max_ms", 3),
        ("probe", "probe_summary", "loss", 6),
        ("kamailio", "kamailio_up", "rtt_ms", 3),
        ("kamailio", "kamailio_counter", "rate", 3),
        ("kamailio", "kamailio_counter", "rate_max", 3),
    ];
    for &(db, m, field, places) in checks {
        let got = stored(&influx, db, m, field);
        assert!(!got.is_empty(), "no {m} {field} stored");
        for (tags, t, text) in &got {
            let key = (m.to_string(), tags.clone(), *t, field.to_string());
            assert_eq!(
                Some(text),
                want.get(&key),
                "{m},{tags} {field} at {t}: stored as written"
            );
            assert!(
                decimals(text).is_some_and(|d| d <= places),
                "{m},{tags} {field}={text} at {t}: more than {places} decimals"
            );
        }
    }
    // The probe ran 2 s at 50 ms: plenty of RTTs; Kamailio counted the OPTIONS it received.
    assert!(stored(&influx, "probe", "probe", "rtt_ms").len() >= 2);
    let rcv = stored(&influx, "kamailio", "kamailio_counter", "rate")
        .into_iter()
        .find(|(tags, _, _)| tags.contains("stat=core:rcv_requests_options"))
        .expect("OPTIONS rate");
    assert!(rcv.2.parse::<f64>().unwrap() > 0.0, "{rcv:?}");
}

/// The InfluxQL of the README's query-range table (the row whose first cell contains `label`).
fn readme_where(label: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let row = readme
        .lines()
        .find(|l| l.starts_with('|') && l.split('|').nth(1).is_some_and(|c| c.contains(label)))
        .unwrap_or_else(|| panic!("README: no query-range row {label:?}"));
    let cell = row.split('|').nth(3).expect("InfluxQL column").trim();
    cell.trim_matches('`').to_string()
}

/// Points carry the start of their minute. Points for the last three
/// minutes (11 for two minutes ago, 12 for the last complete minute, 13 for the minute under
/// way) and the README's InfluxQL ranges: each returns exactly the minute it names, whatever the
/// second of the minute the test runs at; the guide's `-10s` range finds the newest point only
/// in a minute's first 10 s.
#[test]
fn documented_query_ranges_return_the_minute_they_name() {
    let dir = util::tempdir();
    let influx = Influx::start(dir.path(), &["counters"]);
    let complete = readme_where("the last complete minute");
    let under_way = readme_where("the minute under way");
    let settled = readme_where("ended at least 10 s ago");
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    // Stay clear of the seconds where the expectations change (:00, :10), so that the minute
    // and the second read here are those of the queries.
    while matches!(now().rem_euclid(60), 0..=2 | 8..=12 | 57..=59) {
        std::thread::sleep(Duration::from_millis(200));
    }
    {
        let m0 = now() - now().rem_euclid(60);
        let s = now() - m0;
        let host = "cp1";
        let lines: String = [(m0 - 120, 11), (m0 - 60, 12), (m0, 13)]
            .iter()
            .map(|(t, v)| format!("request.OPTIONS,hostname={host} value={v}i {t}\n"))
            .collect();
        assert_eq!(influx.write_v2("counters", "s", &lines), 204);
        let rows = |range: &str| -> Vec<(i64, i64)> {
            let q =
                format!("SELECT value FROM \"request.OPTIONS\" {range} AND hostname = '{host}'");
            let v = influx.query("counters", &q);
            v["results"][0]["series"][0]["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| (r[0].as_i64().unwrap(), r[1].as_i64().unwrap()))
                .collect()
        };
        assert_eq!(
            rows(&complete),
            vec![(m0 - 60, 12)],
            "{complete} at :{s:02}"
        );
        assert_eq!(rows(&under_way), vec![(m0, 13)], "{under_way} at :{s:02}");
        let want = if s < 10 {
            (m0 - 120, 11)
        } else {
            (m0 - 60, 12)
        };
        assert_eq!(rows(&settled), vec![want], "{settled} at :{s:02}");
        // The guide's "samples of the last 10 s": the newest minute only in its first 10 s.
        let guide = rows("WHERE time >= now() - 10s");
        let want: Vec<(i64, i64)> = if s < 10 { vec![(m0, 13)] } else { vec![] };
        assert_eq!(guide, want, "the guide's -10s at :{s:02}");
        assert_eq!(
            now() - now().rem_euclid(60),
            m0,
            "the minute changed mid-test"
        );
    }
}

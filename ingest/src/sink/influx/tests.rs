use super::{batch::*, config::*, http::*, spool_slot::*, stats::*, writer::*};
use crate::sink::Batch;
use bytes::Bytes;
use reqwest::header::HeaderValue;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn defaults_are_valid() {
    assert_eq!(
        InfluxConfig::default().validate(),
        Vec::<(String, String)>::new()
    );
}

#[test]
fn bad_values_name_their_key() {
    let cfg = InfluxConfig {
        url: "ftp://x".into(),
        org: " ".into(),
        batch_max_points: 0,
        batch_max_bytes: 10,
        retry_base: Duration::from_secs(2),
        retry_max: Duration::from_secs(1),
        request_timeout: Duration::ZERO,
        spool_max_bytes: 10,
        ..Default::default()
    };
    let keys: Vec<String> = cfg.validate().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "influxdb.url",
            "influxdb.org",
            "influxdb.batch_max_points",
            "influxdb.batch_max_bytes",
            "influxdb.request_timeout",
            "influxdb.retry_max",
            "influxdb.spool_max_bytes"
        ]
    );
}

#[test]
fn config_from_toml() {
    let cfg: InfluxConfig = toml_like(
        r#"url = "http://db:8086"
        org = "ops"
        batch_max_delay = "50ms"
        retry_max = "2m"
        gzip = false"#,
    );
    assert_eq!(cfg.url, "http://db:8086");
    assert_eq!(cfg.batch_max_delay, Duration::from_millis(50));
    assert_eq!(cfg.retry_max, Duration::from_secs(120));
    assert!(!cfg.gzip);
    assert_eq!(cfg.batch_max_points, 5000);
}

fn toml_like(s: &str) -> InfluxConfig {
    // The ingest crate has no TOML parser; serde_json with the same shape checks the serde
    // attributes (durations as humantime strings, defaults for missing keys).
    let mut obj = serde_json::Map::new();
    for line in s.lines() {
        let (k, v) = line.split_once('=').unwrap();
        let v = v.trim();
        let val = if let Some(q) = v.strip_prefix('"') {
            serde_json::Value::String(q.trim_end_matches('"').into())
        } else {
            serde_json::from_str(v).unwrap()
        };
        obj.insert(k.trim().into(), val);
    }
    serde_json::from_value(serde_json::Value::Object(obj)).unwrap()
}

#[test]
fn unknown_key_is_refused() {
    let r: Result<InfluxConfig, _> = serde_json::from_str(r#"{"token":"x"}"#);
    assert!(r.unwrap_err().to_string().contains("unknown field `token`"));
}

#[test]
fn fit_counts_whole_lines() {
    let b = b"aa 1\nbbb 2\ncccc 3\n";
    assert_eq!(fit(b, 100, 100), (18, 3));
    assert_eq!(fit(b, 11, 100), (11, 2));
    assert_eq!(fit(b, 10, 100), (5, 1));
    assert_eq!(fit(b, 4, 100), (0, 0));
    assert_eq!(fit(b, 100, 2), (11, 2));
    assert_eq!(fit(b, 100, 0), (0, 0));
    assert_eq!(after_line(b, 1), 5);
    assert_eq!(after_line(b, 2), 11);
    assert_eq!(count_lines(b), 3);
}

#[test]
fn retry_after_seconds() {
    assert_eq!(
        parse_retry_after(&HeaderValue::from_static("2")),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        parse_retry_after(&HeaderValue::from_static(" 0 ")),
        Some(Duration::ZERO)
    );
    assert_eq!(
        parse_retry_after(&HeaderValue::from_static("99999999")),
        Some(RETRY_AFTER_MAX)
    );
    // A date in the past means now.
    assert_eq!(
        parse_retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
}

/// `Retry-After` values read at a fixed moment (2015-10-21 07:28:00 UTC): the delta-seconds
/// and IMF-fixdate forms, as the sink has always read them.
#[test]
fn retry_after_values() {
    let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
    let at = |v: &'static str| retry_after_at(&HeaderValue::from_static(v), now);
    let s = Duration::from_secs;
    assert_eq!(at("2"), Some(s(2)));
    assert_eq!(at(" 0 "), Some(s(0)));
    assert_eq!(at("3600"), Some(s(3600)));
    assert_eq!(at("3601"), Some(RETRY_AFTER_MAX));
    assert_eq!(at("99999999"), Some(RETRY_AFTER_MAX));
    assert_eq!(at("Wed, 21 Oct 2015 07:28:00 GMT"), Some(s(0)));
    assert_eq!(at("Wed, 21 Oct 2015 07:30:00 GMT"), Some(s(120)));
    assert_eq!(at(" Wed, 21 Oct 2015 07:28:59 GMT "), Some(s(59)));
    assert_eq!(at("Wed, 21 Oct 2015 08:28:01 GMT"), Some(RETRY_AFTER_MAX));
    assert_eq!(at("Thu, 22 Oct 2015 00:00:00 GMT"), Some(RETRY_AFTER_MAX));
    assert_eq!(at("Sun, 06 Nov 1994 08:49:37 GMT"), Some(s(0)));
    assert_eq!(at("Thu, 01 Jan 1970 00:00:00 GMT"), Some(s(0)));
    // Not a Retry-After value: the backoff applies.
    assert_eq!(at("soon"), None);
    assert_eq!(at("-5"), None);
    assert_eq!(at("1.5"), None);
    assert_eq!(at("Wed, 21 Oct 2015 07:28:00 UTC"), None);
    assert_eq!(at("Wed, 21 Foo 2015 07:28:00 GMT"), None);
    assert_eq!(at("Wed, 21 Oct 2015 07:28 GMT"), None);
    assert_eq!(at("Wed, 21 Oct 2015 25:28:00 GMT"), None);
    // Across a leap day.
    let now = std::time::UNIX_EPOCH + Duration::from_secs(1_835_481_599 - 1_800);
    let at = |v: &'static str| retry_after_at(&HeaderValue::from_static(v), now);
    assert_eq!(at("Tue, 29 Feb 2028 23:59:59 GMT"), Some(s(1_800)));
    assert_eq!(at("Wed, 01 Mar 2028 00:00:00 GMT"), Some(s(1_801)));
}

/// RFC 9110 (5.6.7): a recipient reads the two obsolete HTTP-date forms too, RFC 850 and
/// asctime.
#[test]
fn retry_after_obsolete_date_forms() {
    let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
    let at = |v: &'static str| retry_after_at(&HeaderValue::from_static(v), now);
    assert_eq!(
        at("Wednesday, 21-Oct-15 07:30:00 GMT"),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        at("Wed Oct 21 07:30:00 2015"),
        Some(Duration::from_secs(120))
    );
}

/// A date in the future: the wait up to that moment, from the clock.
#[test]
fn retry_after_date_in_the_future() {
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
    let d = parse_retry_after(&HeaderValue::from_str(&later).unwrap()).unwrap();
    assert!(
        d <= Duration::from_secs(120) && d >= Duration::from_secs(118),
        "{later}: {d:?}"
    );
}

#[test]
fn gzip_round_trips() {
    use std::io::Read;
    let data = b"m,hostname=cp1 value=1i 60\n".repeat(100);
    let z = gzip(&data);
    assert!(z.len() < data.len() / 5);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&z[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, data);
}

fn writer(max_points: usize, max_bytes: usize, dir: &Path) -> Writer {
    let cfg = InfluxConfig {
        batch_max_points: max_points,
        batch_max_bytes: max_bytes,
        spool_dir: dir.to_path_buf(),
        ..Default::default()
    };
    let stats = Arc::new(InfluxStats::new());
    let http = Arc::new(Http {
        client: reqwest::Client::new(),
        write_url: reqwest::Url::parse("http://127.0.0.1:9/api/v2/write").unwrap(),
        org: "sre".into(),
        auth: None,
        gzip: false,
        db_param: false,
        stats: stats.clone(),
        warned_cut: AtomicBool::new(false),
        warned_redirect: AtomicBool::new(false),
    });
    let spool = SpoolSlot::open(dir, 1 << 30, &stats).unwrap();
    Writer::new(cfg, http, spool, stats)
}

fn batch(bucket: &str, text: &str) -> Batch {
    Batch {
        bucket: bucket.into(),
        lines: Bytes::copy_from_slice(text.as_bytes()),
        points: count_lines(text.as_bytes()),
    }
}

fn ready(w: &Writer) -> Vec<(String, String, usize)> {
    w.ready
        .iter()
        .map(|r| {
            (
                r.bucket.clone(),
                String::from_utf8(r.lines.to_vec()).unwrap(),
                r.points,
            )
        })
        .collect()
}

#[tokio::test]
async fn batches_cut_by_points_and_bytes_per_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(3, 1024, dir.path());
    w.append(batch("c", "a 1\nb 2\n"));
    w.append(batch("s", "x 1\n"));
    assert!(w.ready.is_empty());
    // The third line fills the counters batch; the fourth starts a new one.
    w.append(batch("c", "c 3\nd 4\n"));
    assert_eq!(ready(&w), vec![("c".into(), "a 1\nb 2\nc 3\n".into(), 3)]);
    w.cut_all();
    assert_eq!(
        ready(&w),
        vec![
            ("c".into(), "a 1\nb 2\nc 3\n".into(), 3),
            ("c".into(), "d 4\n".into(), 1),
            ("s".into(), "x 1\n".into(), 1)
        ]
    );
    assert_eq!((w.cut_seq, w.ready_bytes), (3, 12 + 4 + 4));
}

#[tokio::test]
async fn big_write_is_split_without_copying() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(1000, 1024, dir.path());
    // 300 lines of 10 bytes: 102 lines fit in 1024 bytes.
    let text: String = (0..300).map(|i| format!("m v={i:03} 1\n")).collect();
    assert_eq!(text.len(), 3000);
    let b = batch("c", &text);
    let base = b.lines.as_ptr() as usize;
    w.append(b);
    let sizes: Vec<(usize, usize)> = w.ready.iter().map(|r| (r.lines.len(), r.points)).collect();
    assert_eq!(sizes, vec![(1020, 102), (1020, 102)]);
    // Slices of the producer's buffer, not copies.
    assert_eq!(w.ready[0].lines.as_ptr() as usize, base);
    assert_eq!(w.ready[1].lines.as_ptr() as usize, base + 1020);
    w.cut_all();
    assert_eq!(w.ready[2].points, 96);
    let all: Vec<u8> = w.ready.iter().flat_map(|r| r.lines.to_vec()).collect();
    assert_eq!(all, text.as_bytes());
}

#[tokio::test]
async fn long_line_goes_alone_and_missing_newline_is_added() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(1000, 1024, dir.path());
    let long = format!("m v=\"{}\" 1\n", "x".repeat(2000));
    w.append(batch("c", "a 1\n"));
    w.append(batch("c", &long));
    w.append(batch("c", "b 2"));
    w.cut_all();
    let got = ready(&w);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], ("c".into(), "a 1\n".into(), 1));
    assert_eq!(got[1], ("c".into(), long.clone(), 1));
    assert_eq!(got[2], ("c".into(), "b 2\n".into(), 1));
}

/// Buckets are delivered in their own lanes: a later batch of one bucket accepted while an
/// earlier batch of another is still in memory (its delivery failed, waiting for the retry)
/// does not answer a flush; the flush is answered once that batch has settled. (Answered
/// early, the table state was saved as delivered, and a kill -9 then lost the batch.)
#[tokio::test]
async fn a_flush_waits_for_an_earlier_batch_of_another_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(100, 1 << 20, dir.path());
    w.append(batch("counters", "a 1\nb 2\n"));
    w.append(batch("rollups", "r 1\n"));
    w.cut_all();
    let seqs: Vec<(String, u64)> = w.ready.iter().map(|r| (r.bucket.clone(), r.seq)).collect();
    assert_eq!(seqs, [("counters".into(), 1), ("rollups".into(), 2)]);
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    w.flushes.push((w.cut_seq, tx));
    // The rollups batch was accepted; the counters batch failed and is back in memory.
    w.ready.retain(|r| r.bucket == "counters");
    w.done_seq = 2;
    w.answer_flushes(None);
    assert!(
        rx.try_recv().is_err(),
        "answered with the counters batch in memory"
    );
    // ... or in flight again.
    let counters = w.ready.pop_front().unwrap();
    w.answer_flushes(Some(counters.seq));
    assert!(
        rx.try_recv().is_err(),
        "answered with the counters batch in flight"
    );
    // Accepted (or spooled): now the flush is answered.
    w.answer_flushes(None);
    assert_eq!(rx.try_recv().unwrap(), crate::sink::Flushed { unstored: 0 });
}

//! The InfluxDB sink against a real VictoriaMetrics (exact series back through
//! `/api/v1/export`, server down / restarted / sink restarted), and against a small
//! fault-injection HTTP server for answers VictoriaMetrics never gives (400 for one line, 429 and
//! 503 with `Retry-After`, 401).

use crate::util::victoria::{Series, Victoria};
use crate::util::{self, tempdir};
use bytes::Bytes;
use ingest::sink::influx::{spawn_with_stats, InfluxConfig, InfluxSnapshot, InfluxStats};
use ingest::sink::{SinkHandle, SinkStats};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// A minute an hour ago: inside VictoriaMetrics' retention, aligned like the CSV points.
pub(crate) fn base_minute() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now / 60 * 60 - 3600
}

pub(crate) fn config(url: &str, spool: &Path) -> InfluxConfig {
    InfluxConfig {
        url: url.to_string(),
        org: "sre".into(),
        token_env: "SREWATCH_TEST_TOKEN_UNSET".into(),
        batch_max_delay: Duration::from_millis(20),
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(2),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        spool_dir: spool.to_path_buf(),
        db_param: true,
        ..Default::default()
    }
}

pub(crate) fn start(cfg: InfluxConfig) -> (SinkHandle, JoinHandle<SinkStats>, Arc<InfluxStats>) {
    spawn_with_stats(cfg).expect("sink starts")
}

/// `n` counters points `name,hostname=HOST value=Ki T` for minutes `from..from+n`, value = minute
/// index * 10 + `k0`.
pub(crate) fn counter_lines(
    name: &str,
    host: &str,
    from: usize,
    n: usize,
    k0: i64,
    base: i64,
) -> Bytes {
    let mut s = String::new();
    for i in from..from + n {
        s.push_str(&format!(
            "{},hostname={host} value={}i {}\n",
            name.replace(' ', "\\ "),
            i as i64 * 10 + k0,
            base + 60 * i as i64
        ));
    }
    Bytes::from(s)
}

/// Writes `counter_lines(name, host, from, n, k0, base)` (n points) to `bucket`.
#[allow(clippy::too_many_arguments)]
async fn write_counters(
    h: &SinkHandle,
    bucket: &str,
    name: &str,
    host: &str,
    from: usize,
    n: usize,
    k0: i64,
    base: i64,
) {
    h.write(bucket, counter_lines(name, host, from, n, k0, base), n)
        .await
        .unwrap();
}

/// Polls the live counters until `f` holds, or panics after 10 s.
pub(crate) async fn wait_for(
    stats: &InfluxStats,
    what: &str,
    f: impl Fn(&InfluxSnapshot) -> bool,
) -> InfluxSnapshot {
    let start = Instant::now();
    loop {
        let s = stats.snapshot();
        if f(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `n` points are written and the spool is empty (the spool gauge is updated just
/// after the written counter).
async fn written_and_spool_empty(stats: &InfluxStats, n: u64) -> InfluxSnapshot {
    wait_for(stats, &format!("{n} points written, spool empty"), |s| {
        s.points_written == n && s.spool_points == 0
    })
    .await
}

/// (seconds, value) of the one series named `name` with label db=`db`.
fn points_of(series: &[Series], name: &str, db: &str, host: &str) -> Vec<(i64, f64)> {
    let found: Vec<&Series> = series
        .iter()
        .filter(|s| {
            s.name() == name
                && s.metric.get("db").map(String::as_str) == Some(db)
                && s.metric.get("hostname").map(String::as_str) == Some(host)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one series {name}{{db={db},hostname={host}}} in {series:#?}"
    );
    found[0].points()
}

/// (seconds, value) of the series `name` of cp1 in the counters bucket, read back.
fn cp1_counters(vm: &Victoria, name: &str) -> Vec<(i64, f64)> {
    let series = util::blocking(|| vm.export(name));
    points_of(&series, name, "counters", "cp1")
}

fn expected(from: usize, n: usize, k0: i64, base: i64) -> Vec<(i64, f64)> {
    (from..from + n)
        .map(|i| (base + 60 * i as i64, (i as i64 * 10 + k0) as f64))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_exact_series_to_victoria() {
    let dir = tempdir();
    let vm = Victoria::start_raw(dir.path());
    let base = base_minute();
    let mut cfg = config(&vm.url(), &dir.path().join("spool"));
    cfg.batch_max_points = 4; // counters: 7 + 5 points in batches of 4, 4, 4; samples: 2
    let (h, task, stats) = start(cfg);
    write_counters(&h, "counters", "calls total", "cp1", 0, 7, 1, base).await;
    write_counters(&h, "counters", "calls total", "cp2", 0, 5, 2, base).await;
    let samples = format!(
        "calls\\ total,hostname=cp1 elapsed_time=1.25,occurrences=3i {base}\nsystem.load,hostname=cp1 value=0.5 {}\n",
        base + 60
    );
    h.write("samples", Bytes::from(samples), 2).await.unwrap();
    h.flush().await.unwrap();
    drop(h);
    let end = task.await.unwrap();
    assert_eq!(
        end,
        SinkStats {
            points_written: 14,
            bytes_written: end.bytes_written,
            points_dropped: 0
        }
    );
    let s = stats.snapshot();
    assert_eq!(
        (
            s.points_written,
            s.requests,
            s.request_failures,
            s.spool_batches
        ),
        (14, 4, 0, 0)
    );
    assert!(
        s.bytes_sent < s.bytes_written,
        "gzip: {} sent for {} line-protocol bytes",
        s.bytes_sent,
        s.bytes_written
    );

    let series = util::blocking(|| vm.export(r#"{__name__=~"calls total_.*|system.load_.*"}"#));
    assert_eq!(series.len(), 5, "{series:#?}");
    assert_eq!(
        points_of(&series, "calls total_value", "counters", "cp1"),
        expected(0, 7, 1, base)
    );
    assert_eq!(
        points_of(&series, "calls total_value", "counters", "cp2"),
        expected(0, 5, 2, base)
    );
    assert_eq!(
        points_of(&series, "calls total_elapsed_time", "samples", "cp1"),
        vec![(base, 1.25)]
    );
    assert_eq!(
        points_of(&series, "calls total_occurrences", "samples", "cp1"),
        vec![(base, 3.0)]
    );
    assert_eq!(
        points_of(&series, "system.load_value", "samples", "cp1"),
        vec![(base + 60, 0.5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_at_start_then_up_loses_nothing() {
    let dir = tempdir();
    let mut vm = Victoria::stopped(dir.path());
    let base = base_minute();
    let (h, task, stats) = start(config(&vm.url(), &dir.path().join("spool")));
    for k in 0..4 {
        write_counters(&h, "counters", "m.down", "cp1", k * 5, 5, 0, base).await;
        h.flush().await.unwrap();
    }
    let s = stats.snapshot();
    assert_eq!(
        (s.points_written, s.spool_points, s.spool_batches),
        (0, 20, 4),
        "{s:#?}"
    );
    assert!(s.request_failures >= 1);
    util::blocking(|| vm.restart());
    let s = written_and_spool_empty(&stats, 20).await;
    assert_eq!(
        (s.spool_points, s.spool_batches, s.points_spool_dropped),
        (0, 0, 0)
    );
    drop(h);
    assert_eq!(task.await.unwrap().points_dropped, 0);
    assert_eq!(cp1_counters(&vm, "m.down_value"), expected(0, 20, 0, base));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_mid_run_loses_nothing() {
    let dir = tempdir();
    let mut vm = Victoria::start(dir.path());
    let base = base_minute();
    let (h, task, stats) = start(config(&vm.url(), &dir.path().join("spool")));
    write_counters(&h, "counters", "m.restart", "cp1", 0, 10, 0, base).await;
    wait_for(&stats, "first 10 points", |s| s.points_written == 10).await;
    util::blocking(|| vm.stop());
    write_counters(&h, "counters", "m.restart", "cp1", 10, 10, 0, base).await;
    h.flush().await.unwrap();
    let s = stats.snapshot();
    assert_eq!((s.points_written, s.spool_points), (10, 10), "{s:#?}");
    util::blocking(|| vm.restart());
    write_counters(&h, "counters", "m.restart", "cp1", 20, 10, 0, base).await;
    // The spool gauge is updated just after the written counter: wait for both.
    let s = written_and_spool_empty(&stats, 30).await;
    assert_eq!(
        (s.spool_points, s.points_spool_dropped, s.points_rejected),
        (0, 0, 0)
    );
    drop(h);
    task.await.unwrap();
    assert_eq!(
        cp1_counters(&vm, "m.restart_value"),
        expected(0, 30, 0, base)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_survives_a_restart_of_the_sink() {
    let dir = tempdir();
    let spool = dir.path().join("spool");
    let mut vm = Victoria::stopped(dir.path());
    let base = base_minute();
    {
        let (h, task, _) = start(config(&vm.url(), &spool));
        write_counters(&h, "counters", "m.survive", "cp1", 0, 6, 0, base).await;
        h.flush().await.unwrap();
        write_counters(&h, "samples", "m.survive", "cp2", 0, 4, 0, base).await;
        write_counters(&h, "counters", "m.survive", "cp1", 6, 2, 0, base).await;
        // Dropped while the server is down: everything it holds goes to the spool.
        drop(h);
        let end = task.await.unwrap();
        assert_eq!((end.points_written, end.points_dropped), (0, 0));
    }
    let files = util::spool_batches(&spool);
    assert_eq!(files, 3);
    util::blocking(|| vm.restart());
    let (h, task, stats) = start(config(&vm.url(), &spool));
    let s = wait_for(&stats, "12 spooled points written", |s| {
        s.points_written == 12
    })
    .await;
    assert_eq!((s.spool_batches, s.spool_corrupt_files), (0, 0));
    drop(h);
    task.await.unwrap();
    let series = util::blocking(|| vm.export(r#"{__name__="m.survive_value"}"#));
    assert_eq!(series.len(), 2);
    assert_eq!(
        points_of(&series, "m.survive_value", "counters", "cp1"),
        expected(0, 8, 0, base)
    );
    assert_eq!(
        points_of(&series, "m.survive_value", "samples", "cp2"),
        expected(0, 4, 0, base)
    );
}

// -------------------------------------------------------------------------------------------
// Fault injection

/// One request as the test double saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub at: Instant,
    pub target: String,
    pub headers: BTreeMap<String, String>,
    pub lines: Vec<String>,
}

pub(crate) type Policy =
    Arc<dyn Fn(&Seen, usize) -> (u16, Vec<(String, String)>, String) + Send + Sync>;

/// An HTTP/1.1 server on 127.0.0.1 (keep-alive, gzip bodies decoded) answering by `policy`
/// (given the request and its index); records every request and the lines it answered 204 to.
pub(crate) struct Double {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<Mutex<Vec<String>>>,
}

impl Double {
    /// A double answering every request with the status in the returned cell (empty body):
    /// the test changes it to make the server fail or recover.
    pub async fn answering(status: u16) -> (Double, Arc<AtomicU16>) {
        let cell = Arc::new(AtomicU16::new(status));
        let c2 = cell.clone();
        let double = Double::start(Arc::new(move |_: &Seen, _| {
            (c2.load(Ordering::SeqCst), vec![], String::new())
        }))
        .await;
        (double, cell)
    }

    pub async fn start(policy: Policy) -> Double {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let (s2, a2) = (seen.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, policy.clone(), s2.clone(), a2.clone()));
            }
        });
        Double {
            url,
            seen,
            accepted,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn accepted(&self) -> Vec<String> {
        self.accepted.lock().unwrap().clone()
    }
}

async fn serve(
    mut conn: tokio::net::TcpStream,
    policy: Policy,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let mut chunk = [0u8; 8192];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut parts = head.split("\r\n");
        let target = parts.next().unwrap().split(' ').nth(1).unwrap().to_string();
        let headers: BTreeMap<String, String> = parts
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .map_or(0, |v| v.parse().unwrap());
        while buf.len() < head_end + 4 + len {
            let mut chunk = [0u8; 8192];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let raw: Vec<u8> = buf.drain(..head_end + 4 + len).skip(head_end + 4).collect();
        let body = if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .expect("valid gzip body");
            out
        } else {
            raw
        };
        let lines: Vec<String> = String::from_utf8(body)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let req = Seen {
            at: Instant::now(),
            target,
            headers,
            lines,
        };
        let index = {
            let mut s = seen.lock().unwrap();
            s.push(req.clone());
            s.len() - 1
        };
        let (status, mut extra, text) = policy(&req, index);
        // A policy may slow the answer down: `x-test-delay-ms` is not sent, it is waited.
        if let Some(i) = extra.iter().position(|(k, _)| k == "x-test-delay-ms") {
            let ms: u64 = extra.remove(i).1.parse().unwrap();
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if status == 204 {
            accepted.lock().unwrap().extend(req.lines.iter().cloned());
        }
        let mut resp = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", text.len());
        for (k, v) in extra {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        resp.push_str(&text);
        if conn.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

pub(crate) fn ok() -> (u16, Vec<(String, String)>, String) {
    (204, vec![], String::new())
}

pub(crate) fn numbered(n: usize, bad: Option<usize>) -> (Bytes, Vec<String>) {
    let all: Vec<String> = (0..n)
        .map(|i| {
            if Some(i) == bad {
                format!("BAD line {i}")
            } else {
                format!("m,hostname=cp1 value={i}i {}", 60 * (i + 1))
            }
        })
        .collect();
    let text: String = all.iter().map(|l| format!("{l}\n")).collect();
    let good = all.into_iter().filter(|l| !l.starts_with("BAD")).collect();
    (Bytes::from(text), good)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_line_is_isolated_and_dropped() {
    let dir = tempdir();
    let double = Double::start(Arc::new(|req: &Seen, _| {
        match req.lines.iter().find(|l| l.starts_with("BAD")) {
            Some(l) => (400, vec![], format!("{{\"code\":\"invalid\",\"message\":\"unable to parse '{l}': missing fields\"}}")),
            None => ok(),
        }
    }))
    .await;
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut cfg = config(&double.url, &dir.path().join("spool"));
    cfg.token_file = Some(token);
    cfg.db_param = false;
    let (h, task, stats) = start(cfg);
    let (lines, good) = numbered(16, Some(11));
    h.write("counters", lines, 16).await.unwrap();
    h.flush().await.unwrap();
    drop(h);
    let end = task.await.unwrap();
    assert_eq!((end.points_written, end.points_dropped), (15, 1));
    let s = stats.snapshot();
    assert_eq!(
        (
            s.points_rejected,
            s.spool_points,
            s.points_spool_dropped,
            s.request_failures
        ),
        (1, 0, 0, 0)
    );
    assert_eq!(double.accepted(), good);
    // [0,16) 400 -> [0,8) ok, [8,16) 400 -> [8,12) 400 -> [8,10) ok, [10,12) 400 -> [10,11) ok,
    // [11,12) dropped, then [12,16) ok.
    let seen = double.seen();
    let sizes: Vec<usize> = seen.iter().map(|r| r.lines.len()).collect();
    assert_eq!(sizes, vec![16, 8, 8, 4, 2, 2, 1, 1, 4]);
    let first = &seen[0];
    assert_eq!(
        first.target,
        "/api/v2/write?org=sre&bucket=counters&precision=s"
    );
    assert_eq!(first.headers["authorization"], "Token s3cret");
    assert_eq!(first.headers["content-encoding"], "gzip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisection_resumes_from_the_spool_after_a_failure_mid_batch() {
    let dir = tempdir();
    let double = Double::start(Arc::new(|req: &Seen, i| match i {
        0 => (500, vec![], "down".into()),
        5 => (503, vec![], "busy".into()),
        _ if req.lines.iter().any(|l| l.starts_with("BAD")) => {
            (400, vec![], "unable to parse".into())
        }
        _ => ok(),
    }))
    .await;
    let (h, task, stats) = start(config(&double.url, &dir.path().join("spool")));
    let (lines, good) = numbered(16, Some(11));
    h.write("counters", lines, 16).await.unwrap();
    let s = wait_for(&stats, "15 points written", |s| {
        s.points_written == 15 && s.spool_batches == 0
    })
    .await;
    assert_eq!(
        (
            s.points_rejected,
            s.request_failures,
            s.points_spool_dropped
        ),
        (1, 2, 0)
    );
    // 0: whole batch refused (500) -> spooled. Replay: 16 (400), 8 ok, 8 (400), 4 (400), then
    // [8,10) fails (503): the rest, lines 8..16, replaces the spool file. Replay: 8 (400),
    // 4 (400), 2 ok, 2 (400), 1 ok, 1 dropped, 4 ok.
    let sizes: Vec<usize> = double.seen().iter().map(|r| r.lines.len()).collect();
    assert_eq!(sizes, vec![16, 16, 8, 8, 4, 2, 8, 4, 2, 2, 1, 1, 4]);
    assert_eq!(double.accepted(), good);
    drop(h);
    assert_eq!(task.await.unwrap().points_dropped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_waits_for_max_delay_unless_flushed() {
    let dir = tempdir();
    let double = Double::start(Arc::new(|_: &Seen, _| ok())).await;
    let mut cfg = config(&double.url, &dir.path().join("spool"));
    cfg.batch_max_delay = Duration::from_millis(300);
    let (h, task, stats) = start(cfg);
    let (a, _) = numbered(2, None);
    let t0 = Instant::now();
    h.write("counters", a.slice(..a.len() / 2), 1)
        .await
        .unwrap();
    h.write("counters", a.slice(a.len() / 2..), 1)
        .await
        .unwrap();
    wait_for(&stats, "2 points written", |s| s.points_written == 2).await;
    let seen = double.seen();
    assert_eq!(seen.len(), 1, "both writes in one batch");
    let waited = seen[0].at - t0;
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(1),
        "sent after {waited:?}"
    );
    // flush() cuts the batch at once and returns after the server accepted it.
    let t1 = Instant::now();
    h.write("counters", a.clone(), 2).await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(stats.snapshot().points_written, 4);
    assert!(double.seen()[1].at - t1 < Duration::from_millis(300));
    drop(h);
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_on_429_and_503() {
    for status in [429u16, 503] {
        let dir = tempdir();
        let double = Double::start(Arc::new(move |_: &Seen, i| {
            if i == 0 {
                (
                    status,
                    vec![("Retry-After".into(), "1".into())],
                    "slow down".into(),
                )
            } else {
                ok()
            }
        }))
        .await;
        // Without Retry-After the retry would come after 10..20 ms.
        let mut cfg = config(&double.url, &dir.path().join("spool"));
        cfg.retry_base = Duration::from_millis(20);
        let (h, task, stats) = start(cfg);
        let (lines, good) = numbered(5, None);
        h.write("counters", lines, 5).await.unwrap();
        // The spool gauge is updated just after the written counter: wait for both.
        let s = wait_for(&stats, "5 points written, spool empty", |s| {
            s.points_written == 5 && s.spool_batches == 0
        })
        .await;
        assert_eq!((s.requests, s.request_failures, s.spool_batches), (2, 1, 0));
        let seen = double.seen();
        let gap = seen[1].at - seen[0].at;
        assert!(
            gap >= Duration::from_secs(1) && gap < Duration::from_millis(1500),
            "status {status}: retried after {gap:?}"
        );
        assert_eq!(double.accepted(), good);
        drop(h);
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_token_keeps_the_data() {
    let dir = tempdir();
    let allow = Arc::new(AtomicU16::new(401));
    let a2 = allow.clone();
    let double = Double::start(Arc::new(move |_: &Seen, _| {
        let st = a2.load(Ordering::SeqCst);
        if st == 204 {
            ok()
        } else {
            (
                st,
                vec![],
                "{\"code\":\"unauthorized\",\"message\":\"unauthorized access\"}".into(),
            )
        }
    }))
    .await;
    let (h, task, stats) = start(config(&double.url, &dir.path().join("spool")));
    let (lines, good) = numbered(4, None);
    h.write("counters", lines, 4).await.unwrap();
    h.flush().await.unwrap();
    // Retried (backoff 25..200 ms) and refused again, data still kept.
    let s = wait_for(&stats, "three refusals", |s| s.refused >= 3).await;
    assert_eq!(
        (
            s.points_written,
            s.spool_points,
            s.spool_batches,
            s.points_spool_dropped,
            s.points_rejected
        ),
        (0, 4, 1, 0, 0)
    );
    allow.store(204, Ordering::SeqCst);
    let s = written_and_spool_empty(&stats, 4).await;
    assert_eq!((s.spool_points, s.points_spool_dropped), (0, 0));
    assert_eq!(double.accepted(), good);
    drop(h);
    assert_eq!(task.await.unwrap().points_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_drops_the_oldest_batches() {
    let dir = tempdir();
    let (double, status) = Double::answering(500).await;
    let mut cfg = config(&double.url, &dir.path().join("spool"));
    cfg.batch_max_bytes = 1024;
    cfg.spool_max_bytes = 2048;
    // Memory holds the newest 3 batches (900 bytes) that the spool cannot take.
    cfg.memory_max_bytes = 1024;
    // No retry while the 20 batches are written, even on a loaded machine: a retry takes the
    // oldest spooled batch out while it is in flight, and the overflow would drop newer ones.
    cfg.retry_base = Duration::from_secs(3);
    cfg.retry_max = Duration::from_secs(3);
    let (h, task, stats) = start(cfg);
    // Each batch: 3 lines of exactly 100 bytes, padded with pseudo-random letters so that the
    // spool's compression cannot fit them all: the spool holds only the newest few.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut pad = |n: usize| -> String {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (b'a' + (x % 26) as u8) as char
            })
            .collect()
    };
    let mut all = Vec::new();
    for b in 0..20 {
        let mut text = String::new();
        for l in 0..3 {
            let (v, t) = (b * 3 + l, 60 * (b * 3 + l + 1));
            let suffix = format!(",hostname=cp1 value={v}i {t}");
            let line = format!("m,pad={}{suffix}", pad(99 - 6 - suffix.len()));
            assert_eq!(line.len(), 99, "{line}");
            text.push_str(&line);
            text.push('\n');
            all.push(line);
        }
        h.write("counters", Bytes::from(text), 3).await.unwrap();
        h.flush().await.unwrap();
    }
    let s = stats.snapshot();
    let on_disk: u64 = std::fs::read_dir(dir.path().join("spool"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".batch"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    // Whole batches, the oldest dropped, every point either spooled, in memory or counted.
    let kept = s.spool_batches;
    assert!((1..17).contains(&kept), "{s:#?}");
    assert_eq!((s.memory_batches, s.memory_points), (3, 9), "{s:#?}");
    assert_eq!(
        (s.spool_bytes, s.spool_points, s.points_spool_dropped),
        (on_disk, 3 * kept, 60 - 9 - 3 * kept),
        "{s:#?}"
    );
    assert!(on_disk <= 2048);
    // The dropped points are lines 0..dropped: minutes 1..=dropped.
    let dropped = 60 - 9 - 3 * kept as i64;
    assert_eq!(
        (s.spool_dropped_oldest, s.spool_dropped_newest),
        (60, 60 * dropped)
    );
    let c = &s.buckets["counters"];
    assert_eq!(
        (c.points_lost, c.lost_oldest, c.lost_newest),
        (dropped as u64, 60, 60 * dropped)
    );
    status.store(204, Ordering::SeqCst);
    let kept_points = 3 * kept + 9;
    wait_for(&stats, "the spooled points written", |s| {
        s.points_written == kept_points
    })
    .await;
    assert_eq!(double.accepted(), all[dropped as usize..].to_vec());
    drop(h);
    assert_eq!(task.await.unwrap().points_dropped, dropped as u64);
}

/// An unusable spool: the batches the server does not take wait in memory (the flush does not
/// wait for them) and are delivered, in order, when it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_spool_dir_holds_batches_in_memory_and_keeps_running() {
    let dir = tempdir();
    let (double, status) = Double::answering(500).await;
    // A regular file where the directory should be: fails even for root.
    let spool = dir.path().join("spool");
    std::fs::write(&spool, b"").unwrap();
    let (h, task, stats) = start(config(&double.url, &spool));
    let (lines, mut good) = numbered(5, None);
    h.write("counters", lines, 5).await.unwrap();
    h.flush().await.unwrap();
    let s = stats.snapshot();
    assert_eq!(
        (
            s.points_spool_dropped,
            s.points_written,
            s.spool_batches,
            s.memory_points
        ),
        (0, 0, 0, 5),
        "{s:#?}"
    );
    status.store(204, Ordering::SeqCst);
    let (lines, good3) = numbered(3, None);
    h.write("counters", lines, 3).await.unwrap();
    let s = wait_for(&stats, "8 points written", |s| s.points_written == 8).await;
    assert_eq!((s.points_spool_dropped, s.memory_points), (0, 0));
    good.extend(good3);
    assert_eq!(double.accepted(), good);
    drop(h);
    assert_eq!(task.await.unwrap().points_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_spool_file_at_start_is_set_aside() {
    let dir = tempdir();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(spool.join("00000000000000000001.batch"), b"SRWSPOL1 torn").unwrap();
    let double = Double::start(Arc::new(|_: &Seen, _| ok())).await;
    let (h, task, stats) = start(config(&double.url, &spool));
    assert_eq!(stats.snapshot().spool_corrupt_files, 1);
    let (lines, good) = numbered(2, None);
    h.write("counters", lines, 2).await.unwrap();
    wait_for(&stats, "2 points written", |s| s.points_written == 2).await;
    assert_eq!(double.accepted(), good);
    assert!(spool.join("corrupt/00000000000000000001.batch").is_file());
    drop(h);
    task.await.unwrap();
}

/// Not a pass/fail test: measures the sink's own latency from `write` to the server accepting the
/// batch, with the default batching (200 ms max delay, gzip) against a real VictoriaMetrics.
/// Run: `cargo test --test tests sink::latency_report -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn latency_report() {
    let dir = tempdir();
    let vm = Victoria::start(dir.path());
    let base = base_minute();
    let cfg = InfluxConfig {
        url: vm.url(),
        spool_dir: dir.path().join("spool"),
        token_env: "SREWATCH_TEST_TOKEN_UNSET".into(),
        ..Default::default()
    };
    let (h, task, stats) = start(cfg);
    for flush in [false, true] {
        let mut lat = Vec::new();
        for round in 0..100usize {
            // One file snapshot: 1000 points (500 hosts x 2 stats), like one CSV rewrite.
            let ts = base + 60 * round as i64;
            let mut text = String::with_capacity(64 * 1000);
            for host in 0..500 {
                for stat in 0..2 {
                    text.push_str(&format!(
                        "stat.{stat},hostname=cp{host} value={round}i {ts}\n"
                    ));
                }
            }
            let before = stats.snapshot().points_written;
            let t0 = Instant::now();
            h.write("counters", Bytes::from(text), 1000).await.unwrap();
            if flush {
                h.flush().await.unwrap();
            } else {
                while stats.snapshot().points_written < before + 1000 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            lat.push(t0.elapsed());
            assert_eq!(stats.snapshot().points_written, before + 1000);
        }
        lat.sort();
        println!(
            "{}: write -> accepted, 100 snapshots of 1000 points: median {:?}, p90 {:?}, max {:?}",
            if flush {
                "write + flush()"
            } else {
                "write, batch_max_delay = 200ms"
            },
            lat[lat.len() / 2],
            lat[lat.len() * 9 / 10],
            lat[lat.len() - 1],
        );
    }
    let s = stats.snapshot();
    println!(
        "sink histograms: batch first line -> accepted p50 {} us (p99 {} us); HTTP round trip p50 {} us (p99 {} us)",
        s.write_latency.p50_us, s.write_latency.p99_us, s.request_latency.p50_us, s.request_latency.p99_us
    );
    drop(h);
    task.await.unwrap();
}

/// Closing the sink while a slow server is still taking batches one by one: after
/// `close_timeout` the rest goes to the spool (nothing lost, closing bounded), and the next sink
/// on the same spool delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_timeout_spools_what_a_slow_server_has_not_taken() {
    let dir = tempdir();
    let spool = dir.path().join("spool");
    let slow = Double::start(Arc::new(|_: &Seen, _| {
        (
            204,
            vec![("x-test-delay-ms".into(), "200".into())],
            String::new(),
        )
    }))
    .await;
    let mut cfg = config(&slow.url, &spool);
    cfg.batch_max_points = 1;
    cfg.close_timeout = Duration::from_millis(500);
    let (h, task, stats) = start(cfg.clone());
    let (lines, good) = numbered(20, None);
    // One batch per point: 20 requests of 200 ms would take 4 s.
    h.write("counters", lines, 20).await.unwrap();
    let t0 = Instant::now();
    drop(h);
    task.await.unwrap();
    let took = t0.elapsed();
    let s = stats.snapshot();
    assert!(took < Duration::from_millis(1500), "closing took {took:?}");
    assert!(s.points_written >= 1 && s.points_written < 20, "{s:#?}");
    assert_eq!(s.points_written + s.spool_points, 20, "{s:#?}");
    assert_eq!(slow.accepted().len() as u64, s.points_written);

    let fast = Double::start(Arc::new(|_: &Seen, _| ok())).await;
    let mut cfg2 = config(&fast.url, &spool);
    cfg2.batch_max_points = 1;
    let (h2, task2, stats2) = start(cfg2);
    let rest = 20 - s.points_written;
    wait_for(&stats2, "the spooled points", |x| {
        x.points_written == rest && x.spool_points == 0
    })
    .await;
    drop(h2);
    task2.await.unwrap();
    let mut all = slow.accepted();
    all.extend(fast.accepted());
    assert_eq!(all, good, "every point once, in order");
}

//! Fault isolation in the InfluxDB sink: a refused bucket holds back only its own
//! batches (real InfluxDB 1.6 behind nginx), live data kept while the spool is full or
//! unusable, 413 for everything, an error body of hundreds of megabytes, a redirect to another
//! host. Fault-injection servers (`sink::Double`, a raw TCP server) only inject the faults.

use crate::sink::{base_minute, config, numbered, ok, start, wait_for, Double, Seen};
use crate::util::influx::Influx;
use crate::util::{self, free_tcp_port, tempdir};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `hosts` × `minutes` counters lines `m,hostname=hNNN value=Vi T`.
fn grid(hosts: usize, minutes: usize, value: i64, base: i64) -> (Bytes, usize) {
    let mut s = String::new();
    for m in 0..minutes {
        for h in 0..hosts {
            s.push_str(&format!(
                "m,hostname=h{h:03} value={value}i {}\n",
                base + 60 * m as i64
            ));
        }
    }
    (Bytes::from(s), hosts * minutes)
}

/// Points of measurement `m` in `db` whose field `value` is `v`.
fn with_value(ix: &Influx, db: &str, v: f64) -> usize {
    ix.points(db)
        .values()
        .filter(|f| f.get("value") == Some(&v))
        .count()
}

/// Obs 1: InfluxDB has `counters`, `samples` and `rollups` but not `srewatch` or `probe`. The
/// health and probe batches are refused (404); every counters point of the rewrite that
/// follows arrives at once, and the refused buckets are delivered once their databases exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bucket_holds_back_only_its_own_batches() {
    let dir = tempdir();
    let ix = util::blocking(|| Influx::start(dir.path(), &["counters", "samples", "rollups"]));
    let base = base_minute();
    let mut cfg = config(&ix.url(), &dir.path().join("spool"));
    cfg.db_param = false;
    cfg.batch_max_points = 10;
    let (h, task, stats) = start(cfg);
    let health = format!("srewatch_health,host=a up=1i {base}\n");
    h.write("srewatch", Bytes::from(health), 1).await.unwrap();
    h.flush().await.unwrap();
    let probe = format!("probe_rtt,target=cp1 rtt=0.01 {base}\n");
    h.write("probe", Bytes::from(probe), 1).await.unwrap();
    // The file snapshot: 40 counters points (4 batches), 5 samples, 5 rollups.
    let (c, n) = grid(4, 10, 1, base);
    h.write("counters", c, n).await.unwrap();
    let (s5, n5) = grid(5, 1, 7, base);
    h.write("samples", s5.clone(), n5).await.unwrap();
    h.write("rollups", s5, n5).await.unwrap();
    h.flush().await.unwrap();
    // The next rewrite revises every counters point.
    let t0 = Instant::now();
    let (c, n) = grid(4, 10, 2, base);
    h.write("counters", c, n).await.unwrap();
    h.flush().await.unwrap();
    let mut delivered = 0;
    while t0.elapsed() < Duration::from_secs(10) {
        delivered = util::blocking(|| with_value(&ix, "counters", 2.0));
        if delivered == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "counters points of the rewrite delivered within {:?}: {delivered} of 40",
        t0.elapsed()
    );
    assert_eq!(delivered, 40);
    assert_eq!(util::blocking(|| ix.points("counters")).len(), 40);
    assert_eq!(util::blocking(|| with_value(&ix, "samples", 7.0)), 5);
    assert_eq!(util::blocking(|| with_value(&ix, "rollups", 7.0)), 5);
    // Only the refused buckets wait, in the spool, named with the answer.
    let s = stats.snapshot();
    assert_eq!((s.spool_points, s.points_written), (2, 90), "{s:#?}");
    assert_eq!(s.buckets["srewatch"].refused, Some(404));
    assert_eq!(s.buckets["probe"].refused, Some(404));
    assert_eq!(s.buckets["counters"].refused, None);
    assert_eq!(s.buckets["counters"].points_written, 80);
    assert!(s.buckets["srewatch"].refusals >= 1);
    // Retried: once the databases exist, the held points arrive.
    util::blocking(|| {
        ix.query("srewatch", "CREATE DATABASE \"srewatch\"");
        ix.query("probe", "CREATE DATABASE \"probe\"");
    });
    let s = wait_for(&stats, "the held points", |s| {
        s.points_written == 92 && s.spool_points == 0
    })
    .await;
    assert_eq!(s.buckets["srewatch"].refused, None);
    assert_eq!(util::blocking(|| ix.points("srewatch")).len(), 1);
    assert_eq!(util::blocking(|| ix.points("probe")).len(), 1);
    drop(h);
    assert_eq!(task.await.unwrap().points_dropped, 0);
}

/// Obs 5: a restart with a full spool and a healthy server. The new batches wait in memory
/// behind the replay instead of pushing the spool to delete batches; every point ends with
/// its newest value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_a_full_spool_keeps_the_live_data() {
    let dir = tempdir();
    let spool = dir.path().join("spool");
    let base = base_minute();
    let (hosts, minutes) = (200, 30);
    {
        // The first run: the server unreachable, the spool fills up with older values.
        let mut cfg = config(&format!("http://127.0.0.1:{}", free_tcp_port()), &spool);
        cfg.batch_max_bytes = 2048;
        cfg.spool_max_bytes = 8192;
        let (h, task, stats) = start(cfg);
        let (c, n) = grid(hosts, minutes, 1, base);
        h.write("counters", c, n).await.unwrap();
        h.flush().await.unwrap();
        drop(h);
        task.await.unwrap();
        assert!(stats.snapshot().spool_bytes > 6000);
    }
    let ix = util::blocking(|| Influx::start(dir.path(), &["counters"]));
    let mut cfg = config(&ix.url(), &spool);
    cfg.db_param = false;
    cfg.batch_max_bytes = 2048;
    cfg.spool_max_bytes = 8192;
    let (h, task, stats) = start(cfg);
    assert!(stats.snapshot().spool_points > 0);
    let (c, n) = grid(hosts, minutes, 2, base);
    h.write("counters", c, n).await.unwrap();
    h.flush().await.unwrap();
    let s = wait_for(&stats, "spool and memory empty", |s| {
        s.spool_points == 0 && s.memory_points == 0
    })
    .await;
    let newest = util::blocking(|| with_value(&ix, "counters", 2.0));
    eprintln!(
        "restart with a full spool: points lost {}, points with the newest value {newest} of {n}",
        s.points_spool_dropped
    );
    assert_eq!(s.points_spool_dropped, 0, "{s:#?}");
    assert_eq!(newest, n);
    drop(h);
    assert_eq!(task.await.unwrap().points_dropped, 0);
}

/// Obs 5: the spool unusable (a regular file where the directory should be) and an outage of
/// `SREWATCH_TEST_OUTAGE_S` seconds (default 3) while 20 points are written every 100 ms: the
/// batches wait in memory and all arrive, in order, when the server answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_spool_and_an_outage_lose_nothing_while_memory_lasts() {
    let dir = tempdir();
    let outage: u64 = std::env::var("SREWATCH_TEST_OUTAGE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let up_at = Instant::now() + Duration::from_secs(outage);
    let double = Double::start(Arc::new(move |_: &Seen, _| {
        if Instant::now() < up_at {
            (503, vec![], String::new())
        } else {
            ok()
        }
    }))
    .await;
    let spool = dir.path().join("spool");
    std::fs::write(&spool, b"").unwrap();
    let (h, task, stats) = start(config(&double.url, &spool));
    let mut good = Vec::new();
    while Instant::now() < up_at + Duration::from_millis(300) {
        let mut text = String::new();
        for _ in 0..20 {
            let i = good.len();
            let line = format!("m,hostname=cp1 value={i}i {}", 60 * (i + 1));
            text.push_str(&line);
            text.push('\n');
            good.push(line);
        }
        let t = Instant::now();
        h.write("counters", Bytes::from(text), 20).await.unwrap();
        h.flush().await.unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "a flush waited for the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n = good.len() as u64;
    let s = wait_for(&stats, "every point written", |s| s.points_written == n).await;
    eprintln!(
        "unusable spool, {outage} s outage: points lost {} of {n}",
        s.points_spool_dropped
    );
    assert_eq!((s.points_spool_dropped, s.memory_points), (0, 0), "{s:#?}");
    assert_eq!(double.accepted(), good);
    drop(h);
    assert_eq!(task.await.unwrap().points_dropped, 0);
}

/// Obs 5: memory and spool both exhausted: the oldest batches are lost, counted for their
/// bucket with the minutes they covered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losses_when_memory_and_spool_are_exhausted_are_counted_per_bucket() {
    let dir = tempdir();
    let double = Double::start(Arc::new(|_: &Seen, _| (500, vec![], String::new()))).await;
    let spool = dir.path().join("spool");
    std::fs::write(&spool, b"").unwrap();
    let mut cfg = config(&double.url, &spool);
    cfg.batch_max_bytes = 1024;
    cfg.memory_max_bytes = 1024;
    cfg.spool_max_bytes = 4096;
    cfg.retry_base = Duration::from_secs(60);
    cfg.retry_max = Duration::from_secs(60);
    let (h, task, stats) = start(cfg);
    // 10 batches of 3 lines of exactly 100 bytes: memory holds the newest 3 (900 bytes).
    for b in 0..10 {
        let mut text = String::new();
        for l in 0..3 {
            let (v, t) = (b * 3 + l, 60 * (b * 3 + l + 1));
            let suffix = format!(",hostname=cp1 value={v}i {t}");
            text.push_str(&format!(
                "m,pad={}{suffix}\n",
                "x".repeat(99 - 6 - suffix.len())
            ));
        }
        assert_eq!(text.len(), 300);
        h.write("counters", Bytes::from(text), 3).await.unwrap();
        h.flush().await.unwrap();
    }
    let s = stats.snapshot();
    let c = &s.buckets["counters"];
    assert_eq!(
        (c.points_lost, c.lost_oldest, c.lost_newest),
        (21, 60, 60 * 21),
        "{s:#?}"
    );
    assert_eq!((s.memory_batches, s.memory_points), (3, 9));
    assert_eq!(s.points_spool_dropped, 21);
    drop(h);
    task.await.unwrap();
}

/// Obs 7: a server that answers 413 to everything. The sink splits down to the floor, then
/// keeps the data and backs off (no request storm, nothing dropped); all of it arrives once
/// the server takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_for_everything_keeps_the_data() {
    let up_at = Instant::now() + Duration::from_secs(2);
    let double = Double::start(Arc::new(move |_: &Seen, _| {
        if Instant::now() < up_at {
            (
                413,
                vec![],
                "<html><head><title>413 Request Entity Too Large</title></head></html>".into(),
            )
        } else {
            ok()
        }
    }))
    .await;
    let dir = tempdir();
    let (h, task, stats) = start(config(&double.url, &dir.path().join("spool")));
    let (lines, good) = numbered(200, None);
    h.write("counters", lines, 200).await.unwrap();
    h.flush().await.unwrap();
    let s = wait_for(&stats, "200 points written", |s| s.points_written == 200).await;
    let refused = double.seen().iter().filter(|r| r.at < up_at).count();
    eprintln!(
        "413 for everything for 2 s: {refused} requests answered 413, {} points dropped",
        s.points_rejected
    );
    assert_eq!(s.points_rejected, 0, "{s:#?}");
    assert!(refused <= 100, "{refused} requests in 2 s");
    assert!(s.too_large >= 1);
    assert_eq!(double.accepted(), good);
    drop(h);
    assert_eq!(task.await.unwrap().points_dropped, 0);
}

/// The process's peak resident set (VmHWM), bytes.
fn peak_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Obs 6: a 400 whose body is hundreds of megabytes (`SREWATCH_TEST_BODY_MB`, default 256):
/// only the first 64 KiB are read, the peak RSS does not grow with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_error_body_is_read_with_a_cap() {
    let mb: u64 = std::env::var("SREWATCH_TEST_BODY_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let size = mb << 20;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicU64::new(0));
    let w2 = written.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let w = w2.clone();
            tokio::spawn(async move {
                // Reads the request (head and body) and answers 400 with `size` bytes.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|x| x == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if buf.len() >= p + 4 + len {
                            break;
                        }
                    }
                }
                let head = format!("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {size}\r\n\r\n");
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let block = vec![b'x'; 1 << 16];
                let mut sent = 0u64;
                while sent < size {
                    if conn.write_all(&block).await.is_err() {
                        break;
                    }
                    sent += block.len() as u64;
                    w.fetch_add(block.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    let dir = tempdir();
    let mut cfg = config(&url, &dir.path().join("spool"));
    cfg.request_timeout = Duration::from_secs(60);
    let before = peak_rss();
    let (h, task, stats) = start(cfg);
    let (lines, _) = numbered(1, None);
    h.write("counters", lines, 1).await.unwrap();
    let t0 = Instant::now();
    h.flush().await.unwrap();
    let took = t0.elapsed();
    let s = stats.snapshot();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let grew = peak_rss().saturating_sub(before);
    let sent = written.load(Ordering::Relaxed);
    eprintln!(
        "400 with a {mb} MiB body: answered in {took:?}, peak RSS grew {} KiB, server wrote {} KiB",
        grew >> 10,
        sent >> 10
    );
    assert_eq!(s.points_rejected, 1);
    assert!(grew < 32 << 20, "peak RSS grew {grew} bytes");
    assert!(sent < 32 << 20, "the client read {sent} bytes of the body");
    drop(h);
    task.await.unwrap();
}

/// Obs 9: a 307 to another host is not followed (the data and the token stay here); the data
/// is kept and delivered once the server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_another_host_is_not_followed() {
    let elsewhere = Double::start(Arc::new(|_: &Seen, _| ok())).await;
    // Another host name for the same machine: the redirect could be followed if allowed.
    let to = elsewhere.url.replace("127.0.0.1", "localhost");
    let up_at = Instant::now() + Duration::from_secs(1);
    let double = Double::start(Arc::new(move |req: &Seen, _| {
        if Instant::now() < up_at {
            (
                307,
                vec![("Location".into(), format!("{to}{}", req.target))],
                String::new(),
            )
        } else {
            ok()
        }
    }))
    .await;
    let dir = tempdir();
    let (h, task, stats) = start(config(&double.url, &dir.path().join("spool")));
    let (lines, good) = numbered(3, None);
    h.write("counters", lines, 3).await.unwrap();
    h.flush().await.unwrap();
    wait_for(&stats, "3 points written", |s| s.points_written == 3).await;
    assert_eq!(elsewhere.seen().len(), 0, "the redirect was followed");
    assert_eq!(double.accepted(), good);
    drop(h);
    task.await.unwrap();
}

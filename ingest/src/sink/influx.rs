//! InfluxDB 2 write API sink: batching, gzip, retries with backoff, and the on-disk [`spool`].
//!
//! One task owns the output. Producers hand it whole lines per bucket through a
//! [`SinkHandle`]; the task:
//!
//! 1. **batches** the lines of each bucket, cutting a batch at `batch_max_points` lines,
//!    `batch_max_bytes` bytes, or `batch_max_delay` after its first line (one bucket per request);
//! 2. **sends** each batch as `POST {url}/api/v2/write?org=..&bucket=..&precision=s` with
//!    `Authorization: Token ..` and a gzip body, one request at a time, in order, while it keeps
//!    taking new lines;
//! 3. on **400/422** bisects the batch until the rejected lines stand alone, drops only those
//!    and counts them (the server's message is logged once per batch); on **413** bisects down
//!    to [`TOO_LARGE_FLOOR`], then keeps the data and backs off (logged once, naming the body
//!    size the server refused);
//! 4. on a **network error, timeout, 429, 5xx or a redirect to another host**, writes the batch
//!    and those after it to the spool while it has room, keeps the rest in memory (`hold.rs`),
//!    waits (exponential backoff with jitter, or `Retry-After` when the server sends one) and
//!    replays the spool oldest first, then memory; each bucket's order is kept;
//! 5. on **401/403/404** (token, org or bucket refused) holds back only that bucket
//!    ([`super::lanes`]): its batches wait in the spool or in memory and are retried with their
//!    own backoff, while the other buckets keep flowing.
//!
//! Error bodies are read up to [`super::http_body::ERROR_BODY_MAX`] bytes.
//!
//! The `influxdb2` crate is not used for the writes: its public write calls cannot send a body
//! that is already gzip-encoded (the `Content-Encoding` header is only set when the crate encodes
//! `DataPoint`s itself), and its errors drop the response headers, so `Retry-After` cannot be
//! read. The sink uses the same HTTP stack (`reqwest` 0.11, rustls) directly.
//!
//! [`spool`]: super::spool

use super::http_body::{read_capped, same_origin_redirects, ERROR_BODY_MAX};
use super::lanes::{BucketView, BucketViews, Lanes};
use super::spool::{time_range, Evicted, Spool, SpoolError};
use super::{Batch, Command, Flushed, SinkHandle, SinkStats};
use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Environment variable that holds the token unless `token_env` or `token_file` says otherwise.
pub const DEFAULT_TOKEN_ENV: &str = "SREWATCH_INFLUX_TOKEN";

/// Longest `Retry-After` honoured; a larger value is clamped to this.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// `[influxdb]` section. Every key has a default. One struct for the section (more than 12
/// fields): each key is one setting of the same sink, read by serde in one place.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxConfig {
    /// Base URL of the server, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    pub org: String,
    /// Name of the environment variable that holds the token (read at start).
    pub token_env: String,
    /// File holding the token (whitespace trimmed); takes precedence over `token_env`.
    pub token_file: Option<PathBuf>,
    /// Lines (points) per request at most.
    pub batch_max_points: usize,
    /// Line-protocol bytes per request at most (before gzip). A single longer line is sent alone.
    pub batch_max_bytes: usize,
    /// A batch is sent at the latest this long after its first line arrived.
    #[serde(with = "humantime_serde")]
    pub batch_max_delay: Duration,
    /// gzip request bodies (`Content-Encoding: gzip`).
    pub gzip: bool,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Whole request, including the response.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// First retry delay; doubled on each failure in a row, up to `retry_max`, with jitter
    /// (the delay is drawn from [d/2, d]).
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Directory of the on-disk spool.
    pub spool_dir: PathBuf,
    /// Size of the spool on disk at most; the oldest batches are dropped (and counted) beyond.
    /// Default 1 GiB: about 44 h of outage at 20,000 rows per file (`scripts/spool-per-hour`).
    pub spool_max_bytes: u64,
    /// Line-protocol bytes held in memory at most for batches the server or the spool cannot
    /// take now (a refused bucket, or an outage while the spool is full or unusable). Beyond
    /// it, the oldest such batches go to the spool anyway (deleting its oldest batches) or, if
    /// it is unusable, are lost and counted per bucket.
    pub memory_max_bytes: u64,
    /// State directory (checkpoint of what the server has acknowledged, Kamailio windows);
    /// `SPOOL_DIR/state` when not set.
    pub state_dir: Option<PathBuf>,
    /// Also send `db=BUCKET`: VictoriaMetrics (1.79, Debian) ignores `bucket` and stores `db`
    /// as a label, so this keeps the buckets apart there. InfluxDB ignores it.
    pub db_param: bool,
    /// When the sink is closed (shutdown), it keeps sending for at most this long; whatever is
    /// still not accepted then goes to the spool (after the request in flight, which ends within
    /// `request_timeout`). So closing takes at most `close_timeout + request_timeout`.
    #[serde(with = "humantime_serde")]
    pub close_timeout: Duration,
}

impl Default for InfluxConfig {
    fn default() -> Self {
        InfluxConfig {
            url: "http://127.0.0.1:8086".into(),
            org: "sre".into(),
            token_env: DEFAULT_TOKEN_ENV.into(),
            token_file: None,
            batch_max_points: 5000,
            batch_max_bytes: 1 << 20,
            batch_max_delay: Duration::from_millis(200),
            gzip: true,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            spool_dir: PathBuf::from("/var/lib/srewatch/spool"),
            spool_max_bytes: 1 << 30,
            memory_max_bytes: 64 << 20,
            state_dir: None,
            db_param: false,
            close_timeout: Duration::from_secs(5),
        }
    }
}

impl InfluxConfig {
    /// The state directory: `state_dir`, or `SPOOL_DIR/state`.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| self.spool_dir.join("state"))
    }

    /// Bad values as (key path under `influxdb.`, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        let mut no = |key: &str, why: String| bad.push((format!("influxdb.{key}"), why));
        match reqwest::Url::parse(&self.url) {
            Ok(u) if u.scheme() != "http" && u.scheme() != "https" => no(
                "url",
                format!("scheme must be http or https, not {:?}", u.scheme()),
            ),
            Ok(u) if u.query().is_some() => no("url", "must not have a query string".into()),
            Ok(u) if u.host_str().unwrap_or("").is_empty() => no("url", "has no host".into()),
            Ok(_) => {}
            Err(e) => no("url", format!("not a URL: {e}")),
        }
        if self.org.trim().is_empty() {
            no("org", "must not be empty".into());
        }
        if self.token_file.is_none()
            && (self.token_env.is_empty() || self.token_env.contains(['=', '\0']))
        {
            no(
                "token_env",
                "must be an environment variable name (or set token_file)".into(),
            );
        }
        if let Some(f) = &self.token_file {
            if f.as_os_str().is_empty() {
                no("token_file", "must not be empty".into());
            }
        }
        if !(1..=1_000_000).contains(&self.batch_max_points) {
            no("batch_max_points", "must be between 1 and 1000000".into());
        }
        if !(1024..=(64 << 20)).contains(&self.batch_max_bytes) {
            no(
                "batch_max_bytes",
                "must be between 1024 and 67108864".into(),
            );
        }
        if self.batch_max_delay > Duration::from_secs(60) {
            no("batch_max_delay", "must be at most 60s".into());
        }
        for (key, d) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if d.is_zero() {
                no(key, "must be more than 0".into());
            }
        }
        if self.retry_base.is_zero() {
            no("retry_base", "must be more than 0".into());
        }
        if self.close_timeout > Duration::from_secs(300) {
            no("close_timeout", "must be at most 5m".into());
        }
        if self.retry_max < self.retry_base {
            no("retry_max", "must be at least retry_base".into());
        }
        if self
            .state_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            no("state_dir", "must not be empty".into());
        }
        if self.spool_dir.as_os_str().is_empty() {
            no("spool_dir", "must not be empty".into());
        }
        if self.spool_max_bytes < self.batch_max_bytes as u64 * 2 {
            no(
                "spool_max_bytes",
                "must be at least twice batch_max_bytes".into(),
            );
        }
        if self.memory_max_bytes < self.batch_max_bytes as u64 {
            no(
                "memory_max_bytes",
                "must be at least batch_max_bytes".into(),
            );
        }
        bad
    }
}

/// Why the InfluxDB sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid [influxdb] configuration: {0}")]
    Config(String),
    #[error("cannot read InfluxDB token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("InfluxDB token file {path} is empty")]
    EmptyToken { path: PathBuf },
    #[error("InfluxDB token is not a valid HTTP header value")]
    BadToken,
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Spool(SpoolError),
}

/// Live counters of the InfluxDB sink, shared with whoever reports health.
#[derive(Debug)]
pub struct InfluxStats {
    points_written: AtomicU64,
    bytes_written: AtomicU64,
    bytes_sent: AtomicU64,
    requests: AtomicU64,
    request_failures: AtomicU64,
    refused: AtomicU64,
    points_rejected: AtomicU64,
    points_spool_dropped: AtomicU64,
    spool_batches: AtomicU64,
    spool_bytes: AtomicU64,
    spool_points: AtomicU64,
    spool_corrupt_files: AtomicU64,
    spool_dropped_oldest: AtomicI64,
    spool_dropped_newest: AtomicI64,
    write_latency: Mutex<Histogram<u64>>,
    request_latency: Mutex<Histogram<u64>>,
    memory_batches: AtomicU64,
    memory_points: AtomicU64,
    too_large: AtomicU64,
    buckets: BucketViews,
}

/// A copy of [`InfluxStats`] at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InfluxSnapshot {
    /// Points the server accepted.
    pub points_written: u64,
    /// Line-protocol bytes the server accepted (before gzip).
    pub bytes_written: u64,
    /// Request body bytes sent (after gzip), retries and bisection included.
    pub bytes_sent: u64,
    pub requests: u64,
    /// Requests that failed for a reason that may pass: network, timeout, 429, 5xx.
    pub request_failures: u64,
    /// Requests answered 401, 403 or 404 (token, org or bucket refused).
    pub refused: u64,
    /// Lines the server rejected on their own (400/413/422), dropped.
    pub points_rejected: u64,
    /// Points dropped because the spool was full (oldest first) or could not be written.
    pub points_spool_dropped: u64,
    pub spool_batches: u64,
    pub spool_bytes: u64,
    pub spool_points: u64,
    /// Spool files found torn or corrupt and set aside.
    pub spool_corrupt_files: u64,
    /// Oldest and newest timestamp (seconds) of the points the spool dropped because it was
    /// full, over the sink's life; 0 when none (or unknown).
    pub spool_dropped_oldest: i64,
    pub spool_dropped_newest: i64,
    /// From a batch's first line reaching the sink to the server accepting it, for batches sent
    /// without going through the spool.
    pub write_latency: Latency,
    /// HTTP round trips of accepted requests.
    pub request_latency: Latency,
    /// Batches and points waiting in memory (behind the spool, for a refused bucket, or while
    /// the spool cannot take them).
    pub memory_batches: u64,
    pub memory_points: u64,
    /// Requests answered 413 at the splitting floor (the data was kept, not dropped).
    pub too_large: u64,
    /// Per bucket: refused or not, points written and lost.
    pub buckets: BTreeMap<String, BucketView>,
}

/// Latency summary in microseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

fn histogram() -> Mutex<Histogram<u64>> {
    Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static bounds"))
}

fn record(h: &Mutex<Histogram<u64>>, d: Duration) {
    if let Ok(mut h) = h.lock() {
        h.saturating_record((d.as_micros() as u64).max(1));
    }
}

fn summary(h: &Mutex<Histogram<u64>>) -> Latency {
    match h.lock() {
        Ok(h) if !h.is_empty() => Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        },
        _ => Latency::default(),
    }
}

impl InfluxStats {
    fn new() -> Self {
        InfluxStats {
            points_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            request_failures: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            points_rejected: AtomicU64::new(0),
            points_spool_dropped: AtomicU64::new(0),
            spool_batches: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            spool_points: AtomicU64::new(0),
            spool_corrupt_files: AtomicU64::new(0),
            spool_dropped_oldest: AtomicI64::new(0),
            spool_dropped_newest: AtomicI64::new(0),
            write_latency: histogram(),
            request_latency: histogram(),
            memory_batches: AtomicU64::new(0),
            memory_points: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            buckets: BucketViews::default(),
        }
    }

    /// A copy of the write-latency histogram (microseconds), for a Prometheus histogram.
    pub fn write_latency_histogram(&self) -> Histogram<u64> {
        match self.write_latency.lock() {
            Ok(h) => h.clone(),
            Err(_) => Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static bounds"),
        }
    }

    pub fn snapshot(&self) -> InfluxSnapshot {
        InfluxSnapshot {
            points_written: self.points_written.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            requests: self.requests.load(Relaxed),
            request_failures: self.request_failures.load(Relaxed),
            refused: self.refused.load(Relaxed),
            points_rejected: self.points_rejected.load(Relaxed),
            points_spool_dropped: self.points_spool_dropped.load(Relaxed),
            spool_batches: self.spool_batches.load(Relaxed),
            spool_bytes: self.spool_bytes.load(Relaxed),
            spool_points: self.spool_points.load(Relaxed),
            spool_corrupt_files: self.spool_corrupt_files.load(Relaxed),
            spool_dropped_oldest: self.spool_dropped_oldest.load(Relaxed),
            spool_dropped_newest: self.spool_dropped_newest.load(Relaxed),
            write_latency: summary(&self.write_latency),
            request_latency: summary(&self.request_latency),
            memory_batches: self.memory_batches.load(Relaxed),
            memory_points: self.memory_points.load(Relaxed),
            too_large: self.too_large.load(Relaxed),
            buckets: self.buckets.lock().map(|b| b.clone()).unwrap_or_default(),
        }
    }
}

/// Starts the InfluxDB writer task. The task ends when every handle is dropped, after writing
/// out (to the server or the spool) what it holds.
pub fn spawn(
    cfg: InfluxConfig,
) -> Result<(SinkHandle, tokio::task::JoinHandle<SinkStats>), StartError> {
    spawn_with_stats(cfg).map(|(h, t, _)| (h, t))
}

/// [`spawn`], also returning the live counters.
#[allow(clippy::type_complexity)]
pub fn spawn_with_stats(
    cfg: InfluxConfig,
) -> Result<
    (
        SinkHandle,
        tokio::task::JoinHandle<SinkStats>,
        Arc<InfluxStats>,
    ),
    StartError,
> {
    let problems = cfg.validate();
    if !problems.is_empty() {
        let text: Vec<String> = problems
            .into_iter()
            .map(|(k, r)| format!("{k}: {r}"))
            .collect();
        return Err(StartError::Config(text.join("; ")));
    }
    let token = read_token(&cfg)?;
    let auth = match token {
        Some(t) => {
            let mut v =
                HeaderValue::from_str(&format!("Token {t}")).map_err(|_| StartError::BadToken)?;
            v.set_sensitive(true);
            Some(v)
        }
        None => None,
    };
    let mut write_url = reqwest::Url::parse(&cfg.url)
        .map_err(|e| StartError::Config(format!("influxdb.url: {e}")))?;
    let client = reqwest::Client::builder()
        .connect_timeout(cfg.connect_timeout)
        .timeout(cfg.request_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .redirect(same_origin_redirects(&write_url))
        .build()?;
    let base = write_url.path().trim_end_matches('/').to_owned();
    write_url.set_path(&format!("{base}/api/v2/write"));
    let stats = Arc::new(InfluxStats::new());
    let spool = SpoolSlot::open(&cfg.spool_dir, cfg.spool_max_bytes, &stats)?;
    let http = Arc::new(Http {
        client,
        write_url,
        org: cfg.org.clone(),
        auth,
        gzip: cfg.gzip,
        db_param: cfg.db_param,
        stats: stats.clone(),
        warned_cut: AtomicBool::new(false),
        warned_redirect: AtomicBool::new(false),
    });
    let (handle, rx) = SinkHandle::channel(64);
    let writer = Writer::new(cfg, http, spool, stats.clone());
    let task = tokio::spawn(writer.run(rx));
    Ok((handle, task, stats))
}

fn read_token(cfg: &InfluxConfig) -> Result<Option<String>, StartError> {
    if let Some(path) = &cfg.token_file {
        let text = std::fs::read_to_string(path).map_err(|source| StartError::TokenFile {
            path: path.clone(),
            source,
        })?;
        let t = text.trim();
        if t.is_empty() {
            return Err(StartError::EmptyToken { path: path.clone() });
        }
        return Ok(Some(t.to_owned()));
    }
    match std::env::var(&cfg.token_env) {
        Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_owned())),
        _ => {
            tracing::warn!(token_env = %cfg.token_env, "No InfluxDB token set; writing without Authorization");
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// Why a request (or the rest of a batch) was not accepted.
#[derive(Debug, Clone)]
enum Failure {
    /// May pass: network, timeout, 429, 5xx.
    Transient {
        retry_after: Option<Duration>,
        why: String,
    },
    /// 401/403/404: token, org or bucket refused.
    Refused { status: u16, message: String },
    /// 413 for a piece at the splitting floor: the server's body limit is below `sent` bytes.
    TooLarge {
        sent: usize,
        lines: usize,
        message: String,
    },
}

enum Answer {
    Accepted,
    /// 400/413/422: something in these lines.
    Reject {
        status: u16,
        message: String,
        /// Request body bytes (after gzip).
        sent: usize,
    },
    Fail(Failure),
}

/// A piece answered 413 is not split below this many line-protocol bytes (or one line): the
/// server then refuses any body, and the data is kept instead of being sent line by line.
pub const TOO_LARGE_FLOOR: usize = 1024;

struct Http {
    client: reqwest::Client,
    write_url: reqwest::Url,
    org: String,
    auth: Option<HeaderValue>,
    gzip: bool,
    db_param: bool,
    stats: Arc<InfluxStats>,
    /// An error body was cut / a redirect to another host was not followed (logged once).
    warned_cut: AtomicBool,
    warned_redirect: AtomicBool,
}

impl Http {
    async fn post(&self, bucket: &str, lines: &Bytes) -> Answer {
        let mut url = self.write_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("org", &self.org)
                .append_pair("bucket", bucket)
                .append_pair("precision", "s");
            if self.db_param {
                q.append_pair("db", bucket);
            }
        }
        let mut req = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let body = if self.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
            gzip(lines)
        } else {
            lines.clone()
        };
        let sent = body.len();
        self.stats.bytes_sent.fetch_add(body.len() as u64, Relaxed);
        self.stats.requests.fetch_add(1, Relaxed);
        let start = Instant::now();
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                self.stats.request_failures.fetch_add(1, Relaxed);
                return Answer::Fail(Failure::Transient {
                    retry_after: None,
                    why: error_chain(&e),
                });
            }
        };
        let status = resp.status();
        if status.is_success() {
            record(&self.stats.request_latency, start.elapsed());
            return Answer::Accepted;
        }
        let retry_after = resp.headers().get(RETRY_AFTER).and_then(parse_retry_after);
        if status.is_redirection() {
            // Only a redirect to another origin comes back here (see `same_origin_redirects`).
            self.stats.request_failures.fetch_add(1, Relaxed);
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            if !self.warned_redirect.swap(true, Relaxed) {
                tracing::error!(url = %self.write_url, status = status.as_u16(), location = %to, "InfluxDB answered a redirect to another host; not followed (the data and the token stay here); keeping the data and retrying");
            }
            return Answer::Fail(Failure::Transient {
                retry_after,
                why: format!("HTTP {status}: redirect to {to} not followed"),
            });
        }
        let body = read_capped(resp, ERROR_BODY_MAX).await;
        if let Some(at) = body.cut_at {
            if !self.warned_cut.swap(true, Relaxed) {
                tracing::warn!(status = status.as_u16(), read = at, announced = ?body.announced, "InfluxDB error body longer than the cap; read only its first bytes (further cuts are not logged)");
            }
        }
        let mut message = body.text;
        truncate(&mut message, 300);
        match status.as_u16() {
            400 | 413 | 422 => Answer::Reject {
                status: status.as_u16(),
                message,
                sent,
            },
            401 | 403 | 404 => {
                self.stats.refused.fetch_add(1, Relaxed);
                Answer::Fail(Failure::Refused {
                    status: status.as_u16(),
                    message,
                })
            }
            _ => {
                self.stats.request_failures.fetch_add(1, Relaxed);
                Answer::Fail(Failure::Transient {
                    retry_after,
                    why: format!("HTTP {status}: {message}"),
                })
            }
        }
    }
}

/// gzip at level 1: the body is line protocol, which compresses ~10x even at the fastest level.
fn gzip(data: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    Bytes::from(enc.finish().unwrap_or_default())
}

/// `Retry-After: <seconds>` or `Retry-After: <IMF-fixdate>` (RFC 9110), clamped to
/// [0, `RETRY_AFTER_MAX`]. Anything else is ignored (the backoff applies).
fn parse_retry_after(v: &HeaderValue) -> Option<Duration> {
    let text = v.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(RETRY_AFTER_MAX));
    }
    let at = parse_imf_fixdate(text)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64).min(RETRY_AFTER_MAX))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` to Unix seconds.
fn parse_imf_fixdate(s: &str) -> Option<i64> {
    let (_, rest) = s.split_once(", ")?;
    let mut it = rest.split(' ');
    let day: i64 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == mon)? as i64
        + 1;
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if it.next()? != "GMT"
        || it.next().is_some()
        || !(1..=31).contains(&day)
        || h > 23
        || m > 59
        || sec > 60
    {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

fn count_lines(b: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', b).count()
}

/// Byte offset just after the `k`-th newline (`k` ≥ 1).
fn after_line(b: &[u8], k: usize) -> usize {
    memchr::memchr_iter(b'\n', b)
        .nth(k - 1)
        .map_or(b.len(), |p| p + 1)
}

/// What became of one batch.
#[derive(Debug, Default)]
struct Delivery {
    points: u64,
    bytes: u64,
    rejected: u64,
    /// First rejected line: status, server message, start of the line.
    first_reject: Option<(u16, String, String)>,
    /// Lines not delivered (in order) and why.
    rest: Option<(Bytes, Failure)>,
}

/// Sends `lines`, bisecting on 400/413/422 until the rejected lines stand alone. Stops at the
/// first failure of another kind and returns the lines not yet delivered.
async fn deliver(http: Arc<Http>, bucket: String, lines: Bytes) -> Delivery {
    let mut d = Delivery::default();
    // Adjacent pieces of `lines`, the next to send on top.
    let mut stack = vec![lines.clone()];
    while let Some(piece) = stack.pop() {
        match http.post(&bucket, &piece).await {
            Answer::Accepted => {
                d.points += count_lines(&piece) as u64;
                d.bytes += piece.len() as u64;
            }
            Answer::Reject {
                status: 413,
                message,
                sent,
            } if count_lines(&piece) <= 1 || piece.len() <= TOO_LARGE_FLOOR => {
                http.stats.too_large.fetch_add(1, Relaxed);
                let lines_len = piece.len();
                let f = Failure::TooLarge {
                    sent,
                    lines: lines_len,
                    message,
                };
                d.rest = Some((rest_of(&lines, piece, &stack), f));
                break;
            }
            Answer::Reject {
                status, message, ..
            } => {
                let n = count_lines(&piece);
                if n <= 1 {
                    d.rejected += n as u64;
                    if d.first_reject.is_none() {
                        let mut line =
                            String::from_utf8_lossy(piece.strip_suffix(b"\n").unwrap_or(&piece))
                                .into_owned();
                        truncate(&mut line, 200);
                        d.first_reject = Some((status, message, line));
                    }
                } else {
                    let mid = after_line(&piece, n / 2);
                    stack.push(piece.slice(mid..));
                    stack.push(piece.slice(..mid));
                }
            }
            Answer::Fail(f) => {
                d.rest = Some((rest_of(&lines, piece, &stack), f));
                break;
            }
        }
    }
    d
}

/// The lines not delivered: `piece` and the pieces on `stack`. They are adjacent slices of
/// `lines` ending at its end, so the rest is the tail of `lines` from `piece` on; rebuilt by
/// copying if not.
fn rest_of(lines: &Bytes, piece: Bytes, stack: &[Bytes]) -> Bytes {
    let offset = (piece.as_ptr() as usize).wrapping_sub(lines.as_ptr() as usize);
    if stack.is_empty() {
        piece
    } else if offset < lines.len()
        && lines.len() - offset == piece.len() + stack.iter().map(Bytes::len).sum::<usize>()
    {
        lines.slice(offset..)
    } else {
        let mut m = BytesMut::from(&piece[..]);
        for p in stack.iter().rev() {
            m.extend_from_slice(p);
        }
        m.freeze()
    }
}

// ---------------------------------------------------------------------------------------------
// Spool slot: the spool, or the reason it cannot be used (retried on the next push).

/// Widens the range of dropped timestamps in `stats` by `ev`'s.
fn note_range(stats: &InfluxStats, ev: &Evicted) {
    if ev.oldest > ev.newest {
        return; // unknown (first-format files)
    }
    let lo = stats.spool_dropped_oldest.load(Relaxed);
    if lo == 0 || ev.oldest < lo {
        stats.spool_dropped_oldest.store(ev.oldest, Relaxed);
    }
    stats.spool_dropped_newest.fetch_max(ev.newest, Relaxed);
}

/// A timestamp's minute as RFC 3339 (`2026-11-30T04:12:00Z`), `unknown` when not recorded.
pub(crate) fn minute(t: i64) -> String {
    if t == i64::MAX || t == i64::MIN || t < 0 {
        return "unknown".into();
    }
    let m = t - t.rem_euclid(60);
    humantime_serde::re::humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(m as u64),
    )
    .to_string()
}

struct SpoolSlot {
    dir: PathBuf,
    max_bytes: u64,
    spool: Option<Spool>,
    /// An error has been logged and the spool has not worked since.
    failing: bool,
    /// What the spool has dropped for room since it was last empty (the episode): logged when
    /// it starts and summarised when the spool empties or the sink closes.
    full: Option<Evicted>,
    corrupt_seen: u64,
    corrupt_points_seen: u64,
    gone_points_seen: u64,
    /// Points a flush was answered for without the server or the spool having them: lost, or
    /// held in memory only (see [`Flushed::unstored`]).
    unstored: u64,
}

impl SpoolSlot {
    fn open(dir: &Path, max_bytes: u64, stats: &InfluxStats) -> Result<SpoolSlot, StartError> {
        let mut slot = SpoolSlot {
            dir: dir.to_path_buf(),
            max_bytes,
            spool: None,
            failing: false,
            full: None,
            corrupt_seen: 0,
            corrupt_points_seen: 0,
            gone_points_seen: 0,
            unstored: 0,
        };
        match Spool::open(dir, max_bytes) {
            Ok((s, ev)) => {
                if ev.points > 0 {
                    stats.points_spool_dropped.fetch_add(ev.points, Relaxed);
                    note_range(stats, &ev);
                    tracing::warn!(dir = %dir.display(), batches = ev.batches, points = ev.points, oldest_minute = %minute(ev.oldest), newest_minute = %minute(ev.newest), max_bytes, "Spool larger than spool_max_bytes; dropped its oldest batches");
                }
                if !s.is_empty() {
                    tracing::info!(dir = %dir.display(), batches = s.len(), points = s.points(), bytes = s.bytes(), "Spool holds batches from an earlier run; replaying them");
                }
                slot.spool = Some(s);
            }
            Err(e @ SpoolError::Locked { .. }) => return Err(StartError::Spool(e)),
            Err(e) => {
                tracing::error!(error = %e, "Spool unusable; batches the server cannot take will be dropped until it works");
                slot.failing = true;
            }
        }
        slot.sync_stats(stats);
        Ok(slot)
    }

    fn is_empty(&self) -> bool {
        match &self.spool {
            Some(s) => s.is_empty(),
            None => true,
        }
    }

    fn has_bucket(&self, bucket: &str) -> bool {
        self.spool.as_ref().is_some_and(|s| s.has_bucket(bucket))
    }

    /// The spool, reopened if it could not be opened before.
    fn reopen(&mut self, stats: &InfluxStats) {
        if self.spool.is_none() {
            if let Ok((s, ev)) = Spool::open(&self.dir, self.max_bytes) {
                stats.points_spool_dropped.fetch_add(ev.points, Relaxed);
                self.spool = Some(s);
            }
        }
    }

    fn unusable(&self) -> SpoolError {
        SpoolError::Dir {
            path: self.dir.clone(),
            source: std::io::Error::other("cannot open spool directory"),
        }
    }

    /// Spools a batch if it fits without deleting older ones; false (nothing lost) if the spool
    /// is full or unusable.
    fn push_within(
        &mut self,
        bucket: &str,
        lines: &[u8],
        points: usize,
        stats: &InfluxStats,
    ) -> bool {
        self.reopen(stats);
        let result = match self.spool.as_mut() {
            Some(s) => s.push_within(bucket, lines, points),
            None => Err(self.unusable()),
        };
        let stored = match result {
            Ok(stored) => {
                if stored && self.failing {
                    tracing::info!(dir = %self.dir.display(), "Spool writable again");
                    self.failing = false;
                }
                stored
            }
            Err(e) => {
                if !self.failing {
                    tracing::error!(error = %e, bucket, points, "Cannot spool batch; holding batches in memory (up to memory_max_bytes) until the server or the spool takes them");
                    self.failing = true;
                }
                false
            }
        };
        self.sync_stats(stats);
        stored
    }

    /// Spools a batch, deleting the oldest ones for room. False if the spool is unusable (the
    /// batch is then lost: counted in `points_spool_dropped`, the caller counts it per bucket).
    fn push(&mut self, bucket: &str, lines: &[u8], points: usize, stats: &InfluxStats) -> bool {
        self.reopen(stats);
        let result = match self.spool.as_mut() {
            Some(s) => s.push(bucket, lines, points),
            None => Err(self.unusable()),
        };
        let stored = result.is_ok();
        match result {
            Ok(ev) => {
                if self.failing {
                    tracing::info!(dir = %self.dir.display(), "Spool writable again");
                    self.failing = false;
                }
                if ev.points > 0 {
                    stats.points_spool_dropped.fetch_add(ev.points, Relaxed);
                    note_range(stats, &ev);
                    match self.full.as_mut() {
                        Some(f) => f.merge(&ev),
                        None => {
                            tracing::warn!(dir = %self.dir.display(), max_bytes = self.max_bytes, batches = ev.batches, points = ev.points, oldest_minute = %minute(ev.oldest), newest_minute = %minute(ev.newest), "Spool full; dropping its oldest batches (a summary follows when it empties)");
                            self.full = Some(ev);
                        }
                    }
                }
            }
            Err(e) => {
                stats.points_spool_dropped.fetch_add(points as u64, Relaxed);
                if !self.failing {
                    tracing::error!(error = %e, bucket, points, "Cannot spool batch; dropped it (further drops are counted, not logged)");
                    self.failing = true;
                }
            }
        }
        self.sync_stats(stats);
        stored
    }

    /// Logs, once per episode, everything the full spool dropped.
    fn summarise(&mut self, why: &str) {
        if let Some(ev) = self.full.take() {
            tracing::warn!(dir = %self.dir.display(), batches = ev.batches, points = ev.points, oldest_minute = %minute(ev.oldest), newest_minute = %minute(ev.newest), "{why}; points dropped while it was full");
        }
    }

    fn sync_stats(&mut self, stats: &InfluxStats) {
        let (batches, bytes, points, corrupt, gone) = match &self.spool {
            Some(s) => (s.len() as u64, s.bytes(), s.points(), s.corrupt(), s.gone()),
            None => (0, 0, 0, Default::default(), Default::default()),
        };
        if gone.points > self.gone_points_seen {
            stats
                .points_spool_dropped
                .fetch_add(gone.points - self.gone_points_seen, Relaxed);
            self.gone_points_seen = gone.points;
        }
        if batches == 0 {
            self.summarise("Spool emptied");
        }
        stats.spool_batches.store(batches, Relaxed);
        stats.spool_bytes.store(bytes, Relaxed);
        stats.spool_points.store(points, Relaxed);
        if corrupt.files > self.corrupt_seen {
            stats
                .spool_corrupt_files
                .fetch_add(corrupt.files - self.corrupt_seen, Relaxed);
            self.corrupt_seen = corrupt.files;
        }
        // Points of corrupt files found at replay are lost: count them as dropped once.
        if corrupt.points > self.corrupt_points_seen {
            stats
                .points_spool_dropped
                .fetch_add(corrupt.points - self.corrupt_points_seen, Relaxed);
            self.corrupt_points_seen = corrupt.points;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The writer task (its memory buffer: `hold.rs`)

#[path = "hold.rs"]
mod hold;

struct Pending {
    bucket: String,
    chunks: Vec<Bytes>,
    bytes: usize,
    points: usize,
    since: Instant,
}

struct Ready {
    bucket: String,
    lines: Bytes,
    points: usize,
    since: Instant,
    seq: u64,
    /// Held in memory because its bucket cannot be sent now and the spool could not take it:
    /// flushes no longer wait for it, and its points are counted in `unstored`.
    parked: bool,
}

enum Source {
    Direct { seq: u64, since: Instant },
    Spool { seq: u64 },
}

struct InFlight {
    source: Source,
    bucket: String,
    fut: Pin<Box<dyn Future<Output = Delivery> + Send>>,
}

enum Event {
    Cmd(Option<Command>),
    Deadline,
    Done(Delivery),
    BackoffOver,
    CloseTimeout,
}

/// The writer task's state (more than 12 fields: batching, the memory buffer, the spool, the
/// per-bucket lanes and the server's state are all owned by this one task).
struct Writer {
    cfg: InfluxConfig,
    http: Arc<Http>,
    stats: Arc<InfluxStats>,
    spool: SpoolSlot,
    lanes: Lanes,
    pending: Vec<Pending>,
    /// The memory buffer: batches cut and not yet sent, spooled or dropped. For each bucket,
    /// its spooled batches are older than its batches here.
    ready: VecDeque<Ready>,
    ready_bytes: usize,
    /// Of which parked (see [`Ready::parked`]).
    parked_bytes: usize,
    /// Back-pressure on producers when this many bytes wait to be sent.
    ready_limit: usize,
    /// The bucket of the batch in flight when it came from memory (its bucket's oldest there).
    sending_direct: Option<String>,
    /// Batches cut so far; the last one settled (sent, spooled or dropped).
    cut_seq: u64,
    done_seq: u64,
    flushes: Vec<(u64, oneshot::Sender<Flushed>)>,
    /// The last attempt failed: new batches go to the spool.
    down: bool,
    attempt: u32,
    backoff_until: Option<Instant>,
    warned_transient: bool,
    warned_too_large: bool,
}

impl Writer {
    fn new(
        cfg: InfluxConfig,
        http: Arc<Http>,
        spool: SpoolSlot,
        stats: Arc<InfluxStats>,
    ) -> Writer {
        let ready_limit = cfg.batch_max_bytes * 8;
        let lanes = Lanes::new(stats.buckets.clone(), cfg.retry_base, cfg.retry_max);
        Writer {
            cfg,
            http,
            stats,
            spool,
            lanes,
            pending: Vec::new(),
            ready: VecDeque::new(),
            ready_bytes: 0,
            parked_bytes: 0,
            ready_limit,
            sending_direct: None,
            cut_seq: 0,
            done_seq: 0,
            flushes: Vec::new(),
            down: false,
            attempt: 0,
            backoff_until: None,
            warned_transient: false,
            warned_too_large: false,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) -> SinkStats {
        let mut inflight: Option<InFlight> = None;
        let mut open = true;
        // Set when the handles are gone: past it, what is not yet accepted is spooled.
        let mut close_by: Option<Instant> = None;
        let mut close_warned = false;
        loop {
            if close_by.is_some_and(|t| Instant::now() >= t) && self.backoff_until.is_none() {
                // Closing took too long: stop sending. With a backoff pending, `next_delivery`
                // spools what is ready; the request in flight settles (accepted or spooled) by
                // itself, and a success does not resume sending (this check runs again).
                if !close_warned && !self.ready.is_empty() {
                    tracing::warn!(
                        close_timeout = ?self.cfg.close_timeout,
                        batches = self.ready.len(),
                        "InfluxDB sink closing: time is up, spooling the batches not yet sent"
                    );
                    close_warned = true;
                }
                self.backoff_until = Some(Instant::now() + Duration::from_secs(3600));
            }
            if inflight.is_none() {
                inflight = self.next_delivery(open);
            }
            if !open && inflight.is_none() && self.ready.is_empty() {
                break;
            }
            let deadline = self
                .pending
                .iter()
                .filter(|p| p.points > 0)
                .map(|p| p.since + self.cfg.batch_max_delay)
                .min();
            let backoff = if inflight.is_none() {
                self.backoff_until.or_else(|| self.next_lane_retry())
            } else {
                None
            };
            let accepting = open
                && self.ready_bytes - self.parked_bytes < self.ready_limit
                && (self.ready_bytes as u64) < self.cfg.memory_max_bytes;
            let closing = close_by.filter(|_| self.backoff_until.is_none());
            let ev = tokio::select! {
                d = async { inflight.as_mut().expect("guarded").fut.as_mut().await }, if inflight.is_some() => Event::Done(d),
                cmd = rx.recv(), if accepting => Event::Cmd(cmd),
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => Event::Deadline,
                _ = tokio::time::sleep_until(backoff.unwrap_or_else(Instant::now)), if backoff.is_some() => Event::BackoffOver,
                _ = tokio::time::sleep_until(closing.unwrap_or_else(Instant::now)), if closing.is_some() => Event::CloseTimeout,
                // Not reachable (with nothing in flight and no backoff, a ready batch is started,
                // and `accepting` is false only when batches are ready), but never panic on it.
                else => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Event::BackoffOver
                }
            };
            match ev {
                Event::Cmd(Some(Command::Write(b))) => self.append(b),
                Event::Cmd(Some(Command::Flush(tx))) => {
                    self.cut_all();
                    self.flushes.push((self.cut_seq, tx));
                }
                Event::Cmd(None) => {
                    open = false;
                    close_by = Some(Instant::now() + self.cfg.close_timeout);
                    self.cut_all();
                }
                // Only wakes the loop: the check at its top does the work.
                Event::CloseTimeout => {}
                Event::Deadline => {
                    let now = Instant::now();
                    let due: Vec<usize> = (0..self.pending.len())
                        .filter(|&i| {
                            self.pending[i].points > 0
                                && self.pending[i].since + self.cfg.batch_max_delay <= now
                        })
                        .collect();
                    for i in due {
                        self.cut(i);
                    }
                }
                Event::Done(d) => {
                    let f = inflight.take().expect("a delivery was in flight");
                    self.settle(f.source, f.bucket, d);
                }
                Event::BackoffOver => {
                    if self.backoff_until.is_some_and(|t| t <= Instant::now()) {
                        self.backoff_until = None;
                    }
                }
            }
            self.sync_memory();
            self.answer_flushes();
        }
        self.answer_flushes();
        self.spool
            .summarise("Sink closing before the spool emptied");
        let s = self.stats.snapshot();
        SinkStats {
            points_written: s.points_written,
            bytes_written: s.bytes_written,
            points_dropped: s.points_rejected + s.points_spool_dropped,
        }
    }

    /// The next request to start, if any: the spool first (oldest), then ready batches. While
    /// closing, nothing is replayed from the spool and, if the server is failing, ready batches
    /// go to the spool instead of waiting for the backoff.
    fn next_delivery(&mut self, open: bool) -> Option<InFlight> {
        if self.backoff_until.is_some() {
            if !open {
                self.spool_ready();
            }
            return None;
        }
        if !open {
            self.spool_at_close();
        }
        let now = Instant::now();
        if open && !self.spool.is_empty() {
            let lanes = &self.lanes;
            let front = self
                .spool
                .spool
                .as_mut()
                .and_then(|s| s.read_first(|b| lanes.sendable(b, now)));
            self.spool.sync_stats(&self.stats);
            if let Some(b) = front {
                let fut = Box::pin(deliver(self.http.clone(), b.bucket.clone(), b.lines));
                return Some(InFlight {
                    source: Source::Spool { seq: b.seq },
                    bucket: b.bucket,
                    fut,
                });
            }
        }
        let i = self
            .ready
            .iter()
            .position(|r| self.lanes.sendable(&r.bucket, now))?;
        let r = self.take_ready(i);
        self.sending_direct = Some(r.bucket.clone());
        let fut = Box::pin(deliver(self.http.clone(), r.bucket.clone(), r.lines));
        Some(InFlight {
            source: Source::Direct {
                seq: r.seq,
                since: r.since,
            },
            bucket: r.bucket,
            fut,
        })
    }

    fn settle(&mut self, source: Source, bucket: String, d: Delivery) {
        self.stats.points_written.fetch_add(d.points, Relaxed);
        self.stats.bytes_written.fetch_add(d.bytes, Relaxed);
        if d.rejected > 0 {
            self.stats.points_rejected.fetch_add(d.rejected, Relaxed);
            if let Some((status, message, line)) = &d.first_reject {
                tracing::warn!(bucket, dropped = d.rejected, status, message = %message, first_line = %line, "InfluxDB rejected lines; dropped only those");
            }
        }
        let progressed = d.points > 0 || d.rejected > 0;
        if progressed || d.rest.is_none() {
            self.lanes.accepted(&bucket, d.points);
        }
        if matches!(source, Source::Direct { .. }) {
            self.sending_direct = None;
        }
        match (source, d.rest) {
            (Source::Direct { seq, since }, None) => {
                record(&self.stats.write_latency, since.elapsed());
                self.done_seq = self.done_seq.max(seq);
                self.recovered();
            }
            (Source::Direct { seq, since }, Some((rest, f))) => {
                self.failed(&bucket, f);
                // Back to the front of memory (the oldest of its bucket outside the spool),
                // then to the spool with the others that cannot be sent, as room allows.
                let points = count_lines(&rest);
                self.ready_bytes += rest.len();
                self.ready.push_front(Ready {
                    bucket,
                    lines: rest,
                    points,
                    since,
                    seq,
                    parked: false,
                });
                self.spool_blocked();
            }
            (Source::Spool { seq }, None) => {
                if let Some(s) = self.spool.spool.as_mut() {
                    if let Err(e) = s.pop_front(seq) {
                        tracing::error!(dir = %s.dir().display(), error = %e, "Cannot delete a replayed spool file; it will be sent again after a restart");
                    }
                }
                self.recovered();
            }
            (Source::Spool { seq }, Some((rest, f))) => {
                if let Some(s) = self.spool.spool.as_mut() {
                    if progressed {
                        if let Err(e) = s.replace_front(seq, &rest, count_lines(&rest)) {
                            tracing::error!(error = %e, "Cannot rewrite a partly replayed spool file; it will be replayed whole");
                        }
                    } else {
                        s.release();
                    }
                }
                self.failed(&bucket, f);
            }
        }
        self.spool.sync_stats(&self.stats);
        self.note_evicted();
    }

    fn recovered(&mut self) {
        if self.down {
            tracing::info!(url = %self.cfg.url, spooled_batches = self.stats.spool_batches.load(Relaxed), "InfluxDB writes recovered");
        }
        self.down = false;
        self.attempt = 0;
        self.backoff_until = None;
        self.warned_transient = false;
    }

    fn failed(&mut self, bucket: &str, f: Failure) {
        if let Failure::Refused { status, message } = &f {
            // This bucket only: its lane waits, the others keep flowing.
            self.lanes.refused(bucket, *status, message);
            return;
        }
        self.down = true;
        let delay = match &f {
            // At least what the server asked for; never a busy loop on `Retry-After: 0`.
            Failure::Transient {
                retry_after: Some(ra),
                ..
            } => (*ra).max(self.cfg.retry_base),
            _ => {
                let exp = self
                    .cfg
                    .retry_base
                    .saturating_mul(1u32 << self.attempt.min(20))
                    .min(self.cfg.retry_max);
                exp.mul_f64(0.5 + 0.5 * rand::random::<f64>())
            }
        };
        self.attempt = self.attempt.saturating_add(1);
        self.backoff_until = Some(Instant::now() + delay);
        match f {
            Failure::Transient { why, retry_after } => {
                if !self.warned_transient {
                    tracing::warn!(url = %self.cfg.url, error = %why, retry_in = ?delay, retry_after = ?retry_after, "InfluxDB write failed; spooling batches until it recovers");
                    self.warned_transient = true;
                } else {
                    tracing::debug!(error = %why, retry_in = ?delay, "InfluxDB write failed again");
                }
            }
            Failure::TooLarge {
                sent,
                lines,
                message,
            } => {
                if !self.warned_too_large {
                    tracing::error!(url = %self.cfg.url, body_bytes = sent, line_protocol_bytes = lines, floor = TOO_LARGE_FLOOR, message = %message, retry_in = ?delay, "InfluxDB refuses request bodies as too large (413) even at the splitting floor: the server's body limit (nginx client_max_body_size, InfluxDB max-body-size) is below body_bytes; keeping the data and retrying (further 413s are counted in too_large)");
                    self.warned_too_large = true;
                } else {
                    tracing::debug!(body_bytes = sent, retry_in = ?delay, "InfluxDB answered 413 again");
                }
            }
            Failure::Refused { .. } => unreachable!("handled above"),
        }
    }

    fn answer_flushes(&mut self) {
        let done = self.done_seq;
        let mut i = 0;
        while i < self.flushes.len() {
            if self.flushes[i].0 <= done {
                let (_, tx) = self.flushes.swap_remove(i);
                let _ = tx.send(Flushed {
                    unstored: self.spool.unstored,
                });
            } else {
                i += 1;
            }
        }
    }

    fn pending_index(&mut self, bucket: &str) -> usize {
        if let Some(i) = self.pending.iter().position(|p| p.bucket == bucket) {
            return i;
        }
        self.pending.push(Pending {
            bucket: bucket.to_owned(),
            chunks: Vec::new(),
            bytes: 0,
            points: 0,
            since: Instant::now(),
        });
        self.pending.len() - 1
    }

    /// Adds whole lines to the bucket's pending batch, cutting batches as they fill up. Slices
    /// of `lines` are kept as they are (no copy) until a batch is cut.
    fn append(&mut self, b: Batch) {
        let mut lines = b.lines;
        if lines.last().is_some_and(|&c| c != b'\n') {
            let mut m = BytesMut::with_capacity(lines.len() + 1);
            m.extend_from_slice(&lines);
            m.put_u8(b'\n');
            lines = m.freeze();
        }
        let i = self.pending_index(&b.bucket);
        let (max_b, max_p) = (self.cfg.batch_max_bytes, self.cfg.batch_max_points);
        while !lines.is_empty() {
            let p = &self.pending[i];
            let (mut len, mut pts) = fit(&lines, max_b.saturating_sub(p.bytes), max_p - p.points);
            if len == 0 {
                if p.points > 0 {
                    self.cut(i);
                    continue;
                }
                // One line longer than a whole batch: it goes alone.
                len = memchr::memchr(b'\n', &lines).map_or(lines.len(), |x| x + 1);
                pts = 1;
            }
            let chunk = lines.split_to(len);
            let p = &mut self.pending[i];
            if p.points == 0 {
                p.since = Instant::now();
            }
            p.bytes += chunk.len();
            p.points += pts;
            p.chunks.push(chunk);
            if !lines.is_empty() || p.points >= max_p || p.bytes >= max_b {
                self.cut(i);
            }
        }
    }

    fn cut_all(&mut self) {
        for i in 0..self.pending.len() {
            if self.pending[i].points > 0 {
                self.cut(i);
            }
        }
    }

    fn cut(&mut self, i: usize) {
        let p = &mut self.pending[i];
        let lines = if p.chunks.len() == 1 {
            p.chunks.pop().expect("one chunk")
        } else {
            let mut m = BytesMut::with_capacity(p.bytes);
            for c in p.chunks.drain(..) {
                m.extend_from_slice(&c);
            }
            m.freeze()
        };
        self.cut_seq += 1;
        let r = Ready {
            bucket: p.bucket.clone(),
            lines,
            points: p.points,
            since: p.since,
            seq: self.cut_seq,
            parked: false,
        };
        p.bytes = 0;
        p.points = 0;
        self.place(r);
    }
}

/// How many whole lines of `b` fit in `room_bytes` and `room_points`: (bytes, lines).
fn fit(b: &[u8], room_bytes: usize, room_points: usize) -> (usize, usize) {
    let (mut len, mut pts) = (0, 0);
    if room_points == 0 {
        return (0, 0);
    }
    for nl in memchr::memchr_iter(b'\n', b) {
        if nl + 1 > room_bytes {
            break;
        }
        len = nl + 1;
        pts += 1;
        if pts == room_points {
            break;
        }
    }
    (len, pts)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn imf_fixdate() {
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(
            parse_imf_fixdate("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1445412480)
        );
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_imf_fixdate("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1835481599)
        );
        assert_eq!(parse_imf_fixdate("Wed, 21 Oct 2015 07:28:00 UTC"), None);
        assert_eq!(parse_imf_fixdate("Wed, 21 Foo 2015 07:28:00 GMT"), None);
        assert_eq!(parse_imf_fixdate("Wed, 21 Oct 2015 07:28 GMT"), None);
        // In the future: the wait up to that moment.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let later = imf(now + 120);
        let d = parse_retry_after(&HeaderValue::from_str(&later).unwrap()).unwrap();
        assert!(
            d <= Duration::from_secs(120) && d >= Duration::from_secs(118),
            "{later}: {d:?}"
        );
    }

    /// Unix seconds to IMF-fixdate (naive inverse, for the test above).
    fn imf(t: i64) -> String {
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let names = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!(
            "Mon, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
            names[(m - 1) as usize],
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
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
        let sizes: Vec<(usize, usize)> =
            w.ready.iter().map(|r| (r.lines.len(), r.points)).collect();
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
}

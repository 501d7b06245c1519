//! The `[influxdb]` section: its keys, defaults and checks.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Environment variable that holds the token unless `token_env` or `token_file` says otherwise.
pub const DEFAULT_TOKEN_ENV: &str = "SREWATCH_INFLUX_TOKEN";

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

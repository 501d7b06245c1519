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
//!    and those after it to the spool while it has room, keeps the rest in memory (`writer/hold.rs`),
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

mod batch;
mod config;
mod http;
mod spool_slot;
mod stats;
#[cfg(test)]
mod tests;
mod writer;

use super::http_body::same_origin_redirects;
use super::spool::SpoolError;
use super::{SinkHandle, SinkStats};
use http::Http;
use spool_slot::SpoolSlot;
use writer::Writer;

pub use config::{InfluxConfig, DEFAULT_TOKEN_ENV};
pub use http::TOO_LARGE_FLOOR;
use reqwest::header::HeaderValue;
pub(crate) use spool_slot::minute;
pub use stats::{InfluxSnapshot, InfluxStats, Latency};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

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

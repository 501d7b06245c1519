//! One write request: URL, headers, gzip body, and what the answer means.

use super::stats::{record, InfluxStats};
use crate::sink::http_body::{read_capped, ERROR_BODY_MAX};
use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Longest `Retry-After` honoured; a larger value is clamped to this.
pub(super) const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// Why a request (or the rest of a batch) was not accepted.
#[derive(Debug, Clone)]
pub(super) enum Failure {
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

pub(super) enum Answer {
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

pub(super) struct Http {
    pub(super) client: reqwest::Client,
    pub(super) write_url: reqwest::Url,
    pub(super) org: String,
    pub(super) auth: Option<HeaderValue>,
    pub(super) gzip: bool,
    pub(super) db_param: bool,
    pub(super) stats: Arc<InfluxStats>,
    /// An error body was cut / a redirect to another host was not followed (logged once).
    pub(super) warned_cut: AtomicBool,
    pub(super) warned_redirect: AtomicBool,
}

impl Http {
    pub(super) async fn post(&self, bucket: &str, lines: &Bytes) -> Answer {
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
pub(super) fn gzip(data: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    Bytes::from(enc.finish().unwrap_or_default())
}

/// `Retry-After: <seconds>` or `Retry-After: <HTTP-date>` (RFC 9110: IMF-fixdate, or the
/// obsolete RFC 850 and asctime forms), clamped to [0, `RETRY_AFTER_MAX`]. Anything else is
/// ignored (the backoff applies).
pub(super) fn parse_retry_after(v: &HeaderValue) -> Option<Duration> {
    retry_after_at(v, std::time::SystemTime::now())
}

/// [`parse_retry_after`] with the current time given.
pub(super) fn retry_after_at(v: &HeaderValue, now: std::time::SystemTime) -> Option<Duration> {
    let text = v.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(RETRY_AFTER_MAX));
    }
    let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).ok();
    let at = secs(httpdate::parse_http_date(text).ok()?)?.as_secs();
    // In whole seconds from the current second; a date in the past means now.
    let wait = at.saturating_sub(secs(now)?.as_secs());
    Some(Duration::from_secs(wait).min(RETRY_AFTER_MAX))
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

pub(super) fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

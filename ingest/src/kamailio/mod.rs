//! Kamailio statistics: source → parse → window → encode, per target.
//!
//! ## Layout
//! - [`address`]: which transport an address means, whether it can work, default hostnames.
//! - [`jsonrpc`], [`binrpc`], [`import`]: sources. JSON-RPC 2.0 over HTTP (`xhttp` +
//!   `jsonrpcs`), BINRPC over the `ctl` socket (unix, tcp, udp), and a saved `kamctl stats` JSON
//!   file. Each fetches one reply into a reused buffer.
//! - [`parse`]: the pure kernel for one `group:name = value` line.
//! - [`classify`]: the documented counter/gauge table, with configuration overrides.
//! - [`window`]: per target and minute: counter increases and rates, restarts, gauge
//!   last/min/max, HDR histograms of interval rates; encodes the minute's points.
//! - [`lab`]: canned BINRPC and JSON-RPC responders for the benchmark and fault-injection tests.
//! - [`poll`]: one task per target, aligned to the wall clock, with per-target timeout, backoff
//!   while down and an `up` point every interval; [`spawn_pollers`] is the entry point.
//!
//! The schema (measurements `kamailio_counter`, `kamailio_gauge`, `kamailio_target`,
//! `kamailio_up`) is described in `docs/kamailio.md`.

pub mod address;
pub mod binrpc;
pub mod classify;
pub mod import;
pub mod jsonrpc;
pub mod lab;
pub mod parse;
pub mod poll;
pub mod window;

pub use address::{default_hostname, default_hostnames};
pub use poll::{spawn_pollers, PollStats, Pollers};

use serde::Deserialize;
use std::time::Duration;

/// Default bucket for Kamailio statistics.
pub const DEFAULT_BUCKET: &str = "kamailio";

/// How a target is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// JSON-RPC 2.0 over HTTP: `address = "http://10.0.0.5:5071/RPC"`.
    Jsonrpc,
    /// BINRPC over the ctl socket: `unix:/run/kamailio/kamailio_ctl`, `tcp:HOST:PORT`,
    /// `udp:HOST:PORT`.
    Binrpc,
    /// A saved `kamctl stats` JSON output (or `kamcmd` text), read at every poll.
    File,
}

impl Transport {
    /// The transport an address implies when `transport` is not given ([`address::infer`]).
    pub fn infer(address: &str) -> Transport {
        address::infer(address)
    }
}

/// One `[[kamailio]]` target.
///
/// ```toml
/// [[kamailio]]
/// hostname = "SRE-33-CP1"             # the `hostname` tag
/// address = "http://10.0.161.10:5071/RPC"
/// # transport = "jsonrpc"             # inferred from the address
/// interval = "10s"
/// timeout = "2s"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    /// The `hostname` tag of every point (also accepted as `name`).
    #[serde(alias = "name")]
    pub hostname: String,
    /// `jsonrpc`, `binrpc` or `file`; inferred from `address` when absent.
    pub transport: Option<Transport>,
    /// URL, ctl socket (`unix:PATH`, `tcp:HOST:PORT`, `udp:HOST:PORT`) or file path.
    pub address: String,
    /// Poll period, aligned to the wall clock (default 10 s).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Longest wait for one reply (default 2 s).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest pause between attempts while the target is down (default 60 s).
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Bucket for this target's points (default `kamailio`).
    pub bucket: String,
    /// Extra gauge patterns (`group:name`, `*` wildcards), before the built-in table.
    pub gauges: Vec<String>,
    /// Extra counter patterns, before the built-in table.
    pub counters: Vec<String>,
    /// Counters that get per-minute histograms of interval rates.
    pub histograms: Vec<String>,
    /// Most distinct statistics kept for this target (bounds series cardinality).
    pub max_stats: usize,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            hostname: String::new(),
            transport: None,
            address: String::new(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            bucket: DEFAULT_BUCKET.to_string(),
            gauges: Vec::new(),
            counters: Vec::new(),
            histograms: window::DEFAULT_HISTOGRAMS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_stats: 5000,
        }
    }
}

impl TargetConfig {
    /// A target for `address` with defaults; the hostname defaults to the address's host.
    pub fn for_address(address: &str) -> TargetConfig {
        TargetConfig {
            hostname: default_hostname(address),
            address: address.to_string(),
            ..TargetConfig::default()
        }
    }

    /// The transport in use (given or inferred).
    pub fn transport(&self) -> Transport {
        self.transport
            .unwrap_or_else(|| Transport::infer(&self.address))
    }

    /// Bad values as (key relative to this table, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        let mut add = |k: &str, r: String| bad.push((k.to_string(), r));
        if self.hostname.trim().is_empty() {
            add(
                "hostname",
                "required: the hostname tag of this target".into(),
            );
        }
        if self.address.is_empty() {
            add("address", "required".into());
        } else {
            if let Some(why) = address::check(self.transport(), &self.address) {
                add("address", why);
            }
        }
        if self.interval < Duration::from_millis(100) {
            add("interval", "must be at least 100ms".into());
        }
        if self.timeout.is_zero() {
            add("timeout", "must be more than 0".into());
        } else if self.timeout > self.interval {
            add(
                "timeout",
                format!(
                    "{:?} is longer than the interval ({:?})",
                    self.timeout, self.interval
                ),
            );
        }
        if self.max_backoff < self.interval {
            add(
                "max_backoff",
                "must not be shorter than the interval".into(),
            );
        }
        if self.bucket.is_empty() {
            add("bucket", "must not be empty".into());
        }
        for (key, list) in [
            ("gauges", &self.gauges),
            ("counters", &self.counters),
            ("histograms", &self.histograms),
        ] {
            for p in list {
                if !classify::valid_pattern(p) || (key == "histograms" && p.contains('*')) {
                    add(
                        key,
                        format!("`{p}` is not a `group:name` statistic pattern"),
                    );
                }
            }
        }
        if self.max_stats == 0 {
            add("max_stats", "must be more than 0".into());
        }
        bad
    }
}

/// Checks every target ([`TargetConfig::validate`]) and that no two share a `hostname` (their
/// series would collide): every problem, as (key such as `kamailio[1].hostname`, reason).
pub fn validate_targets(targets: &[TargetConfig]) -> Vec<(String, String)> {
    let mut bad = Vec::new();
    for (n, t) in targets.iter().enumerate() {
        bad.extend(
            t.validate()
                .into_iter()
                .map(|(k, r)| (format!("kamailio[{n}].{k}"), r)),
        );
        if let Some(first) = targets[..n]
            .iter()
            .position(|o| !t.hostname.is_empty() && o.hostname == t.hostname)
        {
            bad.push((
                format!("kamailio[{n}].hostname"),
                format!(
                    "{:?} is also the hostname of kamailio[{first}]: their series would collide",
                    t.hostname
                ),
            ));
        }
    }
    bad
}

/// Why a poll got no usable reply (or only part of one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Io(String),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {0}")]
    Http(u16),
    #[error("connection closed before the whole reply arrived")]
    ShortRead,
    #[error("reply larger than {0} bytes: cut there, the rest discarded")]
    TooLarge(usize),
    #[error(transparent)]
    Packet(#[from] binrpc::PacketError),
    #[error(transparent)]
    Reply(#[from] jsonrpc::ReplyError),
}

impl FetchError {
    /// Short fixed label for logs and counters.
    pub fn as_str(&self) -> &'static str {
        match self {
            FetchError::Io(_) => "io",
            FetchError::Timeout(_) => "timeout",
            FetchError::Http(_) => "http_status",
            FetchError::ShortRead => "truncated",
            FetchError::TooLarge(_) => "too_large",
            FetchError::Packet(binrpc::PacketError::Fault { .. }) => "rpc_error",
            FetchError::Packet(binrpc::PacketError::Truncated(_)) => "truncated",
            FetchError::Packet(_) => "malformed",
            FetchError::Reply(jsonrpc::ReplyError::Rpc { .. }) => "rpc_error",
            FetchError::Reply(jsonrpc::ReplyError::Truncated(_)) => "truncated",
            FetchError::Reply(_) => "malformed",
        }
    }
}

/// The reply format held in a fetch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON-RPC reply (also a saved `kamctl stats` file).
    Json,
    /// A BINRPC packet.
    Binrpc,
    /// `group:name = value` lines (saved `kamcmd stats.get_statistics all` output).
    Text,
}

/// Walks one reply held in `buf` and hands every line (a statistic candidate) to `on_line`, and
/// each element that is not a string to `on_other`. Whole lines before a truncation or an
/// error are always handed out; the error comes after them.
pub fn scan(
    format: Format,
    buf: &[u8],
    scratch: &mut Vec<u8>,
    on_line: &mut dyn FnMut(&[u8]),
    on_other: &mut dyn FnMut(),
) -> Result<(), FetchError> {
    match format {
        Format::Json => Ok(jsonrpc::scan_reply(buf, scratch, on_line, on_other)?),
        Format::Binrpc => {
            let h = binrpc::header(buf)?.ok_or(FetchError::ShortRead)?;
            let end = (h.header_len + h.body_len).min(buf.len());
            let body = &buf[h.header_len.min(end)..end];
            binrpc::scan_reply(&h, body, on_line, on_other)?;
            if end < h.header_len + h.body_len {
                return Err(FetchError::ShortRead);
            }
            Ok(())
        }
        Format::Text => {
            for line in buf.split(|&b| b == b'\n') {
                let l = line.strip_suffix(b"\r").unwrap_or(line);
                if l.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                on_line(l);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> Result<TargetConfig, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn defaults_and_inference() {
        let c = cfg(serde_json::json!({"hostname": "cp1", "address": "http://10.0.0.5:5071/RPC"}))
            .unwrap();
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.bucket, "kamailio");
        assert_eq!(c.transport(), Transport::Jsonrpc);
        assert!(c.validate().is_empty());
        assert_eq!(c.histograms.len(), 5);
        for (a, t) in [
            ("unix:/run/kamailio/kamailio_ctl", Transport::Binrpc),
            ("tcp:127.0.0.1:2046", Transport::Binrpc),
            ("udp:[::1]:2046", Transport::Binrpc),
            ("/var/tmp/kamctl-stats.json", Transport::File),
        ] {
            assert_eq!(Transport::infer(a), t, "{a}");
        }
        let c = cfg(serde_json::json!({"name": "cp2", "address": "tcp:cp2:2046",
            "interval": "500ms", "timeout": "200ms", "gauges": ["htable:*"]}))
        .unwrap();
        assert_eq!(c.hostname, "cp2");
        assert_eq!(c.interval, Duration::from_millis(500));
        assert!(c.validate().is_empty());
        assert!(cfg(serde_json::json!({"hostname": "x", "adress": "y"})).is_err());
    }

    #[test]
    fn validate_names_keys() {
        let c = cfg(
            serde_json::json!({"address": "tcp:nohost", "transport": "binrpc",
            "interval": "10s", "timeout": "20s", "counters": ["nocolon"], "histograms": ["core:*"],
            "max_stats": 0, "bucket": ""}),
        )
        .unwrap();
        let keys: Vec<String> = c.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "hostname",
                "address",
                "timeout",
                "bucket",
                "counters",
                "histograms",
                "max_stats"
            ]
        );
        let c = cfg(serde_json::json!({"hostname": "a", "address": "/x", "transport": "jsonrpc"}))
            .unwrap();
        assert_eq!(c.validate()[0].0, "address");
    }

    #[test]
    fn kamailio_validate_targets_names_every_problem_and_duplicates() {
        let t = |h: &str, a: &str| TargetConfig {
            hostname: h.into(),
            address: a.into(),
            ..TargetConfig::default()
        };
        let bad = validate_targets(&[
            t("cp1", "tcp:127.0.0.1"),
            t("cp2", "htp://127.0.0.1:6171/RPC"),
            t("cp1", "tcp:127.0.0.1:99999"),
            t("cp3", "http://127.0.0.1:6171/RPC"),
        ]);
        let keys: Vec<&str> = bad.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "kamailio[0].address",
                "kamailio[1].address",
                "kamailio[2].address",
                "kamailio[2].hostname"
            ]
        );
        assert_eq!(
            bad[3].1,
            "\"cp1\" is also the hostname of kamailio[0]: their series would collide"
        );
    }

    #[test]
    fn default_hostnames() {
        assert_eq!(default_hostname("http://cp1:5071/RPC"), "cp1");
        assert_eq!(default_hostname("tcp:127.0.0.1:2046"), "127.0.0.1");
        assert_eq!(
            default_hostname("fixtures/kamailio/kamctl-stats.json"),
            "kamctl-stats"
        );
    }
}

//! The bench's settings: what to send ([`BenchMethod`], [`BenchTransport`]), the load
//! ([`Load`], [`Step`], [`parse_ramp`]), [`BenchConfig`] and its validation.

use crate::transaction::key::Method;
use serde::Serialize;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// What each transaction sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchMethod {
    /// OPTIONS, expecting 200.
    Options,
    /// INVITE expecting 503 (a CP out of service), then the ACK.
    Invite503,
}

impl BenchMethod {
    pub fn method(self) -> Method {
        match self {
            BenchMethod::Options => Method::Options,
            BenchMethod::Invite503 => Method::Invite,
        }
    }

    /// The status that counts as success by default.
    pub fn expected_status(self) -> u16 {
        match self {
            BenchMethod::Options => 200,
            BenchMethod::Invite503 => 503,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchTransport {
    Udp,
    Tcp,
}

/// One step of an open-loop run: `rate` requests per second for `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Step {
    pub rate: f64,
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Open loop (fixed rate, or a ramp of steps) or closed loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    Open(Vec<Step>),
    Closed {
        max_outstanding: usize,
        duration: Duration,
    },
}

/// Parses `FROM:TO:STEP:STEP_DURATION`, e.g. `1000:20000:1000:10s`.
pub fn parse_ramp(s: &str) -> Result<Vec<Step>, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [from, to, step, dur] = parts[..] else {
        return Err(format!("ramp {s:?}: expected FROM:TO:STEP:STEP_DURATION"));
    };
    let num = |v: &str, what: &str| {
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| format!("ramp {s:?}: {what} {v:?} is not a positive number"))
    };
    let (from, to, step) = (num(from, "FROM")?, num(to, "TO")?, num(step, "STEP")?);
    let duration = humantime::parse_duration(dur)
        .map_err(|e| format!("ramp {s:?}: STEP_DURATION {dur:?}: {e}"))?;
    if duration.is_zero() || to < from {
        return Err(format!(
            "ramp {s:?}: needs TO >= FROM and a non-zero step duration"
        ));
    }
    let mut v = Vec::new();
    let mut r = from;
    while r <= to * (1.0 + 1e-9) && v.len() < 10_000 {
        v.push(Step { rate: r, duration });
        r += step;
    }
    Ok(v)
}

/// Every setting of one run: one field per `srewatch bench` option (hence more than a dozen).
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Request-URI, e.g. `sip:127.0.0.1:5060`.
    pub uri: String,
    pub target: SocketAddr,
    pub transport: BenchTransport,
    pub method: BenchMethod,
    pub load: Load,
    /// Sockets (one worker thread each).
    pub sockets: usize,
    /// Retransmit per Timer E / A over UDP.
    pub retransmit: bool,
    /// A transaction without a final response this long after its first send times out.
    pub timeout: Duration,
    pub t1: Duration,
    pub t2: Duration,
    /// A ramp step holds while failures are at most this fraction of its requests...
    pub max_failure_ratio: f64,
    /// ... and its p99 latency is below this.
    pub p99_bound: Duration,
    /// Status that is not a failure.
    pub expected_status: u16,
    /// Shortest sleep of an idle worker: requests due sooner wait for it and leave together.
    /// Latency runs from the send, but from no later than this after the scheduled time: a
    /// send that lags more counts the excess (no coordinated omission). A worker
    /// never spins: on a small machine a spinning load generator steals the CPU of the server
    /// under test, and every wake-up costs CPU too.
    pub send_window: Duration,
    /// Cap on outstanding transactions (all sockets); a request that would exceed it is not sent
    /// and counted as a send error (`outstanding_limit`).
    pub outstanding_limit: usize,
    /// After `stop` is set: how long transactions in flight may still end; those left then
    /// count as abandoned (so that an interrupted run exits at once, not after Timer F).
    pub stop_grace: Duration,
    /// Local address (and port) every socket sends from; none = the route's address. A fixed
    /// port needs `sockets` 1 (one socket can be bound to it).
    pub source: Option<crate::transport::Source>,
}

impl BenchConfig {
    pub fn new(uri: &str, target: SocketAddr, method: BenchMethod, load: Load) -> Self {
        BenchConfig {
            uri: uri.to_string(),
            target,
            transport: BenchTransport::Udp,
            method,
            load,
            sockets: 1,
            retransmit: true,
            timeout: crate::consts::TIMER_F,
            t1: crate::consts::T1,
            t2: crate::consts::T2,
            max_failure_ratio: 0.001,
            p99_bound: Duration::from_millis(100),
            expected_status: method.expected_status(),
            outstanding_limit: 1_000_000,
            send_window: Duration::from_millis(1),
            stop_grace: Duration::from_millis(250),
            source: None,
        }
    }
}

/// Invalid configuration.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid bench configuration: {0}")]
    Config(String),
    #[error("cannot open a socket to {target}: {source}")]
    Socket {
        target: SocketAddr,
        source: io::Error,
    },
    #[error("bench worker thread failed: {0}")]
    Worker(String),
}

pub(super) fn validate(cfg: &BenchConfig) -> Result<(), BenchError> {
    let bad = |m: String| Err(BenchError::Config(m));
    if cfg.sockets == 0 || cfg.sockets > 256 {
        return bad(format!("sockets must be 1..=256, got {}", cfg.sockets));
    }
    if cfg.send_window > Duration::from_millis(10) {
        return bad(format!("send window {:?} is over 10ms", cfg.send_window));
    }
    if cfg.method == BenchMethod::Invite503 && (200..300).contains(&cfg.expected_status) {
        return bad(format!(
            "expected status {} for INVITE: an accepted call is always a failure (ACKed, hung up \
             and counted as accepted)",
            cfg.expected_status
        ));
    }
    if cfg.timeout.is_zero() {
        return bad("timeout must be above zero".into());
    }
    if let Some(s) = cfg.source {
        if s.0.port() != 0 && cfg.sockets > 1 {
            return bad(format!(
                "source {s} has a fixed port: it can be bound by one socket, not {}",
                cfg.sockets
            ));
        }
        if s.0.is_ipv4() != cfg.target.is_ipv4() {
            return bad(format!(
                "source {s} is not of the address family of the target {}",
                cfg.target
            ));
        }
    }
    match &cfg.load {
        Load::Open(steps) => {
            if steps.is_empty() {
                return bad("no rate given".into());
            }
            for s in steps {
                if !(s.rate > 0.0 && s.rate.is_finite()) || s.duration.is_zero() {
                    return bad(format!(
                        "rate {} for {:?}: needs a positive rate and duration",
                        s.rate, s.duration
                    ));
                }
            }
        }
        Load::Closed {
            max_outstanding,
            duration,
        } => {
            if *max_outstanding == 0 || duration.is_zero() {
                return bad("max-outstanding and duration must be above zero".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_source_port_needs_one_socket() {
        let mut cfg = BenchConfig::new(
            "sip:127.0.0.1",
            "127.0.0.1:5060".parse().unwrap(),
            BenchMethod::Options,
            Load::Open(vec![Step {
                rate: 10.0,
                duration: Duration::from_secs(1),
            }]),
        );
        cfg.source = Some("127.0.0.2:5070".parse().unwrap());
        assert!(validate(&cfg).is_ok());
        cfg.sockets = 2;
        assert_eq!(
            validate(&cfg).unwrap_err().to_string(),
            "invalid bench configuration: source 127.0.0.2:5070 has a fixed port: it can be \
             bound by one socket, not 2"
        );
        cfg.source = Some("127.0.0.2".parse().unwrap());
        assert!(validate(&cfg).is_ok());
        cfg.source = Some("::1".parse().unwrap());
        assert_eq!(
            validate(&cfg).unwrap_err().to_string(),
            "invalid bench configuration: source ::1 is not of the address family of the \
             target 127.0.0.1:5060"
        );
    }

    #[test]
    fn ramp_parses() {
        let v = parse_ramp("1000:3000:1000:2s").unwrap();
        assert_eq!(
            v.iter().map(|s| s.rate).collect::<Vec<_>>(),
            [1000.0, 2000.0, 3000.0]
        );
        assert!(v.iter().all(|s| s.duration == Duration::from_secs(2)));
        assert!(parse_ramp("1000:3000:1000").is_err());
        assert!(parse_ramp("3000:1000:1000:1s").is_err());
        assert!(parse_ramp("1000:3000:0:1s").is_err());
        assert!(parse_ramp("1000:3000:x:1s").is_err());
        assert!(parse_ramp("1000:3000:100:0s").is_err());
    }
}

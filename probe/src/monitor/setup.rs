//! Starting one target: resolve its host and open its socket, retried with backoff until both
//! work or the target is stopped; then its [`Prober`](super::prober::Prober) runs.
//!
//! A target that cannot start is a state of that target, never an error of the monitor: the
//! tracker raises one alarm (`unresolved` or `socket_failed`, with the reason) and clears it
//! when the target starts; [`Setups`] counts every failed attempt for the caller's metrics.
//! Attempts are [`RETRY_FIRST`] apart, doubling up to [`RETRY_MAX`]
//! ([`MonitorHandle::retry_now`], called on every reconcile, makes the next one at once); a
//! lookup that takes longer than [`RESOLVE_TIMEOUT`] counts as failed.

use super::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Wait before the second attempt; each later wait doubles.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// Longest wait for one DNS answer.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a target could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// Its host name did not resolve (or not in time).
    Resolve,
    /// The socket towards its address could not be opened (no route, no descriptor).
    Socket,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Resolve => "resolve",
            Failure::Socket => "socket",
        }
    }

    /// The alarm this failure raises.
    pub fn alarm(self) -> AlarmKind {
        match self {
            Failure::Resolve => AlarmKind::Unresolved,
            Failure::Socket => AlarmKind::SocketFailed,
        }
    }
}

/// One target's start, as last seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Setup {
    /// The address probed, once the target started.
    pub addr: Option<SocketAddr>,
    /// Why it has not started yet (the last attempt's failure), none once it started.
    pub failing: Option<(Failure, String)>,
    /// Failed lookups since the target was added.
    pub resolve_failures: u64,
    /// Failed socket opens since the target was added.
    pub socket_failures: u64,
}

/// Every target's [`Setup`], shared by the start tasks and the caller.
#[derive(Debug, Default)]
pub struct Setups(Mutex<BTreeMap<String, Setup>>);

impl Setups {
    /// Each target's setup, by name.
    pub fn snapshot(&self) -> BTreeMap<String, Setup> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Targets that have not started (yet).
    pub fn failing(&self) -> usize {
        self.0
            .lock()
            .map(|m| m.values().filter(|s| s.failing.is_some()).count())
            .unwrap_or(0)
    }

    pub(crate) fn forget(&self, name: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(name);
        }
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut Setup)) {
        if let Ok(mut m) = self.0.lock() {
            f(m.entry(name.to_string()).or_default());
        }
    }
}

/// Resolves, opens and runs one target until `stop` is cancelled; `retry` cuts a wait between
/// two attempts short (a reload).
pub(crate) async fn start(
    cfg: TargetConfig,
    uri: TargetUri,
    rule: FingerprintRule,
    out: mpsc::Sender<FromProber>,
    stop: CancellationToken,
    setups: Arc<Setups>,
    retry: Arc<tokio::sync::Notify>,
) {
    let name: Arc<str> = Arc::from(cfg.name.as_str());
    let mut wait = RETRY_FIRST;
    let mut failed = false;
    let prober = loop {
        let (failure, reason) = match tokio::time::timeout(RESOLVE_TIMEOUT, resolve(&uri)).await {
            Err(_) => (
                Failure::Resolve,
                format!(
                    "cannot resolve {}: no answer within {}s",
                    uri.host,
                    RESOLVE_TIMEOUT.as_secs()
                ),
            ),
            Ok(Err(e)) => (
                Failure::Resolve,
                format!("cannot resolve {}: {e}", uri.host),
            ),
            Ok(Ok(addr)) => {
                match prober::Prober::open(
                    cfg.clone(),
                    uri.clone(),
                    addr,
                    rule.clone(),
                    out.clone(),
                )
                .await
                {
                    Ok(p) => {
                        setups.update(&name, |s| {
                            s.addr = Some(addr);
                            s.failing = None;
                        });
                        if failed {
                            let _ = out.send(FromProber::Started(name.clone())).await;
                        }
                        break p;
                    }
                    Err(e) => (
                        Failure::Socket,
                        format!("cannot open a socket to {addr}: {e}"),
                    ),
                }
            }
        };
        setups.update(&name, |s| {
            match failure {
                Failure::Resolve => s.resolve_failures += 1,
                Failure::Socket => s.socket_failures += 1,
            }
            s.failing = Some((failure, reason.clone()));
        });
        let _ = out
            .send(FromProber::SetupFailed {
                target: name.clone(),
                failure,
                reason,
            })
            .await;
        failed = true;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = retry.notified() => {}
            _ = stop.cancelled() => return,
        }
        wait = (wait * 2).min(RETRY_MAX);
    };
    prober.run(stop).await
}

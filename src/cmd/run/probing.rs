//! The probing part: the probe monitor and the task that turns its outputs into points.

use crate::config::Config;
use crate::report;
use anyhow::Context;
use ingest::{LineEncoder, SinkHandle};
use probe::monitor::{self, MonitorHandle, Output, ProbeConfig};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Probe results counted by the reporter task.
#[derive(Default)]
pub(super) struct ProbeCounts {
    pub(super) sent: AtomicU64,
    pub(super) answered: AtomicU64,
}

/// The running probe part.
pub(super) struct Probing {
    pub(super) handle: MonitorHandle,
    pub(super) reporter: JoinHandle<()>,
    pub(super) counts: Arc<ProbeCounts>,
}

/// Starts probing this node's targets (none when `service.probe = false`).
pub(super) async fn start(
    cfg: &Config,
    sink: &SinkHandle,
    probe_metrics: &Arc<crate::metrics::Probes>,
) -> anyhow::Result<Option<Probing>> {
    Ok(if cfg.service.probe {
        let own = cfg.own_probe_targets();
        let pcfg = ProbeConfig {
            fingerprint: cfg.probe.fingerprint.clone(),
            shard: cfg.probe.shard.clone(),
            source: cfg.probe.source.clone(),
            target: own,
        };
        // Only a bad URI or a duplicate name (refused by the check already) can fail here; a
        // target that does not resolve is that target's alarm, retried by the monitor.
        let (rx, handle) = monitor::spawn(&pcfg)
            .await
            .context("cannot start probing")?;
        let counts = Arc::new(ProbeCounts::default());
        let reporter = tokio::spawn(report_probes(
            rx,
            sink.clone(),
            counts.clone(),
            probe_metrics.clone(),
        ));
        tracing::info!(
            targets = pcfg.target.len(),
            configured = cfg.probe.target.len(),
            shard = %cfg.shard(),
            "Probing started"
        );
        Some(Probing {
            handle,
            reporter,
            counts,
        })
    } else {
        tracing::info!("Probing turned off (service.probe = false)");
        None
    })
}

/// Turns probe outputs into points (bucket `probe`), once a second, and counts probes.
async fn report_probes(
    mut rx: mpsc::Receiver<Output>,
    sink: SinkHandle,
    counts: Arc<ProbeCounts>,
    metrics: Arc<crate::metrics::Probes>,
) {
    let mut enc = LineEncoder::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            o = rx.recv() => match o {
                Some(o) => {
                    if let Output::Result(r) = &o {
                        // A BYE is the hang-up of an INVITE check, not a probe of its own.
                        if !r.late && r.method != probe::transaction::Method::Bye {
                            counts.sent.fetch_add(1, Relaxed);
                            if r.status.is_some() {
                                counts.answered.fetch_add(1, Relaxed);
                            }
                        }
                    }
                    metrics.observe(&o);
                    report::encode(&o, &mut enc);
                }
                None => break,
            },
            _ = tick.tick() => {
                let n = enc.lines();
                if sink.write(report::BUCKET, enc.take(), n).await.is_err() {
                    return;
                }
            }
        }
    }
    let n = enc.lines();
    let _ = sink.write(report::BUCKET, enc.take(), n).await;
}

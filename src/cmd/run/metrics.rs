//! `/metrics` for Prometheus, when `[service] metrics_listen` is set.

use super::probing::Probing;
use crate::config::Config;
use ingest::files::FilesStats;
use ingest::kamailio::poll::PollerSet;
use ingest::sink::influx::InfluxStats;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The parts whose counters `/metrics` shows.
pub(super) struct Parts<'a> {
    pub files: &'a Arc<Mutex<FilesStats>>,
    pub influx: &'a Option<Arc<InfluxStats>>,
    pub pollers: &'a Option<PollerSet>,
    pub probing: &'a Option<Probing>,
    pub probes: &'a Arc<crate::metrics::Probes>,
}

/// Serves `/metrics` until `stop` (none when `metrics_listen` is not set).
pub(super) fn start(
    cfg: &Config,
    parts: Parts<'_>,
    stop: &CancellationToken,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Parts {
        files,
        influx,
        pollers,
        probing,
        probes,
    } = parts;
    Ok(match svc_metrics(cfg, files, influx, pollers, probes) {
        Some((addr, m)) => {
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register_collector(Box::new(m));
            if let Some(p) = probing {
                registry.register_collector(Box::new(crate::metrics_server::ProbeSetups(
                    p.handle.setups(),
                )));
            }
            Some(crate::metrics_server::serve(
                addr,
                registry,
                stop.clone().cancelled_owned(),
            )?)
        }
        None => None,
    })
}

/// What `/metrics` shows, when `[service] metrics_listen` is set.
fn svc_metrics(
    cfg: &Config,
    files: &Arc<Mutex<FilesStats>>,
    influx: &Option<Arc<InfluxStats>>,
    pollers: &Option<PollerSet>,
    probes: &Arc<crate::metrics::Probes>,
) -> Option<(std::net::SocketAddr, crate::metrics::Metrics)> {
    let addr = cfg.service.metrics_listen?;
    Some((
        addr,
        crate::metrics::Metrics {
            started: Instant::now(),
            files: cfg.service.ingest.then(|| {
                (
                    files.clone(),
                    [
                        cfg.ingest.counters_file.clone(),
                        cfg.ingest.samples_file.clone(),
                    ],
                )
            }),
            influx: influx.clone(),
            spool_max_bytes: cfg.influxdb.as_ref().map(|i| i.spool_max_bytes),
            polls: pollers.as_ref().map(|p| p.stats()),
            probes: cfg.service.probe.then(|| probes.clone()),
        },
    ))
}

//! SIGHUP: the configuration file read again; target changes applied, a bad file refused.

use super::setup::apply_credentials;
use super::Service;
use crate::config::{self, Config};
use std::path::PathBuf;

impl Service {
    /// SIGHUP: read the file again; apply target changes, refuse a bad file.
    pub(super) async fn reload(&mut self) {
        let _ = self.notifier.reloading();
        let shown = self
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| config::DEFAULT_PATH.into());
        tracing::info!(config = %shown, "Reloading configuration");
        let path = self
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
        match config::load(Some(&path)) {
            Err(invalid) => {
                self.reloads_refused += 1;
                for p in &invalid.0 {
                    tracing::error!(problem = %p, "Configuration refused; keeping the running one");
                }
            }
            Ok((mut new, _)) => {
                apply_credentials(&mut new);
                self.reloads += 1;
                self.apply(new).await;
            }
        }
        let _ = self.notifier.ready(&self.status_line());
    }

    async fn apply(&mut self, new: Config) {
        let old = &self.cfg;
        let mut restart = Vec::new();
        if format!("{:?}", old.ingest) != format!("{:?}", new.ingest) {
            restart.push("ingest");
        }
        if old.influxdb != new.influxdb {
            restart.push("influxdb");
        }
        if old.service != new.service {
            restart.push("service");
        }
        if old.global_tags != new.global_tags {
            restart.push("global_tags");
        }
        if old.probe.fingerprint != new.probe.fingerprint {
            restart.push("probe.fingerprint");
        }
        for section in &restart {
            tracing::warn!(
                section,
                "Configuration change needs a restart; the running value is kept"
            );
        }
        if let Some(k) = self.pollers.as_mut() {
            let (removed, added) = k.reconcile(&new.kamailio).await;
            for h in removed {
                tracing::info!(hostname = %h, "Kamailio target removed");
            }
            for h in added {
                tracing::info!(hostname = %h, "Kamailio target added");
            }
        }
        if let Some(p) = self.probing.as_mut() {
            let own = new.own_probe_targets();
            let r = p.handle.reconcile(&own).await;
            for n in r.removed {
                tracing::info!(target_name = %n, "Probe target removed");
            }
            for n in r.added {
                tracing::info!(target_name = %n, "Probe target added");
            }
            for e in r.failed {
                tracing::error!(error = %e, kind = e.as_str(), "Cannot start probe target");
            }
            let names: Vec<String> = p.handle.targets().map(|t| t.name.to_string()).collect();
            self.probe_metrics
                .retain(&names.iter().map(String::as_str).collect::<Vec<_>>());
        }
        // Keep the running values of the sections that need a restart.
        let mut merged = self.cfg.clone();
        merged.kamailio = new.kamailio;
        merged.probe.target = new.probe.target;
        merged.probe.shard = new.probe.shard;
        self.cfg = merged;
        tracing::info!(
            kamailio_targets = self.cfg.kamailio.len(),
            probe_targets = self
                .probing
                .as_ref()
                .map(|p| p.handle.targets().count())
                .unwrap_or(0),
            "Configuration reloaded"
        );
    }
}

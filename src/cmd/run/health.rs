//! srewatch's own health: the `STATUS=` line and the health points of every
//! `service.health_interval` (schema in docs/service.md).

use super::Service;
use ingest::files::FilesStats;
use ingest::Field;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// How long a health report may wait for room in the sink.
const HEALTH_WRITE_WAIT: Duration = Duration::from_millis(500);

fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Service {
    /// One line for `STATUS=` (and `systemctl status`).
    pub(super) fn status_line(&self) -> String {
        let mut parts = Vec::new();
        if self.cfg.service.ingest {
            let f = self.files_stats();
            let bad: u64 = f.bad.iter().flatten().sum();
            parts.push(format!(
                "files: {} rows, {bad} rejected",
                f.rows[0] + f.rows[1]
            ));
            let names = [
                &self.cfg.ingest.counters_file,
                &self.cfg.ingest.samples_file,
            ];
            for (name, p) in names.iter().zip(f.problem) {
                if let Some(p) = p {
                    parts.push(format!("{name} unreadable: {p}"));
                }
            }
        }
        if let Some(p) = &self.probing {
            let mut line = format!(
                "probes: {}/{} answered, {} targets",
                p.counts.answered.load(Relaxed),
                p.counts.sent.load(Relaxed),
                p.handle.targets().count()
            );
            let failing = p.handle.setups().failing();
            if failing > 0 {
                line.push_str(&format!(
                    " ({failing} not started: unresolved or no socket)"
                ));
            }
            parts.push(line);
        }
        if let Some(k) = &self.pollers {
            let s = self.poll_stats.snapshot();
            parts.push(format!(
                "kamailio: {} targets, {} polls failed",
                k.targets().count(),
                s.polls_failed
            ));
        }
        if let Some(i) = &self.influx {
            let s = i.snapshot();
            parts.push(format!(
                "influxdb: {} points written, spool {} points, {} dropped",
                s.points_written,
                s.spool_points,
                s.points_spool_dropped + s.points_rejected
            ));
            let refused: Vec<String> = s
                .buckets
                .iter()
                .filter_map(|(b, v)| Some(format!("{b} ({})", v.refused?)))
                .collect();
            if !refused.is_empty() {
                parts.push(format!("influxdb refuses buckets: {}", refused.join(", ")));
            }
        }
        parts.join("; ")
    }

    fn files_stats(&self) -> FilesStats {
        self.files_live
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// srewatch's own health points (see docs/service.md for the schema).
    pub(super) async fn write_health(&mut self) {
        let ts = unix_secs();
        let host = self.host.as_str();
        let enc = &mut self.enc;
        enc.push(
            "srewatch_service",
            &[("host", host)],
            &[
                (
                    "uptime_s",
                    Field::Int(self.started.elapsed().as_secs() as i64),
                ),
                ("reloads", Field::Int(self.reloads as i64)),
                ("reloads_refused", Field::Int(self.reloads_refused as i64)),
                ("health_skipped", Field::Int(self.health_skipped as i64)),
            ],
            ts,
        );
        if self.cfg.service.ingest {
            let f = self
                .files_live
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default();
            let names = [
                &self.cfg.ingest.counters_file,
                &self.cfg.ingest.samples_file,
            ];
            for (i, name) in names.iter().enumerate() {
                enc.push(
                    "srewatch_file",
                    &[("host", host), ("file", name.as_str())],
                    &[
                        ("snapshots", Field::Int(f.snapshots[i] as i64)),
                        ("rows", Field::Int(f.rows[i] as i64)),
                        ("rejected", Field::Int(f.bad[i].iter().sum::<u64>() as i64)),
                        ("points", Field::Int(f.points[i] as i64)),
                        ("problems", Field::Int(f.problems[i] as i64)),
                        (
                            "problem",
                            Field::Str(f.problem[i].map_or("", |p| p.cause())),
                        ),
                    ],
                    ts,
                );
            }
        }
        if let Some(p) = &self.probing {
            enc.push(
                "srewatch_probe",
                &[("host", host)],
                &[
                    ("targets", Field::Int(p.handle.targets().count() as i64)),
                    (
                        "targets_not_started",
                        Field::Int(p.handle.setups().failing() as i64),
                    ),
                    ("sent", Field::Int(p.counts.sent.load(Relaxed) as i64)),
                    (
                        "answered",
                        Field::Int(p.counts.answered.load(Relaxed) as i64),
                    ),
                ],
                ts,
            );
        }
        if let Some(k) = &self.pollers {
            let s = self.poll_stats.snapshot();
            enc.push(
                "srewatch_kamailio",
                &[("host", host)],
                &[
                    ("targets", Field::Int(k.targets().count() as i64)),
                    ("polls_ok", Field::Int(s.polls_ok as i64)),
                    ("polls_failed", Field::Int(s.polls_failed as i64)),
                    ("polls_skipped", Field::Int(s.polls_skipped as i64)),
                ],
                ts,
            );
        }
        if let Some(i) = &self.influx {
            let s = i.snapshot();
            enc.push(
                "srewatch_sink",
                &[("host", host)],
                &[
                    ("points_written", Field::Int(s.points_written as i64)),
                    ("points_rejected", Field::Int(s.points_rejected as i64)),
                    ("points_dropped", Field::Int(s.points_spool_dropped as i64)),
                    ("requests", Field::Int(s.requests as i64)),
                    ("request_failures", Field::Int(s.request_failures as i64)),
                    ("refused", Field::Int(s.refused as i64)),
                    ("spool_batches", Field::Int(s.spool_batches as i64)),
                    ("spool_points", Field::Int(s.spool_points as i64)),
                    ("spool_bytes", Field::Int(s.spool_bytes as i64)),
                    ("memory_points", Field::Int(s.memory_points as i64)),
                    (
                        "buckets_refused",
                        Field::Int(
                            s.buckets.values().filter(|v| v.refused.is_some()).count() as i64
                        ),
                    ),
                    (
                        "write_latency_p50_ms",
                        Field::Float(ms(s.write_latency.p50_us)),
                    ),
                    (
                        "write_latency_p99_ms",
                        Field::Float(ms(s.write_latency.p99_us)),
                    ),
                    (
                        "write_latency_max_ms",
                        Field::Float(ms(s.write_latency.max_us)),
                    ),
                ],
                ts,
            );
        }
        let n = enc.lines();
        let lines = enc.take();
        // The main loop also sends the watchdog pings: never wait long on a sink that is
        // pushing back (server down and spool unusable).
        let write = self.sink.write(&self.cfg.service.health_bucket, lines, n);
        match tokio::time::timeout(HEALTH_WRITE_WAIT, write).await {
            Err(_) => {
                self.health_skipped += 1;
                if !self.health_skipping {
                    tracing::warn!("Sink busy; health report skipped (until it catches up, skips are counted, not logged)");
                    self.health_skipping = true;
                }
            }
            Ok(_) => {
                if self.health_skipping {
                    tracing::info!(skipped = self.health_skipped, "Health reports resumed");
                    self.health_skipping = false;
                }
            }
        }
    }
}

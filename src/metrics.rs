//! `/metrics`: srewatch's own health, each probe target's state, RTT and loss, and each
//! Kamailio target's `up`, in the Prometheus text exposition format (0.0.4), on the optional
//! `[service] metrics_listen` address.
//!
//! The figures already live in the service (file stats, sink stats, poll stats); the
//! [`Collector`] reads them at each scrape (nothing is counted twice, nothing per row or per
//! packet). Probe outputs are folded into a small per-target table by the probe reporter.
//! Label values come from the code's own `as_str()` lists (every CSV rejection reason, every
//! service state), so a new reason appears without a change here. The exposition format is
//! `prometheus-client`'s; the HTTP server is hyper's (already in the tree through reqwest).

use ingest::csvrow::Reason;
use ingest::files::FilesStats;
use ingest::kamailio::poll::PollStats;
use ingest::sink::influx::InfluxStats;
use probe::monitor::{EventKind, Output};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the probe reporter knows of one target.
#[derive(Debug, Default, Clone)]
struct TargetView {
    role: &'static str,
    /// The tracker's state (from its state events), else the last OPTIONS result's.
    state: Option<&'static str>,
    /// Whether `state` came from the tracker (then results no longer set it).
    tracked: bool,
    rtt_s: Option<f64>,
    status: Option<u16>,
    probes: u64,
    answered: u64,
    /// The last complete minute: probes and probes lost.
    minute: Option<(u64, u64)>,
}

/// Probe figures by target, fed from the monitor's outputs.
#[derive(Debug, Default)]
pub struct Probes {
    targets: Mutex<BTreeMap<String, TargetView>>,
}

impl Probes {
    pub fn observe(&self, o: &Output) {
        let Ok(mut t) = self.targets.lock() else {
            return;
        };
        match o {
            Output::Result(r) => {
                if r.late || r.method != probe::transaction::Method::Options {
                    return;
                }
                let v = t.entry(r.target.to_string()).or_default();
                v.role = r.role.as_str();
                v.probes += 1;
                if r.status.is_some() {
                    v.answered += 1;
                    v.status = r.status;
                }
                if let Some(rtt) = r.rtt {
                    v.rtt_s = Some(rtt.as_secs_f64());
                }
                if !v.tracked {
                    v.state = Some(r.state.as_str());
                }
            }
            Output::Event(e) => {
                if let EventKind::State { to, .. } = &e.kind {
                    let v = t.entry(e.target.to_string()).or_default();
                    v.role = e.role.as_str();
                    v.state = Some(to.as_str());
                    v.tracked = true;
                }
            }
            Output::Summary(s) => {
                let v = t.entry(s.target.to_string()).or_default();
                v.role = s.role.as_str();
                v.minute = Some((s.count, s.lost));
            }
            Output::Alarm(_) => {}
        }
    }

    /// Forgets targets no longer probed (after a reload).
    pub fn retain(&self, keep: &[&str]) {
        if let Ok(mut t) = self.targets.lock() {
            t.retain(|k, _| keep.contains(&k.as_str()));
        }
    }
}

/// Everything `/metrics` shows; each source is optional (a part turned off shows nothing).
#[derive(Debug)]
pub struct Metrics {
    pub started: Instant,
    /// Live file stats and the two file names (counters, samples).
    pub files: Option<(Arc<Mutex<FilesStats>>, [String; 2])>,
    pub influx: Option<Arc<InfluxStats>>,
    pub polls: Option<Arc<PollStats>>,
    pub probes: Option<Arc<Probes>>,
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: its name, help, type and samples.
fn family<V>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, V)>,
    make: impl Fn(V) -> Box<dyn EncodeMetric>,
    kind: MetricType,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        make(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    family(
        enc,
        name,
        help,
        samples,
        |v| Box::new(ConstCounter::new(v)),
        MetricType::Counter,
    )
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    family(
        enc,
        name,
        help,
        samples,
        |v| Box::new(ConstGauge::new(v)),
        MetricType::Gauge,
    )
}

impl Collector for Metrics {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut e;
        gauge(
            e,
            "srewatch_uptime_seconds",
            "Seconds since srewatch started.",
            [(vec![], self.started.elapsed().as_secs_f64())],
        )?;
        if let Some((live, names)) = &self.files {
            let f = live.lock().map(|s| s.clone()).unwrap_or_default();
            let file = |i: usize| -> Labels { vec![("file", names[i].clone())] };
            counter(
                e,
                "srewatch_file_snapshots",
                "Snapshots (rewrites) of each CSV file read.",
                (0..2).map(|i| (file(i), f.snapshots[i])),
            )?;
            counter(
                e,
                "srewatch_file_rows",
                "CSV rows read, per file.",
                (0..2).map(|i| (file(i), f.rows[i])),
            )?;
            counter(
                e,
                "srewatch_file_rows_rejected",
                "CSV rows rejected, per file and reason.",
                (0..2).flat_map(|i| {
                    let names = names.clone();
                    Reason::ALL.into_iter().map(move |r| {
                        (
                            vec![
                                ("file", names[i].clone()),
                                ("reason", r.as_str().to_string()),
                            ],
                            f.bad[i][r.index()],
                        )
                    })
                }),
            )?;
            counter(
                e,
                "srewatch_file_problems",
                "Times a CSV file could not be read, per file (counted when a problem starts or its cause changes).",
                (0..2).map(|i| (file(i), f.problems[i])),
            )?;
            gauge(
                e,
                "srewatch_file_problem",
                "1 while a CSV file exists but cannot be read, by cause (permission_denied, not_a_regular_file, too_many_open_files, too_large, io_error).",
                (0..2).flat_map(|i| {
                    let names = names.clone();
                    let now = f.problem[i].map(|p| p.cause());
                    ingest::follow::FileProblem::CAUSES.into_iter().map(move |c| {
                        (
                            vec![("file", names[i].clone()), ("cause", c.to_string())],
                            if now == Some(c) { 1.0 } else { 0.0 },
                        )
                    })
                }),
            )?;
            counter(
                e,
                "srewatch_ingest_points",
                "Points made from the CSV files, per bucket kind.",
                ["counters", "samples", "rollups"]
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| (vec![("kind", b.to_string())], f.points[i])),
            )?;
        }
        if let Some(i) = &self.influx {
            let s = i.snapshot();
            let one = |v: u64| [(Labels::new(), v)];
            counter(
                e,
                "srewatch_sink_points_written",
                "Points InfluxDB accepted.",
                one(s.points_written),
            )?;
            counter(
                e,
                "srewatch_sink_points_rejected",
                "Points InfluxDB rejected (400), dropped.",
                one(s.points_rejected),
            )?;
            counter(
                e,
                "srewatch_sink_points_dropped",
                "Points dropped because the spool was full or unusable.",
                one(s.points_spool_dropped),
            )?;
            counter(
                e,
                "srewatch_sink_requests",
                "Write requests sent to InfluxDB.",
                one(s.requests),
            )?;
            counter(
                e,
                "srewatch_sink_request_failures",
                "Write requests that failed (network, timeout, 429, 5xx).",
                one(s.request_failures),
            )?;
            counter(
                e,
                "srewatch_sink_requests_refused",
                "Write requests refused (401, 403, 404).",
                one(s.refused),
            )?;
            let g = |v: u64| [(Labels::new(), v as f64)];
            gauge(
                e,
                "srewatch_sink_spool_batches",
                "Batches waiting in the on-disk spool.",
                g(s.spool_batches),
            )?;
            gauge(
                e,
                "srewatch_sink_spool_bytes",
                "Bytes of the on-disk spool.",
                g(s.spool_bytes),
            )?;
            gauge(
                e,
                "srewatch_sink_spool_points",
                "Points waiting in the on-disk spool.",
                g(s.spool_points),
            )?;
            let l = s.write_latency;
            gauge(
                e,
                "srewatch_sink_write_latency_seconds",
                "From a batch's first point to InfluxDB accepting it, since the start (quantile 1 = max).",
                [("0.5", l.p50_us), ("0.99", l.p99_us), ("1", l.max_us)]
                    .map(|(q, us)| (vec![("quantile", q.to_string())], us as f64 / 1e6)),
            )?;
        }
        if let Some(p) = &self.probes {
            let t = p.targets.lock().map(|t| t.clone()).unwrap_or_default();
            let tl = |name: &String, v: &TargetView| -> Labels {
                vec![("target", name.clone()), ("role", v.role.to_string())]
            };
            gauge(
                e,
                "srewatch_probe_state",
                "1 for the target's current state (label state: in_service, out_of_service, unexpected, down).",
                t.iter().filter_map(|(n, v)| {
                    let mut l = tl(n, v);
                    l.push(("state", v.state?.to_string()));
                    Some((l, 1.0))
                }),
            )?;
            gauge(
                e,
                "srewatch_probe_rtt_seconds",
                "RTT of the last answered OPTIONS probe.",
                t.iter().filter_map(|(n, v)| Some((tl(n, v), v.rtt_s?))),
            )?;
            gauge(
                e,
                "srewatch_probe_status_code",
                "Status code of the last answered OPTIONS probe.",
                t.iter()
                    .filter_map(|(n, v)| Some((tl(n, v), f64::from(v.status?)))),
            )?;
            counter(
                e,
                "srewatch_probe_requests",
                "OPTIONS probes sent.",
                t.iter().map(|(n, v)| (tl(n, v), v.probes)),
            )?;
            counter(
                e,
                "srewatch_probe_answered",
                "OPTIONS probes answered with a final response.",
                t.iter().map(|(n, v)| (tl(n, v), v.answered)),
            )?;
            gauge(
                e,
                "srewatch_probe_minute_probes",
                "OPTIONS probes in the last complete minute.",
                t.iter()
                    .filter_map(|(n, v)| Some((tl(n, v), v.minute?.0 as f64))),
            )?;
            gauge(
                e,
                "srewatch_probe_minute_lost",
                "OPTIONS probes without a final response in the last complete minute.",
                t.iter()
                    .filter_map(|(n, v)| Some((tl(n, v), v.minute?.1 as f64))),
            )?;
            gauge(
                e,
                "srewatch_probe_loss_ratio",
                "Lost / sent OPTIONS probes in the last complete minute.",
                t.iter().filter_map(|(n, v)| {
                    let (c, l) = v.minute?;
                    Some((tl(n, v), if c == 0 { 0.0 } else { l as f64 / c as f64 }))
                }),
            )?;
        }
        if let Some(p) = &self.polls {
            let s = p.snapshot();
            let up = p.up.lock().map(|u| u.clone()).unwrap_or_default();
            gauge(
                e,
                "srewatch_kamailio_up",
                "1 when the last poll of the Kamailio target succeeded.",
                up.into_iter()
                    .map(|(h, u)| (vec![("hostname", h)], if u { 1.0 } else { 0.0 })),
            )?;
            counter(
                e,
                "srewatch_kamailio_polls",
                "Kamailio polls, per result.",
                [
                    ("ok", s.polls_ok),
                    ("failed", s.polls_failed),
                    ("skipped", s.polls_skipped),
                ]
                .map(|(r, n)| (vec![("result", r.to_string())], n)),
            )?;
        }
        Ok(())
    }
}

/// The page body for a registry holding `m`.
pub fn render(registry: &Registry) -> String {
    let mut s = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut s, registry);
    s
}

/// Binds `addr` (before READY=1, so a bad address stops the start) and serves `GET /metrics`
/// until `shutdown` resolves.
pub fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use hyper::service::{make_service_fn, service_fn};
    use hyper::{Body, Method, Response, StatusCode};
    let mut registry = Registry::default();
    registry.register_collector(Box::new(metrics));
    let registry = Arc::new(registry);
    let make = make_service_fn(move |_| {
        let registry = registry.clone();
        async move {
            Ok::<_, std::convert::Infallible>(service_fn(move |req: hyper::Request<Body>| {
                let registry = registry.clone();
                async move {
                    let resp = if req.uri().path() != "/metrics" {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Body::from("not found; try /metrics\n"))
                    } else if req.method() != Method::GET && req.method() != Method::HEAD {
                        Response::builder()
                            .status(StatusCode::METHOD_NOT_ALLOWED)
                            .body(Body::empty())
                    } else {
                        Response::builder()
                            .header(
                                hyper::header::CONTENT_TYPE,
                                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                            )
                            .body(Body::from(render(&registry)))
                    };
                    Ok::<_, std::convert::Infallible>(resp.expect("static response"))
                }
            }))
        }
    });
    let server = hyper::Server::try_bind(&addr)
        .map_err(|e| anyhow::anyhow!("cannot listen for /metrics on {addr}: {e}"))?
        .serve(make)
        .with_graceful_shutdown(shutdown);
    tracing::info!(address = %addr, "Serving /metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "The /metrics server failed");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe::monitor::{ProbeResult, Role, ServiceState, Summary};
    use std::time::{Duration, SystemTime};

    fn registry(m: Metrics) -> Registry {
        let mut r = Registry::default();
        r.register_collector(Box::new(m));
        r
    }

    #[test]
    fn probe_state_rtt_and_minute_loss() {
        let probes = Arc::new(Probes::default());
        let result = |state, status, rtt_ms: Option<u64>| {
            Output::Result(ProbeResult {
                target: "vip1".into(),
                role: Role::Vip,
                method: probe::transaction::Method::Options,
                at: SystemTime::now(),
                state,
                status,
                rtt: rtt_ms.map(Duration::from_millis),
                retransmits: 0,
                retry_after: None,
                error: None,
                fingerprint: None,
                owner: None,
                late: false,
                source: None,
            })
        };
        probes.observe(&result(ServiceState::InService, Some(200), Some(4)));
        probes.observe(&result(ServiceState::Down, None, None));
        probes.observe(&Output::Summary(Summary {
            target: "vip1".into(),
            role: Role::Vip,
            minute: SystemTime::now(),
            count: 300,
            lost: 3,
            retransmits: 0,
            p50: Duration::ZERO,
            p90: Duration::ZERO,
            p99: Duration::ZERO,
            max: Duration::ZERO,
            rx: Default::default(),
        }));
        let text = render(&registry(Metrics {
            started: Instant::now(),
            files: Some((
                Arc::new(Mutex::new(FilesStats::default())),
                ["counters.csv".into(), "samples.csv".into()],
            )),
            influx: None,
            polls: None,
            probes: Some(probes),
        }));
        for line in [
            "# TYPE srewatch_probe_requests_total counter",
            "srewatch_probe_requests_total{target=\"vip1\",role=\"vip\"} 2",
            "srewatch_probe_answered_total{target=\"vip1\",role=\"vip\"} 1",
            "srewatch_probe_rtt_seconds{target=\"vip1\",role=\"vip\"} 0.004",
            "srewatch_probe_state{target=\"vip1\",role=\"vip\",state=\"down\"} 1.0",
            "srewatch_probe_minute_probes{target=\"vip1\",role=\"vip\"} 300.0",
            "srewatch_probe_minute_lost{target=\"vip1\",role=\"vip\"} 3.0",
            "srewatch_probe_loss_ratio{target=\"vip1\",role=\"vip\"} 0.01",
            "# HELP srewatch_file_rows_rejected_total CSV rows rejected, per file and reason.",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} not in\n{text}");
        }
        // Every rejection reason of the CSV kernel, for both files.
        for r in Reason::ALL {
            for f in ["counters.csv", "samples.csv"] {
                let l = format!(
                    "srewatch_file_rows_rejected_total{{file=\"{f}\",reason=\"{}\"}} 0\n",
                    r.as_str()
                );
                assert!(text.contains(&l), "{l}");
            }
        }
    }
}

//! `/metrics`: srewatch's own health, each probe target's state, RTT and loss, and each
//! Kamailio target's `up`, in the Prometheus text exposition format (0.0.4), on the optional
//! `[service] metrics_listen` address.
//!
//! The figures already live in the service (file stats, sink stats, poll stats); the
//! [`Collector`] reads them at each scrape (nothing is counted twice, nothing per row or per
//! packet). Probe outputs are folded into a small per-target table by the probe reporter.
//! Label values come from the code's own `as_str()` lists (every CSV rejection reason, every
//! service state), so a new reason appears without a change here. The exposition format is
//! `prometheus-client`'s; the HTTP server is [`crate::metrics_server`].

use ingest::csvrow::Reason;
use ingest::files::FilesStats;
use ingest::kamailio::poll::PollStats;
use ingest::sink::influx::InfluxStats;
use probe::monitor::{AlarmKind, EventKind, Output, Role, ServiceState};
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

/// Upper bounds (seconds) of the probe RTT histogram: SIP answers on a LAN take well under a
/// millisecond; a busy or distant CP some milliseconds; the probe timeout ends it.
const RTT_BOUNDS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upper bounds (seconds) of the write-latency histogram: from a batch's first point (held up to
/// `batch_max_delay`) to InfluxDB accepting it.
const WRITE_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A Prometheus histogram's buckets: counts per bucket (the last one is `+Inf`) and the sum.
#[derive(Debug, Clone, Default)]
struct Buckets {
    counts: Vec<u64>,
    sum: f64,
}

impl Buckets {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len() + 1];
        }
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.counts[i] += 1;
        self.sum += v;
    }

    /// `(upper bound, count in that bucket)` as the encoder wants them, `+Inf` last.
    fn pairs(&self, bounds: &[f64]) -> Vec<(f64, u64)> {
        bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .enumerate()
            .map(|(i, b)| (b, self.counts.get(i).copied().unwrap_or(0)))
            .collect()
    }
}

/// Outcomes of the INVITE check, as the `outcome` label says them.
const INVITE_OUTCOMES: [&str; 6] = [
    "out_of_service",
    "accepted",
    "other_status",
    "no_answer",
    "late_accepted",
    "late_other",
];

fn invite_outcome(r: &probe::monitor::ProbeResult) -> usize {
    let accepted = r.status.is_some_and(|s| (200..300).contains(&s));
    match (r.late, r.status) {
        (true, _) if accepted => 4,
        (true, _) => 5,
        (false, Some(503)) => 0,
        (false, Some(_)) if accepted => 1,
        (false, Some(_)) => 2,
        (false, None) => 3,
    }
}

/// Every alarm kind, for the `alarm` label (each present from the start, at 0).
const ALARMS: [AlarmKind; 6] = [
    AlarmKind::Unexpected,
    AlarmKind::VipNotInService,
    AlarmKind::VipOwnerOutOfService,
    AlarmKind::InviteNot503,
    AlarmKind::CallAccepted,
    AlarmKind::ByeFailed,
];

/// Every service state, for the 0/1 series of `srewatch_probe_state`.
const STATES: [ServiceState; 4] = [
    ServiceState::InService,
    ServiceState::OutOfService,
    ServiceState::Unexpected,
    ServiceState::Down,
];

/// Counters of one target since the start.
#[derive(Debug, Default, Clone)]
struct TargetCounts {
    probes: u64,
    answered: u64,
    /// INVITE checks per [`INVITE_OUTCOMES`].
    invites: [u64; INVITE_OUTCOMES.len()],
    /// Alarms raised per [`ALARMS`].
    alarms: [u64; ALARMS.len()],
    /// VIPs: owner changes from one CP to another.
    failovers: u64,
}

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
    /// VIPs: the owner of the last answer (a CP, `ambiguous`) or `none`.
    owner: Option<String>,
    counts: TargetCounts,
    rtt: Buckets,
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
            Output::Result(r) if r.method == probe::transaction::Method::Invite => {
                let v = t.entry(r.target.to_string()).or_default();
                v.role = r.role.as_str();
                v.counts.invites[invite_outcome(r)] += 1;
            }
            Output::Result(r) => {
                if r.late || r.method != probe::transaction::Method::Options {
                    return;
                }
                let v = t.entry(r.target.to_string()).or_default();
                v.role = r.role.as_str();
                v.counts.probes += 1;
                if r.status.is_some() {
                    v.counts.answered += 1;
                    v.status = r.status;
                }
                if let Some(rtt) = r.rtt {
                    v.rtt_s = Some(rtt.as_secs_f64());
                    v.rtt.observe(&RTT_BOUNDS, rtt.as_secs_f64());
                }
                if r.role == Role::Vip {
                    v.owner = Some(r.owner.as_deref().unwrap_or("none").to_string());
                }
                if !v.tracked {
                    v.state = Some(r.state.as_str());
                }
            }
            Output::Event(e) => {
                let failover = e.is_failover();
                if let EventKind::State { to, .. } = &e.kind {
                    let v = t.entry(e.target.to_string()).or_default();
                    v.role = e.role.as_str();
                    v.state = Some(to.as_str());
                    v.tracked = true;
                } else if failover {
                    let v = t.entry(e.target.to_string()).or_default();
                    v.role = e.role.as_str();
                    v.counts.failovers += 1;
                }
            }
            Output::Summary(s) => {
                let v = t.entry(s.target.to_string()).or_default();
                v.role = s.role.as_str();
                v.minute = Some((s.count, s.lost));
            }
            Output::Alarm(a) => {
                if a.active {
                    let v = t.entry(a.target.to_string()).or_default();
                    v.role = a.role.as_str();
                    if let Some(i) = ALARMS.iter().position(|k| *k == a.kind) {
                        v.counts.alarms[i] += 1;
                    }
                }
            }
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
    /// `[influxdb] spool_max_bytes`, beside the spool's size.
    pub spool_max_bytes: Option<u64>,
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

/// One histogram family: per label set, its buckets as `(upper bound, count)` and its sum.
fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, Vec<(f64, u64)>, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, buckets, sum) in samples {
        let count = buckets.iter().map(|(_, n)| n).sum();
        m.encode_family(&labels)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum, count, &buckets, None,
            )?;
    }
    Ok(())
}

/// The write latencies of an HdrHistogram (microseconds) in the buckets of `bounds` (seconds);
/// each count is exact to the histogram's 2 significant digits.
fn write_buckets(h: &hdrhistogram::Histogram<u64>, bounds: &[f64]) -> (Vec<(f64, u64)>, f64) {
    let mut below = 0;
    let mut out = Vec::with_capacity(bounds.len() + 1);
    for &b in bounds {
        let upto = if h.is_empty() {
            0
        } else {
            h.count_between(0, (b * 1e6) as u64)
        };
        out.push((b, upto - below));
        below = upto;
    }
    out.push((f64::INFINITY, h.len() - below));
    let sum = if h.is_empty() {
        0.0
    } else {
        h.mean() * h.len() as f64 / 1e6
    };
    (out, sum)
}

/// `process_*` of the Prometheus client conventions, read from `/proc/self` at each scrape;
/// nothing when `/proc` cannot be read.
fn process(e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let Ok(me) = procfs::process::Process::myself() else {
        return Ok(());
    };
    let one = |v: f64| [(Labels::new(), v)];
    if let Ok(st) = me.stat() {
        let tps = procfs::ticks_per_second() as f64;
        family(
            e,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            one((st.utime + st.stime) as f64 / tps),
            |v| Box::new(ConstCounter::new(v)),
            MetricType::Counter,
        )?;
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            one((st.rss * procfs::page_size()) as f64),
        )?;
        gauge(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            one(st.vsize as f64),
        )?;
        if let Ok(boot) = procfs::boot_time_secs() {
            gauge(
                e,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                one(boot as f64 + st.starttime as f64 / tps),
            )?;
        }
    }
    if let Ok(n) = me.fd_count() {
        gauge(
            e,
            "process_open_fds",
            "Number of open file descriptors.",
            one(n as f64),
        )?;
    }
    if let Ok(l) = me.limits() {
        if let procfs::process::LimitValue::Value(n) = l.max_open_files.soft_limit {
            gauge(
                e,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                one(n as f64),
            )?;
        }
    }
    Ok(())
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
        gauge(
            e,
            "srewatch_build_info",
            "1, with the version of the running srewatch.",
            [(
                vec![("version", env!("CARGO_PKG_VERSION").to_string())],
                1.0,
            )],
        )?;
        process(e)?;
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
            if let Some(max) = self.spool_max_bytes {
                gauge(
                    e,
                    "srewatch_sink_spool_max_bytes",
                    "The spool's size limit ([influxdb] spool_max_bytes).",
                    g(max),
                )?;
            }
            gauge(
                e,
                "srewatch_sink_memory_points",
                "Points waiting in memory (behind the spool, for a refused bucket, or while the spool cannot take them).",
                g(s.memory_points),
            )?;
            counter(
                e,
                "srewatch_sink_requests_too_large",
                "Requests answered 413 at the splitting floor (the data was kept).",
                one(s.too_large),
            )?;
            gauge(
                e,
                "srewatch_sink_bucket_refused",
                "1 while InfluxDB refuses writes to the bucket (label status: 401, 403, 404); its batches wait, the other buckets flow.",
                s.buckets.iter().filter_map(|(b, v)| {
                    let st = v.refused?;
                    Some((vec![("bucket", b.clone()), ("status", st.to_string())], 1.0))
                }),
            )?;
            counter(
                e,
                "srewatch_sink_bucket_points_lost",
                "Points lost per bucket: neither the server, the memory buffer nor the spool could keep them.",
                s.buckets
                    .iter()
                    .map(|(b, v)| (vec![("bucket", b.clone())], v.points_lost)),
            )?;
            let (buckets, sum) = write_buckets(&i.write_latency_histogram(), &WRITE_BOUNDS);
            histogram(
                e,
                "srewatch_sink_write_latency_seconds",
                "From a batch's first point to InfluxDB accepting it (batches not spooled).",
                [(Labels::new(), buckets, sum)],
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
                "1 for the target's current state, 0 for the others (state: in_service, out_of_service, unexpected, down).",
                t.iter().filter(|(_, v)| v.state.is_some()).flat_map(|(n, v)| {
                    STATES.iter().map(move |st| {
                        let mut l = tl(n, v);
                        l.push(("state", st.as_str().to_string()));
                        (l, f64::from(u8::from(v.state == Some(st.as_str()))))
                    })
                }),
            )?;
            let cps: Vec<&String> = t
                .iter()
                .filter(|(_, v)| v.role == Role::Cp.as_str())
                .map(|(n, _)| n)
                .collect();
            let candidates: Vec<String> = cps
                .iter()
                .map(|c| c.to_string())
                .chain([probe::monitor::AMBIGUOUS.to_string(), "none".to_string()])
                .collect();
            gauge(
                e,
                "srewatch_probe_vip_owner",
                "VIPs: 1 for the candidate that answered the last probe (a CP, ambiguous or none), 0 for the others.",
                t.iter().filter(|(_, v)| v.owner.is_some()).flat_map(|(n, v)| {
                    candidates.iter().map(move |c| {
                        (
                            vec![("target", n.clone()), ("candidate", c.clone())],
                            f64::from(u8::from(v.owner.as_deref() == Some(c.as_str()))),
                        )
                    })
                }),
            )?;
            counter(
                e,
                "srewatch_probe_vip_failovers",
                "VIPs: owner changes from one CP to another.",
                t.iter()
                    .filter(|(_, v)| v.role == Role::Vip.as_str())
                    .map(|(n, v)| (vec![("target", n.clone())], v.counts.failovers)),
            )?;
            histogram(
                e,
                "srewatch_probe_rtt_seconds",
                "RTT of the answered OPTIONS probes.",
                t.iter()
                    .map(|(n, v)| (tl(n, v), v.rtt.pairs(&RTT_BOUNDS), v.rtt.sum)),
            )?;
            gauge(
                e,
                "srewatch_probe_last_rtt_seconds",
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
                "srewatch_probe_invite_checks",
                "INVITE checks per outcome (out_of_service is the 503 expected; accepted: a call was accepted).",
                t.iter().flat_map(|(n, v)| {
                    INVITE_OUTCOMES.iter().enumerate().map(move |(i, o)| {
                        let mut l = tl(n, v);
                        l.push(("outcome", o.to_string()));
                        (l, v.counts.invites[i])
                    })
                }),
            )?;
            counter(
                e,
                "srewatch_probe_alarms",
                "Alarms raised, per kind.",
                t.iter().flat_map(|(n, v)| {
                    ALARMS.iter().enumerate().map(move |(i, k)| {
                        let mut l = tl(n, v);
                        l.push(("alarm", k.as_str().to_string()));
                        (l, v.counts.alarms[i])
                    })
                }),
            )?;
            counter(
                e,
                "srewatch_probe_requests",
                "OPTIONS probes sent.",
                t.iter().map(|(n, v)| (tl(n, v), v.counts.probes)),
            )?;
            counter(
                e,
                "srewatch_probe_answered",
                "OPTIONS probes answered with a final response.",
                t.iter().map(|(n, v)| (tl(n, v), v.counts.answered)),
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

/// `[service] metrics_listen`: `ADDRESS:PORT`, `localhost:PORT` (127.0.0.1) or `:PORT` (every
/// address, as Prometheus exporters read it).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let bad = || format!("{s:?}: expected ADDRESS:PORT, localhost:PORT or :PORT");
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| bad())
}

/// Serde's reading of `metrics_listen` through [`parse_listen`]; the error names the key.
pub fn listen_address<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let s: Option<String> = serde::Deserialize::deserialize(d)?;
    s.map(|s| parse_listen(&s))
        .transpose()
        .map_err(|e| serde::de::Error::custom(format!("service.metrics_listen: {e}")))
}

/// The page body for a registry holding `m`.
pub fn render(registry: &Registry) -> String {
    let mut s = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut s, registry);
    s
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
            spool_max_bytes: None,
            polls: None,
            probes: Some(probes),
        }));
        for line in [
            "# TYPE srewatch_probe_requests_total counter",
            "srewatch_probe_requests_total{target=\"vip1\",role=\"vip\"} 2",
            "srewatch_probe_answered_total{target=\"vip1\",role=\"vip\"} 1",
            "srewatch_probe_last_rtt_seconds{target=\"vip1\",role=\"vip\"} 0.004",
            "srewatch_probe_rtt_seconds_bucket{target=\"vip1\",role=\"vip\",le=\"0.0025\"} 0",
            "srewatch_probe_rtt_seconds_bucket{target=\"vip1\",role=\"vip\",le=\"0.005\"} 1",
            "srewatch_probe_rtt_seconds_count{target=\"vip1\",role=\"vip\"} 1",
            "srewatch_probe_state{target=\"vip1\",role=\"vip\",state=\"down\"} 1.0",
            "srewatch_probe_state{target=\"vip1\",role=\"vip\",state=\"in_service\"} 0.0",
            "srewatch_probe_vip_owner{target=\"vip1\",candidate=\"none\"} 1.0",
            "srewatch_probe_vip_owner{target=\"vip1\",candidate=\"ambiguous\"} 0.0",
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

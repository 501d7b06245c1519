//! `srewatch bench URI [--rate R | --max-outstanding N | --ramp FROM:TO:STEP:STEP_DURATION]
//! [--duration D] [--transport udp|tcp] [--method options|invite-503] [--sockets K]
//! [--json FILE] [--csv FILE] [--histogram FILE]`: a SIP capacity benchmark.
//!
//! One status line per second on stderr, a summary table on stdout at the end, and optionally
//! the same as JSON, a per-second CSV series and the latency histogram in HdrHistogram's
//! percentile-distribution format. SIGINT/SIGTERM stop sending; what is still in flight a
//! quarter of a second later counts as abandoned, so the run ends at once and the accounting
//! stays exact.
//!
//! Exit code (SIPp's rule for failed calls): 0; 1 calls failed (more than
//! `--max-failed-share` of those sent, one-step runs) or calls accepted in `invite-503` mode;
//! 2 a ramp in which no step held (or an error); 3 the accounting did not balance (a bug).
//!
//! `--report FILE.html` (or `bench report RUN.json -o FILE.html`) draws the run
//! ([`crate::bench_report`]); `--histogram-log FILE` writes per-second HdrHistogram interval
//! logs, `--start-at` starts several generators together and `bench merge` adds their runs
//! exactly ([`crate::bench_run`]).

use anyhow::{bail, Context};
use probe::bench::{
    self, parse_ramp, BenchConfig, BenchMethod, BenchResult, BenchTransport, Load, Second, Step,
    StepResult, Tally,
};
use serde_json::json;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, clap::ValueEnum)]
enum TransportArg {
    Udp,
    Tcp,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MethodArg {
    /// OPTIONS, expecting 200.
    Options,
    /// INVITE expecting 503 (a CP out of service), then ACK.
    #[value(name = "invite-503")]
    Invite503,
}

/// Where the bench sends from (boxed in [`Args`], a variant of the command enum, to keep it
/// small).
#[derive(clap::Args)]
struct SocketArgs {
    /// Sockets, each with its own thread.
    #[arg(long, default_value_t = 1)]
    sockets: usize,
    /// Send from this local address (and port): `ADDR` or `ADDR:PORT` (a fixed port needs
    /// --sockets 1). The Via and Contact name it.
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_source)]
    source: Option<String>,
}

// `srewatch bench`'s command line: one field per flag, as clap wants them (a plain comment:
// a doc comment here would become clap's help text).
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    sub: Option<Box<Sub>>,
    /// Target SIP URI, e.g. sip:127.0.0.1:5060.
    #[arg(required = true)]
    uri: Option<String>,
    /// Open loop: requests per second, sent on schedule whatever the answers do.
    #[arg(long, conflicts_with_all = ["max_outstanding", "ramp"])]
    rate: Option<f64>,
    /// Closed loop: keep this many transactions outstanding.
    #[arg(long, conflicts_with = "ramp")]
    max_outstanding: Option<usize>,
    /// Length of a --rate or --max-outstanding run.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Open loop in steps: FROM:TO:STEP:STEP_DURATION, e.g. 1000:20000:1000:10s.
    #[arg(long)]
    ramp: Option<String>,
    #[arg(long, value_enum, default_value = "udp")]
    transport: TransportArg,
    #[arg(long, value_enum, default_value = "options")]
    method: MethodArg,
    #[command(flatten)]
    net: Box<SocketArgs>,
    /// Do not retransmit (Timer E / A) over UDP: for pure-throughput runs.
    #[arg(long)]
    no_retransmit: bool,
    /// A transaction without a final response this long after its first send times out
    /// (default 64*T1, RFC 3261 Timer F).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "32s")]
    timeout: Duration,
    /// The status that is not a failure (default 200 for options, 503 for invite-503).
    #[arg(long)]
    expect_status: Option<u16>,
    /// A ramp step holds while its p99 latency stays under this.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "100ms")]
    p99_max: Duration,
    /// A ramp step holds while its failures stay at or under this fraction.
    #[arg(long, default_value_t = 0.001)]
    max_failures: f64,
    /// A run (not a ramp) exits 1 when more than this fraction of its calls failed (timed out,
    /// not sent, or answered with another status); 0: any failed call.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    max_failed_share: f64,
    /// Most transactions outstanding at once; requests beyond it count as send errors.
    #[arg(long, default_value_t = 1_000_000)]
    outstanding_limit: usize,
    /// Shortest sleep of an idle sender: requests due within it leave together (latency runs
    /// from the send; a send later than the window counts the excess). Smaller is finer timing
    /// for more CPU.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1ms")]
    send_window: Duration,
    /// Write the summary as JSON to FILE.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the per-second series as CSV to FILE.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write the latency histogram (whole run) in HdrHistogram's percentile-distribution
    /// format (values in milliseconds) to FILE.
    #[arg(long)]
    histogram: Option<PathBuf>,
    /// Write one HdrHistogram interval log line per second (V2 deflate, base64, values in
    /// µs) to FILE, as HdrHistogram's log tools, wrk2 and cassandra-stress read them.
    #[arg(long, value_name = "FILE")]
    histogram_log: Option<PathBuf>,
    /// Write the report (one self-contained HTML page with charts) to FILE.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Start at this wall-clock time (RFC 3339, e.g. 2026-11-30T05:00:00Z), so that
    /// generators on several hosts start together.
    #[arg(long, value_name = "RFC3339", value_parser = humantime::parse_rfc3339_weak)]
    start_at: Option<std::time::SystemTime>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// The HTML report of a run saved with --json.
    Report {
        /// A summary written by `srewatch bench --json` (or `bench merge --json`).
        run: PathBuf,
        /// The HTML file to write.
        #[arg(short = 'o', long, value_name = "FILE.html")]
        output: PathBuf,
    },
    /// Merge runs made at the same time on several hosts into one summary: counts and
    /// histograms added (exact percentiles), seconds aligned on wall-clock seconds.
    Merge {
        /// Summaries written by `srewatch bench --json`.
        #[arg(required = true, num_args = 1..)]
        runs: Vec<PathBuf>,
        /// Write the merged report to FILE.
        #[arg(long, value_name = "FILE.html")]
        report: Option<PathBuf>,
        /// Write the merged summary as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Write the merged per-second histograms as an interval log to FILE.
        #[arg(long, value_name = "FILE")]
        histogram_log: Option<PathBuf>,
        /// Count a run given twice (or inside a merged run given too) as often as it is given.
        #[arg(long)]
        allow_duplicates: bool,
        /// Merge runs of different targets, methods or rate schedules.
        #[arg(long)]
        allow_mixed: bool,
    },
}

/// `sip:[user@]host[:port][;params]` to (Request-URI, address).
/// Checks `--source` (kept as text: the arguments stay small; parsed again in [`run`]).
fn parse_source(s: &str) -> Result<String, String> {
    s.parse::<probe::transport::Source>()?;
    Ok(s.to_string())
}

fn target(uri: &str) -> anyhow::Result<SocketAddr> {
    let rest = uri
        .strip_prefix("sip:")
        .with_context(|| format!("{uri:?} is not a sip: URI"))?;
    let rest = rest.split([';', '?']).next().unwrap_or("");
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if hostport.is_empty() {
        bail!("{uri:?} has no host");
    }
    let with_port = if hostport.starts_with('[') {
        if hostport.ends_with(']') {
            format!("{hostport}:5060")
        } else {
            hostport.to_string()
        }
    } else if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5060")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {with_port}"))?
        .next()
        .with_context(|| format!("{with_port} resolves to nothing"))
}

pub fn run(mut a: Args) -> anyhow::Result<ExitCode> {
    if let Some(sub) = a.sub.take() {
        return sub_command(*sub);
    }
    let uri = a.uri.clone().unwrap_or_default();
    let addr = target(&uri)?;
    if !(0.0..=1.0).contains(&a.max_failed_share) {
        bail!(
            "--max-failed-share {} is not a share between 0 and 1",
            a.max_failed_share
        );
    }
    let load = match (&a.ramp, a.rate, a.max_outstanding) {
        (Some(r), _, _) => Load::Open(parse_ramp(r).map_err(anyhow::Error::msg)?),
        (None, Some(rate), _) => Load::Open(vec![Step {
            rate,
            duration: a.duration,
        }]),
        (None, None, Some(n)) => Load::Closed {
            max_outstanding: n,
            duration: a.duration,
        },
        (None, None, None) => bail!("give one of --rate, --max-outstanding or --ramp"),
    };
    let method = match a.method {
        MethodArg::Options => BenchMethod::Options,
        MethodArg::Invite503 => BenchMethod::Invite503,
    };
    let mut cfg = BenchConfig::new(&uri, addr, method, load);
    cfg.transport = match a.transport {
        TransportArg::Udp => BenchTransport::Udp,
        TransportArg::Tcp => BenchTransport::Tcp,
    };
    cfg.sockets = a.net.sockets;
    cfg.source = a
        .net
        .source
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    cfg.retransmit = !a.no_retransmit;
    cfg.timeout = a.timeout;
    cfg.p99_bound = a.p99_max;
    cfg.max_failure_ratio = a.max_failures;
    cfg.outstanding_limit = a.outstanding_limit;
    cfg.send_window = a.send_window;
    if let Some(s) = a.expect_status {
        cfg.expected_status = s;
    }
    // Open the output files first: a typo must not cost a whole run.
    let mut json_out = a.json.as_ref().map(create).transpose()?;
    let mut csv_out = a.csv.as_ref().map(create).transpose()?;
    let mut hist_out = a.histogram.as_ref().map(create).transpose()?;
    let mut log_out = a.histogram_log.as_ref().map(create).transpose()?;
    let mut report_out = a.report.as_ref().map(create).transpose()?;
    if let Some(w) = &mut csv_out {
        writeln!(
            w,
            "second,sent,answered,timed_out,send_errors,retransmits,late,stray,outstanding,p50_us,p99_us,max_us,accepted"
        )?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone(), cfg.stop_grace);
    eprintln!(
        "srewatch bench {} ({addr}{}) method={} transport={} sockets={} retransmit={} timeout={}",
        uri,
        cfg.source.map(|s| format!(" from {s}")).unwrap_or_default(),
        method_name(method),
        transport_name(cfg.transport),
        cfg.sockets,
        if cfg.retransmit { "on" } else { "off" },
        humantime::format_duration(cfg.timeout)
    );
    let mut csv_err = None;
    let shown = cfg.clone();
    if let Some(at) = a.start_at {
        crate::bench_run::wait_until(at, &stop)?;
    }
    let start = std::time::SystemTime::now();
    let mut log = log_out
        .as_mut()
        .map(|w| crate::bench_run::IntervalLog::new(w, start));
    let result = bench::run(cfg, stop, &mut |s: &Second| {
        eprintln!("{}", status_line(s));
        if let Some(l) = &mut log {
            if let Err(e) = l.second(s) {
                csv_err.get_or_insert(e);
            }
        }
        if let Some(w) = &mut csv_out {
            if let Err(e) = csv_row(w, s) {
                csv_err.get_or_insert(e.into());
            }
        }
    })?;
    if let Some(e) = csv_err {
        return Err(e).context("cannot write the CSV file or the interval log");
    }
    if let Some(l) = log {
        l.finish()?;
    }
    let mut stdout = std::io::stdout().lock();
    summary(&mut stdout, &shown, &result)?;
    let mut saved = to_json(&shown, &result);
    crate::bench_run::augment(&mut saved, &shown, &result, start);
    if let Some(w) = &mut report_out {
        w.write_all(crate::bench_report::render(&saved)?.as_bytes())?;
        w.flush()?;
    }
    if let Some(w) = &mut json_out {
        serde_json::to_writer_pretty(&mut *w, &saved)?;
        writeln!(w)?;
        w.flush()?;
    }
    if let Some(w) = &mut hist_out {
        bench::write_percentile_distribution(&result.total.hist, w)?;
        w.flush()?;
    }
    if let Some(w) = &mut csv_out {
        w.flush()?;
    }
    if !result.balanced() {
        eprintln!("srewatch bench: accounting does not balance (a bug): see the summary");
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::from(exit_code(
        &shown,
        &result,
        a.max_failed_share,
    )))
}

/// 1: calls were accepted in `invite-503` mode (an alarm); 2: a ramp in which no step held;
/// 1: a run of one step in which more than `max_failed_share` of the calls failed (SIPp exits
/// non-zero when calls failed; a ramp is judged by its steps); else 0 (3, accounting that does
/// not balance, is checked before). Abandoned calls (stopped by a signal) are not failures.
fn exit_code(cfg: &BenchConfig, r: &BenchResult, max_failed_share: f64) -> u8 {
    let t = &r.total;
    let failed = t.failures(cfg.expected_status);
    if cfg.method == BenchMethod::Invite503 && t.accepted > 0 {
        eprintln!(
            "srewatch bench: {} calls accepted by a CP expected to refuse them (exit 1)",
            t.accepted
        );
        1
    } else if r.steps.len() > 1 {
        if highest_held(cfg, r).is_none() {
            eprintln!("srewatch bench: no step of the ramp held (exit 2)");
            2
        } else {
            0
        }
    } else if failed > 0 && failed as f64 > max_failed_share * t.sent as f64 {
        eprintln!(
            "srewatch bench: {failed} of {} calls failed ({:.3}%), more than --max-failed-share {max_failed_share} (exit 1)",
            t.sent,
            100.0 * failed as f64 / t.sent as f64
        );
        1
    } else {
        0
    }
}

/// `bench report` and `bench merge`.
fn sub_command(sub: Sub) -> anyhow::Result<ExitCode> {
    use crate::{bench_report, bench_run};
    match sub {
        Sub::Report { run, output } => {
            let v = bench_run::load(&run)?;
            let mut w = create(&output)?;
            w.write_all(bench_report::render(&v)?.as_bytes())?;
            w.flush()?;
        }
        Sub::Merge {
            runs,
            report,
            json,
            histogram_log,
            allow_duplicates,
            allow_mixed,
        } => {
            let mut all = Vec::new();
            for r in &runs {
                all.push((r.display().to_string(), bench_run::load(r)?));
            }
            bench_run::check_mergeable(
                &all,
                bench_run::MergeRules {
                    allow_duplicates,
                    allow_mixed,
                },
            )?;
            let all: Vec<_> = all.into_iter().map(|(_, v)| v).collect();
            let m = bench_run::merge(&all)?;
            let t = &m["accounting"];
            println!(
                "merged {} runs: sent {} = answered {} + timed_out {} + send_errors {}{}  {}",
                runs.len(),
                t["sent"],
                t["answered"],
                t["timed_out"],
                t["send_errors"],
                match t["abandoned"].as_u64() {
                    Some(n) if n > 0 => format!(" + abandoned {n}"),
                    _ => String::new(),
                },
                if t["balanced"] == true {
                    "OK"
                } else {
                    "DOES NOT BALANCE"
                }
            );
            let l = &m["total"]["latency_us"];
            println!(
                "latency p50 {} p90 {} p99 {} p99.9 {} max {}",
                bench_report::show_ms(&l["p50"]),
                bench_report::show_ms(&l["p90"]),
                bench_report::show_ms(&l["p99"]),
                bench_report::show_ms(&l["p99_9"]),
                bench_report::show_ms(&l["max"])
            );
            if let Some(p) = json {
                let mut w = create(&p)?;
                serde_json::to_writer_pretty(&mut w, &m)?;
                writeln!(w)?;
                w.flush()?;
            }
            if let Some(p) = report {
                let mut w = create(&p)?;
                w.write_all(bench_report::render(&m)?.as_bytes())?;
                w.flush()?;
            }
            if let Some(p) = histogram_log {
                bench_run::write_interval_log(&m, create(&p)?)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create(p: &PathBuf) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    Ok(std::io::BufWriter::new(
        std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
    ))
}

/// Sets `stop` on SIGINT or SIGTERM (from a helper thread with its own small runtime).
fn stop_on_signal(stop: Arc<AtomicBool>, grace: Duration) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!(
            "srewatch bench: stopping: no new requests; what is still in flight in {} counts as abandoned",
            humantime::format_duration(grace)
        );
        stop.store(true, Ordering::Relaxed);
    });
}

fn method_name(m: BenchMethod) -> &'static str {
    match m {
        BenchMethod::Options => "options",
        BenchMethod::Invite503 => "invite-503",
    }
}

fn transport_name(t: BenchTransport) -> &'static str {
    match t {
        BenchTransport::Udp => "udp",
        BenchTransport::Tcp => "tcp",
    }
}

fn ms(us: u64) -> String {
    format!("{:.3}ms", us as f64 / 1000.0)
}

fn status_line(s: &Second) -> String {
    let t = &s.tally;
    let p99 = if t.hist.is_empty() {
        "-".to_string()
    } else {
        ms(t.hist.value_at_quantile(0.99))
    };
    let accepted = if t.accepted > 0 {
        format!(" ACCEPTED {}", t.accepted)
    } else {
        String::new()
    };
    format!(
        "[{:>4}s] rate {}/s answered {}/s outstanding {} p99 {} errors {} (timeouts {}, send {}) retransmits {}{accepted}",
        s.second,
        t.sent,
        t.answered(),
        s.outstanding,
        p99,
        t.timed_out + t.send_errors,
        t.timed_out,
        t.send_errors,
        t.retransmits
    )
}

fn csv_row(w: &mut impl Write, s: &Second) -> std::io::Result<()> {
    let t = &s.tally;
    let q = |p: f64| {
        if t.hist.is_empty() {
            String::new()
        } else {
            t.hist.value_at_quantile(p).to_string()
        }
    };
    writeln!(
        w,
        "{},{},{},{},{},{},{},{},{},{},{},{},{}",
        s.second,
        t.sent,
        t.answered(),
        t.timed_out,
        t.send_errors,
        t.retransmits,
        t.late,
        t.stray,
        s.outstanding,
        q(0.5),
        q(0.99),
        if t.hist.is_empty() {
            String::new()
        } else {
            t.hist.max().to_string()
        },
        t.accepted
    )
}

fn quantile_cell(t: &Tally, q: f64) -> String {
    if t.hist.is_empty() {
        "-".into()
    } else if q >= 1.0 {
        ms(t.hist.max())
    } else {
        ms(t.hist.value_at_quantile(q))
    }
}

fn fail_pct(t: &Tally, expected: u16) -> f64 {
    if t.sent == 0 {
        0.0
    } else {
        100.0 * t.failures(expected) as f64 / t.sent as f64
    }
}

fn highest_held(cfg: &BenchConfig, r: &BenchResult) -> Option<f64> {
    // The highest step that held, whether or not every step before it held too (a step that
    // failed on a transient does not hide a higher one that held).
    r.steps
        .iter()
        .filter(|s| s.held(cfg))
        .filter_map(|s| s.rate)
        .fold(None, |a: Option<f64>, r| Some(a.map_or(r, |a| a.max(r))))
}

/// The lowest step that did not hold (a noisy run can hold again above it).
fn first_failed(cfg: &BenchConfig, r: &BenchResult) -> Option<f64> {
    r.steps.iter().find(|s| !s.held(cfg)).and_then(|s| s.rate)
}

fn summary(w: &mut impl Write, cfg: &BenchConfig, r: &BenchResult) -> std::io::Result<()> {
    writeln!(
        w,
        "{:>5} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>5}",
        "step",
        "target/s",
        "sent/s",
        "sent",
        "answered",
        "timed_out",
        "send_err",
        "fail%",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "held"
    )?;
    let row = |w: &mut dyn Write, name: &str, s: &StepResult| -> std::io::Result<()> {
        let t = &s.tally;
        writeln!(
            w,
            "{:>5} {:>10} {:>10.1} {:>10} {:>10} {:>9} {:>9} {:>7.3} {:>10} {:>10} {:>10} {:>10} {:>10} {:>5}",
            name,
            s.rate.map_or("-".into(), |r| format!("{r:.0}")),
            s.achieved_rate(),
            t.sent,
            t.answered(),
            t.timed_out,
            t.send_errors,
            fail_pct(t, cfg.expected_status),
            quantile_cell(t, 0.5),
            quantile_cell(t, 0.9),
            quantile_cell(t, 0.99),
            quantile_cell(t, 0.999),
            quantile_cell(t, 1.0),
            if s.held(cfg) { "yes" } else { "no" }
        )
    };
    for (i, s) in r.steps.iter().enumerate() {
        row(w, &(i + 1).to_string(), s)?;
    }
    let t = &r.total;
    let statuses: Vec<String> = t
        .by_status()
        .iter()
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    writeln!(
        w,
        "accounting: sent {} = answered {} ({}) + timed_out {} + send_errors {}{}{}  {}",
        t.sent,
        t.answered(),
        statuses.join(", "),
        t.timed_out,
        t.send_errors,
        if t.abandoned > 0 {
            format!(" + abandoned {}", t.abandoned)
        } else {
            String::new()
        },
        if t.limited > 0 {
            format!(" (outstanding limit {})", t.limited)
        } else {
            String::new()
        },
        if r.balanced() {
            "OK"
        } else {
            "DOES NOT BALANCE"
        }
    )?;
    writeln!(
        w,
        "retransmits {}  acks {} (not sent {})  provisional {}  late {}  stray {}  unreachable {}  invalid {}",
        t.retransmits, t.acks, t.ack_send_errors, t.provisional, t.late, t.stray, t.unreachable, t.invalid
    )?;
    if !t.hist_all.is_empty() {
        let q = |p: f64| ms(t.hist_all.value_at_quantile(p));
        writeln!(
            w,
            "latency counting timeouts at their timeout ({} values): p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            t.hist_all.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            ms(t.hist_all.max())
        )?;
    }
    if cfg.method == BenchMethod::Invite503 {
        writeln!(
            w,
            "accepted {}{}  byes {} (hung up {}, refused {}, failed {})  cancels {} (failed {})",
            t.accepted,
            if t.accepted > 0 {
                " (ALARM: calls accepted by a CP expected out of service; each ACKed and a BYE sent)"
            } else {
                ""
            },
            t.byes,
            t.byes.saturating_sub(t.bye_refused + t.bye_failures),
            t.bye_refused,
            t.bye_failures,
            t.cancels,
            t.cancel_failures
        )?;
    }
    writeln!(
        w,
        "elapsed {:.3}s  peak outstanding {}  max send lag {}  latency from the send, at most one window after schedule",
        r.elapsed.as_secs_f64(),
        r.peak_outstanding,
        ms(r.max_send_lag_us)
    )?;
    if r.steps.len() > 1 {
        match highest_held(cfg, r) {
            Some(rate) => writeln!(
                w,
                "highest step that held: {rate:.0}/s (failures <= {}%, p99 < {})",
                cfg.max_failure_ratio * 100.0,
                humantime::format_duration(cfg.p99_bound)
            )?,
            None => writeln!(w, "no step held")?,
        }
        if let Some(rate) = first_failed(cfg, r) {
            writeln!(w, "first step that did not hold: {rate:.0}/s")?;
        }
    }
    Ok(())
}

fn tally_json(t: &Tally, expected: u16) -> serde_json::Value {
    let q = |p: f64| {
        if t.hist.is_empty() {
            serde_json::Value::Null
        } else {
            json!(t.hist.value_at_quantile(p))
        }
    };
    let qa = |p: f64| {
        if t.hist_all.is_empty() {
            serde_json::Value::Null
        } else {
            json!(t.hist_all.value_at_quantile(p))
        }
    };
    json!({
        "sent": t.sent,
        "answered": t.answered(),
        "by_status": t.by_status().iter().map(|(c, n)| (c.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "timed_out": t.timed_out,
        "send_errors": t.send_errors,
        "abandoned": t.abandoned,
        "outstanding_limited": t.limited,
        "failures": t.failures(expected),
        "accepted": t.accepted,
        "byes": t.byes,
        "bye_failures": t.bye_failures,
        "bye_refused": t.bye_refused,
        "cancels": t.cancels,
        "cancel_failures": t.cancel_failures,
        "retransmits": t.retransmits,
        "acks": t.acks,
        "ack_send_errors": t.ack_send_errors,
        "provisional": t.provisional,
        "late": t.late,
        "stray": t.stray,
        "unreachable": t.unreachable,
        "invalid": t.invalid,
        "latency_us": {
            "count": t.hist.len(),
            "min": if t.hist.is_empty() { serde_json::Value::Null } else { json!(t.hist.min()) },
            "mean": if t.hist.is_empty() { serde_json::Value::Null } else { json!(t.hist.mean()) },
            "p50": q(0.5),
            "p90": q(0.9),
            "p99": q(0.99),
            "p99_9": q(0.999),
            "max": if t.hist.is_empty() { serde_json::Value::Null } else { json!(t.hist.max()) },
        },
        "latency_with_timeouts_us": {
            "count": t.hist_all.len(),
            "p50": qa(0.5),
            "p90": qa(0.9),
            "p99": qa(0.99),
            "p99_9": qa(0.999),
            "max": if t.hist_all.is_empty() { serde_json::Value::Null } else { json!(t.hist_all.max()) },
        },
    })
}

fn to_json(cfg: &BenchConfig, r: &BenchResult) -> serde_json::Value {
    let t = &r.total;
    json!({
        "uri": cfg.uri,
        "target": cfg.target.to_string(),
        "method": method_name(cfg.method),
        "transport": transport_name(cfg.transport),
        "sockets": cfg.sockets,
        "source": cfg.source.map(|s| s.to_string()),
        "retransmit": cfg.retransmit,
        "timeout_s": cfg.timeout.as_secs_f64(),
        "expected_status": cfg.expected_status,
        "send_window_us": cfg.send_window.as_micros() as u64,
        "elapsed_s": r.elapsed.as_secs_f64(),
        "peak_outstanding": r.peak_outstanding,
        "max_send_lag_us": r.max_send_lag_us,
        "accounting": {
            "sent": t.sent,
            "answered": t.answered(),
            "timed_out": t.timed_out,
            "send_errors": t.send_errors,
            "abandoned": t.abandoned,
            "balanced": r.balanced(),
        },
        "total": tally_json(t, cfg.expected_status),
        "steps": r.steps.iter().map(|s| {
            let mut v = tally_json(&s.tally, cfg.expected_status);
            let o = v.as_object_mut().expect("object");
            o.insert("rate".into(), json!(s.rate));
            o.insert("duration_s".into(), json!(s.duration.as_secs_f64()));
            o.insert("achieved_rate".into(), json!(s.achieved_rate()));
            o.insert("held".into(), json!(s.held(cfg)));
            v
        }).collect::<Vec<_>>(),
        "highest_held_rate": highest_held(cfg, r),
        "first_failed_rate": first_failed(cfg, r),
        "hold_rule": {"max_failure_ratio": cfg.max_failure_ratio, "p99_max_us": cfg.p99_bound.as_micros() as u64},
        "seconds": r.seconds.iter().map(|s| json!({
            "second": s.second,
            "sent": s.tally.sent,
            "answered": s.tally.answered(),
            "timed_out": s.tally.timed_out,
            "send_errors": s.tally.send_errors,
            "outstanding": s.outstanding,
            "p99_us": if s.tally.hist.is_empty() { serde_json::Value::Null } else { json!(s.tally.hist.value_at_quantile(0.99)) },
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_resolve() {
        assert_eq!(
            target("sip:127.0.0.1:5070").unwrap(),
            "127.0.0.1:5070".parse().unwrap()
        );
        assert_eq!(
            target("sip:ping@127.0.0.1;transport=udp").unwrap(),
            "127.0.0.1:5060".parse().unwrap()
        );
        assert_eq!(target("sip:[::1]").unwrap(), "[::1]:5060".parse().unwrap());
        assert!(target("http://x").is_err());
        assert!(target("sip:").is_err());
    }
}

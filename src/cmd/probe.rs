//! `srewatch probe check URI` (a Nagios/Icinga plugin) and `srewatch probe run` (the monitor
//! from the configuration, writing bucket `probe`).

use crate::report;
use anyhow::Context;
use probe::dialog::ByeResult;
use probe::monitor::{self, InviteProbe, Output, ProbeConfig, ProbeResult, Role, TargetConfig};
use probe::transaction::Method;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum Command {
    /// One OPTIONS (and optionally INVITE) check with Nagios plugin exit codes:
    /// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (bad arguments included, reason on stdout).
    Check(CheckArgs),
    /// Probe every `[[probe.target]]` of the configuration and write bucket `probe`.
    Run(RunArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// `sip:host[:port][;transport=udp|tcp]` (the user part goes in --user).
    pub uri: String,
    /// The status code that means OK: 200 (in service) or 503 (out of service).
    #[arg(long, default_value_t = 200, value_parser = parse_expect)]
    pub expect: u16,
    /// Give up after this long (with a unit: 2s, 500ms).
    #[arg(short, long, default_value = "2s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// WARNING when the OPTIONS RTT exceeds this many seconds (e.g. 0.2 or 200ms).
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub warning: Option<f64>,
    /// CRITICAL when the OPTIONS RTT exceeds this many seconds.
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub critical: Option<f64>,
    /// Also send an INVITE (no SDP); with --expect 503 it must be answered 503 too.
    #[arg(long)]
    pub invite: bool,
    /// User part of the Request-URI (e.g. monitor).
    #[arg(long)]
    pub user: Option<String>,
    /// Send from this local address (and port): `ADDR` or `ADDR:PORT`, e.g. the signalling
    /// network's address of a multi-homed node. The Via and Contact name it.
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub source: Option<String>,
}

fn parse_expect(s: &str) -> Result<u16, String> {
    match s {
        "200" => Ok(200),
        "503" => Ok(503),
        _ => Err(format!("{s:?}: expected 200 or 503")),
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    if s.parse::<f64>().is_ok() {
        return Err(format!("{s:?} has no unit: write e.g. {s}s"));
    }
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{s:?}: must be more than 0"));
    }
    Ok(d)
}

/// A threshold in seconds: a plain number (`0.2`, Nagios' habit) or a duration (`200ms`).
fn parse_seconds(s: &str) -> Result<f64, String> {
    let secs = match s.parse::<f64>() {
        Ok(v) => v,
        Err(_) => humantime::parse_duration(s)
            .map_err(|_| format!("{s:?}: expected seconds (0.2) or a duration (200ms)"))?
            .as_secs_f64(),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{s:?}: must be more than 0 seconds"));
    }
    Ok(secs)
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The configuration file (default /etc/srewatch/srewatch.toml).
    #[arg(long, env = "SREWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where to write line protocol: `-` for stdout or a file.
    #[arg(long, default_value = "-")]
    pub out: String,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Check(a) => Ok(check(a)),
        Command::Run(a) => run_monitor(a),
    }
}

const OK: u8 = 0;
const WARNING: u8 = 1;
const CRITICAL: u8 = 2;
/// Also the exit code of bad arguments (main turns clap's errors of `probe check` into it).
pub const UNKNOWN: u8 = 3;

fn check(a: CheckArgs) -> ExitCode {
    match check_inner(&a) {
        Ok((code, line)) => {
            println!("{line}");
            ExitCode::from(code)
        }
        Err(e) => {
            println!("SIP UNKNOWN: {e:#}");
            ExitCode::from(UNKNOWN)
        }
    }
}

fn check_inner(a: &CheckArgs) -> anyhow::Result<(u8, String)> {
    if let (Some(w), Some(c)) = (a.warning, a.critical) {
        if w > c {
            anyhow::bail!("--warning {w} is above --critical {c}");
        }
    }
    if let Some((user, rest)) = a.uri.strip_prefix("sip:").and_then(|r| r.split_once('@')) {
        anyhow::bail!(
            "{:?} has a user part: give it with --user {user} and the URI as sip:{rest}",
            a.uri
        );
    }
    let mut t = TargetConfig::new("check", &a.uri, Role::Cp);
    t.timeout = a.timeout;
    // One probe: the next would come only after the check is over.
    t.interval = Duration::from_secs(3600);
    t.invite_probe = if a.invite {
        InviteProbe::Always
    } else {
        InviteProbe::Never
    };
    t.user = a.user.clone();
    t.source = a.source.clone();
    let cfg = ProbeConfig {
        fingerprint: None,
        shard: None,
        source: None,
        target: vec![t],
    };
    if let Some((key, reason)) = cfg.validate().into_iter().next() {
        anyhow::bail!("{}: {reason}", key.trim_start_matches("target[0]."));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // A plugin prints one line; the monitor's own log lines would only add noise. Every task
    // of this current-thread runtime runs inside this scope.
    let quiet = tracing::subscriber::NoSubscriber::default();
    let _guard = tracing::subscriber::set_default(quiet);
    let (options, invite, bye) = rt.block_on(async {
        let (mut rx, handle) = monitor::spawn(&cfg).await?;
        let mut options: Option<ProbeResult> = None;
        let mut invite: Option<ProbeResult> = None;
        let mut bye: Option<ProbeResult> = None;
        // An INVITE without a final answer in time may still be accepted late (a 2xx after
        // the timeout, or crossing the CANCEL): wait one more timeout for it, so that an
        // accepted call is never hidden.
        let mut late_until: Option<tokio::time::Instant> = None;
        loop {
            let o = match late_until {
                Some(end) => match tokio::time::timeout_at(end, rx.recv()).await {
                    Ok(o) => o,
                    Err(_) => break,
                },
                None => rx.recv().await,
            };
            let Some(o) = o else { break };
            // The name does not resolve, or no socket: a local failure (UNKNOWN), not retried.
            if let Output::Alarm(al) = &o {
                use probe::monitor::AlarmKind::{SocketFailed, Unresolved};
                if al.active && matches!(al.kind, Unresolved | SocketFailed) {
                    let why = al.message.clone();
                    handle.stop().await;
                    anyhow::bail!(why);
                }
            }
            if let Output::Result(r) = o {
                match r.method {
                    Method::Invite if r.late => {
                        invite = Some(r);
                        break;
                    }
                    Method::Invite => {
                        if r.status.is_none() {
                            late_until = Some(tokio::time::Instant::now() + a.timeout);
                        }
                        invite = Some(r);
                    }
                    Method::Options => options = Some(r),
                    Method::Bye => bye = Some(r),
                    _ => {}
                }
            }
            let sent_invite = a.invite && options.as_ref().is_some_and(|o| o.status.is_some());
            if late_until.is_none() && options.is_some() && (!sent_invite || invite.is_some()) {
                break;
            }
        }
        handle.stop().await;
        anyhow::Ok((options, invite, bye))
    })?;
    let options = options.context("the monitor ended without a result")?;
    Ok(verdict(a, &options, invite.as_ref(), bye.as_ref()))
}

/// What a BYE's result says about the call it hung up.
fn bye_outcome(b: &ProbeResult) -> ByeResult {
    match (b.status, b.error) {
        (Some(s), _) if (200..300).contains(&s) => ByeResult::HungUp { status: s },
        (Some(s), _) => ByeResult::Refused { status: s },
        (None, Some(k)) => ByeResult::NotSent(k),
        (None, None) => ByeResult::NoAnswer,
    }
}

/// The plugin's exit code and output line.
fn verdict(
    a: &CheckArgs,
    o: &ProbeResult,
    inv: Option<&ProbeResult>,
    bye: Option<&ProbeResult>,
) -> (u8, String) {
    // Perfdata: `U` where no value could be determined (no answer).
    let secs = |r: &ProbeResult| {
        r.rtt
            .map(|d| format!("{:.6}s", d.as_secs_f64()))
            .unwrap_or_else(|| "U".into())
    };
    let status = |r: &ProbeResult| {
        r.status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "U".into())
    };
    let rtt = o.rtt.map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let limit = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut perf = format!(
        "rtt={};{};{};0 retransmits={};;;0 status={}",
        secs(o),
        limit(a.warning),
        limit(a.critical),
        o.retransmits,
        status(o)
    );
    if o.status.is_some() {
        // 1 when the answer came from another address than the probed one (a CP on 0.0.0.0).
        perf.push_str(&format!(" other_source={}", u8::from(o.source.is_some())));
    }
    let accepted = inv.is_some_and(|i| matches!(i.status, Some(200..=299)));
    if let Some(i) = inv {
        perf.push_str(&format!(
            " invite_status={} invite_rtt={};;;0",
            status(i),
            secs(i)
        ));
    }
    if a.invite && o.status.is_some() {
        // An accepted call is never hidden: counted, with the status of its BYE.
        perf.push_str(&format!(" accepted={}", u8::from(accepted)));
        if accepted {
            perf.push_str(&format!(" bye_status={}", bye.map_or("U".into(), status)));
        }
    }
    // The INVITE's verdict, whatever the OPTIONS got.
    let invite_what = |code: &mut u8, what: &mut String| {
        if !a.invite {
            return;
        }
        match inv.and_then(|i| i.status.map(|s| (s, i.late))) {
            Some((is, late)) if (200..300).contains(&is) => {
                *code = CRITICAL;
                let how = bye
                    .map(|b| bye_outcome(b).describe())
                    .unwrap_or_else(|| "ACK and BYE sent".into());
                what.push_str(&format!(
                    "; INVITE answered {is}{}: a call was accepted ({how})",
                    if late { " after the timeout" } else { "" }
                ));
            }
            Some((is, _)) if a.expect == 503 && is != 503 => {
                *code = CRITICAL;
                what.push_str(&format!("; INVITE answered {is}, expected 503"));
            }
            Some((is, _)) => what.push_str(&format!("; INVITE answered {is}")),
            None if inv.is_some() => {
                *code = CRITICAL;
                what.push_str("; no final answer to INVITE");
            }
            None => {}
        }
    };
    let from = o
        .source
        .map(|src| format!(" from {src} (not the probed address)"))
        .unwrap_or_default();
    let (code, what) = match o.status {
        None => (
            CRITICAL,
            match o.error {
                Some(e) => format!("no answer from {} ({})", a.uri, e.as_str()),
                None => format!("no answer from {} within {:?}", a.uri, a.timeout),
            },
        ),
        Some(s) if s != a.expect => {
            let mut code = CRITICAL;
            let mut what = format!("{} answered {s}{from}, expected {}", a.uri, a.expect);
            invite_what(&mut code, &mut what);
            (code, what)
        }
        Some(s) => {
            let mut code = if o.retransmits > 0 { WARNING } else { OK };
            let mut what = format!("{} answered {s}{from} in {:.3} ms", a.uri, rtt * 1000.0);
            if o.retransmits > 0 {
                what.push_str(&format!(" after {} retransmissions", o.retransmits));
            }
            if let Some(c) = a.critical.filter(|c| rtt > *c) {
                code = CRITICAL;
                what.push_str(&format!(" (RTT above the critical {c} s)"));
            } else if let Some(w) = a.warning.filter(|w| rtt > *w) {
                code = code.max(WARNING);
                what.push_str(&format!(" (RTT above the warning {w} s)"));
            }
            if a.invite && inv.is_none() {
                code = CRITICAL;
                what.push_str("; no final answer to INVITE");
            }
            invite_what(&mut code, &mut what);
            (code, what)
        }
    };
    let label = ["OK", "WARNING", "CRITICAL", "UNKNOWN"][code as usize];
    (code, format!("SIP {label}: {what} | {perf}"))
}

fn run_monitor(a: RunArgs) -> anyhow::Result<ExitCode> {
    let (cfg, path) = crate::config::load(a.config.as_deref())?;
    if cfg.probe.target.is_empty() {
        anyhow::bail!(
            "{}: no [[probe.target]] to probe",
            path.map(|p| p.display().to_string())
                .unwrap_or_else(|| crate::config::DEFAULT_PATH.to_string())
        );
    }
    let rt = super::runtime()?;
    rt.block_on(async move {
        let out = super::line_output(Some(std::path::Path::new(&a.out)))?;
        let (sink, sink_task) = ingest::sink::spawn_writer(out);
        let sink = sink.with_tags(&cfg.global_tags);
        // probe.shard: only this instance's share of the targets.
        let own = ProbeConfig {
            target: cfg.own_probe_targets(),
            ..cfg.probe.clone()
        };
        let (mut rx, handle) = monitor::spawn(&own).await?;
        tracing::info!(targets = own.target.len(), shard = %cfg.shard(), "Probing started");
        let mut enc = ingest::LineEncoder::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let deadline = async {
            match a.duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                o = rx.recv() => match o {
                    Some(o) => report::encode(&o, &mut enc),
                    None => break,
                },
                _ = tick.tick() => {
                    let n = enc.lines();
                    sink.write(report::BUCKET, enc.take(), n).await?;
                }
                _ = &mut deadline => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        // Stop probing; the tracker then emits the last summaries and closes the channel.
        let stopper = tokio::spawn(handle.stop());
        while let Some(o) = rx.recv().await {
            report::encode(&o, &mut enc);
        }
        let _ = stopper.await;
        let n = enc.lines();
        sink.write(report::BUCKET, enc.take(), n).await?;
        sink.flush().await?;
        drop(sink);
        let stats = sink_task.await??;
        tracing::info!(points = stats.points_written, "Probing stopped");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

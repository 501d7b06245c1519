//! srewatch: ingest, probe and benchmark for SRE SIP call-routing platforms.
//!
//! Thin glue: parse the command line, set up logging, and hand over to one of [`cmd`].

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process (what mimalloc does with `MIMALLOC_ALLOW_THP=0`,
/// an option it reads before `main`): mimalloc asks for them on its arenas, and in 2 MiB
/// granules `ingest --once` of the 1,000,000-row file peaked at 258 MiB instead of 234 MiB,
/// with no measurable speed difference (docs/ingest.md, "Speed and memory").
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process's memory map.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

mod bench_report;
mod bench_run;
mod cmd;
mod config;
mod metrics;
mod metrics_server;
mod notify;
mod report;
mod shard;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "srewatch",
    version,
    about = "Ingest, probe and benchmark for SRE SIP call-routing platforms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Turn counters.csv and samples.csv into per-minute points.
    Ingest(cmd::ingest::Args),
    /// Read Kamailio's internal statistics.
    #[command(subcommand)]
    Kamailio(cmd::kamailio::Command),
    /// Probe CPs and VIPs with SIP OPTIONS (and INVITE for the 503 check).
    #[command(subcommand)]
    Probe(cmd::probe::Command),
    /// SIP capacity benchmark (load generator).
    Bench(cmd::bench::Args),
    /// A stateless SIP UAS for lab tests and for measuring the bench itself.
    Responder(cmd::responder::Args),
    /// Run ingest, Kamailio polling and probing together (the systemd service).
    Run(cmd::run::Args),
    /// Configuration tools.
    #[command(subcommand)]
    Config(cmd::config::Command),
}

fn main() -> ExitCode {
    no_huge_pages();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if is_probe_check() && e.use_stderr() => {
            // A Nagios plugin: bad arguments are UNKNOWN, with the reason on stdout.
            println!("SIP UNKNOWN: {}", one_line(&e.render().to_string()));
            return ExitCode::from(cmd::probe::UNKNOWN);
        }
        Err(e) => e.exit(),
    };
    init_logging();
    let result = match cli.command {
        Command::Ingest(a) => cmd::ingest::run(a),
        Command::Kamailio(c) => cmd::kamailio::run(c),
        Command::Probe(c) => cmd::probe::run(c),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Responder(a) => cmd::responder::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Config(c) => cmd::config::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}srewatch: {e:#}", journal_prefix(tracing::Level::ERROR));
            ExitCode::from(2)
        }
    }
}

/// Whether the command line is `srewatch probe check ...`.
fn is_probe_check() -> bool {
    let mut words = std::env::args_os().skip(1).filter(|a| {
        let a = a.to_string_lossy();
        !a.starts_with('-')
    });
    words.next().is_some_and(|w| w == "probe") && words.next().is_some_and(|w| w == "check")
}

/// Clap's message on one line, without its usage block (a plugin prints one line).
fn one_line(rendered: &str) -> String {
    let text: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let text = text.join(" ");
    text.strip_prefix("error: ").unwrap_or(&text).to_string()
}

/// The sd-daemon priority prefix (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug) when
/// stderr is journald's stream (`JOURNAL_STREAM` set), so `journalctl -p warning` finds the
/// warnings and errors; empty otherwise.
pub fn journal_prefix(level: tracing::Level) -> &'static str {
    if std::env::var_os("JOURNAL_STREAM").is_none() {
        return "";
    }
    priority(level)
}

fn priority(level: tracing::Level) -> &'static str {
    match level {
        tracing::Level::ERROR => "<3>",
        tracing::Level::WARN => "<4>",
        tracing::Level::INFO => "<6>",
        _ => "<7>",
    }
}

/// Puts the sd-daemon priority prefix before each event the inner format writes.
struct Priority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Priority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        writer.write_str(priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// One event per line on stderr. Under systemd (`JOURNAL_STREAM` set): no timestamps (journald
/// adds its own) and each line starts with its sd-daemon priority, `<3>` to `<7>`.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SREWATCH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !journald && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    if journald {
        let format = tracing_subscriber::fmt::format()
            .with_target(false)
            .with_ansi(false)
            .without_time();
        builder.event_format(Priority(format)).init();
    } else {
        builder.init();
    }
}

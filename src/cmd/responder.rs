//! `srewatch responder --listen ADDR [--status 200|503] [--delay D]`: a stateless SIP UAS
//! (UDP) for lab tests and for measuring the bench's own ceiling. Runs until SIGINT/SIGTERM,
//! then prints its counters.

use anyhow::Context;
use probe::responder::{Responder, ResponderConfig};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (UDP), e.g. 127.0.0.1:5060.
    #[arg(long)]
    listen: SocketAddr,
    /// Status for OPTIONS (and INVITE unless --invite-status is given).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(200..700))]
    status: u16,
    /// Status for INVITE (default: --status).
    #[arg(long, value_parser = clap::value_parser!(u16).range(200..700))]
    invite_status: Option<u16>,
    /// Wait this long before each answer, e.g. 20ms.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    delay: Duration,
    /// Drop every N-th request (fault injection for tests); 0 never.
    #[arg(long, default_value_t = 0)]
    drop_every: u64,
    /// Threads, each with its own SO_REUSEPORT socket (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let cfg = ResponderConfig {
        listen: a.listen,
        status: a.status,
        invite_status: a.invite_status.unwrap_or(a.status),
        delay: a.delay,
        drop_every: a.drop_every,
        threads: a.threads,
    };
    let r = Responder::start(cfg).with_context(|| format!("cannot listen on {}", a.listen))?;
    // Print the bound address on stdout so scripts (and tests) can use --listen 127.0.0.1:0.
    println!("listening {}", r.local_addr());
    wait_for_signal()?;
    let s = r.stop();
    eprintln!(
        "responder: received={} options={} invites={} acks={} other={} dropped={} invalid={} answered={} send_errors={}",
        s.received, s.options, s.invites, s.acks, s.other, s.dropped, s.invalid, s.answered, s.send_errors
    );
    Ok(ExitCode::SUCCESS)
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    Ok(())
}

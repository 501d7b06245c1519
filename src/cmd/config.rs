//! `srewatch config check [FILE]`: validate a configuration, print every problem with file,
//! line and reason; exit 0 when it is good, 1 when it is not. Usable as `ExecStartPre=`.
//!
//! A good file may still get warnings (exit 0): a probe target whose host name does not
//! resolve now (`srewatch run` starts anyway and retries it, see docs/service.md).

use crate::config::{self, Config};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate a configuration file (default: $SREWATCH_CONFIG, else
    /// /etc/srewatch/srewatch.toml).
    Check {
        #[arg(env = "SREWATCH_CONFIG")]
        file: Option<PathBuf>,
    },
}

/// Longest wait for one probe target's name to resolve during the check.
const RESOLVE_WAIT: Duration = Duration::from_secs(2);

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Check { file } = cmd;
    match config::load(file.as_deref()) {
        Ok((cfg, Some(path))) => {
            for w in warnings(&cfg, &path)? {
                println!("{w}");
            }
            println!("{}: OK", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Ok((_, None)) => {
            println!("{}: not found, defaults apply: OK", config::DEFAULT_PATH);
            Ok(ExitCode::SUCCESS)
        }
        Err(invalid) => {
            for p in &invalid.0 {
                println!("{p}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// `file:line: warning: ...` for each probe target whose host does not resolve now. The names
/// are looked up together, so the check takes at most [`RESOLVE_WAIT`] however many there are
/// (it runs as `ExecStartPre=`, possibly while DNS is down at boot).
fn warnings(cfg: &Config, path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut lookups = tokio::task::JoinSet::new();
    for (i, t) in cfg.probe.target.iter().enumerate() {
        let Ok(uri) = probe::message::TargetUri::parse(&t.uri) else {
            continue;
        };
        lookups.spawn_on(
            async move {
                let r = tokio::time::timeout(RESOLVE_WAIT, probe::monitor::resolve(&uri)).await;
                let why = match r {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!("no answer within {}s", RESOLVE_WAIT.as_secs())),
                };
                (i, uri.host, why)
            },
            rt.handle(),
        );
    }
    let mut failed: Vec<(usize, String, String)> = rt.block_on(async {
        let mut failed = Vec::new();
        while let Some(r) = lookups.join_next().await {
            if let Ok((i, host, Some(why))) = r {
                failed.push((i, host, why));
            }
        }
        failed
    });
    failed.sort();
    let out = failed
        .into_iter()
        .map(|(i, host, why)| {
            let key = format!("probe.target[{i}].uri");
            format!(
                "{}:{}: warning: {key}: {host} does not resolve now ({why}); srewatch run starts and retries it",
                path.display(),
                config::locate(&text, &key),
            )
        })
        .collect();
    // Lookups still blocked in the resolver are not waited for.
    rt.shutdown_background();
    Ok(out)
}

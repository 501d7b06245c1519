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

/// `file:line: warning: ...` for each probe target whose host does not resolve now.
fn warnings(cfg: &Config, path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut out = Vec::new();
    for (i, t) in cfg.probe.target.iter().enumerate() {
        let Ok(uri) = probe::message::TargetUri::parse(&t.uri) else {
            continue;
        };
        let lookup =
            async { tokio::time::timeout(RESOLVE_WAIT, probe::monitor::resolve(&uri)).await };
        let why = match rt.block_on(lookup) {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {}s", RESOLVE_WAIT.as_secs()),
        };
        let key = format!("probe.target[{i}].uri");
        out.push(format!(
            "{}:{}: warning: {key}: {} does not resolve now ({why}); srewatch run starts and retries it",
            path.display(),
            config::locate(&text, &key),
            uri.host
        ));
    }
    Ok(out)
}

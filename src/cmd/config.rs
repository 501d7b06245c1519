//! `srewatch config check [FILE]`: validate a configuration, print every problem with file,
//! line and reason; exit 0 when it is good, 1 when it is not. Usable as `ExecStartPre=`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate a configuration file (default: /etc/srewatch/srewatch.toml).
    Check { file: Option<PathBuf> },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Check { file } = cmd;
    match crate::config::load(file.as_deref()) {
        Ok((_, Some(path))) => {
            println!("{}: OK", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Ok((_, None)) => {
            println!(
                "{}: not found, defaults apply: OK",
                crate::config::DEFAULT_PATH
            );
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

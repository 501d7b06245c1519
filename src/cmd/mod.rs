//! One module per subcommand; each parses its own arguments and returns an exit code.

pub mod bench;
pub mod config;
pub mod ingest;
pub mod kamailio;
pub mod probe;
pub mod responder;
pub mod run;

/// A multi-threaded tokio runtime for the commands that need one.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Where line protocol goes without InfluxDB: stdout for `-` (or no `--out`), else the file,
/// created if missing and appended to, so a rerun never destroys earlier output.
pub fn line_output(
    out: Option<&std::path::Path>,
) -> anyhow::Result<Box<dyn std::io::Write + Send>> {
    use anyhow::Context;
    Ok(match out {
        None => Box::new(std::io::stdout()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdout()),
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?,
        ),
    })
}

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

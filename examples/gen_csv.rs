//! Writes a deterministic counters.csv and samples.csv for benchmarks and memory measurements.
//!
//! ```sh
//! cargo run --release --example gen_csv -- DIR [HOSTS] [STATS] [UNIX_MINUTE]
//! # default: 500 hosts x 2000 stats = 1,000,000 rows per file, minute 1652193060
//! ```

use std::io::BufWriter;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: gen_csv DIR [HOSTS] [STATS] [UNIX_MINUTE]");
        std::process::exit(2);
    };
    let num = |i: usize, d: i64| {
        args.get(i)
            .map(|s| s.parse::<i64>().expect("a number"))
            .unwrap_or(d)
    };
    let (hosts, stats, t) = (
        num(1, 500) as usize,
        num(2, 2000) as usize,
        num(3, 1652193060),
    );
    std::fs::create_dir_all(dir)?;
    let path = std::path::Path::new(dir);
    let mut c = BufWriter::new(std::fs::File::create(path.join("counters.csv"))?);
    ingest::gen::counters(&mut c, hosts, stats, t)?;
    let mut s = BufWriter::new(std::fs::File::create(path.join("samples.csv"))?);
    ingest::gen::samples(&mut s, hosts, stats, t)?;
    eprintln!("wrote {} rows per file to {dir}", hosts * stats);
    Ok(())
}

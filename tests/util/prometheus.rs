//! A real Prometheus scraping srewatch's `/metrics`, and its query API.

use super::victoria::http;
use super::Proc;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Starts Prometheus (data in `dir`) scraping `target` (`host:port`) every second; returns it
/// with its API address once it accepts connections.
pub fn start(dir: &Path, target: &str) -> (Proc, SocketAddr) {
    let prom_port = super::free_tcp_port();
    let pcfg = dir.join("prometheus.yml");
    std::fs::write(
        &pcfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: srewatch\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let mut pc = Command::new("prometheus");
    pc.arg(format!("--config.file={}", pcfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
    let p = Proc::spawn("prometheus", pc, &dir.join("prometheus.log"));
    let prom: SocketAddr = ([127, 0, 0, 1], prom_port).into();
    super::wait_tcp(prom, Duration::from_secs(30));
    (p, prom)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An instant query: each result's labels and value (empty when Prometheus does not answer
/// 200).
pub fn query(prom: SocketAddr, q: &str) -> Vec<(Value, f64)> {
    let Ok((200, body)) = http(
        prom,
        "GET",
        &format!("/api/v1/query?query={}", urlencode(q)),
        b"",
    ) else {
        return Vec::new();
    };
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let x = r["value"][1].as_str().unwrap_or("nan").parse();
            (r["metric"].clone(), x.unwrap_or(f64::NAN))
        })
        .collect()
}

/// The value of a query with exactly one result.
pub fn one(prom: SocketAddr, q: &str) -> Option<f64> {
    let r = query(prom, q);
    (r.len() == 1).then(|| r[0].1)
}

/// Waits until query `q` has exactly one result, equal to `want`; panics after `within`.
pub fn wait_value(prom: SocketAddr, q: &str, want: f64, within: Duration) {
    let start = Instant::now();
    loop {
        let got = one(prom, q);
        if got == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < within,
            "Prometheus query {q}: {got:?}, expected {want}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

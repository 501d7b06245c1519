//! A real `victoria-metrics` (Debian package) on a free 127.0.0.1 port with its own data
//! directory: the InfluxDB-API server of the integration tests.
//!
//! What to know when reading data back:
//! - `POST /api/v2/write` is accepted (gzip too, `precision=s`); the token is not checked.
//! - A point becomes one series per field, named `{measurement}_{field}`, with the tags as
//!   labels: `cpu,hostname=cp1 value=1i 60` is `cpu_value{hostname="cp1"}`.
//! - VictoriaMetrics 1.79 ignores the `bucket` query argument; it stores `db=..` as a `db` label.
//!   Send `db=BUCKET` (`InfluxConfig::db_param = true`) to keep buckets apart.
//! - Values come back as f64, timestamps in milliseconds.
//! - Data outside the retention (default 1 month) is refused silently: use recent timestamps.
//! - VictoriaMetrics keeps every sample; two writes of one series and timestamp are two samples
//!   (InfluxDB would keep the last). [`Victoria::start`] runs with `-dedup.minScrapeInterval=1ms`,
//!   which makes reads return one sample per timestamp (for equal timestamps, VictoriaMetrics
//!   picks one: not reliably the last write; 10, 3, 7 written with a force_flush after each read
//!   back as 10 until a background merge, then 7); [`Victoria::start_raw`] and
//!   [`Victoria::stopped_raw`] run without, so every write shows.
//! - Lines it cannot parse are skipped with a log line and the request still answers 204, so a
//!   400 for one line needs a test double.

use super::{free_tcp_port, Proc};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One series as `/api/v1/export` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Labels, `__name__` included.
    pub metric: BTreeMap<String, String>,
    pub values: Vec<f64>,
    /// Milliseconds.
    pub timestamps: Vec<i64>,
}

impl Series {
    pub fn name(&self) -> &str {
        self.metric
            .get("__name__")
            .map(String::as_str)
            .unwrap_or("")
    }

    /// (seconds, value) pairs in time order.
    pub fn points(&self) -> Vec<(i64, f64)> {
        let mut v: Vec<(i64, f64)> = self
            .timestamps
            .iter()
            .map(|t| t / 1000)
            .zip(self.values.iter().copied())
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }
}

pub struct Victoria {
    pub port: u16,
    pub data: PathBuf,
    log: PathBuf,
    dedup: bool,
    proc: Option<Proc>,
    starts: u32,
}

impl Victoria {
    /// Starts VictoriaMetrics with its data under `dir` and waits until it is ready.
    pub fn start(dir: &Path) -> Victoria {
        Self::launch(dir, true)
    }

    /// Like [`Victoria::start`], without deduplication.
    pub fn start_raw(dir: &Path) -> Victoria {
        Self::launch(dir, false)
    }

    /// A server not started yet (for "server down at start" tests): the port is reserved only
    /// by being free now; call [`Victoria::restart`] to start it.
    pub fn stopped(dir: &Path) -> Victoria {
        Victoria {
            port: free_tcp_port(),
            data: dir.join("vm-data"),
            log: dir.join("vm.log"),
            dedup: true,
            proc: None,
            starts: 0,
        }
    }

    /// Like [`Victoria::stopped`], without deduplication once started.
    pub fn stopped_raw(dir: &Path) -> Victoria {
        Victoria {
            dedup: false,
            ..Self::stopped(dir)
        }
    }

    fn launch(dir: &Path, dedup: bool) -> Victoria {
        let mut vm = Victoria::stopped(dir);
        vm.dedup = dedup;
        vm.restart();
        vm
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn running(&self) -> bool {
        self.proc.is_some()
    }

    /// Stops the server gracefully (SIGTERM: it writes what it holds to disk) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let st = p.terminate(Duration::from_secs(10));
            assert!(
                st.is_some(),
                "victoria-metrics did not stop within 10 s; log: {}",
                self.log_tail()
            );
        }
    }

    /// Starts (again) on the same port and data directory, and waits until it is ready.
    pub fn restart(&mut self) {
        self.stop();
        self.starts += 1;
        let bin = which("victoria-metrics");
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!("-storageDataPath={}", self.data.display()))
            .arg("-retentionPeriod=100y")
            .arg("-loggerLevel=WARN")
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache");
        if self.dedup {
            cmd.arg("-dedup.minScrapeInterval=1ms");
        }
        let log = self.log.with_extension(format!("{}.log", self.starts));
        self.proc = Some(Proc::spawn("victoria-metrics", cmd, &log));
        self.log = log;
        let start = Instant::now();
        loop {
            if let Ok((200, body)) = http(self.addr(), "GET", "/health", b"") {
                if body.trim_ascii() == b"OK" {
                    return;
                }
            }
            if self.proc.as_mut().unwrap().exited() {
                panic!(
                    "victoria-metrics ({}) exited at start; log:\n{}",
                    bin.display(),
                    self.log_tail()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "victoria-metrics not ready after 20 s; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Makes recent writes searchable (`/internal/force_flush`).
    pub fn flush(&self) {
        let (status, body) =
            http(self.addr(), "GET", "/internal/force_flush", b"").expect("force_flush");
        assert_eq!(
            status,
            200,
            "force_flush: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// Every series matching the selector (e.g. `{__name__=~"cpu.*"}`), sorted by labels,
    /// after a flush.
    pub fn export(&self, selector: &str) -> Vec<Series> {
        self.flush();
        let body = format!("match[]={}", urlencode(selector));
        let (status, text) =
            http(self.addr(), "POST", "/api/v1/export", body.as_bytes()).expect("export");
        assert_eq!(status, 200, "export: {}", String::from_utf8_lossy(&text));
        let mut out: Vec<Series> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_slice(l).expect("export line is JSON");
                Series {
                    metric: v["metric"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect(),
                    values: v["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect(),
                    timestamps: v["timestamps"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_i64().unwrap())
                        .collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.metric.cmp(&b.metric));
        out
    }

    /// Number of samples (not series) matching the selector.
    pub fn sample_count(&self, selector: &str) -> usize {
        self.export(selector).iter().map(|s| s.values.len()).sum()
    }

    /// The end of the current log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// The path of a server's executable: PATH, then /usr/bin and /usr/sbin.
pub(crate) fn which(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in
        std::env::split_paths(&path).chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
    {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} not found in PATH: install the Debian package (scripts/test does it)");
}

/// Percent-encoding of a query-string value.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A minimal HTTP/1.0 client: (status, body). `POST` bodies are form-encoded.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if method == "POST" {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&resp[..split]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, resp[split + 4..].to_vec()))
}

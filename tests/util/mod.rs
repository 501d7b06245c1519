//! Test helpers: temporary directories, free ports, child processes killed on drop, waiting,
//! running `srewatch` and reading its `/metrics` page.
#![allow(dead_code)]

pub mod influx;
pub mod prometheus;
pub mod victoria;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory for one test, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("srewatch-test-")
        .tempdir()
        .expect("tempdir")
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free for both UDP and TCP on 127.0.0.1 (for SIP listeners).
pub fn free_udp_tcp_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until something accepts TCP connections at `addr`, or panics after `within`.
pub fn wait_tcp(addr: SocketAddr, within: Duration) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < within,
            "nothing listening on {addr} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Spawns `cmd` in its own process group with stdout/stderr to `log` (kept for
    /// post-mortem reading). Dropping the `Proc` kills the whole group, so forking servers
    /// (Kamailio) leave no children behind.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        use std::os::unix::process::CommandExt;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let err = out.try_clone().unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            child,
            name: name.to_string(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGKILL to the whole process group and reaps the child.
    pub fn kill(&mut self) {
        unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `within` for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `srewatch` binary built for these tests.
pub fn srewatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_srewatch"))
}

/// The status code of sipsak's answer to an OPTIONS to `uri` (Debian's sipsak, an SIP client
/// independent of srewatch), e.g. `"200"`.
pub fn sipsak_status(uri: &str) -> String {
    let out = Command::new("sipsak")
        .args(["-vv", "-s", uri])
        .output()
        .expect("sipsak (Debian package sipsak)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.starts_with("SIP/2.0 "))
        .map(|l| l[8..11].to_string())
        .unwrap_or_else(|| panic!("sipsak printed no status line:\n{text}"))
}

/// The workspace's `fixtures/` directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub mod cluster;
pub mod kamailio;

/// Polls `f` until it returns true, or panics with `what` after `within`.
pub fn wait_until(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `text` to `path` atomically (a temporary file renamed over it), as the platform
/// replaces its CSV files.
pub fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Runs `cmd` to its end; panics with its output unless it exits 0. Returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `srewatch probe check ARGS`: exit code (-1 when killed), stdout, stderr.
pub fn probe_check(args: &[&str]) -> (i32, String, String) {
    let out = srewatch()
        .args(["probe", "check"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `srewatch config check CFG`: exit code and stdout.
pub fn config_check(cfg: &Path) -> (Option<i32>, String) {
    let out = srewatch()
        .args(["config", "check"])
        .arg(cfg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `srewatch run --config CFG EXTRA...`, logging to `log`, once it serves `/metrics` on
/// 127.0.0.1:`metrics_port` (panics with the log if it exits first, or after 20 s).
pub fn start_run(cfg: &Path, extra: &[&str], log: &Path, metrics_port: u16) -> Proc {
    let mut cmd = srewatch();
    cmd.args(["run", "--config"]).arg(cfg).args(extra);
    let mut svc = Proc::spawn("srewatch run", cmd, log);
    let maddr: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    wait_until(
        Duration::from_secs(20),
        "srewatch to serve /metrics",
        || {
            assert!(
                !svc.exited(),
                "srewatch run exited: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            TcpStream::connect(maddr).is_ok()
        },
    );
    svc
}

/// The value of the sample `series` (`name{labels}` as written) on a `/metrics` page.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// How many batches (`*.batch` files) the spool directory `dir` holds.
pub fn spool_batches(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".batch")
        })
        .count()
}

/// Runs blocking `f` (a server start or stop, an export) on a multi-threaded runtime's worker.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

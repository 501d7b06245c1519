//! Files srewatch cannot read: a real `srewatch run` as another user (as the unit runs it, with
//! `User=srewatch`) facing a root-only counters.csv, then a FIFO; `srewatch ingest --once` facing
//! a FIFO, a symlink to /dev/zero and a file over `max_file_bytes`. Each must give one loud,
//! distinct error with a hint, a metric, and never a blocking read.

use crate::util::victoria::http;
use crate::util::{self, Proc};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The uid and gid the service runs as in these tests (nobody/nogroup).
const NOBODY: u32 = 65534;

fn minute() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 60
        - 20
}

/// One counters row (host cp1, stat s1) for minute `m`, values 100 + i.
fn counters_row(m: i64) -> String {
    let mut row = format!("cp1,s1,2026-01-01T00:00:00,{}", m * 60);
    for i in 0..15 {
        row.push_str(&format!(",{}", 100 + i));
    }
    row.push('\n');
    row
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn metrics(addr: SocketAddr) -> String {
    match http(addr, "GET", "/metrics", b"") {
        Ok((200, body)) => String::from_utf8(body).unwrap(),
        _ => String::new(),
    }
}

/// counters.csv mode 0600 owned by root, srewatch running as another user (not an endless
/// `INFO Waiting for file` without a metric): one ERROR naming the cause, the owner,
/// mode and srewatch's uid, with the hint (SupplementaryGroups=); the problem gauge and counter
/// on /metrics; no repeat at each rescan; "readable again" once fixed, and the data ingested.
/// A FIFO in its place is then a different cause, logged once more.
#[test]
fn file_access_unreadable_file_as_another_user_is_loud_and_counted() {
    let dir = util::tempdir();
    chmod(dir.path(), 0o755);
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    chmod(&data, 0o755);
    let counters = data.join("counters.csv");
    let m = minute();
    std::fs::write(&counters, counters_row(m)).unwrap();
    chmod(&counters, 0o600); // owned by root (the test runs as root in CI)
    std::fs::write(data.join("samples.csv"), "").unwrap();
    chmod(&data.join("samples.csv"), 0o644);
    let out = dir.path().join("out.lp");
    std::fs::write(&out, "").unwrap();
    std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY)).unwrap();
    let port = util::free_tcp_port();
    let cfg = dir.path().join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "[service]\nprobe = false\nkamailio = false\nhealth_interval = \"1s\"\nmetrics_listen = \"127.0.0.1:{port}\"\n\n\
             [ingest]\ndir = \"{}\"\ndebounce = \"30ms\"\nrescan_interval = \"200ms\"\nquiet_time = \"1s\"\n",
            data.display()
        ),
    )
    .unwrap();
    chmod(&cfg, 0o644);
    let log = dir.path().join("run.log");
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        env!("CARGO_BIN_EXE_srewatch"),
        "run",
        "--config",
    ])
    .arg(&cfg)
    .arg("--out")
    .arg(&out)
    .env("JOURNAL_STREAM", "0:0")
    .env_remove("NOTIFY_SOCKET");
    let mut svc = Proc::spawn("srewatch run as nobody", cmd, &log);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let problem = "srewatch_file_problem{file=\"counters.csv\",cause=\"permission_denied\"}";
    let problems = "srewatch_file_problems_total{file=\"counters.csv\"}";
    util::wait_until(
        Duration::from_secs(20),
        "permission problem on /metrics",
        || {
            assert!(!svc.exited(), "srewatch exited:\n{}", read_log());
            util::metric(&metrics(addr), problem) == Some(1.0)
        },
    );
    // Several rescans later: still one error line, no "Waiting for file" for counters.csv.
    std::thread::sleep(Duration::from_millis(1000));
    let text = read_log();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Cannot read file: permission denied"))
        .collect();
    assert_eq!(errors.len(), 1, "{text}");
    let e = errors[0];
    assert!(e.contains("ERROR"), "{e}");
    assert!(e.contains("counters.csv"), "{e}");
    assert!(e.contains("mode 0600"), "{e}");
    assert!(e.contains("file owner uid 0 gid 0"), "{e}");
    assert!(e.contains("srewatch runs as uid 65534 gid 65534"), "{e}");
    assert!(e.contains("SupplementaryGroups="), "{e}");
    assert!(!text.contains("Waiting for file"), "{text}");
    let t = metrics(addr);
    assert_eq!(util::metric(&t, problems), Some(1.0), "{t}");
    assert_eq!(
        util::metric(
            &t,
            "srewatch_file_problem{file=\"samples.csv\",cause=\"permission_denied\"}"
        ),
        Some(0.0),
        "{t}"
    );

    // Fixed by the operator: readable again, the row is ingested, the gauge drops to 0.
    chmod(&counters, 0o640);
    std::os::unix::fs::chown(&counters, None, Some(NOBODY)).unwrap();
    let want = format!("s1,hostname=cp1 value=100i {}", m * 60);
    util::wait_until(Duration::from_secs(20), "the row ingested", || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains(&want)
    });
    let t = metrics(addr);
    assert_eq!(util::metric(&t, problem), Some(0.0), "{t}");
    assert!(read_log().contains("File is readable again"));

    // A FIFO in its place: another cause, logged once, counted; nothing blocks.
    std::fs::remove_file(&counters).unwrap();
    mkfifo(&counters);
    let fifo = "srewatch_file_problem{file=\"counters.csv\",cause=\"not_a_regular_file\"}";
    util::wait_until(Duration::from_secs(20), "FIFO problem on /metrics", || {
        util::metric(&metrics(addr), fifo) == Some(1.0)
    });
    std::thread::sleep(Duration::from_millis(600));
    let text = read_log();
    assert_eq!(
        text.matches("Cannot read file: not a regular file (fifo)")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(util::metric(&metrics(addr), problems), Some(2.0));
    let st = svc.terminate(Duration::from_secs(15));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", read_log());
    // The health points (every second; the output is flushed at exit) said it too.
    let lp = std::fs::read_to_string(&out).unwrap();
    let health: Vec<&str> = lp
        .lines()
        .filter(|l| l.starts_with("srewatch_file,") && l.contains(",file=counters.csv "))
        .collect();
    for want in [
        "problems=1i,problem=\"permission_denied\"",
        "problems=2i,problem=\"not_a_regular_file\"",
    ] {
        assert!(
            health.iter().any(|l| l.contains(want)),
            "{want}: {health:#?}"
        );
    }
}

/// `srewatch ingest --once` on a directory whose counters.csv is `what`: (exit code, log), with
/// a deadline (a blocking open or an endless read fails it).
fn ingest_once(dir: &Path, extra_cfg: &str) -> (Option<i32>, String) {
    let cfg = dir.join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ingest]\ndir = \"{}\"\n{extra_cfg}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let log = dir.join("once.log");
    let _ = std::fs::remove_file(&log);
    let mut cmd = util::srewatch();
    cmd.args(["ingest", "--once", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.join("out.lp"))
        .env("JOURNAL_STREAM", "0:0");
    let mut p = Proc::spawn("srewatch ingest --once", cmd, &log);
    let start = Instant::now();
    loop {
        if let Some(st) = p.child.try_wait().unwrap() {
            return (st.code(), std::fs::read_to_string(&log).unwrap());
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "ingest --once still running after 10 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ingest --once` with counters.csv a FIFO, a symlink to /dev/zero, or a file over the size
/// cap: each is refused at once with its cause (exit 1), never waited on or read without end,
/// and samples.csv is still ingested.
#[test]
fn file_access_ingest_once_refuses_fifo_device_and_oversized_file() {
    let dir = util::tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let counters = data.join("counters.csv");
    let m = minute();
    std::fs::write(
        data.join("samples.csv"),
        format!("cp1,accounting.openCalls,x,{},3800.000\n", m * 60),
    )
    .unwrap();
    let cases: [(&str, &dyn Fn(), &str, &str); 3] = [
        (
            "fifo",
            &|| mkfifo(&counters),
            "",
            "Cannot read file, skipped: not a regular file (fifo)",
        ),
        (
            "/dev/zero",
            &|| std::os::unix::fs::symlink("/dev/zero", &counters).unwrap(),
            "",
            "Cannot read file, skipped: not a regular file (character device)",
        ),
        (
            "over the cap",
            &|| std::fs::write(&counters, counters_row(m).repeat(20)).unwrap(),
            "max_file_bytes = 1024\n",
            "Cannot read file, skipped: larger than 1024 bytes",
        ),
    ];
    for (what, make, extra, want) in cases {
        let _ = std::fs::remove_file(&counters);
        make();
        let (code, log) = ingest_once(dir.path(), extra);
        assert_eq!(code, Some(1), "{what}: exit code; log:\n{log}");
        assert_eq!(log.matches(want).count(), 1, "{what}: log:\n{log}");
        assert!(log.contains("ERROR"), "{what}: {log}");
        assert!(log.contains("samples_rows=1"), "{what}: {log}");
    }
}

//! `srewatch run` keeps every part running when one of its inputs fails: an unresolvable
//! probe target and idle `/metrics` clients, with a real Kamailio and real TCP clients.

use crate::service::{files_only, Grid, Run};
use crate::util;
use crate::util::kamailio::{Kamailio, Options};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const GRID: Grid = Grid {
    hosts: 1,
    stats: 2,
    value: |h, s, m| m * 10 + (h * 2 + s) as i64,
};

/// `GET /metrics` from `addr`: the body.
fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn hup(run: &Run) {
    unsafe { libc::kill(run.proc.pid(), libc::SIGHUP) };
}

fn counters_lines(out: &Path) -> usize {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("stat0,hostname=cp0 ") || l.starts_with("stat1,hostname=cp0 "))
        .count()
}

/// A target whose name does not resolve is that target's state (alarm with the
/// reason, retried with backoff, a metric); the service starts, ingest and Kamailio polling
/// and the other probe target run; a target added by SIGHUP that does not resolve is retried
/// too.
#[test]
fn unresolvable_probe_target_is_its_own_state_at_start_and_after_sighup() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Options::default());
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let port = util::free_tcp_port();
    let metrics: SocketAddr = ([127, 0, 0, 1], port).into();
    let target = |name: &str, uri: &str| {
        format!("\n[[probe.target]]\nname = \"{name}\"\nuri = \"{uri}\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\n")
    };
    let base = format!(
        "[ingest]\ndir = \"{}\"\ndebounce = \"30ms\"\nrescan_interval = \"500ms\"\n\n[service]\nhealth_interval = \"1s\"\nmetrics_listen = \"{metrics}\"\n\n[[kamailio]]\nhostname = \"k1\"\naddress = \"{}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n{}{}",
        data.display(),
        k.jsonrpc_url(),
        target("cp1", &k.sip_uri()),
        target("cpx", "sip:no-such-cp.invalid:5090"),
    );
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, &base).unwrap();
    let out = dir.path().join("out.lp");
    let mut run = Run::ready(dir.path(), &cfg, &["--out", out.to_str().unwrap()], &[]);
    run.wait_log(
        "Alarm raised target=cpx role=cp alarm=unresolved detail=cannot resolve no-such-cp.invalid:",
        Duration::from_secs(5),
    );
    // Ingest runs: one rewrite, every point of it out.
    let m = crate::service::base_minute();
    util::replace(&data.join("counters.csv"), &GRID.counters_csv(m));
    util::wait_until(Duration::from_secs(10), "the counters points", || {
        counters_lines(&out) == GRID.expected(m, m).len()
    });
    // Kamailio polling and the other target run.
    // (The line-protocol file is buffered: the other parts are seen on /metrics.)
    util::wait_until(Duration::from_secs(10), "k1 up and cp1 in service", || {
        let page = scrape(metrics);
        util::metric(&page, "srewatch_kamailio_up{hostname=\"k1\"}") == Some(1.0)
            && util::metric(
                &page,
                "srewatch_probe_state{target=\"cp1\",role=\"cp\",state=\"in_service\"}",
            ) == Some(1.0)
    });
    // Retried at 1 s, 3 s, 7 s: counted, the alarm raised once.
    let failures = |name: &str| {
        util::metric(
            &scrape(metrics),
            &format!("srewatch_probe_target_start_failures_total{{target=\"{name}\",reason=\"resolve\"}}"),
        )
        .unwrap_or(0.0)
    };
    util::wait_until(
        Duration::from_secs(6),
        "three failed lookups of cpx",
        || failures("cpx") >= 3.0,
    );
    let page = scrape(metrics);
    assert_eq!(
        util::metric(&page, "srewatch_probe_target_started{target=\"cpx\"}"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        util::metric(&page, "srewatch_probe_target_started{target=\"cp1\"}"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        run.log().matches("alarm=unresolved").count(),
        1,
        "{}",
        run.log()
    );

    // SIGHUP adds another unresolvable target: added, alarmed and retried, not skipped.
    std::fs::write(&cfg, format!("{base}{}", target("cpy", "sip:cpy.invalid"))).unwrap();
    let before = failures("cpx");
    hup(&run);
    run.wait_log("Configuration reloaded", Duration::from_secs(5));
    // The reload also makes cpx try again at once (its next attempt was 4 s away).
    util::wait_until(
        Duration::from_millis(1500),
        "cpx tried again at the reload",
        || failures("cpx") > before,
    );
    run.wait_log(
        "Alarm raised target=cpy role=cp alarm=unresolved detail=cannot resolve cpy.invalid:",
        Duration::from_secs(5),
    );
    util::wait_until(Duration::from_secs(5), "two failed lookups of cpy", || {
        failures("cpy") >= 2.0
    });
    run.stop();
    assert!(
        !run.log().contains("Cannot start probe target"),
        "{}",
        run.log()
    );
    // The last health point counts the targets not started.
    let lp = std::fs::read_to_string(&out).unwrap();
    let last = lp
        .lines()
        .rfind(|l| l.starts_with("srewatch_probe,"))
        .unwrap();
    assert!(
        last.contains("targets=3i,targets_not_started=2i,"),
        "{last}"
    );
}

/// Idle `/metrics` clients are closed within a few seconds; with more idle
/// clients than the process has descriptors (RLIMIT_NOFILE 256, 400 clients), the counters.csv
/// rewrite is still read and every point of it comes out, and `/metrics` answers afterwards.
#[test]
fn idle_metrics_clients_cannot_starve_the_files() {
    let dir = util::tempdir();
    let (csv, cfg) = files_only(dir.path(), "");
    let port = util::free_tcp_port();
    let metrics: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!("metrics_listen = \"{metrics}\"\n"));
    std::fs::write(&cfg, text).unwrap();
    let out = dir.path().join("out.lp");
    let mut run = Run::ready(dir.path(), &cfg, &["--out", out.to_str().unwrap()], &[]);
    let pid = run.proc.pid();
    let limit = libc::rlimit {
        rlim_cur: 256,
        rlim_max: 256,
    };
    assert_eq!(
        unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) },
        0
    );
    let before = open_fds(pid);

    // 20 idle clients: each closed by srewatch (EOF) within 6 s.
    let start = Instant::now();
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(metrics).unwrap())
        .collect();
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut b = [0u8; 16];
        match c.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("not closed after {:?}: {other:?}", start.elapsed()),
        }
        assert!(
            start.elapsed() < Duration::from_secs(7),
            "{:?}",
            start.elapsed()
        );
    }
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );

    // 400 idle clients against 256 descriptors, then a rewrite of counters.csv.
    let mut idle = Vec::new();
    for _ in 0..400 {
        if let Ok(c) = TcpStream::connect_timeout(&metrics, Duration::from_millis(200)) {
            idle.push(c);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let during = open_fds(pid);
    let m = crate::service::base_minute();
    util::replace(&csv, &GRID.counters_csv(m));
    util::wait_until(Duration::from_secs(10), "the counters points", || {
        counters_lines(&out) == GRID.expected(m, m).len()
    });
    drop(idle);
    std::thread::sleep(Duration::from_secs(6));
    let page = scrape(metrics);
    let after = open_fds(pid);
    eprintln!("descriptors: before {before}, with 400 idle clients {during}, after {after}");
    assert!(during <= before + 32 + 2, "{before} -> {during}");
    assert!(
        util::metric(
            &page,
            "srewatch_metrics_connections_total{outcome=\"refused\"}"
        )
        .unwrap_or(0.0)
            >= 300.0,
        "{page}"
    );
    assert_eq!(
        util::metric(&page, "srewatch_metrics_open_connections"),
        Some(1.0),
        "{page}"
    );
    run.stop();
}

/// `probe check` of a name that does not resolve is still UNKNOWN at once (the monitor retries
/// such a target; the check does not wait for it).
#[test]
fn probe_check_of_an_unresolvable_host_is_unknown() {
    let start = Instant::now();
    let out = util::srewatch()
        .args(["probe", "check", "sip:no-such-cp.invalid:5090"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.starts_with("SIP UNKNOWN: cannot resolve no-such-cp.invalid: "),
        "{stdout}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// The soft limit of open descriptors is raised to the hard one at start (systemd gives 1024
/// soft, 524288 hard).
#[test]
fn open_file_limit_is_raised_to_the_hard_limit() {
    // The child inherits this process's limits: a soft limit of 1024 under a higher hard one
    // (nextest runs each test in its own process; 1024 is room enough for a test binary).
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert!(lim.rlim_max > 1024, "hard limit {}", lim.rlim_max);
    let hard = lim.rlim_max;
    lim.rlim_cur = 1024;
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let dir = util::tempdir();
    let (_, cfg) = files_only(dir.path(), "");
    let out = dir.path().join("out.lp");
    let mut run = Run::ready(dir.path(), &cfg, &["--out", out.to_str().unwrap()], &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", run.proc.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let v: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (v[3], v[4]),
        (&*hard.to_string(), &*hard.to_string()),
        "{line}"
    );
    assert!(
        run.log()
            .contains(&format!("Raised the open-file limit from=1024 to={hard}")),
        "{}",
        run.log()
    );
    run.stop();
}

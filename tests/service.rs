//! `srewatch run`, the service, as a real process: configuration errors, sd_notify, SIGHUP
//! reloads, kill -9 and InfluxDB-API outages (VictoriaMetrics), an unusable spool, CSV files
//! replaced under it, and the systemd unit.

use crate::util::kamailio::{Kamailio, Options};
use crate::util::victoria::Victoria;
use crate::util::{self, Proc};
use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HOSTS: usize = 3;
const STATS: usize = 4;

/// The counter value of host `h`, stat `s` in minute `m` (unix minutes): stable across rewrites.
fn value(h: usize, s: usize, m: i64) -> i64 {
    (m % 100_000) * 100 + (h * 10 + s) as i64
}

/// A platform's counters.csv of `hosts` x `stats` rows whose value per (host, stat, minute)
/// is `value`: shared by the service and restart tests.
#[derive(Clone, Copy)]
pub(crate) struct Grid {
    pub hosts: usize,
    pub stats: usize,
    pub value: fn(usize, usize, i64) -> i64,
}

impl Grid {
    /// counters.csv as the platform writes it at minute `m`: v0 = minute m, v_i = minute m - i.
    pub fn counters_csv(&self, m: i64) -> String {
        let mut out = String::with_capacity(self.hosts * self.stats * 120);
        for h in 0..self.hosts {
            for s in 0..self.stats {
                out.push_str(&format!("cp{h},stat{s},2026-01-01T00:00:00,{}", m * 60));
                for i in 0..15 {
                    out.push_str(&format!(",{}", (self.value)(h, s, m - i)));
                }
                out.push('\n');
            }
        }
        out
    }

    /// Every counters point the rewrites at minutes `first..=last` carry:
    /// (series, seconds) → value.
    pub fn expected(&self, first: i64, last: i64) -> BTreeMap<(String, i64), i64> {
        let mut e = BTreeMap::new();
        for h in 0..self.hosts {
            for s in 0..self.stats {
                for m in first - 14..=last {
                    e.insert((format!("stat{s}/cp{h}"), m * 60), (self.value)(h, s, m));
                }
            }
        }
        e
    }
}

const GRID: Grid = Grid {
    hosts: HOSTS,
    stats: STATS,
    value,
};

/// A recent minute (VictoriaMetrics refuses data older than its retention).
pub(crate) fn base_minute() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 60
        - 200
}

/// The counters points in VictoriaMetrics: (series, seconds) → value.
pub(crate) fn counters_in(vm: &Victoria) -> BTreeMap<(String, i64), i64> {
    let mut got = BTreeMap::new();
    for s in vm.export(r#"{db="counters"}"#) {
        let name = s.name().trim_end_matches("_value").to_string();
        let host = s.metric.get("hostname").cloned().unwrap_or_default();
        for (t, v) in s.points() {
            got.insert((format!("{name}/{host}"), t), v as i64);
        }
    }
    got
}

/// Waits until VictoriaMetrics holds at least `n` counters points (panics after `within`).
pub(crate) fn wait_counters(vm: &Victoria, n: usize, within: Duration) {
    util::wait_until(within, "every counters point", || {
        counters_in(vm).len() >= n
    });
}

/// [`files_only`] writing through a [`Recorder`] in front of `vm`, uncompressed so that the
/// recorder can read the bodies: (recorder, counters.csv, configuration file).
pub(crate) fn recorded_files_only(
    dir: &Path,
    vm: &Victoria,
    spool: &Path,
) -> (Recorder, PathBuf, PathBuf) {
    let rec = Recorder::start(vm.addr());
    let (file, cfg) = files_only(
        dir,
        &format!(
            "{}gzip = false\n",
            influx_section(vm, spool).replace(&vm.url(), &rec.url())
        ),
    );
    (rec, file, cfg)
}

/// A recording HTTP forwarder in front of VictoriaMetrics: every write the server accepted, in
/// the order it accepted them (VictoriaMetrics itself cannot tell arrival order). While the
/// server is down, connections are closed without an answer (srewatch sees a network error).
pub(crate) struct Recorder {
    port: u16,
    pub(crate) accepted: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Recorder {
    pub(crate) fn start(upstream: std::net::SocketAddr) -> Recorder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let acc = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let acc = acc.clone();
                std::thread::spawn(move || {
                    let _ = Recorder::serve(conn, upstream, &acc);
                });
            }
        });
        Recorder { port, accepted }
    }

    fn serve(
        conn: std::net::TcpStream,
        upstream: std::net::SocketAddr,
        acc: &std::sync::Mutex<Vec<(String, String)>>,
    ) -> std::io::Result<()> {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut out = conn.try_clone()?;
        let mut r = BufReader::new(conn);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                r.read_line(&mut h)?;
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body)?;
            // Forward; a server that is down closes this connection unanswered.
            let mut up = std::net::TcpStream::connect(upstream)?;
            write!(
                up,
                "POST {path} HTTP/1.0\r\nHost: {upstream}\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\r\n"
            )?;
            up.write_all(&body)?;
            let mut resp = Vec::new();
            up.read_to_end(&mut resp)?;
            let status: u16 = String::from_utf8_lossy(&resp)
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(502);
            if (200..300).contains(&status) {
                acc.lock()
                    .unwrap()
                    .push((path, String::from_utf8(body).unwrap()));
            }
            write!(out, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n")?;
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The accepted counters points in arrival order: series → [(seconds, value)].
    fn counters(&self) -> BTreeMap<String, Vec<(i64, i64)>> {
        let mut out: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        for (path, body) in self.accepted.lock().unwrap().iter() {
            if !path.contains("db=counters") {
                continue;
            }
            for line in body.lines() {
                let (series, rest) = line.split_once(" value=").unwrap();
                let (v, t) = rest.split_once("i ").unwrap();
                let (stat, host) = series.split_once(",hostname=").unwrap();
                out.entry(format!("{stat}/{host}"))
                    .or_default()
                    .push((t.parse().unwrap(), v.parse().unwrap()));
            }
        }
        out
    }
}

pub(crate) struct Run {
    pub(crate) proc: Proc,
    log: PathBuf,
}

impl Run {
    /// Starts `srewatch run` and waits (up to 10 s) for its "Service ready" log line.
    pub(crate) fn ready(dir: &Path, config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let mut run = Run::start(dir, config, extra, env);
        run.wait_log("Service ready", Duration::from_secs(10));
        run
    }

    fn start(dir: &Path, config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let log = dir.join(format!(
            "srewatch-{}.log",
            std::fs::read_dir(dir).unwrap().count()
        ));
        let mut cmd = util::srewatch();
        cmd.arg("run").arg("--config").arg(config).args(extra);
        // journald style: no colours, no timestamps, `<N>` priority prefixes.
        cmd.env("JOURNAL_STREAM", "0:0").env_remove("NOTIFY_SOCKET");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let proc = Proc::spawn("srewatch", cmd, &log);
        Run { proc, log }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn wait_log(&mut self, needle: &str, within: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                !self.proc.exited(),
                "srewatch exited while waiting for {needle:?}; log:\n{}",
                self.log()
            );
            assert!(
                start.elapsed() < within,
                "no {needle:?} in the log after {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.proc.pid(), sig) };
    }

    /// SIGTERM; asserts exit code 0.
    pub(crate) fn stop(&mut self) {
        let st = self.proc.terminate(Duration::from_secs(15));
        let st = st.unwrap_or_else(|| panic!("srewatch did not stop; log:\n{}", self.log()));
        assert_eq!(st.code(), Some(0), "exit status; log:\n{}", self.log());
    }
}

pub(crate) fn influx_section(vm: &Victoria, spool: &Path) -> String {
    format!(
        "[influxdb]\nurl = \"{}\"\ndb_param = true\nspool_dir = \"{}\"\nbatch_max_delay = \"20ms\"\nretry_base = \"100ms\"\nretry_max = \"300ms\"\nrequest_timeout = \"2s\"\n",
        vm.url(),
        spool.display()
    )
}

fn ingest_section(data: &Path) -> String {
    format!(
        "[ingest]\ndir = \"{}\"\ndebounce = \"30ms\"\nrescan_interval = \"500ms\"\nquiet_time = \"5s\"\nrollups = \"settled\"\n",
        data.display()
    )
}

const FILES_ONLY: &str = "[service]\nprobe = false\nkamailio = false\nhealth_interval = \"1h\"\n";

/// A service configuration with only file ingest on: `dir/data/counters.csv` followed, points
/// to the `[influxdb]` section `influx`. Returns the CSV path and the configuration path.
pub(crate) fn files_only(dir: &Path, influx: &str) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    let cfg = dir.join("s.toml");
    std::fs::write(
        &cfg,
        format!("{}{}{}", ingest_section(&data), influx, FILES_ONLY),
    )
    .unwrap();
    (data.join("counters.csv"), cfg)
}

#[test]
fn config_typo_is_named_by_check_and_run() {
    let dir = util::tempdir();
    let cfg = dir.path().join("srewatch.toml");
    std::fs::write(
        &cfg,
        "[ingest]\ndir = \"/tmp\"\n\n[probe]\n[[probe.target]]\nname = \"cp1\"\nuri = \"sip:127.0.0.1\"\nintervall = \"1s\"\n",
    )
    .unwrap();
    let want = format!("{}:8:", cfg.display());
    let (code, out) = util::config_check(&cfg);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.starts_with(&want) && out.contains("intervall"), "{out}");
    let run = util::srewatch()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.starts_with(&want) && err.contains("intervall"), "{err}");
    // The same line, word for word.
    assert_eq!(out.lines().next(), err.lines().next());
}

#[test]
fn example_configuration_passes_check() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/srewatch.toml.example");
    let (code, out) = util::config_check(&example);
    assert_eq!(out, format!("{}: OK\n", example.display()));
    assert_eq!(code, Some(0));
    // Every section is in it.
    let text = std::fs::read_to_string(&example).unwrap();
    for section in [
        "[service]",
        "[ingest]",
        "[influxdb]",
        "[[kamailio]]",
        "[probe]",
        "[[probe.target]]",
    ] {
        assert!(text.contains(section), "{section} missing");
    }
}

#[test]
fn sd_notify_ready_watchdog_status_stopping() {
    let dir = util::tempdir();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sd_notify_protocol(dir.path(), sock, sock_path.to_str().unwrap());
}

/// `NOTIFY_SOCKET=@name`: an abstract socket (`sd_notify(3)`), as systemd may hand out.
#[test]
fn sd_notify_to_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let dir = util::tempdir();
    let name = format!("srewatch-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sd_notify_protocol(dir.path(), sock, &format!("@{name}"));
}

/// Starts `srewatch run` with `NOTIFY_SOCKET=notify_socket` (bound by `sock`) and
/// `WATCHDOG_USEC=200000`; checks READY, WATCHDOG every 100 ms, STATUS every second, and
/// STOPPING on SIGTERM.
fn sd_notify_protocol(dir: &Path, sock: UnixDatagram, notify_socket: &str) {
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let cfg = dir.join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[service]\nprobe = false\nkamailio = false\nhealth_interval = \"1s\"\n",
            ingest_section(&data)
        ),
    )
    .unwrap();
    let out = dir.join("out.lp");
    let mut run = Run::start(
        dir,
        &cfg,
        &["--out", out.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", notify_socket),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut buf = [0u8; 1024];
    let mut recv = || {
        let n = sock.recv(&mut buf).expect("a notification within 5 s");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    };
    let first = recv();
    assert!(
        first.starts_with("READY=1\nSTATUS=files: 0 rows, 0 rejected"),
        "{first:?}"
    );
    // Watchdog every 100 ms (half of WATCHDOG_USEC) and a STATUS line every second.
    let (mut watchdogs, mut status) = (0, 0);
    let start = Instant::now();
    while watchdogs < 5 || status < 1 {
        assert!(start.elapsed() < Duration::from_secs(5));
        let m = recv();
        if m == "WATCHDOG=1" {
            watchdogs += 1;
        } else if m.starts_with("STATUS=files: ") {
            status += 1;
        }
    }
    run.signal(libc::SIGTERM);
    loop {
        let m = recv();
        if m == "STOPPING=1" {
            break;
        }
        assert!(m == "WATCHDOG=1" || m.starts_with("STATUS="), "{m:?}");
    }
    run.stop();
}

#[test]
fn sighup_bad_file_keeps_config_good_files_add_and_remove_targets() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Options::default());
    let cfg = dir.path().join("s.toml");
    let base = format!(
        "[service]\ningest = false\nhealth_interval = \"1s\"\n\n[[kamailio]]\nhostname = \"k1\"\naddress = \"{rpc}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nmax_backoff = \"1s\"\n\n[[probe.target]]\nname = \"cp1\"\nuri = \"{sip}\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\n",
        rpc = k.jsonrpc_url(),
        sip = k.sip_uri()
    );
    std::fs::write(&cfg, &base).unwrap();
    let out = dir.path().join("out.lp");
    let mut run = Run::ready(dir.path(), &cfg, &["--out", out.to_str().unwrap()], &[]);
    run.wait_log("target=cp1", Duration::from_secs(5));

    // A typo: refused with file:line, the running configuration kept.
    std::fs::write(&cfg, format!("{base}\n[[probe.target]]\nnme = \"cp2\"\n")).unwrap();
    let typo_line = base.lines().count() + 3;
    run.signal(libc::SIGHUP);
    run.wait_log(
        &format!("problem={}:{typo_line}: unknown field `nme`", cfg.display()),
        Duration::from_secs(5),
    );
    assert!(run
        .log()
        .contains("Configuration refused; keeping the running one"));

    // A good file: one more probe target and one more Kamailio target.
    let probe_t = |name: &str| {
        format!(
            "\n[[probe.target]]\nname = \"{name}\"\nuri = \"{}\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\n",
            k.sip_uri()
        )
    };
    let kam_t = |host: &str| {
        format!(
            "\n[[kamailio]]\nhostname = \"{host}\"\naddress = \"{}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nmax_backoff = \"1s\"\n",
            k.jsonrpc_url()
        )
    };
    std::fs::write(&cfg, format!("{base}{}{}", probe_t("cp2"), kam_t("k2"))).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    run.signal(libc::SIGHUP);
    run.wait_log("Configuration reloaded", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1200));
    {
        let log = run.log();
        assert!(log.contains("Probe target added target_name=cp2"), "{log}");
        assert!(log.contains("Kamailio target added hostname=k2"), "{log}");
        assert!(!log.contains("target removed"), "{log}");
    }

    // And one without cp1 and k1: they go, cp2 and k2 keep running.
    std::fs::write(
        &cfg,
        format!(
            "[service]\ningest = false\nhealth_interval = \"1s\"\n{}{}",
            kam_t("k2"),
            probe_t("cp2")
        ),
    )
    .unwrap();
    run.signal(libc::SIGHUP);
    run.wait_log(
        "Probe target removed target_name=cp1",
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_millis(1200));
    run.stop();
    let log = run.log();
    assert!(log.contains("Kamailio target removed hostname=k1"), "{log}");
    assert_eq!(log.matches("Configuration reloaded").count(), 2, "{log}");
    assert!(!log.contains("needs a restart"), "{log}");

    let lp = std::fs::read_to_string(&out).unwrap();
    let count = |needle: &str| lp.lines().filter(|l| l.starts_with(needle)).count();
    // cp1 and cp2 kept their state across the reloads: exactly one first-probe event each.
    assert_eq!(
        count("probe_event,target=cp1,role=cp,kind=state from=\"none\""),
        1,
        "{lp}"
    );
    assert_eq!(
        count("probe_event,target=cp2,role=cp,kind=state from=\"none\""),
        1
    );
    assert!(count("probe,target=cp2,role=cp,method=OPTIONS state=\"in_service\"") >= 20);
    assert!(count("probe,target=cp1,role=cp,method=OPTIONS state=\"in_service\"") >= 10);
    // cp1's open minute was summarised when it was removed.
    assert!(count("probe_summary,target=cp1,") >= 1, "{lp}");
    assert!(lp.contains("kamailio_up,hostname=k2 up=1i"), "{lp}");
    // k1 and k2 never went down.
    assert_eq!(count("kamailio_up,hostname=k1 up=0i"), 0);
    assert_eq!(count("kamailio_up,hostname=k2 up=0i"), 0);
    // The last health line counts two reloads and one refusal.
    let last = lp
        .lines()
        .rfind(|l| l.starts_with("srewatch_service,"))
        .unwrap();
    assert!(last.contains("reloads=2i,reloads_refused=1i"), "{last}");
    let probes = lp
        .lines()
        .rfind(|l| l.starts_with("srewatch_probe,"))
        .unwrap();
    assert!(probes.contains("targets=1i"), "{probes}");
    let kam = lp
        .lines()
        .rfind(|l| l.starts_with("srewatch_kamailio,"))
        .unwrap();
    assert!(kam.contains("targets=1i"), "{kam}");
}

/// 64-bit FNV-1a, written out again here so the test does not trust the code it checks.
fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn two_shards_split_the_probe_targets() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Options::default());
    let names: Vec<String> = (1..=8).map(|i| format!("cp{i}")).collect();
    let targets: String = names
        .iter()
        .map(|n| {
            format!(
                "\n[[probe.target]]\nname = \"{n}\"\nuri = \"{}\"\ninterval = \"200ms\"\ntimeout = \"500ms\"\n",
                k.sip_uri()
            )
        })
        .collect();
    let mut runs = Vec::new();
    for shard in 1..=2 {
        let cfg = dir.path().join(format!("s{shard}.toml"));
        std::fs::write(
            &cfg,
            format!("[service]\ningest = false\nkamailio = false\n\n[probe]\nshard = \"{shard}/2\"\n{targets}"),
        )
        .unwrap();
        let out = dir.path().join(format!("out{shard}.lp"));
        let run = Run::start(dir.path(), &cfg, &["--out", out.to_str().unwrap()], &[]);
        runs.push((run, out));
    }
    for (run, _) in &mut runs {
        run.wait_log("Service ready", Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_millis(800));
    for (shard, (run, out)) in runs.iter_mut().enumerate() {
        run.stop();
        let lp = std::fs::read_to_string(out).unwrap();
        let probed: std::collections::BTreeSet<String> = lp
            .lines()
            .filter_map(|l| l.strip_prefix("probe,target="))
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect();
        let mine: std::collections::BTreeSet<String> = names
            .iter()
            .filter(|n| fnv1a64(n) % 2 == shard as u64)
            .cloned()
            .collect();
        assert_eq!(probed, mine, "shard {}/2", shard + 1);
        assert!(!mine.is_empty());
    }
}

#[test]
fn kill_9_in_flight_then_restart_loses_nothing() {
    let dir = util::tempdir();
    let spool = dir.path().join("spool");
    let mut vm = Victoria::start(dir.path());
    let (file, cfg) = files_only(dir.path(), &influx_section(&vm, &spool));
    let m0 = base_minute();
    let mut run = Run::ready(dir.path(), &cfg, &[], &[]);
    // Five platform minutes with the server up, twenty with it down (more than the file's
    // 15-minute window: the oldest of those are only in the spool), then kill -9 right after
    // a rewrite, while its batch is in flight.
    for k in 0..25 {
        if k == 5 {
            vm.stop();
        }
        util::replace(&file, &GRID.counters_csv(m0 + k));
        if k < 24 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    run.proc.kill();
    vm.restart();
    next_start_delivers(dir.path(), &cfg, &vm, &GRID.expected(m0, m0 + 24));
}

/// Starts srewatch again with `cfg`: within 20 s VictoriaMetrics holds exactly the counters
/// points `want`, nothing more or less.
fn next_start_delivers(dir: &Path, cfg: &Path, vm: &Victoria, want: &BTreeMap<(String, i64), i64>) {
    let mut run = Run::ready(dir, cfg, &[], &[]);
    wait_counters(vm, want.len(), Duration::from_secs(20));
    run.stop();
    assert_eq!(&counters_in(vm), want);
}

#[test]
fn sigterm_with_the_server_down_spools_then_the_next_start_delivers() {
    let dir = util::tempdir();
    let spool = dir.path().join("spool");
    let mut vm = Victoria::stopped(dir.path());
    let (file, cfg) = files_only(dir.path(), &influx_section(&vm, &spool));
    let m0 = base_minute();
    let mut run = Run::ready(dir.path(), &cfg, &[], &[]);
    for k in 0..3 {
        util::replace(&file, &GRID.counters_csv(m0 + k));
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGTERM right after the last rewrite was read: exit 0 within the deadline, the batches
    // the server could not take in the spool.
    util::replace(&file, &GRID.counters_csv(m0 + 3));
    run.wait_log("InfluxDB write failed", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    run.stop();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let spooled = util::spool_batches(&spool);
    assert!(spooled > 0, "nothing spooled; log:\n{}", run.log());
    // The file moves on by 17 minutes while srewatch is stopped: the minutes up to m0+3 are then
    // only in the spool (m0+4 and m0+5 were never in a file srewatch read).
    util::replace(&file, &GRID.counters_csv(m0 + 20));
    vm.restart();
    let mut want = GRID.expected(m0, m0 + 3);
    want.extend(GRID.expected(m0 + 20, m0 + 20));
    next_start_delivers(dir.path(), &cfg, &vm, &want);
}

#[test]
fn server_down_for_many_platform_minutes_then_every_point_arrives_in_order() {
    let dir = util::tempdir();
    let spool = dir.path().join("spool");
    let mut vm = Victoria::start(dir.path());
    let (rec, file, cfg) = recorded_files_only(dir.path(), &vm, &spool);
    let m0 = base_minute();
    let mut run = Run::ready(dir.path(), &cfg, &[], &[]);
    for k in 0..24 {
        if k == 2 {
            vm.stop();
        }
        if k == 22 {
            vm.restart();
        }
        util::replace(&file, &GRID.counters_csv(m0 + k));
        std::thread::sleep(Duration::from_millis(200));
    }
    let want = GRID.expected(m0, m0 + 23);
    wait_counters(&vm, want.len(), Duration::from_secs(20));
    run.stop();
    // Exact values, one per minute, no gap.
    assert_eq!(counters_in(&vm), want);
    // Arrival order, as the server accepted them: each series once per minute; the first
    // file's 15 minutes come in one batch (in the file's row order, newest first), every later
    // minute after all earlier ones, across the outage and the replay of the spool.
    let arrived = rec.counters();
    assert_eq!(arrived.len(), HOSTS * STATS);
    for (series, points) in &arrived {
        let minutes: Vec<i64> = points.iter().map(|p| p.0 / 60).collect();
        let first: Vec<i64> = (m0 - 14..=m0).rev().collect();
        let later: Vec<i64> = (m0 + 1..=m0 + 23).collect();
        assert_eq!(minutes[..15], first[..], "{series}");
        assert_eq!(
            minutes[15..],
            later[..],
            "{series} arrived out of order or twice"
        );
    }
    let log = run.log();
    assert_eq!(
        log.matches("InfluxDB write failed; spooling batches")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("InfluxDB writes recovered"), "{log}");
}

#[test]
fn unusable_spool_holds_batches_in_memory_and_keeps_running() {
    let dir = util::tempdir();
    // A regular file where the spool directory should be: fails even for root.
    let spool = dir.path().join("spool");
    std::fs::write(&spool, b"not a directory").unwrap();
    let mut vm = Victoria::stopped(dir.path());
    let (file, cfg) = files_only(dir.path(), &influx_section(&vm, &spool));
    let m0 = base_minute();
    let mut run = Run::ready(dir.path(), &cfg, &[], &[]);
    for k in 0..3 {
        util::replace(&file, &GRID.counters_csv(m0 + k));
        std::thread::sleep(Duration::from_millis(200));
    }
    run.wait_log("InfluxDB write failed", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!run.proc.exited());
    vm.restart();
    for k in 3..6 {
        util::replace(&file, &GRID.counters_csv(m0 + k));
        std::thread::sleep(Duration::from_millis(200));
    }
    // The rewrite of minute m0+5 reaches the server: the service kept running.
    util::wait_until(Duration::from_secs(10), "minute m0+5", || {
        counters_in(&vm).contains_key(&("stat0/cp0".to_string(), (m0 + 5) * 60))
    });
    run.stop();
    let log = run.log();
    // One clear error, naming the directory and why, not one per batch.
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("<3>ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("Spool unusable")
            && errors[0].contains(&format!("{}: File exists", spool.display())),
        "{log}"
    );
    // With no spool, batches wait in memory through the outage: every point the file pipeline
    // produced reaches the server and none is dropped: the counters of 15 + 5 minutes, and the
    // rollups (sum, hosts) of each stat for the six minutes that settled (settle_time 14m: one
    // per rewrite).
    let produced = (HOSTS * STATS * (15 + 5) + STATS * 6) as i64;
    let rollups = vm
        .export(r#"{db="rollups",__name__=~".*_sum"}"#)
        .iter()
        .map(|s| s.values.len())
        .sum::<usize>();
    let stored = (counters_in(&vm).len() + rollups) as i64;
    let dropped = vm
        .export(r#"{__name__="srewatch_sink_points_dropped",db="srewatch"}"#)
        .iter()
        .flat_map(|s| s.points())
        .map(|(_, v)| v as i64)
        .max()
        .expect("a srewatch_sink health point");
    assert_eq!((stored, dropped), (produced, 0), "log:\n{log}");
}

/// The points of bucket `counters` in line protocol written by `--out`, keyed by
/// (`stat/host`, time); a point written twice must carry the same value.
fn counters_in_lp(lp: &str) -> BTreeMap<(String, i64), i64> {
    let mut got: BTreeMap<(String, i64), i64> = BTreeMap::new();
    let mut bucket = "";
    for line in lp.lines() {
        if let Some(b) = line.strip_prefix("# bucket: ") {
            bucket = b;
            continue;
        }
        if bucket != "counters" {
            continue;
        }
        // stat0,hostname=cp1 value=123i 1700000000
        let (series, rest) = line.split_once(" value=").unwrap();
        let (v, t) = rest.split_once("i ").unwrap();
        let (stat, host) = series.split_once(",hostname=").unwrap();
        let key = (format!("{stat}/{host}"), t.parse().unwrap());
        let v: i64 = v.parse().unwrap();
        if let Some(old) = got.insert(key.clone(), v) {
            assert_eq!(old, v, "{key:?} written with two values");
        }
    }
    got
}

/// `--out FILE` appends for `run` as for `ingest`: what the file held before is kept, and
/// a second start adds its points after the first one's.
#[test]
fn run_out_file_is_appended_to() {
    let dir = util::tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, format!("{}{}", ingest_section(&data), FILES_ONLY)).unwrap();
    let out = dir.path().join("out.lp");
    std::fs::write(&out, "# written before srewatch started\n").unwrap();
    let file = data.join("counters.csv");
    let m0 = base_minute();
    for m in [m0, m0 + 1] {
        let mut run = Run::ready(dir.path(), &cfg, &["--out", out.to_str().unwrap()], &[]);
        util::replace(&file, &GRID.counters_csv(m));
        std::thread::sleep(Duration::from_millis(300));
        run.stop();
    }
    let lp = std::fs::read_to_string(&out).unwrap();
    assert!(
        lp.starts_with("# written before srewatch started\n# bucket: "),
        "{lp}"
    );
    // Each start writes its health report once at shutdown: two starts, two reports.
    let reports = lp
        .lines()
        .filter(|l| l.starts_with("srewatch_service,"))
        .count();
    assert_eq!(reports, 2, "{lp}");
    assert_eq!(counters_in_lp(&lp), GRID.expected(m0, m0 + 1));
}

#[test]
fn csv_replaced_truncated_deleted_while_read() {
    let dir = util::tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, format!("{}{}", ingest_section(&data), FILES_ONLY)).unwrap();
    let out = dir.path().join("out.lp");
    let file = data.join("counters.csv");
    let m0 = base_minute();
    let mut run = Run::ready(dir.path(), &cfg, &["--out", out.to_str().unwrap()], &[]);
    for k in 0..9 {
        let text = GRID.counters_csv(m0 + k);
        match k % 3 {
            // Replaced by rename.
            0 => util::replace(&file, &text),
            // Truncated and rewritten in place, the writer pausing in the middle of a row.
            1 => {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&file)
                    .unwrap();
                let cut = text.len() / 2 + 7;
                f.write_all(&text.as_bytes()[..cut]).unwrap();
                f.flush().unwrap();
                std::thread::sleep(Duration::from_millis(150));
                f.write_all(&text.as_bytes()[cut..]).unwrap();
            }
            // Deleted, then recreated.
            _ => {
                std::fs::remove_file(&file).unwrap();
                std::thread::sleep(Duration::from_millis(150));
                std::fs::write(&file, &text).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    run.stop();
    let lp = std::fs::read_to_string(&out).unwrap();
    assert_eq!(counters_in_lp(&lp), GRID.expected(m0, m0 + 8));
    let health: Vec<&str> = lp
        .lines()
        .filter(|l| l.starts_with("srewatch_file,") && l.contains("file=counters.csv"))
        .collect();
    assert!(health.last().unwrap().contains("rejected=0i"), "{health:?}");
}

#[test]
fn systemd_analyze_verify_unit() {
    let dir = util::tempdir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("systemd/srewatch.service")).unwrap();
    let unit = unit.replace("/usr/bin/srewatch", env!("CARGO_BIN_EXE_srewatch"));
    let path = dir.path().join("srewatch.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd; scripts/test installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Warnings about the unit itself fail the test too (other units on the host may warn).
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("srewatch.service"))
        .collect();
    assert!(ours.is_empty(), "{err}");
}

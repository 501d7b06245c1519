//! Kamailio statistics: parsing a 500-statistic reply (JSON-RPC and BINRPC), the window on top,
//! and one poll round of 200 targets (real Kamailio instances plus lab responders in a child
//! process), with the round's CPU time from getrusage.
//!
//! `cargo bench --bench kamailio`

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use ingest::kamailio::classify::Classifier;
use ingest::kamailio::lab::{self, Canned};
use ingest::kamailio::parse::parse_line;
use ingest::kamailio::poll::{http_client, PollStats, TargetPoller};
use ingest::kamailio::window::{Window, DEFAULT_HISTOGRAMS};
use ingest::kamailio::{scan, Format, TargetConfig};
use ingest::LineEncoder;
use std::hint::black_box;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const STATS: usize = 500;
const TARGETS: usize = 200;
const LAB_ENV: &str = "SREWATCH_KAMAILIO_LAB_CHILD";
/// Statistics in each lab reply: what a real CP with a few modules returns.
const LAB_STATS: usize = 160;

fn parse_all(format: Format, buf: &[u8], scratch: &mut Vec<u8>) -> (usize, i64) {
    let (mut n, mut sum) = (0usize, 0i64);
    scan(
        format,
        buf,
        scratch,
        &mut |l| {
            if let Ok(s) = parse_line(l) {
                n += 1;
                sum = sum.wrapping_add(s.value);
            }
        },
        &mut || {},
    )
    .unwrap();
    (n, sum)
}

fn parse_benches(c: &mut Criterion) {
    let lines = lab::stat_lines(STATS, 7);
    let json = lab::jsonrpc_reply(1, &lines).into_bytes();
    let bin = lab::binrpc_reply(0x42, &lines);
    let mut g = c.benchmark_group("kamailio_parse_500");
    g.throughput(Throughput::Elements(STATS as u64));
    let mut scratch = Vec::new();
    assert_eq!(parse_all(Format::Json, &json, &mut scratch).0, STATS);
    assert_eq!(parse_all(Format::Binrpc, &bin, &mut scratch).0, STATS);
    g.bench_function(BenchmarkId::new("jsonrpc", json.len()), |b| {
        b.iter(|| parse_all(Format::Json, black_box(&json), &mut scratch))
    });
    g.bench_function(BenchmarkId::new("binrpc", bin.len()), |b| {
        b.iter(|| parse_all(Format::Binrpc, black_box(&bin), &mut scratch))
    });
    g.finish();

    // Parse + window (lookup, counter/gauge update), alternating two replies so that counters
    // grow; the minute's encoding is measured apart.
    let next = lab::binrpc_reply(0x43, &lab::stat_lines(STATS, 8));
    let hist: Vec<String> = DEFAULT_HISTOGRAMS.iter().map(|s| s.to_string()).collect();
    let mut w = Window::new(Classifier::default(), &hist, 5000);
    let mut enc = LineEncoder::new();
    let mut ts = 1_652_193_060_000i64;
    let mut g = c.benchmark_group("kamailio_window_500");
    g.throughput(Throughput::Elements(STATS as u64));
    g.bench_function("binrpc_parse_and_observe", |b| {
        b.iter(|| {
            ts += 10;
            let buf = if ts % 20 == 0 { &bin } else { &next };
            w.begin_poll(ts, "cp1", &mut enc);
            scan(
                Format::Binrpc,
                buf,
                &mut scratch,
                &mut |l| {
                    if let Ok(s) = parse_line(l) {
                        w.observe(&s);
                    }
                },
                &mut || {},
            )
            .unwrap();
            w.end_poll()
        })
    });
    g.bench_function("encode_minute", |b| {
        b.iter(|| {
            w.begin_poll(ts, "cp1", &mut enc);
            scan(
                Format::Binrpc,
                &bin,
                &mut scratch,
                &mut |l| {
                    if let Ok(s) = parse_line(l) {
                        w.observe(&s);
                    }
                },
                &mut || {},
            )
            .unwrap();
            w.end_poll();
            w.flush("cp1", &mut enc);
            enc.take()
        })
    });
    g.finish();
}

criterion_group!(parse, parse_benches);

/// A real Kamailio from the test CP configuration, killed on drop.
struct RealKamailio {
    child: Child,
    http_port: u16,
    ctl_port: u16,
    ctl_sock: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for RealKamailio {
    fn drop(&mut self) {
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn start_kamailio(node: &str) -> RealKamailio {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let (sip, http, ctl) = (free_port(), free_port(), free_port());
    let sock = dir.path().join("ctl.sock");
    let cfg = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kamailio/cp.cfg"),
    )
    .unwrap()
    .replace("@SIP_PORT@", &sip.to_string())
    .replace("@HTTP_PORT@", &http.to_string())
    .replace("@CTL_PORT@", &ctl.to_string())
    .replace("@CTL_SOCK@", sock.to_str().unwrap())
    .replace("@OOS_FILE@", dir.path().join("oos").to_str().unwrap())
    .replace("@NODE@", node)
    .replace("@EXTRA_LISTEN@", "");
    let cfg_path = dir.path().join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
    let child = Command::new("/usr/sbin/kamailio")
        .args(["-DD", "-E", "-m", "32", "-M", "8", "-f"])
        .arg(&cfg_path)
        .arg("-P")
        .arg(dir.path().join("pid"))
        .arg("-Y")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("/usr/sbin/kamailio (Debian package kamailio)");
    let start = Instant::now();
    for p in [http, ctl] {
        while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "Kamailio did not start"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    RealKamailio {
        child,
        http_port: http,
        ctl_port: ctl,
        ctl_sock: sock,
        _dir: dir,
    }
}

/// The child process: `n` BINRPC and `n` JSON-RPC lab responders; prints their ports on one
/// line, serves until stdin closes.
fn lab_child(n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut ports = Vec::new();
        // Replies are prepared once per sequence number and cloned: the responders should cost
        // as little as possible next to srewatch.
        let replies: Arc<Vec<Vec<String>>> =
            Arc::new((0..64).map(|s| lab::stat_lines(LAB_STATS, s)).collect());
        for kind in 0..2 {
            for _ in 0..n {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ports.push(l.local_addr().unwrap().port());
                let r = replies.clone();
                let f: lab::ReplyFn = Arc::new(move |k| Canned::Lines(r[k as usize % 64].clone()));
                if kind == 0 {
                    tokio::spawn(lab::serve_binrpc(l, f));
                } else {
                    tokio::spawn(lab::serve_jsonrpc(l, f));
                }
            }
        }
        let line: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        println!("{}", line.join(","));
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await
        .unwrap();
    });
}

fn cpu_time() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn round_bench(c: &mut Criterion) {
    if std::env::args().any(|a| a == "--list") {
        // Listing (nextest, `cargo bench -- --list`): name the benchmark, start nothing.
        c.benchmark_group("kamailio_round")
            .bench_function("200_targets", |b| b.iter(|| ()));
        return;
    }
    let k1 = start_kamailio("bench1");
    let k2 = start_kamailio("bench2");
    let mut real = vec![
        (
            "real-json-1",
            format!("http://127.0.0.1:{}/RPC", k1.http_port),
        ),
        ("real-tcp-1", format!("tcp:127.0.0.1:{}", k1.ctl_port)),
        (
            "real-json-2",
            format!("http://127.0.0.1:{}/RPC", k2.http_port),
        ),
        ("real-unix-2", format!("unix:{}", k2.ctl_sock.display())),
    ];
    let lab_n = (TARGETS - real.len()) / 2;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(LAB_ENV, lab_n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let ports: Vec<u16> = first
        .trim()
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    let mut targets: Vec<TargetConfig> = Vec::new();
    for (name, addr) in real.drain(..) {
        let mut t = TargetConfig::for_address(&addr);
        t.hostname = name.to_string();
        targets.push(t);
    }
    for (i, p) in ports.iter().enumerate() {
        let addr = if i < lab_n {
            format!("tcp:127.0.0.1:{p}")
        } else {
            format!("http://127.0.0.1:{p}/RPC")
        };
        let mut t = TargetConfig::for_address(&addr);
        t.hostname = format!("lab-{i:03}");
        targets.push(t);
    }
    assert_eq!(targets.len(), TARGETS);

    // At most 2 cores: two runtime workers (the sink's writer thread is counted too).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sink, writer) = rt.block_on(async { ingest::sink::spawn_writer(std::io::sink()) });
    let stats = Arc::new(PollStats::default());
    let http = http_client();
    let mut pollers: Vec<TargetPoller> = rt.block_on(async {
        targets
            .into_iter()
            .map(|t| TargetPoller::new(t, http.clone(), sink.clone(), stats.clone()))
            .collect()
    });
    let now_ms = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let round = |pollers: &mut Vec<TargetPoller>, ts: i64| -> (Duration, usize) {
        let t0 = Instant::now();
        let up = rt.block_on(async {
            let futs = pollers.iter_mut().map(|p| p.poll_round(ts));
            futures::future::join_all(futs).await
        });
        (t0.elapsed(), up.iter().filter(|&&u| u).count())
    };
    // Warm up: connections, first replies (baselines), histograms allocated.
    for _ in 0..3 {
        let (_, up) = round(&mut pollers, now_ms());
        assert_eq!(up, TARGETS, "all targets up");
    }
    // In `cargo test --benches` (criterion's test mode) the warm-up rounds above are the check.
    let measuring = std::env::args().any(|a| a == "--bench");
    // Steady state, measured: wall time of each round and the process's CPU time over them.
    // Timestamps advance 10 s per round as with the default interval, so minutes close too.
    let rounds: usize = if measuring { 30 } else { 0 };
    let mut ts = now_ms();
    let cpu0 = cpu_time();
    let mut walls = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        ts += 10_000;
        let (wall, up) = round(&mut pollers, ts);
        assert_eq!(up, TARGETS);
        walls.push(wall);
    }
    let cpu = cpu_time() - cpu0;
    walls.sort();
    if measuring {
        let per_round = cpu / rounds as u32;
        println!(
        "kamailio poll round: {TARGETS} targets (4 real Kamailio targets on 2 instances, {} BINRPC \
         + {} JSON-RPC lab responders of {LAB_STATS} statistics): wall p50 {:?}, max {:?}; \
         CPU {:?} per round = {:.2}% of one core over a 10 s interval ({:.2}% of 2 cores)",
        lab_n,
        lab_n,
        walls[rounds / 2],
        walls[rounds - 1],
        per_round,
        per_round.as_secs_f64() / 10.0 * 100.0,
        per_round.as_secs_f64() / 20.0 * 100.0,
    );
    }
    let s = stats.snapshot();
    assert_eq!(s.polls_failed, 0, "{s:?}");
    assert_eq!(
        s.bad_lines + s.non_numeric + s.malformed_replies + s.truncated_replies,
        0
    );

    let mut g = c.benchmark_group("kamailio_round");
    g.sample_size(20);
    g.throughput(Throughput::Elements(TARGETS as u64));
    g.bench_function("200_targets", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                ts += 10_000;
                total += round(&mut pollers, ts).0;
            }
            total
        })
    });
    g.finish();
    drop(pollers);
    drop(sink);
    rt.block_on(async { writer.await.unwrap().unwrap() });
    drop(child.stdin.take());
    let _ = child.wait();
    drop((k1, k2));
}

criterion_group!(round, round_bench);

fn main() {
    if let Ok(n) = std::env::var(LAB_ENV) {
        lab_child(n.parse().unwrap());
        return;
    }
    // `cargo bench --bench kamailio -- parse` skips the round (it starts Kamailio).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let takes_value = |o: &str| {
        matches!(
            o,
            "--format"
                | "--save-baseline"
                | "--baseline"
                | "--baseline-lenient"
                | "--load-baseline"
                | "--measurement-time"
                | "--warm-up-time"
                | "--sample-size"
                | "--profile-time"
                | "--output-format"
                | "--color"
                | "--plotting-backend"
                | "--noise-threshold"
                | "--confidence-level"
                | "--significance-level"
                | "--nresamples"
                | "--logfile"
        )
    };
    let filter = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with('-') && (*i == 0 || !takes_value(&args[i - 1])))
        .map(|(_, a)| a.clone());
    parse();
    if filter.is_none_or(|f| "kamailio_round/200_targets".contains(f.as_str())) {
        round();
    }
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}

//! Kamailio statistics from a real Kamailio (the test CP): exact OPTIONS increases over
//! JSON-RPC and BINRPC (unix, tcp, udp), a restart between polls, a node going down and up
//! again while the others keep their cadence. The pollers run in-process with 200 ms intervals
//! and write through the real line-protocol sink into memory.

use crate::util::{self, kamailio::Kamailio};
use ingest::kamailio::{spawn_pollers, TargetConfig};
use ingest::sink::{spawn_writer, MemoryWriter, SinkHandle};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const INTERVAL: Duration = Duration::from_millis(200);

/// One line of line protocol, split.
#[derive(Debug, Clone)]
struct Point {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, String)>,
}

impl Point {
    fn tag(&self, k: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn int(&self, k: &str) -> Option<i64> {
        self.fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim_end_matches('i').parse().unwrap())
    }
}

fn parse_points(text: &str) -> Vec<Point> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            // Test data has no escaped spaces or commas.
            let mut parts = l.split(' ');
            let series = parts.next().unwrap();
            let fields = parts.next().unwrap();
            let mut st = series.split(',');
            let measurement = st.next().unwrap().to_string();
            let kv = |s: &str| {
                let (k, v) = s.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            };
            Point {
                measurement,
                tags: st.map(kv).collect(),
                fields: fields.split(',').map(kv).collect(),
            }
        })
        .collect()
}

struct Run {
    out: MemoryWriter,
    sink: SinkHandle,
    writer: tokio::task::JoinHandle<std::io::Result<ingest::SinkStats>>,
    stop: CancellationToken,
    pollers: ingest::kamailio::Pollers,
}

impl Run {
    fn start(targets: Vec<TargetConfig>) -> Run {
        let out = MemoryWriter::default();
        let (sink, writer) = spawn_writer(out.clone());
        let stop = CancellationToken::new();
        let pollers = spawn_pollers(targets, sink.clone(), stop.clone());
        Run {
            out,
            sink,
            writer,
            stop,
            pollers,
        }
    }

    async fn points(&self) -> Vec<Point> {
        self.sink.flush().await.unwrap();
        parse_points(&self.out.text())
    }

    /// `up` values of `host`, in order.
    async fn ups(&self, host: &str) -> Vec<i64> {
        self.points()
            .await
            .iter()
            .filter(|p| p.measurement == "kamailio_up" && p.tag("hostname") == Some(host))
            .map(|p| p.int("up").unwrap())
            .collect()
    }

    /// Waits until `host` has `n` more `up` points with value `want` than `after` had, or
    /// panics after `within`.
    async fn wait_up(&self, host: &str, want: i64, more: usize, within: Duration) -> Instant {
        let start = Instant::now();
        let base = self.ups(host).await.iter().filter(|&&u| u == want).count();
        loop {
            let n = self.ups(host).await.iter().filter(|&&u| u == want).count();
            if n >= base + more {
                return Instant::now();
            }
            assert!(
                start.elapsed() < within,
                "{host}: wanted {more} more up={want} within {within:?}; ups: {:?}",
                self.ups(host).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until each of `hosts` has `more` more `up=1` points (5 s each at the most).
    async fn wait_all_up(&self, hosts: &[&str], more: usize) {
        for h in hosts {
            self.wait_up(h, 1, more, Duration::from_secs(5)).await;
        }
    }

    async fn finish(mut self) -> (Vec<Point>, ingest::kamailio::poll::PollCounts) {
        self.stop.cancel();
        (&mut self.pollers.task).await.unwrap();
        let counts = self.pollers.stats.snapshot();
        let points = self.points().await;
        drop(self.sink);
        self.writer.await.unwrap().unwrap();
        (points, counts)
    }
}

fn target(host: &str, address: &str) -> TargetConfig {
    let mut t = TargetConfig::for_address(address);
    t.hostname = host.to_string();
    t.interval = INTERVAL;
    t.timeout = Duration::from_millis(150);
    t.max_backoff = Duration::from_millis(800);
    t
}

/// Sum of the minute increases of `stat` for `host` (a run may span two minutes).
fn increase(points: &[Point], host: &str, stat: &str) -> i64 {
    points
        .iter()
        .filter(|p| {
            p.measurement == "kamailio_counter"
                && p.tag("hostname") == Some(host)
                && p.tag("stat") == Some(stat)
        })
        .map(|p| p.int("increase").unwrap_or(0))
        .sum()
}

fn target_sum(points: &[Point], host: &str, field: &str) -> i64 {
    points
        .iter()
        .filter(|p| p.measurement == "kamailio_target" && p.tag("hostname") == Some(host))
        .map(|p| p.int(field).unwrap())
        .sum()
}

/// Sends `n` SIP OPTIONS over UDP one at a time, each waiting for its 200 (no retransmission,
/// so Kamailio counts exactly `n`).
async fn send_options(to: SocketAddr, n: usize) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let mut buf = vec![0u8; 4096];
    for i in 0..n {
        let branch = format!("z9hG4bK-srewatch-{}-{i}", std::process::id());
        let msg = format!(
            "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:test@{me}>;tag=t{i}\r\nTo: <sip:{to}>\r\nCall-ID: {branch}@srewatch\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(msg.as_bytes(), to).await.unwrap();
        loop {
            let (len, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no reply to OPTIONS {i}"))
                .unwrap();
            let reply = String::from_utf8_lossy(&buf[..len]);
            if reply.contains(&branch) {
                assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
                break;
            }
        }
    }
}

/// No counter point ever carries a negative `increase` (a restart is counted instead).
fn assert_no_negative_increase(points: &[Point]) {
    assert!(
        !points.iter().any(|p| p
            .fields
            .iter()
            .any(|(k, v)| k == "increase" && v.starts_with('-'))),
        "negative increase"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_increase_is_exact_over_jsonrpc_and_binrpc() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Default::default());
    let hosts = ["json", "bin-unix", "bin-tcp", "bin-udp"];
    let run = Run::start(vec![
        target("json", &k.jsonrpc_url()),
        target("bin-unix", &format!("unix:{}", k.ctl_sock.display())),
        target("bin-tcp", &format!("tcp:127.0.0.1:{}", k.ctl_port)),
        target("bin-udp", &format!("udp:127.0.0.1:{}", k.ctl_port)),
    ]);
    run.wait_all_up(&hosts, 1).await;
    send_options(k.sip_addr(), 100).await;
    run.wait_all_up(&hosts, 2).await;
    let (points, counts) = run.finish().await;
    // Independent check with Debian's kamcmd.
    assert_eq!(k.kamcmd_stat("core:rcv_requests_options"), 100);
    for h in hosts {
        assert_eq!(
            increase(&points, h, "core:rcv_requests_options"),
            100,
            "{h}"
        );
        // (sl:200_replies is not exact here: the JSON-RPC target's own HTTP 200s go through
        // sl too.)
        assert_eq!(target_sum(&points, h, "restarts"), 0, "{h}");
        assert_eq!(target_sum(&points, h, "bad_lines"), 0, "{h}");
        // The last minute's total is the raw value.
        let last_total = points
            .iter()
            .rev()
            .find(|p| {
                p.tag("hostname") == Some(h) && p.tag("stat") == Some("core:rcv_requests_options")
            })
            .and_then(|p| p.int("total"));
        assert_eq!(last_total, Some(100), "{h}");
        // Gauges come with last/min/max.
        let shm = points
            .iter()
            .find(|p| p.tag("hostname") == Some(h) && p.tag("stat") == Some("shmem:used_size"))
            .unwrap_or_else(|| panic!("{h}: no shmem:used_size"));
        assert_eq!(shm.measurement, "kamailio_gauge");
        assert!(shm.int("min").unwrap() > 0 && shm.int("min") <= shm.int("max"));
    }
    assert_eq!(counts.polls_failed, 0, "{counts:?}");
    assert_eq!(counts.restarts, 0);
    assert_eq!(
        counts.malformed_replies + counts.truncated_replies + counts.rpc_errors,
        0
    );
    assert_no_negative_increase(&points);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_between_polls_counts_once() {
    let dir = util::tempdir();
    let mut k = Kamailio::start(dir.path(), Default::default());
    let hosts = ["json", "bin-tcp"];
    let run = Run::start(vec![
        target("json", &k.jsonrpc_url()),
        target("bin-tcp", &format!("tcp:127.0.0.1:{}", k.ctl_port)),
    ]);
    run.wait_all_up(&hosts, 1).await;
    send_options(k.sip_addr(), 30).await;
    run.wait_all_up(&hosts, 2).await;
    k.restart();
    // Up again after the restart (it may be quicker than one interval).
    run.wait_all_up(&hosts, 2).await;
    send_options(k.sip_addr(), 20).await;
    run.wait_all_up(&hosts, 2).await;
    send_options(k.sip_addr(), 10).await;
    run.wait_all_up(&hosts, 2).await;
    let (points, counts) = run.finish().await;
    assert_eq!(k.kamcmd_stat("core:rcv_requests_options"), 30);
    for h in hosts {
        assert_eq!(target_sum(&points, h, "restarts"), 1, "{h}");
        assert_eq!(
            increase(&points, h, "core:rcv_requests_options"),
            30 + 20 + 10,
            "{h}"
        );
    }
    assert_eq!(counts.restarts, 2, "one per target: {counts:?}");
    assert_no_negative_increase(&points);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_node_goes_down_others_stay_up() {
    let dir = util::tempdir();
    let mut k1 = Kamailio::start(&dir.path().join("cp1"), Default::default());
    let k2 = Kamailio::start_node(dir.path(), "cp2", &[]);
    // A third target that accepts connections and never answers: only its own timeout applies.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h2 = held.clone();
    let acceptor = tokio::spawn(async move {
        while let Ok((s, _)) = hole.accept().await {
            h2.lock().unwrap().push(s);
        }
    });
    let run = Run::start(vec![
        target("cp1", &format!("tcp:127.0.0.1:{}", k1.ctl_port)),
        target("cp2", &k2.jsonrpc_url()),
        target("hole", &format!("tcp:{hole_addr}")),
    ]);
    run.wait_up("cp1", 1, 1, Duration::from_secs(5)).await;
    send_options(k1.sip_addr(), 5).await;
    run.wait_up("cp1", 1, 2, Duration::from_secs(5)).await;
    run.wait_up("cp2", 1, 2, Duration::from_secs(5)).await;
    run.wait_up("hole", 0, 1, Duration::from_secs(5)).await;

    k1.stop();
    let stopped = Instant::now();
    let cp2_before = run.ups("cp2").await.len();
    let down_at = run.wait_up("cp1", 0, 1, Duration::from_secs(5)).await;
    let took = down_at - stopped;
    // The first poll after the stop reports 0: one interval plus the polling slack.
    assert!(
        took < INTERVAL * 2 + Duration::from_millis(500),
        "up=0 after {took:?}"
    );
    // Stay down a while: up=0 every interval even while attempts back off.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let cp1 = run.ups("cp1").await;
    let zeros = cp1.iter().rev().take_while(|&&u| u == 0).count();
    assert!(zeros >= 6, "up=0 every interval while down: {cp1:?}");

    k1.start_again();
    let restarted = Instant::now();
    let up_at = run.wait_up("cp1", 1, 1, Duration::from_secs(5)).await;
    // Back within the longest backoff (800 ms) plus one interval.
    assert!(
        up_at - restarted < Duration::from_millis(800) + INTERVAL * 3,
        "up=1 after {:?}",
        up_at - restarted
    );
    let cp2 = run.ups("cp2").await;
    let (points, counts) = run.finish().await;
    acceptor.abort();

    // cp2 never went down and kept its cadence while cp1 was down and `hole` hung.
    assert!(cp2.iter().all(|&u| u == 1), "cp2: {cp2:?}");
    let cp2_during = cp2.len() - cp2_before;
    let expected = (restarted - stopped).as_millis() as usize / INTERVAL.as_millis() as usize;
    assert!(
        cp2_during + 2 >= expected,
        "cp2 polled {cp2_during} times in {expected} intervals"
    );
    let hole_ups: Vec<i64> = points
        .iter()
        .filter(|p| p.measurement == "kamailio_up" && p.tag("hostname") == Some("hole"))
        .map(|p| p.int("up").unwrap())
        .collect();
    assert!(hole_ups.iter().all(|&u| u == 0), "{hole_ups:?}");
    assert!(
        counts.polls_skipped > 0,
        "backoff skipped attempts: {counts:?}"
    );
    // cp1 came back with its counters at 0 (5 OPTIONS before): one restart, no negative increase.
    assert_eq!(target_sum(&points, "cp1", "restarts"), 1);
    assert_eq!(target_sum(&points, "cp2", "restarts"), 0);
    assert_eq!(increase(&points, "cp1", "core:rcv_requests_options"), 5);
}

/// Fault injection with the lab responders (not Kamailio): an RPC error, a truncated reply, a
/// line that is not a statistic and a non-numeric value are counted, and the rest of each
/// reply is still used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_counted_and_the_rest_used() {
    use ingest::kamailio::lab::{self, Canned};
    fn lines(a: i64, b: i64) -> Vec<String> {
        vec![
            format!("core:a = {a}"),
            format!("core:b = {b}"),
            "junk line".to_string(),
            "core:c = x1".to_string(),
        ]
    }
    // Both responders: a good reply, an RPC error, a reply cut inside its third line (two
    // whole statistics arrive), then good replies.
    let script: lab::ReplyFn = Arc::new(|n| match n {
        0 => Canned::Lines(lines(100, 10)),
        1 => Canned::Fault(500, "boom".into()),
        2 => Canned::Truncated(lines(150, 20), 20),
        _ => Canned::Lines(lines(200, 30)),
    });
    let bin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bin_addr = bin.local_addr().unwrap();
    tokio::spawn(lab::serve_binrpc(bin, script.clone()));
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    tokio::spawn(lab::serve_jsonrpc(http, script));
    let hosts = ["fault-bin", "fault-json"];
    let run = Run::start(vec![
        target("fault-bin", &format!("tcp:{bin_addr}")),
        target("fault-json", &format!("http://{http_addr}/RPC")),
    ]);
    for h in hosts {
        run.wait_up(h, 1, 4, Duration::from_secs(10)).await;
    }
    let (points, c) = run.finish().await;
    for h in hosts {
        assert_eq!(increase(&points, h, "core:a"), 100, "{h}");
        assert_eq!(increase(&points, h, "core:b"), 20, "{h}");
        assert!(
            !points
                .iter()
                .any(|p| p.tag("hostname") == Some(h) && p.tag("stat") == Some("core:c")),
            "non-numeric value written for {h}"
        );
        let ups = points
            .iter()
            .filter(|p| p.measurement == "kamailio_up" && p.tag("hostname") == Some(h))
            .map(|p| p.int("up").unwrap())
            .collect::<Vec<_>>();
        assert_eq!(ups[..4], [1, 0, 1, 1], "{h}: {ups:?} {c:?}");
    }
    assert_eq!(c.rpc_errors, 2, "{c:?}");
    assert_eq!(c.truncated_replies, 2, "{c:?}");
    assert_eq!(c.malformed_replies, 0, "{c:?}");
    // Every poll with a whole reply has one bad line and one non-numeric value; the two
    // truncated replies ended before them.
    assert_eq!(c.bad_lines, c.polls_ok - 2, "{c:?}");
    assert_eq!(c.non_numeric, c.polls_ok - 2, "{c:?}");
    assert_eq!(c.polls_failed, 2, "{c:?}");
}

/// The CLI on the guide's saved `kamctl stats` output: one point per statistic, `up`, and the
/// target line, under `# bucket: kamailio`.
#[test]
fn cli_once_on_saved_kamctl_stats() {
    let text = util::run_ok(
        util::srewatch()
            .args(["kamailio", "poll", "--once"])
            .arg(util::fixtures().join("kamailio/kamctl-stats.json")),
    );
    assert!(text.starts_with("# bucket: kamailio\n"), "{text}");
    let points = parse_points(&text);
    let counters = points
        .iter()
        .filter(|p| p.measurement == "kamailio_counter")
        .count();
    let gauges = points
        .iter()
        .filter(|p| p.measurement == "kamailio_gauge")
        .count();
    // Gauges: 2 app_python3 dialogs, 5 registrar settings, 6 shmem, 2 tcp current, 2 tmx, 3 usrloc.
    assert_eq!((counters, gauges), (138, 20));
    assert!(text.contains(
        "kamailio_counter,hostname=kamctl-stats,group=core,stat=core:rcv_requests_options total=1767298i "
    ));
    assert!(text.contains(
        "kamailio_gauge,hostname=kamctl-stats,group=shmem,stat=shmem:used_size last=2718232i,min=2718232i,max=2718232i "
    ));
    let up = points
        .iter()
        .find(|p| p.measurement == "kamailio_up")
        .unwrap();
    assert_eq!((up.int("up"), up.int("stats")), (Some(1), Some(158)));
}

/// The CLI against a real Kamailio over BINRPC and JSON-RPC for a bounded time, plus a dead
/// target: all three report every interval; exit status 0 because some polls succeeded.
#[test]
fn cli_polls_real_kamailio_for_a_while() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Default::default());
    let file = dir.path().join("out.lp");
    util::run_ok(
        util::srewatch()
            .args([
                "kamailio",
                "poll",
                "--interval",
                "200ms",
                "--timeout",
                "150ms",
            ])
            .args(["--duration", "1500ms", "--out"])
            .arg(&file)
            .arg(format!("bin=tcp:127.0.0.1:{}", k.ctl_port))
            .arg(format!("json={}", k.jsonrpc_url()))
            .arg(format!("dead=tcp:127.0.0.1:{}", util::free_tcp_port())),
    );
    let points = parse_points(&std::fs::read_to_string(&file).unwrap());
    for (h, want) in [("bin", 1), ("json", 1), ("dead", 0)] {
        let ups: Vec<i64> = points
            .iter()
            .filter(|p| p.measurement == "kamailio_up" && p.tag("hostname") == Some(h))
            .map(|p| p.int("up").unwrap())
            .collect();
        // 1.5 s at 200 ms: 7 or 8 ticks, whatever the start-up time.
        assert!(ups.len() >= 6 && ups.len() <= 8, "{h}: {ups:?}");
        assert!(ups.iter().all(|&u| u == want), "{h}: {ups:?}");
    }
    assert!(points.iter().any(|p| p.measurement == "kamailio_counter"
        && p.tag("hostname") == Some("bin")
        && p.tag("stat") == Some("core:rcv_requests_options")));
}

/// `tcp:127.0.0.1` (no port), `htp://127.0.0.1:6171/RPC` and `tcp:127.0.0.1:99999` fail
/// `config check`, each named with file and line (not taken as file targets).
#[test]
fn kamailio_config_check_refuses_addresses_that_cannot_work() {
    let dir = util::tempdir();
    let cfg = dir.path().join("srewatch.toml");
    std::fs::write(
        &cfg,
        "[[kamailio]]\nhostname = \"a\"\naddress = \"tcp:127.0.0.1\"\n\n\
         [[kamailio]]\nhostname = \"b\"\naddress = \"htp://127.0.0.1:6171/RPC\"\n\n\
         [[kamailio]]\nhostname = \"c\"\naddress = \"tcp:127.0.0.1:99999\"\n\n\
         [[kamailio]]\nhostname = \"d\"\naddress = \"tcp:127.0.0.1:2046\"\n",
    )
    .unwrap();
    let (code, text) = util::config_check(&cfg);
    assert_eq!(code, Some(1), "{text}");
    let f = cfg.display();
    for want in [
        format!("{f}:3: kamailio[0].address: `127.0.0.1` has no port (HOST:PORT)"),
        format!("{f}:7: kamailio[1].address: unknown scheme `htp` in `htp://127.0.0.1:6171/RPC`"),
        format!(
            "{f}:11: kamailio[2].address: port 99999 of `127.0.0.1:99999` is out of range (1-65535)"
        ),
    ] {
        assert!(text.contains(&want), "want {want:?} in:\n{text}");
    }
    assert!(!text.contains("kamailio[3]"), "{text}");
}

/// Two targets on one host get distinct default tags. Against a real
/// Kamailio polled over JSON-RPC and BINRPC tcp (both on 127.0.0.1), the default tags are
/// distinct: `127.0.0.1:HTTP_PORT` and `127.0.0.1:CTL_PORT`.
#[test]
fn kamailio_poll_default_hostnames_distinct_on_one_host() {
    let dir = util::tempdir();
    let kam = Kamailio::start(&dir.path().join("kamailio"), Default::default());
    let out = util::srewatch()
        .args(["kamailio", "poll", "--once"])
        .arg(kam.jsonrpc_url())
        .arg(format!("tcp:127.0.0.1:{}", kam.ctl_port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let up: std::collections::BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("kamailio_up,"))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let want: std::collections::BTreeSet<String> = [kam.http_port, kam.ctl_port]
        .iter()
        .map(|p| format!("kamailio_up,hostname=127.0.0.1:{p}"))
        .collect();
    assert_eq!(up, want, "{text}");
}

/// A Kamailio `file` target that is a FIFO blocks no thread and does not stop SIGTERM.
/// `srewatch run` polling a FIFO every 200 ms for 2 s: one log line
/// naming the cause, and SIGTERM ends it with exit code 0.
#[test]
fn kamailio_file_target_fifo_then_sigterm_finishes() {
    let dir = util::tempdir();
    let fifo = dir.path().join("kamctl-stats.json");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let cfg = dir.path().join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "[service]\nprobe = false\ningest = false\nhealth_interval = \"1h\"\n\n\
             [[kamailio]]\nhostname = \"cp1\"\naddress = \"{}\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nmax_backoff = \"200ms\"\n",
            fifo.display()
        ),
    )
    .unwrap();
    let mut run = crate::service::Run::ready(dir.path(), &cfg, &[], &[]);
    std::thread::sleep(Duration::from_secs(2));
    let threads = std::fs::read_dir(format!("/proc/{}/task", run.proc.pid()))
        .unwrap()
        .count();
    assert!(threads < 20, "{threads} threads after 10 polls of a FIFO");
    run.stop();
    let log = run.log();
    assert_eq!(log.matches("not a regular file (fifo)").count(), 1, "{log}");
}

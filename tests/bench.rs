//! The bench against real servers on 127.0.0.1: `srewatch responder` (in process and as the
//! real binary) and a real Kamailio. Bounded runs (a few seconds, a few thousand requests per
//! second) that assert the accounting exactly.

use crate::util::{self, kamailio::Kamailio, Proc};
use probe::bench::{self, BenchConfig, BenchMethod, BenchResult, BenchTransport, Load, Step};
use probe::responder::{Responder, ResponderConfig, ResponderStats};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

fn open_loop(rate: f64, secs: u64) -> Load {
    Load::Open(vec![Step {
        rate,
        duration: Duration::from_secs(secs),
    }])
}

fn responder(f: impl FnOnce(&mut ResponderConfig)) -> Responder {
    let mut c = ResponderConfig::new("127.0.0.1:0".parse().unwrap());
    c.threads = 2;
    f(&mut c);
    Responder::start(c).expect("responder starts")
}

fn config(target: SocketAddr, method: BenchMethod, load: Load) -> BenchConfig {
    let mut c = BenchConfig::new(&format!("sip:{target}"), target, method, load);
    c.timeout = Duration::from_secs(2);
    c
}

fn run(cfg: BenchConfig) -> BenchResult {
    let mut seconds = 0;
    let r = bench::run(cfg, Arc::new(AtomicBool::new(false)), &mut |_| seconds += 1).unwrap();
    assert_eq!(seconds, r.seconds.len());
    r
}

/// What every run must satisfy: each request ended exactly once, the per-step and per-second
/// figures add up to the totals.
fn assert_accounting(r: &BenchResult) {
    let t = &r.total;
    assert_eq!(
        t.sent,
        t.answered() + t.timed_out + t.send_errors,
        "sent = answered + timed_out + send_errors"
    );
    assert!(r.balanced());
    let steps_sent: u64 = r.steps.iter().map(|s| s.tally.sent).sum();
    assert_eq!(steps_sent, t.sent);
    let secs_sent: u64 = r.seconds.iter().map(|s| s.tally.sent).sum();
    let secs_answered: u64 = r.seconds.iter().map(|s| s.tally.answered()).sum();
    let secs_timed_out: u64 = r.seconds.iter().map(|s| s.tally.timed_out).sum();
    assert_eq!(secs_sent, t.sent);
    assert_eq!(secs_answered, t.answered());
    assert_eq!(secs_timed_out, t.timed_out);
    assert_eq!(
        t.hist.len(),
        t.answered(),
        "one latency per answered request"
    );
}

#[test]
fn responder_run_accounts_for_every_request() {
    let resp = responder(|_| {});
    let mut cfg = config(
        resp.local_addr(),
        BenchMethod::Options,
        open_loop(3000.0, 2),
    );
    cfg.sockets = 2;
    let r = run(cfg);
    let s = resp.stop();
    assert_accounting(&r);
    let t = &r.total;
    // Open loop: exactly rate x duration requests, all answered 200, none twice.
    assert_eq!(t.sent, 6000);
    assert_eq!(t.answered_with(200), 6000);
    assert_eq!((t.timed_out, t.send_errors), (0, 0));
    assert_eq!((t.late, t.stray, t.invalid), (0, 0, 0));
    // What the responder saw is what was sent, retransmissions included.
    assert_eq!(s.options, t.sent + t.retransmits);
    assert_eq!(s.answered, s.options);
    assert_eq!(r.steps[0].tally.sent, 6000);
}

#[test]
fn dropped_requests_are_the_timeouts_exactly() {
    let resp = responder(|c| c.drop_every = 10);
    let mut cfg = config(
        resp.local_addr(),
        BenchMethod::Options,
        open_loop(2000.0, 2),
    );
    cfg.retransmit = false;
    cfg.timeout = Duration::from_millis(500);
    let r = run(cfg);
    let s = resp.stop();
    assert_accounting(&r);
    let t = &r.total;
    assert_eq!(t.sent, 4000);
    assert_eq!(s.dropped, 400);
    assert_eq!(t.timed_out, s.dropped);
    assert_eq!(t.answered_with(200), 3600);
    assert_eq!((t.retransmits, t.late, t.stray), (0, 0, 0));
}

#[test]
fn dropped_requests_are_retransmitted() {
    let resp = responder(|c| c.drop_every = 10);
    let mut cfg = config(
        resp.local_addr(),
        BenchMethod::Options,
        open_loop(2000.0, 2),
    );
    cfg.t1 = Duration::from_millis(100);
    cfg.timeout = Duration::from_secs(1);
    let r = run(cfg);
    let s = resp.stop();
    assert_accounting(&r);
    let t = &r.total;
    assert_eq!(t.sent, 4000);
    // Each drop costs exactly one more transmission, unless it was the last one allowed.
    assert_eq!(t.retransmits + t.timed_out, s.dropped);
    assert_eq!(s.options, t.sent + t.retransmits);
    assert_eq!(t.answered_with(200), t.sent - t.timed_out);
    assert!(t.retransmits >= 400, "{}", t.retransmits);
    assert_eq!((t.late, t.stray), (0, 0));
}

#[test]
fn delayed_answers_show_in_latency_open_loop() {
    let resp = responder(|c| c.delay = Duration::from_millis(50));
    let cfg = config(
        resp.local_addr(),
        BenchMethod::Options,
        open_loop(1000.0, 2),
    );
    let r = run(cfg);
    resp.stop();
    assert_accounting(&r);
    let t = &r.total;
    assert_eq!(t.answered_with(200), 2000);
    let h = &t.hist;
    assert!(h.min() >= 50_000, "min {}us", h.min());
    assert!(
        h.value_at_quantile(0.5) < 60_000,
        "p50 {}us",
        h.value_at_quantile(0.5)
    );
    assert!(h.value_at_quantile(0.99) >= 50_000);
    // Open loop: 50 ms of delay at 1000/s keeps about 50 outstanding and costs no rate.
    assert!(r.peak_outstanding >= 45, "peak {}", r.peak_outstanding);
    assert!(r.steps[0].achieved_rate() > 990.0);
}

#[test]
fn closed_loop_keeps_its_outstanding() {
    let resp = responder(|c| c.delay = Duration::from_millis(20));
    let cfg = config(
        resp.local_addr(),
        BenchMethod::Options,
        Load::Closed {
            max_outstanding: 10,
            duration: Duration::from_secs(1),
        },
    );
    let r = run(cfg);
    resp.stop();
    assert_accounting(&r);
    assert_eq!(r.peak_outstanding, 10);
    // 10 at a time, 20 ms each, for 1 s: about 500.
    let n = r.total.answered_with(200);
    // At most 10 per 20 ms, plus the last 10 started before the end; a busy machine gives fewer.
    assert!((250..=510).contains(&n), "{n}");
    assert!(r.total.hist.min() >= 20_000);
}

#[test]
fn invite_503_is_acked() {
    let resp = responder(|c| c.invite_status = 503);
    let cfg = config(
        resp.local_addr(),
        BenchMethod::Invite503,
        open_loop(1000.0, 1),
    );
    let r = run(cfg);
    let s = resp.stop();
    assert_accounting(&r);
    let t = &r.total;
    assert_eq!(t.answered_with(503), 1000);
    assert_eq!(t.acks, 1000);
    assert_eq!(t.ack_send_errors, 0);
    assert_eq!(
        s,
        ResponderStats {
            received: 2000 + t.retransmits,
            invites: 1000 + t.retransmits,
            acks: 1000,
            answered: 1000 + t.retransmits,
            ..Default::default()
        }
    );
}

#[test]
fn nothing_listening_is_timeouts_never_lost() {
    // A port nobody listens on: ICMP port unreachable comes back on the connected socket; it
    // cannot be tied to one transaction, so it is counted and every request times out.
    let port = util::free_udp_tcp_port();
    let target: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cfg = config(target, BenchMethod::Options, open_loop(500.0, 1));
    cfg.timeout = Duration::from_millis(300);
    cfg.retransmit = false;
    let r = run(cfg);
    assert_accounting(&r);
    let t = &r.total;
    assert_eq!(t.sent, 500);
    assert_eq!(t.answered(), 0);
    assert_eq!(t.timed_out, 500);
    assert_eq!(t.send_errors, 0);
    assert!(
        t.unreachable > 0,
        "ECONNREFUSED seen on the connected socket"
    );
}

#[test]
fn kamailio_counts_what_the_bench_sent() {
    let dir = util::tempdir();
    let mut k = Kamailio::start(dir.path(), Default::default());
    let mut cfg = config(k.sip_addr(), BenchMethod::Options, open_loop(2000.0, 2));
    cfg.uri = k.sip_uri();
    cfg.sockets = 2;
    let r = run(cfg);
    assert_accounting(&r);
    let t = &r.total;
    assert_eq!(t.sent, 4000);
    assert_eq!(t.answered_with(200), 4000);
    assert_eq!((t.late, t.stray, t.invalid), (0, 0, 0));
    assert_eq!(
        k.kamcmd_stat("core:rcv_requests_options") as u64,
        t.sent + t.retransmits
    );
    assert_eq!(
        k.kamcmd_stat("sl:200_replies") as u64,
        t.sent + t.retransmits
    );

    // Out of service: INVITE gets 503 and the ACK is absorbed by sl.
    k.set_out_of_service(true);
    let mut cfg = config(k.sip_addr(), BenchMethod::Invite503, open_loop(1000.0, 1));
    cfg.uri = k.sip_uri();
    let r = run(cfg);
    assert_accounting(&r);
    let t = &r.total;
    assert_eq!(t.answered_with(503), 1000);
    assert_eq!(t.acks, 1000);
    assert_eq!(
        k.kamcmd_stat("core:rcv_requests_invite") as u64,
        t.sent + t.retransmits
    );
    // sl absorbs the ACK of its own 503 before the core counts it as a request.
    assert_eq!(k.kamcmd_stat("core:rcv_requests_ack"), 0);
    assert_eq!(k.kamcmd_stat("core:drop_requests"), 1000);
    assert_eq!(k.kamcmd_stat("sl:received_ACKs"), 1000);
    k.stop();
}

#[test]
fn kamailio_over_tcp() {
    let dir = util::tempdir();
    let mut k = Kamailio::start(dir.path(), Default::default());
    let mut cfg = config(k.sip_addr(), BenchMethod::Options, open_loop(1000.0, 1));
    cfg.uri = format!("{};transport=tcp", k.sip_uri());
    cfg.transport = BenchTransport::Tcp;
    let r = run(cfg);
    assert_accounting(&r);
    let t = &r.total;
    assert_eq!(t.answered_with(200), 1000);
    assert_eq!(t.retransmits, 0, "no retransmission over TCP");
    assert_eq!(k.kamcmd_stat("core:rcv_requests_options"), 1000);
    k.stop();
}

/// Reads the `listening ADDR` line the responder prints.
fn responder_addr(log: &std::path::Path) -> SocketAddr {
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(a) = text.lines().find_map(|l| l.strip_prefix("listening ")) {
            return a.trim().parse().unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "responder did not start: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn binary_end_to_end_with_json_csv_and_histogram() {
    let dir = util::tempdir();
    let rlog = dir.path().join("responder.log");
    let mut cmd = util::srewatch();
    cmd.args(["responder", "--listen", "127.0.0.1:0", "--drop-every", "20"]);
    let mut resp = Proc::spawn("srewatch responder", cmd, &rlog);
    let addr = responder_addr(&rlog);
    let (json, csv, hgrm) = (
        dir.path().join("out.json"),
        dir.path().join("out.csv"),
        dir.path().join("out.hgrm"),
    );
    let out = util::srewatch()
        .arg("bench")
        .arg(format!("sip:{addr}"))
        .args(["--rate", "2000", "--duration", "2s", "--sockets", "2"])
        .args(["--timeout", "1s", "--no-retransmit"])
        .arg("--json")
        .arg(&json)
        .arg("--csv")
        .arg(&csv)
        .arg("--histogram")
        .arg(&hgrm)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    // One status line per second.
    assert!(
        stderr.lines().filter(|l| l.starts_with("[")).count() >= 2,
        "{stderr}"
    );
    assert!(
        stdout.contains(
            "accounting: sent 4000 = answered 3800 (200: 3800) + timed_out 200 + send_errors 0  OK"
        ),
        "{stdout}"
    );

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let acc = &v["accounting"];
    assert_eq!(acc["sent"], 4000);
    assert_eq!(acc["answered"], 3800);
    assert_eq!(acc["timed_out"], 200);
    assert_eq!(acc["send_errors"], 0);
    assert_eq!(acc["balanced"], true);
    assert_eq!(v["total"]["by_status"]["200"], 3800);
    assert_eq!(v["total"]["latency_us"]["count"], 3800);
    assert_eq!(v["total"]["retransmits"], 0);
    assert_eq!(v["steps"].as_array().unwrap().len(), 1);
    assert_eq!(v["steps"][0]["rate"], 2000.0);
    // 5% failures: the step does not hold.
    assert_eq!(v["steps"][0]["held"], false);
    let p50 = v["total"]["latency_us"]["p50"].as_u64().unwrap();
    assert!(p50 > 0 && p50 < 100_000, "{p50}");

    let csv = std::fs::read_to_string(&csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "second,sent,answered,timed_out,send_errors,retransmits,late,stray,outstanding,p50_us,p99_us,max_us,accepted"
    );
    let sent: u64 = lines
        .map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sent, 4000);

    let h = std::fs::read_to_string(&hgrm).unwrap();
    assert!(h.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
    assert!(h.contains("Total count    =         3800]"), "{h}");

    // The responder's own count (printed on SIGTERM) agrees.
    assert!(resp.terminate(Duration::from_secs(5)).is_some());
    let log = std::fs::read_to_string(&rlog).unwrap();
    assert!(
        log.contains("options=4000 ")
            && log.contains("dropped=200 ")
            && log.contains("answered=3800 "),
        "{log}"
    );
}

#[test]
fn ramp_reports_each_step() {
    let resp = responder(|_| {});
    let steps = bench::parse_ramp("500:1500:500:1s").unwrap();
    let mut cfg = config(resp.local_addr(), BenchMethod::Options, Load::Open(steps));
    cfg.p99_bound = Duration::from_secs(1);
    let r = run(cfg.clone());
    let s = resp.stop();
    assert_accounting(&r);
    let sent: Vec<u64> = r.steps.iter().map(|s| s.tally.sent).collect();
    assert_eq!(sent, [500, 1000, 1500]);
    let answered: Vec<u64> = r.steps.iter().map(|s| s.tally.answered_with(200)).collect();
    assert_eq!(answered, [500, 1000, 1500]);
    assert_eq!(
        r.steps.iter().map(|s| s.rate).collect::<Vec<_>>(),
        [Some(500.0), Some(1000.0), Some(1500.0)]
    );
    assert!(r.steps.iter().all(|s| s.held(&cfg)));
    // The hold rule is applied to each step's own percentiles: under a 1 us p99 bound none holds.
    let mut strict = cfg.clone();
    strict.p99_bound = Duration::from_micros(1);
    assert!(r.steps.iter().all(|s| !s.held(&strict)));
    assert_eq!(s.options, 3000 + r.total.retransmits);
}

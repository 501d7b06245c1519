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
        t.answered() + t.timed_out + t.send_errors + t.abandoned,
        "sent = answered + timed_out + send_errors + abandoned"
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
    // min() is the lowest value of its bucket (32 µs wide at 50 ms): an answer 50.005 ms
    // after its schedule reads 49.984 ms.
    assert!(h.min() >= h.lowest_equivalent(50_000), "min {}us", h.min());
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

/// An open-loop run against a one-thread responder, every request answered 200 once.
fn open_loop_all_answered(rate: f64, secs: u64) -> BenchResult {
    let resp = responder(|c| c.threads = 1);
    let r = run(config(
        resp.local_addr(),
        BenchMethod::Options,
        open_loop(rate, secs),
    ));
    resp.stop();
    assert_accounting(&r);
    let t = &r.total;
    let n = (rate as u64) * secs;
    assert_eq!((t.sent, t.answered_with(200)), (n, n));
    assert_eq!((t.late, t.stray, t.retransmits), (0, 0, 0));
    r
}

/// At a moderate open-loop rate the bench reads its socket about once a millisecond
/// (answers carry the kernel's arrival time, so reading late costs no latency accuracy), not
/// once or twice per wake-up.
#[test]
fn open_loop_reads_only_when_answers_can_be_waiting() {
    let r = open_loop_all_answered(10_000.0, 1);
    let t = &r.total;
    // One read a millisecond, one more per batch of requests sent (so that the socket buffer
    // never holds more than a few batches), a few while the last answers drain.
    let ms = r.elapsed.as_millis() as u64;
    let bound = ms + t.sent / 64 + 50;
    assert!(
        r.reads <= bound,
        "{} reads for {} requests in {ms} ms ({} wake-ups), bound {bound}",
        r.reads,
        t.sent,
        r.wakeups
    );
    assert!(r.wakeups > 0);
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
        .args(["--max-failed-share", "0.05"])
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
    // A tally's keys, exactly (`histogram`: see docs/bench.md; no rsip fallback count: there is no
    // fallback parser).
    let mut keys: Vec<&str> = v["total"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "abandoned",
            "accepted",
            "ack_send_errors",
            "acks",
            "answered",
            "by_status",
            "bye_failures",
            "bye_refused",
            "byes",
            "cancel_failures",
            "cancels",
            "failures",
            "histogram",
            "invalid",
            "late",
            "latency_us",
            "latency_with_timeouts_us",
            "outstanding_limited",
            "provisional",
            "retransmits",
            "send_errors",
            "sent",
            "stray",
            "timed_out",
            "unreachable",
        ]
    );
    assert!(!stdout.contains("fallback"), "{stdout}");
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

/// How the scripted UAS answers an INVITE.
#[derive(Clone, Copy, PartialEq)]
enum Script {
    /// 200 OK with a To tag and a Contact (a CP that accepts calls); BYE gets 200.
    Accept,
    /// 180 Ringing only; a CANCEL gets 200, then the INVITE 487.
    RingOnly,
    /// Nothing at first, then this long after the INVITE a 200 OK as `Accept` (a CP that
    /// accepts a call after the caller's timeout).
    AcceptAfter(Duration),
}

/// A request as the scripted UAS saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    ruri: String,
    branch: String,
    call_id: String,
    cseq: u32,
    cseq_method: String,
    to_tag: Option<String>,
}

/// A scripted UDP UAS (fault injection: a CP that misbehaves in a way the responder and the
/// test Kamailio do not). Records every request it gets.
struct ScriptedUas {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Seen>>>,
}

/// The To tag the scripted UAS gives a call: derived from its Call-ID, so it can be checked.
fn uas_tag(call_id: &str) -> String {
    format!("uas{}", &call_id[..16.min(call_id.len())])
}

fn uas_contact(addr: SocketAddr) -> String {
    format!("sip:uas@{addr};transport=udp")
}

impl ScriptedUas {
    fn start(script: Script) -> ScriptedUas {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("scripted UAS binds");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = vec![0u8; 65536];
            // Delayed answers: (due, message, to).
            let mut later: Vec<(std::time::Instant, String, SocketAddr)> = Vec::new();
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                let now = std::time::Instant::now();
                for (_, m, to) in later.iter().filter(|l| l.0 <= now) {
                    sock.send_to(m.as_bytes(), to).unwrap();
                }
                later.retain(|l| l.0 > now);
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let (req, lines) = parse_request(&text);
                let answer = |status: &str, cseq_method: Option<&str>, extra: &str| {
                    let mut out = format!("SIP/2.0 {status}\r\n");
                    for l in &lines {
                        let lower = l.to_ascii_lowercase();
                        if lower.starts_with("via:") || lower.starts_with("from:") {
                            out.push_str(l);
                        } else if lower.starts_with("to:") {
                            out.push_str(l);
                            if !lower.contains(";tag=") {
                                out.push_str(&format!(";tag={}", uas_tag(&req.call_id)));
                            }
                        } else if lower.starts_with("call-id:") {
                            out.push_str(l);
                        } else if lower.starts_with("cseq:") {
                            match cseq_method {
                                Some(m) => out.push_str(&format!("CSeq: {} {m}", req.cseq)),
                                None => out.push_str(l),
                            }
                        } else {
                            continue;
                        }
                        out.push_str("\r\n");
                    }
                    out.push_str(extra);
                    out.push_str("Content-Length: 0\r\n\r\n");
                    out
                };
                let reply = |status: &str, cseq_method: Option<&str>, extra: &str| {
                    let out = answer(status, cseq_method, extra);
                    sock.send_to(out.as_bytes(), from).unwrap();
                };
                match (req.method.as_str(), script) {
                    ("INVITE", Script::Accept) => reply(
                        "200 OK",
                        None,
                        &format!("Contact: <{}>\r\n", uas_contact(addr)),
                    ),
                    ("INVITE", Script::RingOnly) => reply("180 Ringing", None, ""),
                    ("INVITE", Script::AcceptAfter(d)) => later.push((
                        std::time::Instant::now() + d,
                        answer(
                            "200 OK",
                            None,
                            &format!("Contact: <{}>\r\n", uas_contact(addr)),
                        ),
                        from,
                    )),
                    ("BYE", _) => reply("200 OK", None, ""),
                    ("CANCEL", _) => {
                        reply("200 OK", None, "");
                        reply("487 Request Terminated", Some("INVITE"), "");
                    }
                    _ => {}
                }
                seen.push(req);
            }
            seen
        });
        ScriptedUas {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the UAS; every request it got, in order.
    fn stop(mut self) -> Vec<Seen> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// The request line and header lines of a request (test-side reading, independent of the
/// bench's own codec).
fn parse_request(text: &str) -> (Seen, Vec<String>) {
    let head = text.split("\r\n\r\n").next().unwrap();
    let mut it = head.split("\r\n");
    let first: Vec<&str> = it.next().unwrap().split(' ').collect();
    let lines: Vec<String> = it.map(str::to_string).collect();
    let value = |name: &str| {
        lines
            .iter()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .map(|l| l[name.len() + 1..].trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let via = value("via");
    let branch = via
        .split(';')
        .find_map(|p| p.strip_prefix("branch="))
        .unwrap()
        .to_string();
    let cseq = value("cseq");
    let (num, m) = cseq.split_once(' ').unwrap();
    let to = value("to");
    let seen = Seen {
        method: first[0].to_string(),
        ruri: first[1].to_string(),
        branch,
        call_id: value("call-id"),
        cseq: num.parse().unwrap(),
        cseq_method: m.trim().to_string(),
        to_tag: to.split(";tag=").nth(1).map(str::to_string),
    };
    (seen, lines)
}

/// Requests of `method` by Call-ID; panics if a Call-ID has two.
fn one_per_call(seen: &[Seen], method: &str) -> std::collections::HashMap<String, Seen> {
    let mut m = std::collections::HashMap::new();
    for s in seen.iter().filter(|s| s.method == method) {
        assert!(
            m.insert(s.call_id.clone(), s.clone()).is_none(),
            "two {method} for {}",
            s.call_id
        );
    }
    m
}

#[test]
fn accepted_invites_are_acked_and_hung_up_once() {
    let uas = ScriptedUas::start(Script::Accept);
    let addr = uas.addr;
    let r = run(config(addr, BenchMethod::Invite503, open_loop(100.0, 2)));
    let seen = uas.stop();
    assert_accounting(&r);
    let t = &r.total;
    assert_eq!(t.sent, 200);
    assert_eq!(t.answered_with(200), 200);
    assert_eq!(t.accepted, 200);
    assert_eq!(r.seconds.iter().map(|s| s.tally.accepted).sum::<u64>(), 200);
    assert_eq!(t.failures(503), 200, "an accepted call is a failure");
    assert_eq!((t.acks, t.ack_send_errors), (200, 0));
    assert_eq!((t.byes, t.bye_failures), (200, 0));
    assert_eq!((t.cancels, t.timed_out, t.retransmits), (0, 0, 0));
    assert_eq!((t.late, t.stray), (0, 0));

    let invites = one_per_call(&seen, "INVITE");
    let acks = one_per_call(&seen, "ACK");
    let byes = one_per_call(&seen, "BYE");
    assert_eq!((invites.len(), acks.len(), byes.len()), (200, 200, 200));
    assert_eq!(seen.len(), 600, "nothing else was sent");
    let contact = uas_contact(addr);
    for (call, inv) in &invites {
        let tag = Some(uas_tag(call));
        let ack = &acks[call];
        assert_eq!(ack.ruri, contact, "ACK of a 2xx goes to its Contact");
        assert_eq!((ack.cseq, ack.cseq_method.as_str()), (inv.cseq, "ACK"));
        assert_eq!(ack.to_tag, tag);
        assert_ne!(
            ack.branch, inv.branch,
            "the ACK of a 2xx has a branch of its own"
        );
        let bye = &byes[call];
        assert_eq!(bye.ruri, contact);
        assert_eq!((bye.cseq, bye.cseq_method.as_str()), (inv.cseq + 1, "BYE"));
        assert_eq!(bye.to_tag, tag);
        assert!(bye.branch.starts_with("z9hG4bK"));
        assert_ne!(bye.branch, inv.branch);
        assert_ne!(bye.branch, ack.branch);
        assert_eq!(inv.to_tag, None);
    }
}

#[test]
fn ringing_only_invites_are_cancelled_and_the_487_acked() {
    let uas = ScriptedUas::start(Script::RingOnly);
    let mut cfg = config(uas.addr, BenchMethod::Invite503, open_loop(100.0, 1));
    cfg.timeout = Duration::from_millis(800);
    let r = run(cfg);
    let seen = uas.stop();
    assert_accounting(&r);
    let t = &r.total;
    assert_eq!(t.sent, 100);
    assert_eq!((t.timed_out, t.answered()), (100, 0));
    assert_eq!(t.provisional, 100);
    assert_eq!((t.cancels, t.cancel_failures), (100, 0));
    assert_eq!((t.acks, t.ack_send_errors), (100, 0), "each 487 ACKed");
    assert_eq!(t.late, 100, "the 487s come after the timeout");
    assert_eq!((t.accepted, t.byes, t.retransmits), (0, 0, 0));

    let invites = one_per_call(&seen, "INVITE");
    let cancels = one_per_call(&seen, "CANCEL");
    let acks = one_per_call(&seen, "ACK");
    assert_eq!((invites.len(), cancels.len(), acks.len()), (100, 100, 100));
    assert_eq!(seen.len(), 300, "nothing else was sent");
    for (call, inv) in &invites {
        let c = &cancels[call];
        assert_eq!(c.branch, inv.branch, "a CANCEL has the INVITE's branch");
        assert_eq!((c.cseq, c.cseq_method.as_str()), (inv.cseq, "CANCEL"));
        assert_eq!(c.ruri, inv.ruri);
        assert_eq!(c.to_tag, None);
        let a = &acks[call];
        assert_eq!(
            a.branch, inv.branch,
            "the ACK of a 487 is in the INVITE's transaction"
        );
        assert_eq!((a.cseq, a.cseq_method.as_str()), (inv.cseq, "ACK"));
        assert_eq!(a.ruri, inv.ruri);
        assert_eq!(a.to_tag, Some(uas_tag(call)));
    }
}

#[test]
fn binary_reports_accepted_calls() {
    let uas = ScriptedUas::start(Script::Accept);
    let dir = util::tempdir();
    let (json, csv) = (dir.path().join("out.json"), dir.path().join("out.csv"));
    let out = util::srewatch()
        .arg("bench")
        .arg(format!("sip:{}", uas.addr))
        .args(["--method", "invite-503", "--rate", "50", "--duration", "1s"])
        .args(["--timeout", "2s"])
        .arg("--json")
        .arg(&json)
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    let seen = uas.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{stdout}");
    assert!(
        stderr
            .contains("srewatch bench: 50 calls accepted by a CP expected to refuse them (exit 1)"),
        "{stderr}"
    );
    assert!(
        stdout.contains(
            "accounting: sent 50 = answered 50 (200: 50) + timed_out 0 + send_errors 0  OK"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("accepted 50 (ALARM: calls accepted by a CP expected out of service; each ACKed and a BYE sent)  byes 50 (hung up 50, refused 0, failed 0)  cancels 0 (failed 0)"),
        "{stdout}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["total"]["accepted"], 50);
    assert_eq!(v["total"]["byes"], 50);
    assert_eq!(v["total"]["failures"], 50);
    assert_eq!(v["steps"][0]["accepted"], 50);
    let csv = std::fs::read_to_string(&csv).unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().ends_with(",max_us,accepted"));
    let accepted: u64 = lines
        .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(accepted, 50);
    assert_eq!(seen.iter().filter(|s| s.method == "BYE").count(), 50);
}

#[test]
fn a_2xx_expected_for_invite_is_refused() {
    let mut cfg = config(
        "127.0.0.1:9".parse().unwrap(),
        BenchMethod::Invite503,
        open_loop(10.0, 1),
    );
    cfg.expected_status = 200;
    let e = bench::run(cfg, Arc::new(AtomicBool::new(false)), &mut |_| {}).unwrap_err();
    assert!(
        e.to_string().contains("expected status 200 for INVITE"),
        "{e}"
    );
}

/// A 2xx that comes after the INVITE timed out without a provisional is still
/// ACKed, hung up with a BYE and counted `accepted` (docs/bench.md says so), with
/// retransmissions off.
#[test]
fn a_2xx_after_the_timeout_is_acked_hung_up_and_accepted() {
    let uas = ScriptedUas::start(Script::AcceptAfter(Duration::from_millis(600)));
    let addr = uas.addr;
    let mut cfg = config(addr, BenchMethod::Invite503, open_loop(20.0, 1));
    cfg.timeout = Duration::from_millis(300);
    cfg.retransmit = false;
    // An INVITE waits 64·T1 after its first send for a late answer: 3.2 s here.
    cfg.t1 = Duration::from_millis(50);
    let r = run(cfg);
    let seen = uas.stop();
    assert_accounting(&r);
    let t = &r.total;
    assert_eq!((t.sent, t.timed_out, t.answered()), (20, 20, 0));
    assert_eq!(t.accepted, 20, "accepted after the timeout");
    assert_eq!(t.late, 20);
    assert_eq!((t.acks, t.ack_send_errors), (20, 0));
    assert_eq!((t.byes, t.bye_failures, t.bye_refused), (20, 0, 0));
    let invites = one_per_call(&seen, "INVITE");
    let acks = one_per_call(&seen, "ACK");
    let byes = one_per_call(&seen, "BYE");
    assert_eq!((invites.len(), acks.len(), byes.len()), (20, 20, 20));
    let contact = uas_contact(addr);
    for (call, inv) in &invites {
        let (ack, bye) = (&acks[call], &byes[call]);
        assert_eq!((ack.ruri.as_str(), ack.cseq), (contact.as_str(), inv.cseq));
        assert_ne!(ack.branch, inv.branch);
        assert_eq!(
            (bye.ruri.as_str(), bye.cseq),
            (contact.as_str(), inv.cseq + 1)
        );
        assert_eq!(bye.to_tag, Some(uas_tag(call)));
    }
}

/// Percentiles that count timeouts (at their timeout) beside those of the answers,
/// in the summary and the JSON, and exit code 2 for a ramp in which no step held.
#[test]
fn timeouts_count_in_the_percentiles_and_a_ramp_that_never_held_fails() {
    let resp = responder(|c| c.drop_every = 10);
    let dir = util::tempdir();
    let json = dir.path().join("out.json");
    let out = util::srewatch()
        .arg("bench")
        .arg(format!("sip:{}", resp.local_addr()))
        .args(["--ramp", "100:200:100:1s", "--timeout", "300ms"])
        .args(["--no-retransmit", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let s = resp.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}\n{stdout}");
    assert!(
        stderr.contains("no step of the ramp held (exit 2)"),
        "{stderr}"
    );
    assert!(stdout.contains("no step held"), "{stdout}");
    assert_eq!(s.dropped, 30);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let t = &v["total"];
    assert_eq!(
        (t["sent"].as_u64(), t["timed_out"].as_u64()),
        (Some(300), Some(30))
    );
    // Answers only: 270 values, well under the timeout.
    assert_eq!(t["latency_us"]["count"], 270);
    assert!(t["latency_us"]["p99"].as_u64().unwrap() < 300_000, "{t}");
    // With the timeouts at their timeout: 300 values, and 10% of them at >= 300 ms.
    assert_eq!(t["latency_with_timeouts_us"]["count"], 300);
    assert!(
        t["latency_with_timeouts_us"]["p99"].as_u64().unwrap() >= 300_000,
        "{t}"
    );
    assert!(
        t["latency_with_timeouts_us"]["p50"].as_u64().unwrap() < 300_000,
        "{t}"
    );
    for step in v["steps"].as_array().unwrap() {
        assert_eq!(step["held"], false);
        assert_eq!(
            step["latency_with_timeouts_us"]["count"].as_u64(),
            step["sent"].as_u64()
        );
    }
    assert!(
        stdout.contains("latency counting timeouts at their timeout (300 values): p50 "),
        "{stdout}"
    );
}

/// Runs the `srewatch bench` binary to its end: (exit code, stdout, stderr).
fn bench_binary(args: &[&str]) -> (Option<i32>, String, String) {
    let out = util::srewatch().arg("bench").args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `bench` exits 1 when calls failed (SIPp's rule), unless
/// `--max-failed-share` tolerates their share.
#[test]
fn failed_calls_exit_1_unless_their_share_is_tolerated() {
    let resp = responder(|c| c.drop_every = 20);
    let uri = format!("sip:{}", resp.local_addr());
    let base = [
        uri.as_str(),
        "--rate",
        "200",
        "--duration",
        "1s",
        "--timeout",
        "300ms",
        "--no-retransmit",
    ];
    // 10 of 200 dropped by the responder: 5 % failed.
    let (code, stdout, stderr) = bench_binary(&base);
    assert_eq!(code, Some(1), "{stderr}\n{stdout}");
    assert!(
        stdout.contains("accounting: sent 200 = answered 190 (200: 190) + timed_out 10"),
        "{stdout}"
    );
    assert!(
        stderr.contains(
            "srewatch bench: 10 of 200 calls failed (5.000%), more than --max-failed-share 0 (exit 1)"
        ),
        "{stderr}"
    );
    let (code, stdout, stderr) =
        bench_binary(&[&base[..], &["--max-failed-share", "0.05"]].concat());
    assert_eq!(code, Some(0), "{stderr}\n{stdout}");
    assert!(stdout.contains("+ timed_out 10"), "{stdout}");
    let (code, _, stderr) = bench_binary(&[&base[..], &["--max-failed-share", "0.049"]].concat());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("10 of 200 calls failed (5.000%), more than --max-failed-share 0.049"),
        "{stderr}"
    );
    assert_eq!(resp.stop().dropped, 30);

    // Every call failed (nothing listens): exit 1, not 0.
    let port = util::free_udp_tcp_port();
    let (code, stdout, stderr) = bench_binary(&[
        &format!("sip:127.0.0.1:{port}"),
        "--rate",
        "50",
        "--duration",
        "1s",
        "--timeout",
        "300ms",
        "--no-retransmit",
    ]);
    assert_eq!(code, Some(1), "{stderr}\n{stdout}");
    assert!(
        stderr.contains("50 of 50 calls failed (100.000%)"),
        "{stderr}"
    );
}

/// SIGINT 2 s into `--rate 100 --duration 5s` against a closed port
/// stops sending and exits within a second (not after Timer F), counting the transactions in
/// flight as abandoned; the accounting still balances.
#[test]
fn ctrl_c_stops_within_a_second_and_counts_in_flight_as_abandoned() {
    let dir = util::tempdir();
    let json = dir.path().join("out.json");
    let port = util::free_udp_tcp_port();
    let mut cmd = util::srewatch();
    cmd.arg("bench")
        .arg(format!("sip:127.0.0.1:{port}"))
        .args(["--rate", "100", "--duration", "5s", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let signalled = std::time::Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "bench still running 10 s after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = signalled.elapsed();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        took < Duration::from_secs(1),
        "exited {took:?} after SIGINT\n{stderr}"
    );
    // Abandoned calls are not failed calls: nothing timed out or failed to send.
    assert_eq!(status.code(), Some(0), "{stderr}\n{stdout}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let acc = &v["accounting"];
    let sent = acc["sent"].as_u64().unwrap();
    // About 2 s at 100/s, none after the signal.
    assert!((150..=230).contains(&sent), "{acc}");
    assert_eq!(acc["abandoned"].as_u64(), Some(sent), "{acc}");
    assert_eq!(
        (acc["answered"].as_u64(), acc["timed_out"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(acc["balanced"], true);
    assert_eq!(v["total"]["abandoned"].as_u64(), Some(sent));
    assert!(
        stdout.contains(&format!(
            "accounting: sent {sent} = answered 0 () + timed_out 0 + send_errors 0 + abandoned {sent}  OK"
        )),
        "{stdout}"
    );
}

/// `bench merge` refuses the same run twice (`--allow-duplicates`
/// overrides) and runs of another target, method or rate schedule (`--allow-mixed`).
#[test]
fn merge_refuses_the_same_run_twice_and_runs_that_differ() {
    let r1 = responder(|c| c.invite_status = 503);
    let r2 = responder(|_| {});
    let dir = util::tempdir();
    let path = |n: &str| dir.path().join(format!("{n}.json"));
    let runs: [(&str, SocketAddr, &[&str]); 6] = [
        ("a", r1.local_addr(), &["--rate", "50", "--duration", "1s"]),
        ("b", r1.local_addr(), &["--rate", "50", "--duration", "1s"]),
        // The same shape at another rate (another host's share) merges.
        ("b2", r1.local_addr(), &["--rate", "25", "--duration", "1s"]),
        (
            "c",
            r1.local_addr(),
            &["--rate", "50", "--duration", "1s", "--method", "invite-503"],
        ),
        ("d", r1.local_addr(), &["--ramp", "50:100:50:1s"]),
        ("e", r2.local_addr(), &["--rate", "50", "--duration", "1s"]),
    ];
    let mut children = Vec::new();
    for (name, addr, args) in &runs {
        let mut c = util::srewatch();
        c.arg("bench")
            .arg(format!("sip:{addr}"))
            .args(*args)
            .args(["--timeout", "1s", "--json"])
            .arg(path(name))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        children.push(c.spawn().unwrap());
    }
    for mut c in children {
        assert_eq!(c.wait().unwrap().code(), Some(0));
    }
    let merge = |names: &[&str], flags: &[&str]| {
        let out = util::srewatch()
            .args(["bench", "merge"])
            .args(names.iter().map(|n| path(n)))
            .args(flags)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = merge(&["a", "b", "b2"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("merged 3 runs: sent 125 = answered 125"),
        "{stdout}"
    );

    // Refusals are errors: exit 2 with the reason.
    let (code, stdout, stderr) = merge(&["a", "b", "a"], &[]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "{} is the same run as {} (give --allow-duplicates to count it twice)",
            path("a").display(),
            path("a").display()
        )),
        "{stderr}"
    );
    let (code, stdout, stderr) = merge(&["a", "a"], &["--allow-duplicates"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("merged 2 runs: sent 100 = answered 100"),
        "{stdout}"
    );

    let refused = |other: &str, what: &str| {
        let (code, stdout, stderr) = merge(&["a", other], &[]);
        assert_eq!(code, Some(2), "{stdout}");
        assert!(
            stderr.contains(&format!(
                "{} has another {what} than {} (give --allow-mixed to merge them anyway)",
                path(other).display(),
                path("a").display()
            )),
            "{stderr}"
        );
    };
    refused("c", "method (invite-503, not options)");
    refused("d", "rate schedule (2 steps of 1s, not 1 step of 1s)");
    refused(
        "e",
        &format!("target ({}, not {})", r2.local_addr(), r1.local_addr()),
    );
    let (code, stdout, stderr) = merge(&["a", "c", "e"], &["--allow-mixed"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("merged 3 runs: sent 150 = answered 150"),
        "{stdout}"
    );
}

/// Through the library: `stop` after the schedule ended, against a
/// socket that never answers: the run ends a grace later (not at Timer F), every request
/// abandoned, none timed out.
#[test]
fn stop_abandons_what_is_in_flight_after_the_grace() {
    let hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(
        hole.local_addr().unwrap(),
        BenchMethod::Options,
        open_loop(100.0, 1),
    );
    cfg.timeout = Duration::from_secs(32);
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1300));
        s.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let start = std::time::Instant::now();
    let r = bench::run(cfg, stop, &mut |_| {}).unwrap();
    let took = start.elapsed();
    setter.join().unwrap();
    assert_accounting(&r);
    let t = &r.total;
    assert_eq!((t.sent, t.abandoned), (100, 100));
    assert_eq!((t.answered(), t.timed_out, t.send_errors), (0, 0, 0));
    assert_eq!(r.steps[0].tally.abandoned, 100);
    assert_eq!(
        r.seconds.iter().map(|s| s.tally.abandoned).sum::<u64>(),
        100
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    drop(hole);
}

/// Open loop at a moderate rate: a wake-up sends everything due within the send window (1 ms by
/// default) in one batch, so an idle worker wakes about once a window, not once a request.
#[test]
fn open_loop_wakes_once_per_send_window_not_per_request() {
    let r = open_loop_all_answered(5_000.0, 2);
    let t = &r.total;
    // A wake-up comes three quarters of a window after the next request is due: at 5,000/s
    // (one request every 200 µs) that is one every 950 µs, plus the drain at the end.
    let ms = r.elapsed.as_millis() as u64;
    let bound = ms * 11 / 10 + 50;
    assert!(
        r.wakeups <= bound,
        "{} wake-ups for {} requests in {ms} ms, bound {bound}",
        r.wakeups,
        t.sent
    );
}

//! Calls a CP should not take, closed for real: a real Kamailio with the stock
//! in-dialog handling (`fixtures/kamailio/cp-dialog.cfg`) that wrongly accepts an INVITE with
//! 200 + Record-Route, or rings until the CANCEL. The prober, `probe check` and the bench must
//! ACK and BYE along the route set, report the BYE's own result, CANCEL and ACK every 487;
//! Kamailio's own counters (read with kamcmd) say what arrived.

use crate::util::{self, kamailio::Kamailio, kamailio::Options};
use probe::bench::{self, BenchConfig, BenchMethod, BenchResult, Load, Step};
use probe::monitor::{
    self, Expect, InviteProbe, Output, ProbeConfig, ProbeResult, Role, TargetConfig,
};
use probe::responder::{Responder, ResponderConfig};
use probe::transaction::Method;
use std::net::UdpSocket;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// A CP from cp-dialog.cfg in `mode` (`ACCEPT` or `RING`); `record_route` is the header line
/// (with its CRLF) the ACCEPT mode adds to its 200, `None` for its own address; `uas` the
/// Contact's address, the UAS that answers the BYE.
fn cp(
    dir: &std::path::Path,
    mode: &str,
    record_route: Option<String>,
    uas: Option<&Responder>,
) -> Kamailio {
    let mut o = Options {
        fixture: "kamailio/cp-dialog.cfg",
        ..Options::default()
    };
    o.vars.push(("MODE", mode.to_string()));
    o.vars.push((
        "UAS_PORT",
        uas.map_or(9, |u| u.local_addr().port()).to_string(),
    ));
    // The port is only known inside; @SIP_PORT@ is substituted after these.
    o.vars.push((
        "RECORD_ROUTE",
        record_route.unwrap_or_else(|| "Record-Route: <sip:127.0.0.1:@SIP_PORT@;lr>\\r\\n".into()),
    ));
    Kamailio::start(dir, o)
}

/// Alarms as (name, raised, message), in order.
/// The UAS behind the CP's Contact: `srewatch responder` (answers BYE 200, absorbs ACKs).
fn uas() -> Responder {
    let mut c = ResponderConfig::new("127.0.0.1:0".parse().unwrap());
    c.threads = 1;
    Responder::start(c).expect("responder starts")
}

fn alarms(out: &[Output]) -> Vec<(String, bool, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Alarm(a) => Some((a.kind.as_str().to_string(), a.active, a.message.clone())),
            _ => None,
        })
        .collect()
}

/// Probes one CP expected out of service (an OPTIONS every 60 s: exactly one OPTIONS and one
/// INVITE check) until its INVITE result is reported; every output.
async fn probe_once(uri: &str, timeout: Duration) -> Vec<Output> {
    let mut t = TargetConfig::new("cp1", uri, Role::Cp);
    t.expect = Expect::OutOfService;
    t.invite_probe = InviteProbe::OosOnly;
    t.interval = Duration::from_secs(60);
    t.timeout = timeout;
    let cfg = ProbeConfig {
        fingerprint: None,
        shard: None,
        source: None,
        target: vec![t],
    };
    let (mut rx, handle) = monitor::spawn(&cfg).await.unwrap();
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let o = tokio::time::timeout_at(end, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no INVITE result within 15 s: {out:#?}"))
            .expect("monitor ended");
        let invite = matches!(&o, Output::Result(r) if r.method == Method::Invite);
        out.push(o);
        if invite {
            break;
        }
    }
    handle.stop().await;
    while let Some(o) = rx.recv().await {
        out.push(o);
    }
    out
}

fn invite_result(out: &[Output]) -> &ProbeResult {
    result_of(out, Method::Invite)
}

/// The first result of `method` (panics when there is none).
fn result_of(out: &[Output], method: Method) -> &ProbeResult {
    out.iter()
        .find_map(|o| match o {
            Output::Result(r) if r.method == method => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("a {method:?} result"))
}

/// The alarms of an accepted call whose BYE got 200.
fn hung_up_alarms() -> Vec<(String, bool, String)> {
    vec![
        (
            "call_accepted".into(),
            true,
            "INVITE answered 200: a call was accepted (ACKed and hung up: BYE answered 200)".into(),
        ),
        ("invite_not_503".into(), true, "INVITE check got 200".into()),
    ]
}

/// An out-of-service CP answers the INVITE check 200 with
/// Record-Route. Kamailio gets the ACK and the BYE with the Route header, its stock
/// WITHINDLG loose-routes the BYE to the Contact, whose UAS answers 200; the alarm says hung
/// up because the BYE got 200, and no BYE alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_call_is_hung_up_along_the_route_set() {
    let dir = util::tempdir();
    let u = uas();
    let k = cp(dir.path(), "ACCEPT", None, Some(&u));
    k.set_out_of_service(true);
    let out = probe_once(&k.sip_uri(), Duration::from_secs(2)).await;
    let inv = invite_result(&out);
    assert_eq!((inv.status, inv.late), (Some(200), false));
    assert_eq!(alarms(&out), hung_up_alarms());
    let stat = |n: &str| tokio::task::block_in_place(|| k.kamcmd_stat(n));
    // Once each (plus what a slow machine made srewatch retransmit).
    let bye = result_of(&out, Method::Bye).clone();
    assert_eq!(bye.status, Some(200));
    assert_eq!(stat("core:rcv_requests_invite"), 1 + inv.retransmits as i64);
    // The ACK: loose-routed (it carried the Route) and relayed to the UAS.
    assert_eq!(stat("core:rcv_requests_ack"), 1);
    assert_eq!(stat("script:dialog_relayed_ack"), 1);
    // The BYE: loose-routed by the stock WITHINDLG, relayed to the Contact, answered 200 by
    // its UAS and that 200 passed back; no `404 Not here`.
    assert_eq!(stat("core:rcv_requests_bye"), 1 + bye.retransmits as i64);
    assert_eq!(
        stat("script:dialog_relayed_bye"),
        1 + bye.retransmits as i64
    );
    assert_eq!(stat("core:rcv_replies_2xx_bye"), 1);
    tokio::task::block_in_place(|| stat_becomes(&k, "tmx:2xx_transactions", 1));
    assert_eq!(stat("sl:404_replies"), 0);
    let s = u.stop();
    assert_eq!(
        (s.acks, s.other, s.answered),
        (1, 1, 1),
        "the UAS got the ACK and the BYE"
    );

    // The control: a BYE without a Route header, as srewatch sent before, gets the stock
    // `404 Not here`.
    let status = tokio::task::block_in_place(|| bye_without_route(k.sip_addr()));
    assert_eq!(status, "SIP/2.0 404 Not here");
    // Kamailio counts a reply just after sending it.
    tokio::task::block_in_place(|| stat_becomes(&k, "sl:404_replies", 1));
}

/// RFC 3261 12.2.1.1, 8.1.2: the 200 of the out-of-service CP carries the
/// Record-Route of ANOTHER proxy (a second Kamailio with the stock in-dialog handling). The ACK
/// and the BYE go to that proxy first (the address of the first Route URI), not to the probed
/// CP; the proxy loose-routes them to the Contact's UAS, whose 200 comes back from the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_and_bye_go_to_the_first_route() {
    let (dir_a, dir_b) = (util::tempdir(), util::tempdir());
    let u = uas();
    // The other proxy: only its WITHINDLG handles what srewatch sends it.
    let proxy = cp(dir_b.path(), "RING", None, Some(&u));
    let rr = format!(
        "Record-Route: <sip:127.0.0.1:{};lr>\\r\\n",
        proxy.sip_addr().port()
    );
    let k = cp(dir_a.path(), "ACCEPT", Some(rr), Some(&u));
    k.set_out_of_service(true);
    let out = probe_once(&k.sip_uri(), Duration::from_secs(2)).await;
    let inv = invite_result(&out);
    assert_eq!((inv.status, inv.late), (Some(200), false));
    assert_eq!(alarms(&out), hung_up_alarms());
    let bye = result_of(&out, Method::Bye).clone();
    assert_eq!(bye.status, Some(200));
    // Its answer came from where it was sent: no reply-source mismatch.
    assert_eq!(bye.source, None);
    let stat = |k: &Kamailio, n: &str| tokio::task::block_in_place(|| k.kamcmd_stat(n));
    // The probed CP got the INVITE only: neither the ACK nor the BYE.
    assert_eq!(
        stat(&k, "core:rcv_requests_invite"),
        1 + inv.retransmits as i64
    );
    assert_eq!(
        stat(&k, "core:rcv_requests_ack"),
        0,
        "ACK sent to the probed CP"
    );
    assert_eq!(
        stat(&k, "core:rcv_requests_bye"),
        0,
        "BYE sent to the probed CP"
    );
    // The proxy of the Record-Route got them first and relayed them to the Contact.
    assert_eq!(stat(&proxy, "core:rcv_requests_ack"), 1);
    assert_eq!(stat(&proxy, "script:dialog_relayed_ack"), 1);
    assert_eq!(
        stat(&proxy, "core:rcv_requests_bye"),
        1 + bye.retransmits as i64
    );
    assert_eq!(
        stat(&proxy, "script:dialog_relayed_bye"),
        1 + bye.retransmits as i64
    );
    assert_eq!(stat(&proxy, "core:rcv_replies_2xx_bye"), 1);
    assert_eq!(stat(&proxy, "sl:404_replies"), 0);
    let s = u.stop();
    assert_eq!(
        (s.acks, s.other, s.answered),
        (1, 1, 1),
        "the UAS got the ACK and the BYE"
    );
}

/// Waits (up to 5 s) for a Kamailio statistic to reach `want`, then checks it is exactly that.
fn stat_becomes(k: &Kamailio, name: &str, want: i64) {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while k.kamcmd_stat(name) < want && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(k.kamcmd_stat(name), want, "{name}");
}

/// Sends an in-dialog BYE (To tag, no Route) from a socket of its own; the status line of the
/// answer.
fn bye_without_route(to: std::net::SocketAddr) -> String {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = s.local_addr().unwrap();
    let msg = format!(
        "BYE sip:cp-uas@127.0.0.1:9 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKcontrol1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=f1\r\nTo: <sip:cp@127.0.0.1>;tag=t1\r\n\
         Call-ID: control-1@test\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(msg.as_bytes(), to).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).expect("an answer to the BYE");
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.lines().next().unwrap_or("").to_string()
}

/// The Record-Route line of a 200 whose route set is the CP itself (the first route, where
/// the ACK and BYE are sent) and then `next` (RFC 3261 12.1.2: the Record-Route reversed).
fn route_via_cp_to(next: std::net::SocketAddr) -> String {
    format!("Record-Route: <sip:{next};lr>, <sip:127.0.0.1:@SIP_PORT@;lr>\\r\\n")
}

/// The same CP whose route set goes on from the CP to a proxy that never answers: Kamailio
/// relays the BYE there and answers it 408; the call may still be up, so `bye_failed` is
/// raised and the alarm text does not say hung up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_route_set_raises_the_bye_alarm() {
    let dir = util::tempdir();
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rr = route_via_cp_to(dead.local_addr().unwrap());
    let u = uas();
    let k = cp(dir.path(), "ACCEPT", Some(rr), Some(&u));
    k.set_out_of_service(true);
    let out = probe_once(&k.sip_uri(), Duration::from_secs(3)).await;
    assert_eq!(invite_result(&out).status, Some(200));
    assert_eq!(
        alarms(&out),
        vec![
            (
                "call_accepted".into(),
                true,
                "INVITE answered 200: a call was accepted (ACKed; BYE answered 408: the call may still be up)"
                    .into()
            ),
            ("invite_not_503".into(), true, "INVITE check got 200".into()),
            (
                "bye_failed".into(),
                true,
                "BYE of the call accepted with 200 answered 408: the call may still be up".into()
            ),
        ]
    );
    let stat = |n: &str| tokio::task::block_in_place(|| k.kamcmd_stat(n));
    // The BYE (and its retransmissions while tm waited 1 s for the dead proxy) came.
    assert!(stat("core:rcv_requests_bye") >= 1);
    assert_eq!(stat("core:rcv_replies_2xx_bye"), 0);
    assert_eq!(u.stop().other, 0, "the BYE never reached the UAS");
    // Kamailio relayed the ACK and the BYE (and tm its BYE retransmissions) to the dead proxy.
    dead.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let mut lines = Vec::new();
    while let Ok(n) = dead.recv(&mut buf) {
        let m = String::from_utf8_lossy(&buf[..n]).to_string();
        lines.push(
            m.lines()
                .next()
                .unwrap_or("")
                .split(' ')
                .next()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(lines.iter().filter(|m| *m == "ACK").count(), 1, "{lines:?}");
    assert!(lines.iter().any(|m| m == "BYE"), "{lines:?}");
}

/// `probe check --invite` (no `--expect 503`) against a CP that
/// accepts the call but whose BYE fails: the line and the perfdata show the accepted call and
/// the BYE's status, and the exit code is CRITICAL.
#[test]
fn check_shows_the_accepted_call_and_the_bye() {
    let dir = util::tempdir();
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rr = route_via_cp_to(dead.local_addr().unwrap());
    let u = uas();
    let k = cp(dir.path(), "ACCEPT", Some(rr), Some(&u));
    let uri = k.sip_uri();
    let out = util::srewatch()
        .args(["probe", "check", &uri, "--invite", "--timeout", "3s"])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{line}");
    assert!(
        line.starts_with(&format!("SIP CRITICAL: {uri} answered 200 in ")),
        "{line}"
    );
    assert!(
        line.contains("; INVITE answered 200: a call was accepted (ACKed; BYE answered 408: the call may still be up) | "),
        "{line}"
    );
    assert!(line.contains(" invite_status=200 "), "{line}");
    assert!(
        line.trim_end().ends_with(" accepted=1 bye_status=408"),
        "{line}"
    );

    // The OPTIONS not as expected: the INVITE's verdict is still in the line.
    let k2dir = util::tempdir();
    let k2 = cp(k2dir.path(), "ACCEPT", None, Some(&u));
    let uri = k2.sip_uri();
    let out = util::srewatch()
        .args(["probe", "check", &uri, "--invite", "--expect", "503"])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{line}");
    assert!(
        line.contains("answered 200, expected 503; INVITE answered 200: a call was accepted (ACKed and hung up: BYE answered 200) | "),
        "{line}"
    );
    assert!(
        line.trim_end().ends_with(" accepted=1 bye_status=200"),
        "{line}"
    );
}

fn run_bench(cfg: BenchConfig) -> BenchResult {
    let r = bench::run(cfg, Arc::new(AtomicBool::new(false)), &mut |_| {}).unwrap();
    assert!(r.balanced());
    r
}

fn invite_bench(k: &Kamailio, rate: f64) -> BenchConfig {
    let mut c = BenchConfig::new(
        &k.sip_uri(),
        k.sip_addr(),
        BenchMethod::Invite503,
        Load::Open(vec![Step {
            rate,
            duration: Duration::from_secs(1),
        }]),
    );
    c.timeout = Duration::from_secs(2);
    c
}

/// `bench --method invite-503 --no-retransmit` against a CP that rings then answers 487:
/// every CANCEL answered, every 487 ACKed (Kamailio's counters agree).
#[test]
fn bench_cancels_ringing_calls_and_acks_every_487() {
    let dir = util::tempdir();
    let k = cp(dir.path(), "RING", None, None);
    let mut cfg = invite_bench(&k, 20.0);
    cfg.retransmit = false;
    cfg.timeout = Duration::from_millis(500);
    let r = run_bench(cfg);
    let t = &r.total;
    assert_eq!(t.sent, 20);
    assert_eq!((t.timed_out, t.answered(), t.provisional), (20, 0, 20));
    assert_eq!(
        (t.cancels, t.cancel_failures),
        (20, 0),
        "every CANCEL answered"
    );
    assert!(t.acks >= 20 && t.ack_send_errors == 0, "every 487 ACKed");
    assert_eq!(t.late, 20, "the 487s come after the timeout");
    assert_eq!((t.accepted, t.byes), (0, 0));
    // Kamailio: each INVITE once (no retransmission), each CANCEL (its own Timer E may resend
    // it on a slow machine), each ACK of a 487 once.
    assert_eq!(k.kamcmd_stat("core:rcv_requests_invite"), 20);
    assert_eq!(
        k.kamcmd_stat("core:rcv_requests_cancel") as u64,
        20 + t.retransmits
    );
    // Kamailio got exactly the ACKs the bench sent: one per 487 (a 487 that tm retransmits
    // before our ACK reaches it, on a slow machine, is ACKed again).
    assert_eq!(k.kamcmd_stat("core:rcv_requests_ack") as u64, t.acks);
    // tm: 20 INVITE and 20 CANCEL transactions; each CANCEL answered 200, each INVITE 487.
    assert_eq!(k.kamcmd_stat("tmx:UAS_transactions"), 40);
    stat_becomes(&k, "tmx:2xx_transactions", 20);
    stat_becomes(&k, "tmx:4xx_transactions", 20);
}

/// The bench ACKs and BYEs accepted calls along the route set: Kamailio answers every BYE
/// 200 and no `404 Not here`.
#[test]
fn bench_hangs_up_accepted_calls_along_the_route_set() {
    let dir = util::tempdir();
    let u = uas();
    let k = cp(dir.path(), "ACCEPT", None, Some(&u));
    k.set_out_of_service(true);
    let mut cfg = invite_bench(&k, 50.0);
    // The INVITE is not retransmitted, so `retransmits` are the BYE's own (Timer E).
    cfg.retransmit = false;
    let r = run_bench(cfg);
    let t = &r.total;
    assert_eq!((t.sent, t.answered_with(200), t.accepted), (50, 50, 50));
    assert_eq!((t.acks, t.byes, t.bye_failures), (50, 50, 0));
    assert_eq!(k.kamcmd_stat("core:rcv_requests_ack"), 50);
    assert_eq!(k.kamcmd_stat("script:dialog_relayed_ack"), 50);
    assert_eq!(
        k.kamcmd_stat("core:rcv_requests_bye") as u64,
        50 + t.retransmits
    );
    assert_eq!(
        k.kamcmd_stat("script:dialog_relayed_bye") as u64,
        50 + t.retransmits
    );
    assert_eq!(k.kamcmd_stat("core:rcv_replies_2xx_bye"), 50);
    assert_eq!(k.kamcmd_stat("sl:404_replies"), 0, "no 404 Not here");
    let s = u.stop();
    assert_eq!(
        (s.acks, s.other),
        (50, 50),
        "the UAS got every ACK and BYE once"
    );
}

/// A UDP UAS thread (fault injection: a CP that accepts a call only after the caller's
/// timeout): OPTIONS 200; INVITE nothing, then 200 OK (To tag, Contact) after `delay`; BYE 200.
/// Returns its address; it ends after `life`.
fn late_accepting_uas(delay: Duration, life: Duration) -> std::net::SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let end = std::time::Instant::now() + life;
        let mut later: Vec<(std::time::Instant, String, std::net::SocketAddr)> = Vec::new();
        let mut buf = [0u8; 65536];
        while std::time::Instant::now() < end {
            let now = std::time::Instant::now();
            for (_, m, to) in later.iter().filter(|l| l.0 <= now) {
                let _ = sock.send_to(m.as_bytes(), to);
            }
            later.retain(|l| l.0 > now);
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let method = text.split(' ').next().unwrap_or("").to_string();
            let copied: String = text
                .split("\r\n")
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    ["via:", "from:", "to:", "call-id:", "cseq:"]
                        .iter()
                        .any(|p| l.starts_with(p))
                })
                .map(|l| {
                    if l.to_ascii_lowercase().starts_with("to:") && !l.contains(";tag=") {
                        format!("{l};tag=late1\r\n")
                    } else {
                        format!("{l}\r\n")
                    }
                })
                .collect();
            let answer = |status: &str| {
                format!(
                    "SIP/2.0 {status}\r\n{copied}Contact: <sip:uas@{addr}>\r\nContent-Length: 0\r\n\r\n"
                )
            };
            match method.as_str() {
                "OPTIONS" | "BYE" => {
                    let _ = sock.send_to(answer("200 OK").as_bytes(), from);
                }
                "INVITE" => later.push((now + delay, answer("200 OK"), from)),
                _ => {}
            }
        }
    });
    addr
}

/// `probe check --invite` against a CP that accepts the call only
/// after the INVITE's timeout: the late 2xx is still reported (line, perfdata, exit code),
/// not hidden behind "no final answer".
#[test]
fn check_reports_a_call_accepted_after_the_timeout() {
    let addr = late_accepting_uas(Duration::from_millis(900), Duration::from_secs(10));
    let uri = format!("sip:{addr}");
    let out = util::srewatch()
        .args(["probe", "check", &uri, "--invite", "--timeout", "600ms"])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{line}");
    assert!(
        line.contains("; INVITE answered 200 after the timeout: a call was accepted (ACKed and hung up: BYE answered 200) | "),
        "{line}"
    );
    assert!(line.contains(" invite_status=200 "), "{line}");
    assert!(
        line.trim_end().ends_with(" accepted=1 bye_status=200"),
        "{line}"
    );
}

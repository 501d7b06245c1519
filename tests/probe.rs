//! The prober against a real Kamailio (tests/util/kamailio.rs), cross-checked with sipsak and
//! with Kamailio's own counters read by kamcmd.

use crate::util::{self, kamailio::Kamailio, kamailio::Options, sipsak_status, Proc};
use probe::monitor::{
    self, EventKind, Output, ProbeConfig, ProbeResult, Role, ServiceState, TargetConfig,
};
use probe::transaction::Method;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Receiver;

fn target(name: &str, uri: &str, role: Role) -> TargetConfig {
    let mut t = TargetConfig::new(name, uri, role);
    t.interval = Duration::from_millis(200);
    t.timeout = Duration::from_millis(500);
    t
}

/// Reads outputs until `pred` accepts one (returned) or `within` passes (panic), keeping all.
async fn until(
    rx: &mut Receiver<Output>,
    seen: &mut Vec<Output>,
    within: Duration,
    what: &str,
    mut pred: impl FnMut(&Output) -> bool,
) -> Output {
    let end = tokio::time::Instant::now() + within;
    loop {
        let o = tokio::time::timeout_at(end, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {within:?}; seen: {seen:#?}"))
            .expect("monitor ended");
        seen.push(o.clone());
        if pred(&o) {
            return o;
        }
    }
}

fn options_result(o: &Output) -> Option<&ProbeResult> {
    match o {
        Output::Result(r) if r.method == Method::Options => Some(r),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_in_service_out_of_service_down_and_up() {
    let dir = util::tempdir();
    let mut k = Kamailio::start(dir.path(), Options::default());
    let cfg = ProbeConfig {
        fingerprint: None,
        shard: None,
        source: None,
        target: vec![target("cp1", &k.sip_uri(), Role::Cp)],
    };
    let (mut rx, handle) = monitor::spawn(&cfg).await.unwrap();
    let mut seen = Vec::new();
    let w = Duration::from_secs(5);

    // In service: 200, RTT recorded, no retransmission on loopback.
    let o = until(&mut rx, &mut seen, w, "first result", |o| {
        options_result(o).is_some()
    })
    .await;
    let r = options_result(&o).unwrap();
    assert_eq!(r.state, ServiceState::InService);
    assert_eq!(r.status, Some(200));
    assert_eq!(r.retransmits, 0);
    let rtt = r.rtt.expect("RTT recorded");
    assert!(
        rtt > Duration::ZERO && rtt < Duration::from_millis(500),
        "{rtt:?}"
    );
    assert_eq!(util::blocking(|| sipsak_status(&k.sip_uri())), "200");

    // Marker created: out of service within two probes, and the INVITE check gets 503.
    k.set_out_of_service(true);
    let mut after = 0;
    let o = until(
        &mut rx,
        &mut seen,
        w,
        "out of service",
        |o| match options_result(o) {
            Some(r) if r.state == ServiceState::OutOfService => true,
            Some(_) => {
                after += 1;
                false
            }
            None => false,
        },
    )
    .await;
    assert!(after <= 2, "{after} probes in service after the marker");
    assert_eq!(options_result(&o).unwrap().status, Some(503));
    let o = until(
        &mut rx,
        &mut seen,
        w,
        "INVITE check",
        |o| matches!(o, Output::Result(r) if r.method == Method::Invite),
    )
    .await;
    let Output::Result(inv) = &o else {
        unreachable!()
    };
    assert_eq!(inv.status, Some(503));
    assert_eq!(inv.state, ServiceState::OutOfService);
    assert_eq!(util::blocking(|| sipsak_status(&k.sip_uri())), "503");

    // Marker removed: back in service.
    k.set_out_of_service(false);
    until(&mut rx, &mut seen, w, "back in service", |o| {
        options_result(o).is_some_and(|r| r.state == ServiceState::InService)
    })
    .await;
    // Let any INVITE in flight finish, then compare with Kamailio's counters: every INVITE
    // that got a final answer was ACKed, and sl absorbed each ACK.
    tokio::time::sleep(Duration::from_millis(700)).await;
    while let Ok(o) = rx.try_recv() {
        seen.push(o);
    }
    let invites: Vec<&ProbeResult> = seen
        .iter()
        .filter_map(|o| match o {
            Output::Result(r) if r.method == Method::Invite => Some(r),
            _ => None,
        })
        .collect();
    let answered = invites.iter().filter(|r| r.status.is_some()).count() as i64;
    let sent: i64 = invites.iter().map(|r| 1 + r.retransmits as i64).sum();
    assert!(answered >= 1);
    assert_eq!(
        util::blocking(|| k.kamcmd_stat("core:rcv_requests_invite")),
        sent
    );
    assert_eq!(
        util::blocking(|| k.kamcmd_stat("sl:received_ACKs")),
        answered,
        "{invites:#?}\n{}",
        k.log()
    );
    // No INVITE was placed while in service (invite_probe = oos_only): all got 503 or, if the
    // marker went away meanwhile, 480.
    assert!(invites
        .iter()
        .all(|r| matches!(r.status, Some(503) | Some(480))));

    // Kamailio stopped: down (ICMP port unreachable is a transport error, not a status).
    util::blocking(|| k.stop());
    let o = until(&mut rx, &mut seen, w, "down", |o| {
        options_result(o).is_some_and(|r| r.state == ServiceState::Down)
    })
    .await;
    let r = options_result(&o).unwrap();
    assert_eq!(r.status, None);
    assert_eq!(
        r.error,
        Some(probe::transaction::TransportErrorKind::PortUnreachable)
    );
    // Started: up again.
    util::blocking(|| k.start_again());
    until(&mut rx, &mut seen, w, "up again", |o| {
        options_result(o).is_some_and(|r| r.state == ServiceState::InService)
    })
    .await;
    handle.stop().await;
    while let Some(o) = rx.recv().await {
        seen.push(o);
    }
    // Events on every change, in order.
    let changes: Vec<&str> = seen
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => match &e.kind {
                EventKind::State { to, .. } => Some(to.as_str()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            "in_service",
            "out_of_service",
            "in_service",
            "down",
            "in_service"
        ]
    );
    // Alarms: unexpected state raised for out of service and down, cleared after each.
    let alarms: Vec<(String, bool)> = seen
        .iter()
        .filter_map(|o| match o {
            Output::Alarm(a) => Some((a.kind.as_str().to_string(), a.active)),
            _ => None,
        })
        .collect();
    assert_eq!(
        alarms,
        vec![
            ("unexpected_state".to_string(), true),
            ("unexpected_state".to_string(), false),
            ("unexpected_state".to_string(), true),
            ("unexpected_state".to_string(), false),
        ]
    );
    // The last summary counts every OPTIONS result of its minute.
    assert!(seen
        .iter()
        .any(|o| matches!(o, Output::Summary(s) if s.count > 0)));
}

/// Waits until `log` contains `needle`.
fn wait_log(path: &std::path::Path, needle: &str, within: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < within,
            "{needle:?} not logged within {within:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn vip_failover_is_detected_and_logged() {
    let dir = util::tempdir();
    let vport = util::free_udp_tcp_port();
    let vip_listen = format!("udp:127.0.0.10:{vport}");
    let mut cp1 = Kamailio::start_node(dir.path(), "cp1", std::slice::from_ref(&vip_listen));
    let mut cp2 = Kamailio::start_node(dir.path(), "cp2", &[]);
    let vip_uri = format!("sip:127.0.0.10:{vport}");
    assert_eq!(sipsak_status(&vip_uri), "200");
    let cfg = dir.path().join("srewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[probe]\n\
             [[probe.target]]\nname = \"cp1\"\nuri = \"{}\"\ninterval = \"200ms\"\ntimeout = \"500ms\"\n\
             [[probe.target]]\nname = \"cp2\"\nuri = \"{}\"\ninterval = \"200ms\"\ntimeout = \"500ms\"\nexpect = \"any\"\n\
             [[probe.target]]\nname = \"vip\"\nuri = \"{vip_uri}\"\nrole = \"vip\"\ninterval = \"200ms\"\ntimeout = \"500ms\"\n",
            cp1.sip_uri(),
            cp2.sip_uri()
        ),
    )
    .unwrap();
    let out = dir.path().join("points.lp");
    let log = dir.path().join("srewatch.log");
    let mut cmd = util::srewatch();
    cmd.args(["probe", "run", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .env("SREWATCH_LOG", "info")
        .env("NO_COLOR", "1");
    let mut p = Proc::spawn("srewatch probe run", cmd, &log);
    // The first owner found is not a failover.
    wait_log(
        &log,
        "VIP owner found target=vip owner=cp1",
        Duration::from_secs(5),
    );
    // Pacemaker moves the VIP: cp1 goes away, cp2 takes the address.
    cp1.stop();
    cp2.stop();
    cp2.opts.extra_listen = vec![vip_listen];
    cp2.write_cfg();
    cp2.start_again();
    assert_eq!(sipsak_status(&vip_uri), "200");
    let text = wait_log(
        &log,
        "VIP failover: another CP answers target=vip from=cp1 to=cp2",
        Duration::from_secs(5),
    );
    assert_eq!(text.matches("VIP failover").count(), 1, "{text}");
    let st = p
        .terminate(Duration::from_secs(5))
        .expect("exits on SIGTERM");
    assert!(
        st.success(),
        "{st:?}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let points = std::fs::read_to_string(&out).unwrap();
    assert!(points.starts_with("# bucket: probe\n"), "{points}");
    assert!(
        points.contains("probe_event,target=vip,role=vip,kind=owner from=\"cp1\",to=\"cp2\" "),
        "{points}"
    );
    assert!(points.contains(",owner=\"cp2\" "), "{points}");
    assert!(
        points.contains("probe_summary,target=vip,role=vip count="),
        "{points}"
    );
    // cp1 stayed stopped: its direct probes say down, matching sipsak's silence.
    assert!(
        points.contains("probe,target=cp1,role=cp,method=OPTIONS state=\"down\""),
        "{points}"
    );
    drop(cp1);
}

#[test]
fn check_exit_codes() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Options::default());
    let uri = k.sip_uri();
    let (code, line, _) = util::probe_check(&[&uri]);
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with(&format!("SIP OK: {uri} answered 200 in ")),
        "{line}"
    );
    assert!(line.contains(" | rtt="), "{line}");
    assert!(line.contains(" retransmits=0;;;0 status=200"), "{line}");
    assert_eq!(sipsak_status(&uri), "200");
    // The same over TCP.
    let tcp = format!("{uri};transport=tcp");
    let (code, line, _) = util::probe_check(&[&tcp]);
    assert_eq!(code, 0, "{line}");
    assert!(line.contains(" retransmits=0;;;0 status=200"), "{line}");

    k.set_out_of_service(true);
    let (code, line, _) = util::probe_check(&[&uri]);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("answered 503, expected 200"), "{line}");
    let (code, line, _) = util::probe_check(&[&uri, "--expect", "503", "--invite"]);
    assert_eq!(code, 0, "{line}");
    assert!(line.contains("; INVITE answered 503"), "{line}");
    assert!(line.contains("invite_status=503"), "{line}");
    assert_eq!(sipsak_status(&uri), "503");
    let (code, line, _) = util::probe_check(&[&tcp, "--expect", "503", "--invite"]);
    assert_eq!(code, 0, "{line}");
    assert!(line.contains("; INVITE answered 503"), "{line}");
    // Both INVITEs (UDP and TCP) were ACKed (sl absorbs the ACKs).
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(k.kamcmd_stat("core:rcv_requests_invite"), 2);
    assert_eq!(k.kamcmd_stat("sl:received_ACKs"), 2);

    // A bound but silent UDP socket: no answer.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_uri = format!("sip:127.0.0.1:{}", silent.local_addr().unwrap().port());
    let start = Instant::now();
    let (code, line, _) = util::probe_check(&[&silent_uri, "--timeout", "700ms"]);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("no answer from"), "{line}");
    assert!(start.elapsed() >= Duration::from_millis(700));
    // Timer E: retransmitted at 500 ms within the 700 ms timeout; the silent socket got both.
    assert!(
        line.ends_with("| rtt=U;;;0 retransmits=1;;;0 status=U\n"),
        "{line}"
    );
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut got = 0;
    while silent.recv(&mut buf).is_ok() {
        got += 1;
    }
    assert_eq!(got, 2);

    let (code, line, _) = util::probe_check(&["http://x"]);
    assert_eq!(code, 3, "{line}");
    let (code, _, _) = util::probe_check(&[&uri, "--expect", "404"]);
    assert_eq!(code, 3, "bad arguments are UNKNOWN");
}

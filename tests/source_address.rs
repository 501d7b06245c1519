//! A source address: probes and the bench send from a configured local address and
//! port (EM nodes are multi-homed). Tested on a second loopback address, 127.0.0.2 (Linux
//! answers on all of 127.0.0.0/8), against a real Kamailio on 127.0.0.1: its answers carry
//! `received=` and `rport=` (our Via asks for rport), its view of where the request came from.

use crate::util::{self, kamailio::Kamailio, kamailio::Options};
use probe::message::{TargetUri, Transport};
use probe::monitor::{self, AlarmKind, Output, ProbeConfig, Role, ServiceState, TargetConfig};
use probe::transaction::Method;
use probe::transport::{recv_buffer, Endpoint, Source};
use std::time::Duration;

const SOURCE: &str = "127.0.0.2";
/// TEST-NET-1 (RFC 5737): not an address of this host.
const NOT_HERE: &str = "192.0.2.7";

/// A port free on 127.0.0.2 for both UDP and TCP.
fn free_port_on_source() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind((SOURCE, 0)).unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind((SOURCE, port)).is_ok() {
            return port;
        }
    }
}

/// The top Via of a response.
fn top_via(answer: &str) -> &str {
    answer
        .split("\r\n")
        .find(|l| l.starts_with("Via:") || l.starts_with("v:"))
        .unwrap_or_else(|| panic!("no Via in {answer:?}"))
}

/// The socket the prober uses, bound to 127.0.0.2 (any port, then a fixed one), over UDP and
/// TCP: the request's Via sent-by and Contact name the bound address, and Kamailio's answer says
/// it came from there (`received=127.0.0.2`, `rport=` our port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_sends_from_the_source_kamailio_sees_it() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Options::default());
    let fixed = free_port_on_source();
    for (transport, uri) in [
        (Transport::Udp, k.sip_uri()),
        (Transport::Tcp, format!("{};transport=tcp", k.sip_uri())),
    ] {
        for source in [SOURCE.to_string(), format!("{SOURCE}:{fixed}")] {
            let case = format!("{uri} from {source}");
            let src: Source = source.parse().unwrap();
            let mut ep =
                Endpoint::open_from(k.sip_addr(), transport, Duration::from_secs(2), Some(src))
                    .await
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
            let local = ep.connect().await.unwrap();
            assert_eq!(local.ip().to_string(), SOURCE, "{case}");
            if src.0.port() != 0 {
                assert_eq!(local.port(), fixed, "{case}");
            }
            let leg = probe::message::Leg::new(&TargetUri::parse(&uri).unwrap(), None, local);
            let invite = leg.initial(Method::Invite, "z9hG4bKsrc1");
            let text = String::from_utf8(invite.clone()).unwrap();
            let proto = if transport == Transport::Udp {
                "UDP"
            } else {
                "TCP"
            };
            assert!(
                text.contains(&format!(
                    "\r\nVia: SIP/2.0/{proto} {local};branch=z9hG4bKsrc1"
                )),
                "{case}: {text}"
            );
            assert!(
                text.contains(&format!("\r\nContact: <sip:srewatch@{local}")),
                "{case}: {text}"
            );
            ep.send(&invite).await.unwrap();
            let mut buf = recv_buffer();
            let (n, from) = tokio::time::timeout(Duration::from_secs(2), ep.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{case}: no answer"))
                .unwrap();
            assert_eq!(from, k.sip_addr(), "{case}");
            let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert_eq!(
                top_via(&answer),
                format!(
                    "Via: SIP/2.0/{proto} {local};branch=z9hG4bKsrc1;rport={};received={SOURCE}",
                    local.port()
                ),
                "{case}: {answer}"
            );
            // Kamailio is stateless here (a 4xx/5xx to the INVITE): no ACK needed for the test.
        }
    }
}

/// `probe check --source ADDR[:PORT]`: OK from 127.0.0.2 over UDP and TCP (Kamailio answers to
/// `received`:`rport`, so the answer reaches the bound socket only if Kamailio saw that source);
/// an address not on this host, or a port in use, is UNKNOWN with the reason, not an answer.
#[test]
fn probe_check_source_flag() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Options::default());
    let udp = k.sip_uri();
    let tcp = format!("{udp};transport=tcp");
    let fixed = free_port_on_source();
    for uri in [&udp, &tcp] {
        for source in [SOURCE.to_string(), format!("{SOURCE}:{fixed}")] {
            let (code, out, _) = util::probe_check(&[uri, "--source", &source]);
            assert_eq!(code, 0, "{uri} from {source}: {out}");
            assert!(out.starts_with("SIP OK"), "{uri} from {source}: {out}");
        }
    }
    let (code, out, _) = util::probe_check(&[&udp, "--source", NOT_HERE]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.starts_with(&format!(
            "SIP UNKNOWN: cannot open a socket to {}: cannot bind source {NOT_HERE}: ",
            k.sip_addr()
        )),
        "{out}"
    );
    // A port in use: over UDP a bound socket, over TCP a listener.
    let busy_udp = std::net::UdpSocket::bind((SOURCE, 0)).unwrap();
    let busy_tcp = std::net::TcpListener::bind((SOURCE, 0)).unwrap();
    for (uri, busy) in [
        (&udp, busy_udp.local_addr().unwrap()),
        (&tcp, busy_tcp.local_addr().unwrap()),
    ] {
        let (code, out, _) = util::probe_check(&[uri, "--source", &busy.to_string()]);
        assert_eq!(code, 3, "{uri}: {out}");
        assert!(
            out.contains(&format!(
                "cannot bind source {busy}: Address already in use"
            )),
            "{uri}: {out}"
        );
    }
    let (code, out, _) = util::probe_check(&[&udp, "--source", "127.0.0.2:port"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("source: \"127.0.0.2:port\": expected an IP address"),
        "{out}"
    );
}

/// `[probe] source` is every target's default, a target's own `source` wins, and a source
/// that cannot be bound is that target's state (a `socket_failed` alarm naming the source)
/// while the other targets are probed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_targets_bind_their_source() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Options::default());
    let fixed = free_port_on_source();
    let target = |name: &str, uri: String, source: Option<String>| TargetConfig {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(500),
        source,
        ..TargetConfig::new(name, &uri, Role::Cp)
    };
    let cfg = ProbeConfig {
        source: Some(SOURCE.into()),
        target: vec![
            target("udp-default", k.sip_uri(), None),
            target(
                "tcp-fixed",
                format!("{};transport=tcp", k.sip_uri()),
                Some(format!("{SOURCE}:{fixed}")),
            ),
            target("elsewhere", k.sip_uri(), Some(NOT_HERE.into())),
        ],
        ..Default::default()
    };
    assert_eq!(cfg.validate(), vec![]);
    let eff = cfg.effective_targets();
    assert_eq!(
        eff.iter().map(|t| t.source.as_deref()).collect::<Vec<_>>(),
        [
            Some(SOURCE),
            Some(format!("{SOURCE}:{fixed}").as_str()),
            Some(NOT_HERE)
        ]
    );
    let (mut rx, handle) = monitor::spawn(&cfg).await.unwrap();
    let (mut in_service, mut alarm) = (std::collections::BTreeSet::new(), None);
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while in_service.len() < 2 || alarm.is_none() {
        let o = tokio::time::timeout_at(end, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("in service: {in_service:?}, alarm: {alarm:?}"))
            .unwrap();
        match o {
            Output::Result(r)
                if r.method == Method::Options && r.state == ServiceState::InService =>
            {
                in_service.insert(r.target.to_string());
            }
            Output::Alarm(a) if a.active => {
                assert_eq!(
                    (&*a.target, a.kind),
                    ("elsewhere", AlarmKind::SocketFailed),
                    "{a:?}"
                );
                alarm = Some(a.message);
            }
            _ => {}
        }
    }
    handle.stop().await;
    assert_eq!(
        in_service.into_iter().collect::<Vec<_>>(),
        ["tcp-fixed", "udp-default"]
    );
    let alarm = alarm.unwrap();
    assert!(
        alarm.contains(&format!(
            "cannot open a socket to {}: cannot bind source {NOT_HERE}: Cannot assign requested address",
            k.sip_addr()
        )),
        "{alarm}"
    );
}

/// `config check` names the key of a bad source: the `[probe]` default, a target's own, and a
/// fixed port two targets would share.
#[test]
fn config_check_names_the_source_key() {
    let dir = util::tempdir();
    let cfg = dir.path().join("srewatch.toml");
    std::fs::write(
        &cfg,
        "[service]\nprobe = true\n\n[probe]\nsource = \"signalling\"\n\n\
         [[probe.target]]\nname = \"cp1\"\nuri = \"sip:127.0.0.1\"\nsource = \"10.0.0.1:99999\"\n\n\
         [[probe.target]]\nname = \"cp2\"\nuri = \"sip:127.0.0.1\"\nsource = \"10.0.0.1:5070\"\n\n\
         [[probe.target]]\nname = \"cp3\"\nuri = \"sip:127.0.0.3\"\nsource = \"10.0.0.1:5070\"\n",
    )
    .unwrap();
    let (code, text) = crate::config_check::check(&cfg);
    assert_eq!(code, Some(1), "{text}");
    let p = cfg.display();
    let expected = [
        format!("{p}:5: probe.source: \"signalling\": expected an IP address with an optional port, e.g. 10.1.2.3, 10.1.2.3:5070 or [2001:db8::1]:5070"),
        format!("{p}:10: probe.target[0].source: \"10.0.0.1:99999\": expected an IP address with an optional port, e.g. 10.1.2.3, 10.1.2.3:5070 or [2001:db8::1]:5070"),
        format!("{p}:20: probe.target[2].source: 10.0.0.1:5070: target \"cp2\" sends from this port already (a fixed port serves one target per transport)"),
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");
}

/// `bench --source ADDR[:PORT]` over UDP and TCP against Kamailio: every request answered
/// (the bench's UDP socket is connected, so it reads only Kamailio's answers, sent to
/// `received`:`rport`); the JSON names the source; a source not on this host is an error that
/// says so, before any request.
#[test]
fn bench_source_flag() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Options::default());
    let fixed = free_port_on_source();
    for (transport, source) in [
        ("udp", SOURCE.to_string()),
        ("tcp", format!("{SOURCE}:{fixed}")),
    ] {
        let json = dir.path().join(format!("{transport}.json"));
        let out = util::srewatch()
            .args(["bench", &k.sip_uri(), "--rate", "50", "--duration", "1s"])
            .args([
                "--transport",
                transport,
                "--source",
                &source,
                "--timeout",
                "2s",
            ])
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{transport}: {err}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v["source"], source.as_str(), "{transport}");
        assert_eq!(v["accounting"]["sent"], 50, "{transport}: {v}");
        assert_eq!(v["accounting"]["answered"], 50, "{transport}: {v}");
    }
    // A bench that must fail: its stderr.
    let refused = |extra: &[&str]| {
        let out = util::srewatch()
            .args(["bench", &k.sip_uri(), "--rate", "10", "--duration", "1s"])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_ne!(out.status.code(), Some(0), "{err}");
        err
    };
    let err = refused(&["--source", NOT_HERE]);
    assert!(
        err.contains(&format!(
            "cannot open a socket to {}: cannot bind source {NOT_HERE}: Cannot assign requested address",
            k.sip_addr()
        )),
        "{err}"
    );
    let err = refused(&["--source", &format!("{SOURCE}:{fixed}"), "--sockets", "2"]);
    assert!(
        err.contains(&format!(
            "source {SOURCE}:{fixed} has a fixed port: it can be bound by one socket, not 2"
        )),
        "{err}"
    );
}

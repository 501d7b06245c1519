//! The prober against production-like Kamailio clusters (tests/util/cluster.rs): two CPs that
//! share one configuration file (fixtures/kamailio/cluster.cfg) on their own loopback
//! addresses, same port, and a VIP that moves between them. Exact owner sequences, events and
//! alarms: zero false failovers.

use crate::util::{
    self,
    cluster::{kamailio_tag_md5, Cluster},
};
use probe::monitor::{
    self, AlarmKind, EventKind, Expect, MonitorHandle, Output, ProbeConfig, ProbeResult, Role,
    ServiceState, TargetConfig, AMBIGUOUS,
};
use probe::transaction::{Method, TransportErrorKind};
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(20);

fn target(name: &str, uri: &str, role: Role) -> TargetConfig {
    let mut t = TargetConfig::new(name, uri, role);
    t.interval = Duration::from_millis(100);
    t.timeout = Duration::from_millis(400);
    t
}

/// A running monitor and everything it has yielded so far.
struct Run {
    rx: Receiver<Output>,
    handle: Option<MonitorHandle>,
    seen: Vec<Output>,
}

impl Run {
    async fn start(fingerprint: Option<&str>, targets: Vec<TargetConfig>) -> Run {
        let cfg = ProbeConfig {
            fingerprint: fingerprint.map(str::to_string),
            target: targets,
            ..Default::default()
        };
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        let (rx, handle) = monitor::spawn(&cfg).await.unwrap();
        Run {
            rx,
            handle: Some(handle),
            seen: Vec::new(),
        }
    }

    /// Reads outputs until `pred` holds over those seen since index `from`.
    async fn until(&mut self, from: usize, what: &str, pred: impl Fn(&[Output]) -> bool) {
        let end = tokio::time::Instant::now() + WAIT;
        while !pred(&self.seen[from.min(self.seen.len())..]) {
            match tokio::time::timeout_at(end, self.rx.recv()).await {
                Ok(Some(o)) => self.seen.push(o),
                Ok(None) => panic!("monitor ended"),
                Err(_) => panic!("no {what} within {WAIT:?}; seen: {:#?}", self.seen),
            }
        }
    }

    /// Stops the monitor and returns everything it yielded.
    async fn stop(mut self) -> Vec<Output> {
        self.handle.take().unwrap().stop().await;
        while let Some(o) = self.rx.recv().await {
            self.seen.push(o);
        }
        self.seen
    }
}

fn results<'a>(seen: &'a [Output], target: &'a str) -> impl Iterator<Item = &'a ProbeResult> {
    seen.iter().filter_map(move |o| match o {
        Output::Result(r) if r.method == Method::Options && &*r.target == target => Some(r),
        _ => None,
    })
}

/// VIP answers attributed to `owner` (None: answered, not attributed).
fn vip_owned(seen: &[Output], owner: Option<&str>) -> usize {
    results(seen, "vip")
        .filter(|r| r.status.is_some() && r.owner.as_deref() == owner)
        .count()
}

fn owner_events(seen: &[Output]) -> Vec<(Option<String>, Option<String>, bool)> {
    seen.iter()
        .filter_map(|o| match o {
            Output::Event(e) => match &e.kind {
                EventKind::Owner { from, to } => Some((
                    from.as_deref().map(str::to_string),
                    to.as_deref().map(str::to_string),
                    e.is_failover(),
                )),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn state_events(seen: &[Output], target: &str) -> Vec<String> {
    seen.iter()
        .filter_map(|o| match o {
            Output::Event(e) if &*e.target == target => match &e.kind {
                EventKind::State { from, to, .. } => Some(format!(
                    "{}->{}",
                    from.map(|s| s.as_str()).unwrap_or("none"),
                    to.as_str()
                )),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn is_state(o: &Output, target: &str, to: ServiceState) -> bool {
    matches!(o, Output::Event(e) if &*e.target == target
        && matches!(e.kind, EventKind::State { to: t, .. } if t == to))
}

fn alarms(seen: &[Output], kind: AlarmKind) -> Vec<(String, bool, String)> {
    seen.iter()
        .filter_map(|o| match o {
            Output::Alarm(a) if a.kind == kind => {
                Some((a.target.to_string(), a.active, a.message.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The owners of the answered VIP results with consecutive repeats folded.
fn owner_sequence(seen: &[Output]) -> Vec<Option<String>> {
    let mut v: Vec<Option<String>> = Vec::new();
    for r in results(seen, "vip").filter(|r| r.status.is_some()) {
        let o = r.owner.as_deref().map(str::to_string);
        if v.last() != Some(&o) {
            v.push(o);
        }
    }
    v
}

fn fingerprints(seen: &[Output], target: &str) -> Vec<String> {
    let mut v: Vec<String> = results(seen, target)
        .filter(|r| r.status.is_some())
        .map(|r| r.fingerprint.clone().unwrap_or_default())
        .collect();
    v.dedup();
    v
}

fn cluster_targets(c: &Cluster) -> Vec<TargetConfig> {
    vec![
        target("cp1", &c.uri(0), Role::Cp),
        target("cp2", &c.uri(1), Role::Cp),
        target("vip", &c.vip_uri(), Role::Vip),
    ]
}

/// Every node lists the VIP first (sl and tm replies alike) and holds it (production's
/// ip_nonlocal_bind, here SO_REUSEPORT), so both answer with the To tag of the VIP's socket.
/// The owner is `ambiguous` for every VIP answer once both CPs were heard: no owner event, no
/// failover, and no `vip_owner_out_of_service` when the standby goes out of service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_listen_first_on_every_node_is_ambiguous_never_a_failover() {
    for (net, reply, signature, kind) in [
        (201u8, None, "KAMAILIO-stateless", "sl"),
        (202, Some("TM_REPLY"), "SER-TM/tags", "tm"),
    ] {
        let dir = util::tempdir();
        let mut modes = vec!["VIP_FIRST"];
        modes.extend(reply);
        let mut c = Cluster::new(dir.path(), net, 2, &modes);
        c.reuseport();
        util::blocking(|| {
            c.start(0, true);
            c.start(1, true);
        });
        let mut t = cluster_targets(&c);
        t[1].expect = Expect::Any;
        let mut run = Run::start(None, t).await;
        run.until(0, "8 ambiguous VIP answers", |s| {
            vip_owned(s, Some(AMBIGUOUS)) >= 8
        })
        .await;
        c.set_out_of_service(1, true);
        let mark = run.seen.len();
        run.until(
            mark,
            "cp2 out of service, then 8 ambiguous VIP answers",
            |s| {
                s.iter()
                    .position(|o| is_state(o, "cp2", ServiceState::OutOfService))
                    .is_some_and(|i| vip_owned(&s[i..], Some(AMBIGUOUS)) >= 8)
            },
        )
        .await;
        let seen = run.stop().await;
        let fp = format!("{kind}:{}", kamailio_tag_md5(signature, c.vip, c.port));
        assert_eq!(fingerprints(&seen, "cp1"), vec![fp.clone()], "{kind}");
        assert_eq!(fingerprints(&seen, "cp2"), vec![fp], "{kind}");
        assert_eq!(owner_events(&seen), vec![], "{kind}: no owner event at all");
        assert_eq!(
            alarms(&seen, AlarmKind::VipOwnerOutOfService),
            vec![],
            "{kind}"
        );
        // Unattributed only until both CPs have been heard, then ambiguous throughout.
        let seq = owner_sequence(&seen);
        assert_eq!(
            seq.iter().filter(|o| o.is_some()).collect::<Vec<_>>(),
            vec![&Some(AMBIGUOUS.to_string())],
            "{kind}: {seq:?}"
        );
        assert_eq!(seq.last(), Some(&Some(AMBIGUOUS.to_string())), "{kind}");
        assert!(seq.len() <= 2, "{kind}: {seq:?}");
    }
}

/// Starts cp1 with the VIP and cp2 without; waits for 3 VIP answers owned by cp1; moves the VIP
/// (cp1 stopped and seen down, cp2 restarted with the VIP listen); waits for 3 owned by cp2.
async fn failover(c: &mut Cluster, fingerprints: &[Option<&str>]) -> Vec<Vec<Output>> {
    util::blocking(|| {
        c.start(0, true);
        c.start(1, false);
    });
    let mut runs = Vec::new();
    for fp in fingerprints {
        runs.push(Run::start(*fp, cluster_targets(c)).await);
    }
    for run in &mut runs {
        run.until(0, "3 VIP answers by cp1", |s| {
            vip_owned(s, Some("cp1")) >= 3
        })
        .await;
    }
    util::blocking(|| c.stop(0));
    for run in &mut runs {
        run.until(0, "cp1 down", |s| {
            s.iter().any(|o| is_state(o, "cp1", ServiceState::Down))
        })
        .await;
    }
    util::blocking(|| {
        c.stop(1);
        c.start(1, true);
    });
    for run in &mut runs {
        run.until(0, "3 VIP answers by cp2", |s| {
            vip_owned(s, Some("cp2")) >= 3
        })
        .await;
    }
    let mut out = Vec::new();
    for run in runs {
        out.push(run.stop().await);
    }
    out
}

fn assert_one_real_failover(seen: &[Output], what: &str) {
    assert_eq!(
        owner_events(seen),
        vec![
            (None, Some("cp1".to_string()), false),
            (Some("cp1".to_string()), Some("cp2".to_string()), true),
        ],
        "{what}"
    );
    let seq = owner_sequence(seen);
    let owners: Vec<_> = seq.iter().flatten().collect();
    assert_eq!(owners, vec!["cp1", "cp2"], "{what}: {seq:?}");
    // Nothing credited to cp1 once it was seen down.
    let down = seen
        .iter()
        .position(|o| is_state(o, "cp1", ServiceState::Down))
        .expect("cp1 down");
    assert_eq!(vip_owned(&seen[down..], Some("cp1")), 0, "{what}");
}

/// Each node's own address listed first (the fix for the VIP-first ambiguity). sl and tm To tags
/// both give the owner; the first owner is an owner event but not a failover; the VIP moving
/// from cp1 to cp2 is exactly one failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_address_first_finds_the_owner_and_one_failover() {
    for (net, reply, signature, kind) in [
        (203u8, None, "KAMAILIO-stateless", "sl"),
        (204, Some("TM_REPLY"), "SER-TM/tags", "tm"),
    ] {
        let dir = util::tempdir();
        let modes: Vec<&str> = reply.into_iter().collect();
        let mut c = Cluster::new(dir.path(), net, 2, &modes);
        let seen = failover(&mut c, &[None]).await.remove(0);
        let fp = |i: usize| {
            format!(
                "{kind}:{}",
                kamailio_tag_md5(signature, c.nodes[i].addr, c.port)
            )
        };
        assert_eq!(fingerprints(&seen, "cp1"), vec![fp(0)], "{kind}");
        assert_eq!(fingerprints(&seen, "cp2"), vec![fp(1)], "{kind}");
        assert_one_real_failover(&seen, kind);
    }
}

/// The VIP listed first, held by one node at a time. cp1's To tag hashes the VIP;
/// after cp1 stops, cp2 restarts with the VIP and answers with the very same tag before its own
/// probe is answered. The stale fingerprint credits nobody (cp1 is down); then cp2 owns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_first_failover_does_not_credit_the_stopped_cp() {
    let dir = util::tempdir();
    let mut c = Cluster::new(dir.path(), 205, 2, &["VIP_FIRST"]);
    let seen = failover(&mut c, &[None]).await.remove(0);
    let vip_fp = format!(
        "sl:{}",
        kamailio_tag_md5("KAMAILIO-stateless", c.vip, c.port)
    );
    let own_fp = format!(
        "sl:{}",
        kamailio_tag_md5("KAMAILIO-stateless", c.nodes[1].addr, c.port)
    );
    assert_eq!(fingerprints(&seen, "cp1"), vec![vip_fp.clone()]);
    assert_eq!(fingerprints(&seen, "cp2"), vec![own_fp, vip_fp]);
    assert_one_real_failover(&seen, "VIP first");
    assert_eq!(vip_owned(&seen, Some(AMBIGUOUS)), 0);
}

/// Kamailio's default Server header is the same on every node: ambiguous, no
/// failover. The production fixes, a per-node Server header and a per-node X-Node header
/// (append_to_reply), each give the owner and exactly one failover when the VIP moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_header_default_is_ambiguous_per_node_headers_are_not() {
    let dir = util::tempdir();
    let mut c = Cluster::new(dir.path(), 206, 2, &[]);
    util::blocking(|| {
        c.start(0, true);
        c.start(1, false);
    });
    let mut run = Run::start(Some("server"), cluster_targets(&c)).await;
    run.until(0, "8 ambiguous VIP answers", |s| {
        vip_owned(s, Some(AMBIGUOUS)) >= 8
    })
    .await;
    let seen = run.stop().await;
    let server = fingerprints(&seen, "cp1");
    assert_eq!(server.len(), 1);
    assert!(server[0].starts_with("kamailio ("), "{server:?}");
    assert_eq!(fingerprints(&seen, "cp2"), server);
    assert_eq!(owner_events(&seen), vec![]);
    drop(c);

    let dir = util::tempdir();
    let mut c = Cluster::new(dir.path(), 207, 2, &["NODE_SERVER", "NODE_HEADER"]);
    let runs = failover(&mut c, &[Some("server"), Some("header:X-Node")]).await;
    assert_eq!(
        fingerprints(&runs[0], "cp1"),
        vec!["Server: kamailio cp1".replace("Server: ", "")]
    );
    assert_eq!(fingerprints(&runs[1], "cp2"), vec!["cp2"]);
    assert_one_real_failover(&runs[0], "server");
    assert_one_real_failover(&runs[1], "header:X-Node");
}

/// The standby out of service raises nothing about the VIP; the VIP's
/// owner out of service raises `vip_owner_out_of_service` once, naming it, kept while it
/// lasts, cleared once when that CP is back in service, naming it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_and_owner_out_of_service() {
    let dir = util::tempdir();
    let mut c = Cluster::new(dir.path(), 208, 2, &[]);
    c.set_out_of_service(1, true);
    util::blocking(|| {
        c.start(0, true);
        c.start(1, false);
    });
    let mut t = cluster_targets(&c);
    t[1].expect = Expect::OutOfService;
    let mut run = Run::start(None, t).await;
    run.until(0, "5 VIP answers by cp1", |s| {
        vip_owned(s, Some("cp1")) >= 5
    })
    .await;
    let before: Vec<_> = run
        .seen
        .iter()
        .filter(|o| matches!(o, Output::Alarm(_)))
        .cloned()
        .collect();
    assert_eq!(before, vec![], "the standby out of service is no alarm");
    c.set_out_of_service(0, true);
    run.until(0, "owner alarm, then 10 VIP answers", |s| {
        s.iter()
            .position(
                |o| matches!(o, Output::Alarm(a) if a.kind == AlarmKind::VipOwnerOutOfService),
            )
            .is_some_and(|i| vip_owned(&s[i..], Some("cp1")) >= 10)
    })
    .await;
    c.set_out_of_service(0, false);
    let mark = run.seen.len();
    run.until(mark, "5 VIP answers 200", |s| {
        results(s, "vip").filter(|r| r.status == Some(200)).count() >= 5
    })
    .await;
    let seen = run.stop().await;
    assert_eq!(
        alarms(&seen, AlarmKind::VipOwnerOutOfService),
        vec![
            (
                "vip".to_string(),
                true,
                "VIP answered by cp1 which is out of service".to_string()
            ),
            (
                "vip".to_string(),
                false,
                "cp1, which answers the VIP, is back in service".to_string()
            ),
        ]
    );
    let vip_nis: Vec<bool> = alarms(&seen, AlarmKind::VipNotInService)
        .into_iter()
        .map(|a| a.1)
        .collect();
    assert_eq!(vip_nis, vec![true, false]);
    assert_eq!(owner_events(&seen), vec![(None, Some("cp1".into()), false)]);
    assert_eq!(
        state_events(&seen, "cp2"),
        vec!["none->out_of_service".to_string()]
    );
}

/// A CP with `listen=0.0.0.0` answers from 127.0.0.1, not from the probed
/// address. The answers are matched, the CP is in service (or `unexpected` with
/// `accept_other_source = false`), each has its `source`, the summary counts them; when it
/// stops, the ICMP port unreachable still comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_any_reply_source_mismatch_is_reported() {
    let dir = util::tempdir();
    let mut c = Cluster::listen_any(dir.path(), 209);
    util::blocking(|| c.start(0, false));
    let mut strict = target("strict", &c.uri(0), Role::Cp);
    strict.accept_other_source = false;
    strict.expect = Expect::Any;
    let mut run = Run::start(None, vec![target("cp1", &c.uri(0), Role::Cp), strict]).await;
    run.until(0, "5 answers each", |s| {
        ["cp1", "strict"]
            .iter()
            .all(|t| results(s, t).filter(|r| r.status.is_some()).count() >= 5)
    })
    .await;
    util::blocking(|| c.stop(0));
    let mark = run.seen.len();
    run.until(mark, "an ICMP error for each", |s| {
        ["cp1", "strict"]
            .iter()
            .all(|t| results(s, t).any(|r| r.error == Some(TransportErrorKind::PortUnreachable)))
    })
    .await;
    let seen = run.stop().await;
    let source: std::net::SocketAddr = ([127, 0, 0, 1], c.port).into();
    for (t, state) in [
        ("cp1", ServiceState::InService),
        ("strict", ServiceState::Unexpected),
    ] {
        let answered: Vec<_> = results(&seen, t).filter(|r| r.status.is_some()).collect();
        assert!(answered.len() >= 5);
        for r in &answered {
            assert_eq!(
                (r.status, r.state, r.source),
                (Some(200), state, Some(source)),
                "{t}"
            );
        }
        let mismatches: u64 = seen
            .iter()
            .filter_map(|o| match o {
                Output::Summary(s) if &*s.target == t => Some(s.rx.source_mismatch),
                _ => None,
            })
            .sum();
        assert_eq!(mismatches, answered.len() as u64, "{t}");
    }
    assert_eq!(
        state_events(&seen, "cp1"),
        vec![
            "none->in_service".to_string(),
            "in_service->down".to_string()
        ]
    );
}

/// With `down_after = 15` and `up_after = 2` (200 ms interval), a restart
/// shorter than 15 intervals leaves the CP in service; a longer stop makes it down once, at the
/// 15th consecutive failure, and back after the 2nd answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hysteresis_short_stop_stays_up_long_stop_goes_down_once() {
    let dir = util::tempdir();
    let mut c = Cluster::new(dir.path(), 210, 1, &[]);
    util::blocking(|| c.start(0, false));
    let mut t = target("cp1", &c.uri(0), Role::Cp);
    t.interval = Duration::from_millis(200);
    t.down_after = 15;
    t.up_after = 2;
    let mut run = Run::start(None, vec![t]).await;
    run.until(0, "2 answers", |s| {
        results(s, "cp1").filter(|r| r.status.is_some()).count() >= 2
    })
    .await;
    // Short: a restart.
    let mark = run.seen.len();
    let took = util::blocking(|| {
        let start = std::time::Instant::now();
        c.stop(0);
        std::thread::sleep(Duration::from_millis(500));
        c.start(0, false);
        start.elapsed()
    });
    assert!(
        took < Duration::from_millis(2500),
        "the restart took {took:?}, too long for this test"
    );
    run.until(mark, "a lost probe, then 3 answers", |s| {
        results(s, "cp1")
            .position(|r| r.status.is_none())
            .is_some_and(|i| {
                results(s, "cp1")
                    .skip(i)
                    .filter(|r| r.status.is_some())
                    .count()
                    >= 3
            })
    })
    .await;
    assert_eq!(
        state_events(&run.seen, "cp1"),
        vec!["none->in_service".to_string()]
    );
    // Long: until the target is down, then back.
    util::blocking(|| c.stop(0));
    run.until(0, "cp1 down", |s| {
        s.iter().any(|o| is_state(o, "cp1", ServiceState::Down))
    })
    .await;
    util::blocking(|| c.start(0, false));
    run.until(0, "cp1 back in service", |s| {
        s.iter()
            .filter(|o| is_state(o, "cp1", ServiceState::InService))
            .count()
            >= 2
    })
    .await;
    let seen = run.stop().await;
    assert_eq!(
        state_events(&seen, "cp1"),
        vec!["none->in_service", "in_service->down", "down->in_service"]
    );
    // The state changed at exactly the 15th consecutive failure and the 2nd answer. Each
    // event comes just before the result that caused it: count the results before it
    // (negative: consecutive failures, positive: consecutive answers).
    let mut streak: i32 = 0;
    let mut at_change = Vec::new();
    for o in &seen {
        match o {
            Output::Result(r) if r.method == Method::Options => {
                let alive = r.state == ServiceState::InService;
                streak = match (alive, streak) {
                    (true, s) if s > 0 => s + 1,
                    (true, _) => 1,
                    (false, s) if s < 0 => s - 1,
                    (false, _) => -1,
                };
            }
            Output::Event(e) if matches!(e.kind, EventKind::State { .. }) => at_change.push(streak),
            _ => {}
        }
    }
    assert_eq!(at_change, vec![0, -14, 1]);
}

/// The VIP-first ambiguity through the real binary: `srewatch probe run` against the VIP-first
/// cluster logs the ambiguity once, naming both CPs and the fix, logs no failover, and writes
/// `owner="ambiguous"`.
#[test]
fn ambiguity_is_logged_once_with_the_fix() {
    let dir = util::tempdir();
    let mut c = Cluster::new(dir.path(), 211, 2, &["VIP_FIRST"]);
    c.reuseport();
    c.start(0, true);
    c.start(1, true);
    let cfg = dir.path().join("srewatch.toml");
    let t = |name: &str, uri: &str, role: &str| {
        format!(
            "[[probe.target]]\nname = \"{name}\"\nuri = \"{uri}\"\nrole = \"{role}\"\ninterval = \"100ms\"\ntimeout = \"400ms\"\n"
        )
    };
    std::fs::write(
        &cfg,
        format!(
            "[probe]\n{}{}{}",
            t("cp1", &c.uri(0), "cp"),
            t("cp2", &c.uri(1), "cp"),
            t("vip", &c.vip_uri(), "vip")
        ),
    )
    .unwrap();
    let (text, points) = probe_run(dir.path(), &cfg, "2s");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("VIP owner is ambiguous"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let fp = kamailio_tag_md5("KAMAILIO-stateless", c.vip, c.port);
    assert!(
        lines[0].contains(&format!(
            "CPs answer with the same fingerprint: VIP owner is ambiguous cps=cp1,cp2 fingerprint=sl:{fp} fix="
        )) && lines[0].contains("list each node's own address first"),
        "{text}"
    );
    assert!(!text.contains("VIP failover"), "{text}");
    assert!(points.contains(",owner=\"ambiguous\""), "{points}");
    assert!(!points.contains("kind=owner"), "{points}");
}

/// A CP listening on any address, through the real binary: one WARN line for the CP answering from
/// another address, the `source` field on its points and `source_mismatch` in its summary.
#[test]
fn listen_any_is_logged_once_and_written() {
    let dir = util::tempdir();
    let mut c = Cluster::listen_any(dir.path(), 212);
    c.start(0, false);
    let cfg = dir.path().join("srewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[probe.target]]\nname = \"cp1\"\nuri = \"{}\"\ninterval = \"100ms\"\ntimeout = \"400ms\"\n",
            c.uri(0)
        ),
    )
    .unwrap();
    let (text, points) = probe_run(dir.path(), &cfg, "1s");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Answer from another address"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let source = format!("127.0.0.1:{}", c.port);
    assert!(
        lines[0].contains(&format!(
            "target=cp1 probed={}:{} source={source} counted_as=\"its status\"",
            c.nodes[0].addr, c.port
        )),
        "{text}"
    );
    let answered = points
        .lines()
        .filter(|l| l.starts_with("probe,target=cp1,") && l.contains("status=200i"))
        .collect::<Vec<_>>();
    assert!(answered.len() >= 5, "{points}");
    for l in &answered {
        assert!(l.contains("state=\"in_service\""), "{l}");
        assert!(l.contains(&format!(",source=\"{source}\" ")), "{l}");
    }
    // Summaries of the minute(s) the run spanned add up to the answered probes.
    let mismatches: u64 = points
        .lines()
        .filter(|l| l.starts_with("probe_summary,target=cp1,"))
        .map(|l| {
            let v = l
                .split("source_mismatch=")
                .nth(1)
                .expect("source_mismatch field");
            v[..v.find('i').unwrap()].parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(mismatches, answered.len() as u64, "{points}");
}

/// Runs `srewatch probe run --duration DUR` on `cfg` to its end; its log and its points.
fn probe_run(dir: &std::path::Path, cfg: &std::path::Path, dur: &str) -> (String, String) {
    let out = dir.join("points.lp");
    let log = dir.join("srewatch.log");
    let mut cmd = util::srewatch();
    cmd.args(["probe", "run", "--duration", dur, "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(&out)
        .env("SREWATCH_LOG", "info")
        .env("NO_COLOR", "1");
    let mut p = util::Proc::spawn("srewatch probe run", cmd, &log);
    let start = std::time::Instant::now();
    while !p.exited() {
        assert!(start.elapsed() < WAIT, "srewatch probe run did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        std::fs::read_to_string(&log).unwrap(),
        std::fs::read_to_string(&out).unwrap_or_default(),
    )
}

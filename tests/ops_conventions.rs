//! Operator conventions of the real binary: journald priorities on every log line when
//! `JOURNAL_STREAM` is set, and `probe check` as a Nagios plugin (UNKNOWN with the reason on
//! stdout for bad arguments, `-w`/`-c` RTT thresholds, the answer's other source address)
//! against a real Kamailio.

use crate::util::cluster::Cluster;
use crate::util::kamailio::{Kamailio, Options};
use crate::util::{self, Proc};
use std::time::Duration;

/// The log level word of a line (`ERROR`, `WARN`, `INFO`, `DEBUG`) after the priority prefix.
fn level_of(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

/// Under systemd (`JOURNAL_STREAM` set) every stderr line of `srewatch run` starts with the
/// sd-daemon priority of its level: a bad CSV row (WARN, 4), a probe target down (alarm,
/// ERROR, 3), start and stop (INFO, 6), file reads (DEBUG, 7); a refused configuration too.
#[test]
fn journald_lines_carry_their_priority() {
    let dir = util::tempdir();
    let csv = dir.path().join("csv");
    std::fs::create_dir(&csv).unwrap();
    std::fs::write(
        csv.join("counters.csv"),
        "h1,request.INVITE,2026-01-01T00:00:00,1767225600,1,2,x,4,5,6,7,8,9,10,11,12,13,14,15\n",
    )
    .unwrap();
    std::fs::write(csv.join("samples.csv"), "").unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = dir.path().join("srewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[service]\nkamailio = false\n\n[ingest]\ndir = \"{}\"\ndebounce = \"30ms\"\n\n\
             [[probe.target]]\nname = \"cp1\"\nuri = \"sip:{}\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\n",
            csv.display(),
            silent.local_addr().unwrap()
        ),
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let mut cmd = util::srewatch();
    cmd.args(["run", "--out"])
        .arg(dir.path().join("points.lp"))
        .arg("--config")
        .arg(&cfg)
        .env("JOURNAL_STREAM", "8:12345")
        .env("SREWATCH_LOG", "debug");
    let mut svc = Proc::spawn("srewatch run", cmd, &log);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    util::wait_until(Duration::from_secs(20), "the alarm and the bad row", || {
        let t = read();
        t.contains("Alarm raised") && t.contains("Skipped bad row")
    });
    let st = svc
        .terminate(Duration::from_secs(10))
        .expect("srewatch run stops");
    assert!(st.success(), "{}", read());
    let text = read();
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines() {
        let (prefix, rest) = line.split_at(3.min(line.len()));
        let want = match level_of(rest) {
            "ERROR" => "<3>",
            "WARN" => "<4>",
            "INFO" => "<6>",
            "DEBUG" => "<7>",
            other => panic!("line without a known level ({other:?}): {line:?}\n{text}"),
        };
        assert_eq!(prefix, want, "{line:?}");
        seen.insert(prefix.to_string());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["<3>", "<4>", "<6>", "<7>"],
        "{text}"
    );
    assert!(text.contains("<3>ERROR Alarm raised target=cp1"), "{text}");
    assert!(text.contains("<4> WARN Skipped bad row"), "{text}");
    assert!(text.contains("<6> INFO Service ready"), "{text}");

    // A refused configuration: each problem and the summary at priority 3.
    std::fs::write(&cfg, "[service]\nhealth_interval = \"soon\"\n").unwrap();
    let out = util::srewatch()
        .args(["run", "--config"])
        .arg(&cfg)
        .env("JOURNAL_STREAM", "8:12345")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!("<3>{}:2: ", cfg.display())),
        "{err}"
    );
    assert!(
        lines[1].starts_with("<3>ERROR Configuration refused; not starting"),
        "{err}"
    );

    // Without JOURNAL_STREAM: no prefix.
    let out = util::srewatch()
        .args(["run", "--config"])
        .arg(&cfg)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with(&format!("{}:2: ", cfg.display())), "{err}");
}

/// Bad arguments are UNKNOWN (3) with one line on stdout that says what is wrong; nothing is
/// sent. Clap's own refusals (a bad value, a missing URI, an unknown option) included.
#[test]
fn check_bad_arguments_are_unknown_on_stdout() {
    for (args, reason) in [
        (
            &["sip:127.0.0.1:9", "--expect", "404"][..],
            "\"404\": expected 200 or 503",
        ),
        (
            &["sip:127.0.0.1:9", "--timeout", "1"][..],
            "\"1\" has no unit: write e.g. 1s",
        ),
        (
            &[][..],
            "the following required arguments were not provided",
        ),
        (
            &["sip:127.0.0.1:9", "--bogus"][..],
            "unexpected argument '--bogus'",
        ),
        (
            &["sip:127.0.0.1:9", "-w", "fast"][..],
            "expected seconds (0.2) or a duration (200ms)",
        ),
        (
            &["sip:127.0.0.1:9", "-w", "2", "-c", "1"][..],
            "--warning 2 is above --critical 1",
        ),
        (
            &["sip:monitor@127.0.0.1:9"][..],
            "has a user part: give it with --user monitor and the URI as sip:127.0.0.1:9",
        ),
    ] {
        let (code, out, err) = util::probe_check(args);
        assert_eq!(code, 3, "{args:?}: {out}{err}");
        assert!(out.starts_with("SIP UNKNOWN: "), "{args:?}: {out:?}");
        assert!(out.contains(reason), "{args:?}: {out:?}");
        assert_eq!(out.lines().count(), 1, "{args:?}: {out:?}");
        assert_eq!(err, "", "{args:?}");
    }
    // Help is not an error.
    let (code, out, _) = util::probe_check(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--warning <SECONDS>"), "{out}");
}

/// `-w`/`-c` RTT thresholds in seconds against a real Kamailio: exceeded, WARNING (1) and
/// CRITICAL (2); not exceeded, OK; the thresholds in the perfdata.
#[test]
fn check_rtt_thresholds() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Options::default());
    let uri = k.sip_uri();
    let (code, out, _) = util::probe_check(&[&uri, "-w", "5", "-c", "10"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("SIP OK: {uri} answered 200 in ")),
        "{out}"
    );
    let rtt = out.split(" | rtt=").nth(1).expect("perfdata");
    let (value, rest) = rtt.split_once("s;").expect("rtt in seconds");
    let value: f64 = value.parse().unwrap();
    assert!(value > 0.0 && value < 5.0, "{out}");
    assert!(
        rest.starts_with("5;10;0 retransmits=0;;;0 status=200 other_source=0"),
        "{out}"
    );
    // Any real round trip takes more than a microsecond.
    let (code, out, _) = util::probe_check(&[&uri, "-w", "0.000001"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("SIP WARNING: "), "{out}");
    assert!(out.contains("(RTT above the warning 0.000001 s)"), "{out}");
    assert!(out.contains("s;0.000001;;0 "), "{out}");
    let (code, out, _) = util::probe_check(&[&uri, "-w", "0.000001", "-c", "1us"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("SIP CRITICAL: "), "{out}");
    assert!(out.contains("(RTT above the critical 0.000001 s)"), "{out}");
    assert!(out.contains("s;0.000001;0.000001;0 "), "{out}");
    // The user goes in --user (Kamailio answers OPTIONS to any user).
    let (code, out, _) = util::probe_check(&[&uri, "--user", "monitor"]);
    assert_eq!(code, 0, "{out}");
}

/// A Kamailio listening on 0.0.0.0 answers from 127.0.0.1, not the probed 127.0.213.2: the
/// check says so in its text and perfdata (and the answer still counts).
#[test]
fn check_names_another_source_address() {
    let dir = util::tempdir();
    let mut c = Cluster::listen_any(dir.path(), 213);
    c.start(0, false);
    let uri = c.uri(0);
    let (code, out, _) = util::probe_check(&[&uri]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!(
            "SIP OK: {uri} answered 200 from 127.0.0.1:{} (not the probed address) in ",
            c.port
        )),
        "{out}"
    );
    assert!(
        out.trim_end().ends_with(" status=200 other_source=1"),
        "{out}"
    );
}

/// `srewatch run` without `[influxdb]` says once, at start, where its points go: stdout (the
/// journal under systemd) or the `--out` file; with no configuration file at all it says that
/// too.
#[test]
fn run_without_influxdb_says_where_points_go() {
    let dir = util::tempdir();
    let empty = dir.path().join("srewatch.toml");
    std::fs::write(
        &empty,
        "[service]\ningest = false\nkamailio = false\nprobe = false\n",
    )
    .unwrap();
    let out_file = dir.path().join("points.lp");
    let mut cases = vec![
        (
            Some(empty.clone()),
            None,
            format!(
                " WARN No [influxdb] configured: points are written as line protocol to stdout (under systemd: the journal), not stored config={}",
                empty.display()
            ),
        ),
        (
            Some(empty.clone()),
            Some(out_file.clone()),
            format!(
                " WARN No [influxdb] configured: points are written as line protocol to {}, not stored config={}",
                out_file.display(),
                empty.display()
            ),
        ),
    ];
    if !std::path::Path::new("/etc/srewatch/srewatch.toml").exists() {
        cases.push((
            None,
            None,
            " WARN No [influxdb] configured: points are written as line protocol to stdout (under systemd: the journal), not stored config=none (/etc/srewatch/srewatch.toml not found)".to_string(),
        ));
    }
    for (i, (cfg, out, want)) in cases.into_iter().enumerate() {
        let log = dir.path().join(format!("run-{i}.log"));
        let mut cmd = util::srewatch();
        cmd.arg("run")
            .env_remove("SREWATCH_CONFIG")
            .env_remove("JOURNAL_STREAM")
            .current_dir(dir.path());
        if let Some(c) = &cfg {
            cmd.arg("--config").arg(c);
        }
        if let Some(o) = &out {
            cmd.arg("--out").arg(o);
        }
        let mut svc = Proc::spawn("srewatch run", cmd, &log);
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        util::wait_until(Duration::from_secs(20), "the service to be ready", || {
            read().contains("Service ready")
        });
        svc.terminate(Duration::from_secs(10)).expect("stops");
        let text = read();
        let warns: Vec<&str> = text.lines().filter(|l| l.contains(" WARN ")).collect();
        assert_eq!(warns.len(), 1, "{text}");
        assert!(
            warns[0].ends_with(&want),
            "{:?}\nwanted the end {want:?}",
            warns[0]
        );
    }
}

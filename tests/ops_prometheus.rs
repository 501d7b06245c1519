//! `/metrics` by Prometheus' conventions, scraped by a real Prometheus from `srewatch run`
//! (`metrics_listen = "localhost:PORT"`) probing two real Kamailio CPs and a VIP that fails over
//! from one to the other, writing to a real VictoriaMetrics: one 0/1 series per state and per
//! VIP owner candidate, RTT and write latency as histograms, INVITE check outcomes, alarms and
//! failovers as counters, build info and `process_*`; `promtool check metrics` on the page.
//! The alert rules of `monitoring/` and their `promtool test rules` cases are run here too.

use crate::util;
use crate::util::kamailio::Kamailio;
use crate::util::prometheus::{self, one, query, wait_value};
use crate::util::victoria::{http, Victoria};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// How long a Prometheus query may take to show a value.
const LONG: Duration = Duration::from_secs(40);

/// The `/metrics` page of `addr`.
fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http(addr, "GET", "/metrics", b"").unwrap();
    assert_eq!(status, 200);
    String::from_utf8(body).unwrap()
}

/// `promtool check metrics` on `page`: clean.
fn promtool_check_metrics(page: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_follow_prometheus_conventions() {
    let dir = util::tempdir();
    let test_start = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let vport = util::free_udp_tcp_port();
    let vip_listen = format!("udp:127.0.0.23:{vport}");
    let mut cp1 = Kamailio::start_node(dir.path(), "cp1", std::slice::from_ref(&vip_listen));
    let mut cp2 = Kamailio::start_node(dir.path(), "cp2", &[]);
    let vm = Victoria::start(dir.path());
    let metrics_port = util::free_tcp_port();
    let cfg = dir.path().join("srewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[service]\nmetrics_listen = \"localhost:{metrics_port}\"\ningest = false\nkamailio = false\nhealth_interval = \"1s\"\n\n\
             [influxdb]\nurl = \"{}\"\ndb_param = true\nspool_dir = \"{}\"\nbatch_max_delay = \"20ms\"\nspool_max_bytes = 10000000\n\n\
             [[probe.target]]\nname = \"cp1\"\nuri = \"{}\"\ninterval = \"200ms\"\ntimeout = \"500ms\"\n\n\
             [[probe.target]]\nname = \"cp2\"\nuri = \"{}\"\ninterval = \"200ms\"\ntimeout = \"500ms\"\nexpect = \"any\"\n\n\
             [[probe.target]]\nname = \"vip\"\nuri = \"sip:127.0.0.23:{vport}\"\nrole = \"vip\"\ninterval = \"200ms\"\ntimeout = \"500ms\"\n",
            vm.url(),
            dir.path().join("spool").display(),
            cp1.sip_uri(),
            cp2.sip_uri()
        ),
    )
    .unwrap();
    let mut svc = util::start_run(&cfg, &[], &dir.path().join("run.log"), metrics_port);
    let maddr: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    let (_prom_proc, prom) = prometheus::start(dir.path(), &format!("localhost:{metrics_port}"));
    wait_value(prom, "up{job=\"srewatch\"}", 1.0, LONG);

    // The VIP is answered by cp1: one series per candidate, 1 for cp1.
    let owner = |c: &str| format!("srewatch_probe_vip_owner{{target=\"vip\",candidate=\"{c}\"}}");
    wait_value(prom, &owner("cp1"), 1.0, LONG);
    let mut candidates: Vec<(String, f64)> = query(prom, "srewatch_probe_vip_owner")
        .into_iter()
        .map(|(m, v)| (m["candidate"].as_str().unwrap().to_string(), v))
        .collect();
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        candidates,
        [
            ("ambiguous".to_string(), 0.0),
            ("cp1".to_string(), 1.0),
            ("cp2".to_string(), 0.0),
            ("none".to_string(), 0.0)
        ]
    );
    // Four state series per target, exactly one of them 1.
    for t in ["cp1", "cp2", "vip"] {
        wait_value(
            prom,
            &format!("srewatch_probe_state{{target=\"{t}\",state=\"in_service\"}}"),
            1.0,
            LONG,
        );
        let states: BTreeSet<String> =
            query(prom, &format!("srewatch_probe_state{{target=\"{t}\"}}"))
                .into_iter()
                .map(|(m, _)| m["state"].as_str().unwrap().to_string())
                .collect();
        assert_eq!(
            states.into_iter().collect::<Vec<_>>(),
            ["down", "in_service", "out_of_service", "unexpected"]
        );
        assert_eq!(
            one(
                prom,
                &format!("sum(srewatch_probe_state{{target=\"{t}\"}})")
            ),
            Some(1.0)
        );
    }

    // cp2 out of service: OPTIONS 503, then the INVITE check gets its 503.
    cp2.set_out_of_service(true);
    let cp2_state = |s: &str| format!("srewatch_probe_state{{target=\"cp2\",state=\"{s}\"}}");
    wait_value(prom, &cp2_state("out_of_service"), 1.0, LONG);
    wait_value(
        prom,
        "srewatch_probe_invite_checks_total{target=\"cp2\",outcome=\"out_of_service\"} > bool 0",
        1.0,
        LONG,
    );
    assert_eq!(
        one(
            prom,
            "sum(srewatch_probe_invite_checks_total{target=\"cp2\",outcome!=\"out_of_service\"})"
        ),
        Some(0.0)
    );
    assert_eq!(one(prom, &cp2_state("in_service")), Some(0.0));

    // Pacemaker moves the VIP: cp1 goes away, cp2 (still out of service) takes the address.
    cp1.stop();
    cp2.stop();
    cp2.opts.extra_listen = vec![vip_listen];
    cp2.write_cfg();
    cp2.start_again();
    wait_value(
        prom,
        "srewatch_probe_vip_failovers_total{target=\"vip\"}",
        1.0,
        LONG,
    );
    wait_value(prom, &owner("cp2"), 1.0, LONG);
    assert_eq!(one(prom, &owner("cp1")), Some(0.0));
    wait_value(
        prom,
        "srewatch_probe_state{target=\"vip\",state=\"out_of_service\"}",
        1.0,
        LONG,
    );
    wait_value(
        prom,
        "srewatch_probe_state{target=\"cp1\",state=\"down\"}",
        1.0,
        LONG,
    );
    // Each alarm raised once: cp1 down (expected in service), the VIP answered 503 by an
    // out-of-service owner; nothing else.
    let alarm =
        |t: &str, a: &str| format!("srewatch_probe_alarms_total{{target=\"{t}\",alarm=\"{a}\"}}");
    wait_value(prom, &alarm("cp1", "unexpected_state"), 1.0, LONG);
    wait_value(prom, &alarm("vip", "vip_not_in_service"), 1.0, LONG);
    wait_value(prom, &alarm("vip", "vip_owner_out_of_service"), 1.0, LONG);
    assert_eq!(one(prom, "sum(srewatch_probe_alarms_total)"), Some(3.0));
    assert_eq!(
        query(prom, "srewatch_probe_alarms_total{target=\"cp2\"}").len(),
        6,
        "every alarm kind present at 0"
    );

    // RTT histogram: one observation per answered OPTIONS, p99 from the buckets.
    let page = scrape(maddr);
    for t in ["cp1", "cp2", "vip"] {
        let value = |name: &str| -> f64 {
            let prefix = format!("{name}{{target=\"{t}\",");
            let line = page
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("{prefix} not in\n{page}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        let answered = value("srewatch_probe_answered_total");
        assert!(answered > 0.0, "{page}");
        assert_eq!(value("srewatch_probe_rtt_seconds_count"), answered, "{t}");
    }
    let p99 = one(
        prom,
        "histogram_quantile(0.99, sum by (le) (rate(srewatch_probe_rtt_seconds_bucket{target=\"cp2\"}[30s])))",
    )
    .expect("p99 of cp2's RTT");
    assert!(p99 > 0.0 && p99 <= 0.5, "p99 {p99}");
    // Write latency: a histogram whose +Inf bucket holds every batch; the spool's limit.
    wait_value(
        prom,
        "srewatch_sink_write_latency_seconds_count > bool 0",
        1.0,
        LONG,
    );
    assert_eq!(
        one(
            prom,
            "srewatch_sink_write_latency_seconds_bucket{le=\"+Inf\"} - ignoring(le) srewatch_sink_write_latency_seconds_count"
        ),
        Some(0.0)
    );
    assert_eq!(
        one(prom, "srewatch_sink_spool_max_bytes"),
        Some(10_000_000.0)
    );
    // Build info and process_*.
    assert_eq!(
        one(
            prom,
            &format!(
                "srewatch_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );
    let started = one(prom, "process_start_time_seconds").unwrap();
    assert!(
        started >= test_start - 2.0 && started <= test_start + 60.0,
        "started {started}, test {test_start}"
    );
    assert!(one(prom, "process_open_fds").unwrap() >= 5.0);
    assert!(one(prom, "process_max_fds").unwrap() >= one(prom, "process_open_fds").unwrap());
    assert!(one(prom, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(one(prom, "process_cpu_seconds_total").unwrap() > 0.0);

    promtool_check_metrics(&page);
    // The metric names the alert rules use are on the page.
    for name in rule_metric_names() {
        if name == "srewatch_sink_bucket_refused" {
            // Served only while a bucket is refused: ingest_influx::run_without_the_health_bucket_still_delivers_the_files.
            continue;
        }
        if name.starts_with("srewatch_file_") || name.starts_with("srewatch_kamailio_") {
            // This run has ingest and Kamailio polling off: checked in the next test.
            continue;
        }
        assert!(
            served(&page, &name),
            "{name} (used by the alert rules) not served:\n{page}"
        );
    }
    let st = svc.terminate(Duration::from_secs(20)).expect("stops");
    assert!(st.success());
}

/// `metrics_listen` takes `:PORT` (every address) and `localhost:PORT`; a bad value is refused
/// with the key named.
#[test]
fn metrics_listen_forms() {
    let dir = util::tempdir();
    let cfg = dir.path().join("srewatch.toml");
    for (value, ok) in [
        (":9464", true),
        ("localhost:9464", true),
        ("127.0.0.1:9464", true),
        ("[::1]:9464", true),
        ("localhost", false),
        (":http", false),
    ] {
        std::fs::write(&cfg, format!("[service]\nmetrics_listen = \"{value}\"\n")).unwrap();
        let out = util::srewatch()
            .args(["config", "check"])
            .arg(&cfg)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.success(), ok, "{value}: {text}");
        if !ok {
            assert_eq!(
                text,
                format!(
                    "{}:2: service.metrics_listen: \"{value}\": expected ADDRESS:PORT, localhost:PORT or :PORT\n",
                    cfg.display()
                )
            );
        }
    }
}

/// Whether the family `name` has a sample on `page` (as itself, `_total` or `_bucket`).
fn served(page: &str, name: &str) -> bool {
    ["", "_total", "_bucket"].iter().any(|suffix| {
        page.contains(&format!("\n{name}{suffix}{{"))
            || page.contains(&format!("\n{name}{suffix} "))
    })
}

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring")
}

/// Every `srewatch_*` and `process_*` metric name the rules file uses (histogram suffixes
/// folded into the family name).
fn rule_metric_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(monitoring().join("srewatch.rules.yml")).unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with("expr:")) {
        let mut rest = line;
        while let Some(at) = rest.find("srewatch_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let name = name
                .strip_suffix("_total")
                .or_else(|| name.strip_suffix("_bucket"))
                .unwrap_or(name);
            names.insert(name.to_string());
            rest = &tail[end..];
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    names
}

/// `promtool check rules` and `promtool test rules` on the shipped rules: every alert has a
/// case that fires it (and one that keeps it quiet).
#[test]
fn alert_rules_check_and_test() {
    for args in [
        vec!["check", "rules", "srewatch.rules.yml"],
        vec!["test", "rules", "srewatch.rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(monitoring())
            .output()
            .expect("promtool (Debian package prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each alert of the rules file appears in a test case's exp_alerts.
    let rules = std::fs::read_to_string(monitoring().join("srewatch.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(monitoring().join("srewatch.rules.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 12, "{alerts:?}");
    for a in alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n")),
            "no promtool test case for {a}"
        );
    }
}

/// With ingest and Kamailio polling on, the `srewatch_file_*` and `srewatch_kamailio_*` names
/// the rules use are served too (page read directly, no Prometheus needed).
#[test]
fn rule_metrics_of_ingest_and_kamailio_exist() {
    let dir = util::tempdir();
    let csv = dir.path().join("csv");
    std::fs::create_dir(&csv).unwrap();
    std::fs::write(csv.join("counters.csv"), "").unwrap();
    std::fs::write(csv.join("samples.csv"), "").unwrap();
    let metrics_port = util::free_tcp_port();
    let dead_rpc = util::free_tcp_port();
    let cfg = dir.path().join("srewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[service]\nmetrics_listen = \":{metrics_port}\"\nprobe = false\n\n\
             [ingest]\ndir = \"{}\"\n\n\
             [[kamailio]]\nhostname = \"k0\"\naddress = \"http://127.0.0.1:{dead_rpc}/RPC\"\ninterval = \"500ms\"\ntimeout = \"200ms\"\n",
            csv.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let mut svc = util::start_run(&cfg, &["--out", "/dev/null"], &log, metrics_port);
    let maddr: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    let mut page = String::new();
    util::wait_until(Duration::from_secs(20), "the first Kamailio poll", || {
        page = scrape(maddr);
        page.contains("\nsrewatch_kamailio_up{hostname=\"k0\"} 0")
    });
    for name in rule_metric_names()
        .into_iter()
        .filter(|n| n.starts_with("srewatch_file_") || n.starts_with("srewatch_kamailio_"))
    {
        assert!(served(&page, &name), "{name} not served:\n{page}");
    }
    promtool_check_metrics(&page);
    svc.terminate(Duration::from_secs(20));
}

//! What operators look at: the bench's HTML report (rendered by a real headless Chromium), the
//! exact merge of two benches run at once (HdrHistogram interval logs), and `/metrics` scraped
//! by a real Prometheus while a probe target goes down and comes back and bad CSV rows arrive.

use crate::util::kamailio::Kamailio;
use crate::util::prometheus::{self, one, query, wait_value};
use crate::util::victoria::{http, Victoria};
use crate::util::{self, run_ok, Proc};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// `srewatch responder` (the real binary) on a free port of 127.0.0.1.
fn responder(dir: &Path, port: u16) -> Proc {
    let log = dir.join(format!("responder-{port}.log"));
    let mut cmd = util::srewatch();
    cmd.args(["responder", "--threads", "1", "--listen"])
        .arg(format!("127.0.0.1:{port}"));
    let p = Proc::spawn("srewatch responder", cmd, &log);
    util::wait_until(Duration::from_secs(20), "the responder to listen", || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("listening"))
    });
    p
}

fn load(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The text of the element with `id` in the page.
fn by_id<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element with id {id} in the report"));
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest.find('<').unwrap();
    &rest[start..end]
}

fn ms(v: &Value) -> String {
    format!("{:.3} ms", v.as_f64().expect("a latency") / 1000.0)
}

/// Renders `html` with headless Chromium to a PNG of `w`x`h`; returns (width, height, RGBA).
fn screenshot(dir: &Path, html: &Path, png: &Path, w: u32, h: u32) -> (u32, u32, Vec<u8>) {
    let profile = dir.join("chromium-profile");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={w},{h}"))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium (Debian package chromium)");
    assert!(
        png.exists(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let rgba: Vec<u8> = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks(3)
            .flat_map(|c| [c[0], c[1], c[2], 255])
            .collect(),
        c => panic!("unexpected PNG colour type {c:?}"),
    };
    (info.width, info.height, rgba)
}

/// Bench run against the responder, its report made by `--report` and again by `bench report`
/// from the saved JSON; Chromium renders it; every figure in the page equals the JSON's.
#[test]
fn bench_report_renders_and_shows_the_json_figures() {
    let dir = util::tempdir();
    let port = util::free_udp_tcp_port();
    let _r = responder(dir.path(), port);
    let json = dir.path().join("run.json");
    let html = dir.path().join("run.html");
    run_ok(
        util::srewatch()
            .args(["bench", &format!("sip:127.0.0.1:{port}")])
            .args([
                "--ramp",
                "200:400:200:1s",
                "--timeout",
                "1s",
                "--p99-max",
                "1s",
            ])
            .arg("--json")
            .arg(&json)
            .arg("--report")
            .arg(&html),
    );
    let v = load(&json);
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing to fetch.
    for bad in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!page.contains(bad), "the report refers to {bad}");
    }
    assert_eq!(page.matches("<svg").count(), 3, "three charts");
    let t = &v["total"];
    assert_eq!(v["accounting"]["sent"], 600);
    for k in ["sent", "answered", "timed_out", "send_errors"] {
        assert_eq!(
            by_id(&page, &format!("total-{k}")),
            v["accounting"][k].to_string(),
            "{k}"
        );
    }
    for k in [
        "retransmits",
        "late",
        "stray",
        "invalid",
        "unreachable",
        "accepted",
        "failures",
    ] {
        assert_eq!(by_id(&page, &format!("total-{k}")), t[k].to_string(), "{k}");
    }
    assert_eq!(
        by_id(&page, "latency-count"),
        t["latency_us"]["count"].to_string()
    );
    for k in ["min", "p50", "p90", "p99", "p99_9", "max"] {
        assert_eq!(
            by_id(&page, &format!("latency-{k}")),
            ms(&t["latency_us"][k]),
            "{k}"
        );
    }
    assert_eq!(
        by_id(&page, "status-200"),
        t["by_status"]["200"].to_string()
    );
    for (i, s) in v["steps"].as_array().unwrap().iter().enumerate() {
        let n = i + 1;
        assert_eq!(
            by_id(&page, &format!("step{n}-sent")),
            s["sent"].to_string()
        );
        assert_eq!(
            by_id(&page, &format!("step{n}-answered")),
            s["answered"].to_string()
        );
        let held = if s["held"] == true {
            "held"
        } else {
            "not held"
        };
        assert_eq!(by_id(&page, &format!("step{n}-held")), held);
    }
    let rate = |r: &Value| match r.as_f64() {
        Some(x) => format!("{x:.0}/s"),
        None => "none".into(),
    };
    assert_eq!(by_id(&page, "highest-held"), rate(&v["highest_held_rate"]));
    assert_eq!(by_id(&page, "first-failed"), rate(&v["first_failed_rate"]));
    // The same page from the saved JSON.
    let again = dir.path().join("again.html");
    run_ok(
        util::srewatch()
            .args(["bench", "report"])
            .arg(&json)
            .arg("-o")
            .arg(&again),
    );
    assert_eq!(std::fs::read_to_string(&again).unwrap(), page);

    let (w, h, rgba) = screenshot(dir.path(), &html, &dir.path().join("run.png"), 1100, 2300);
    assert_eq!((w, h), (1100, 2300));
    let px = rgba.len() / 4;
    let dark = rgba
        .chunks(4)
        .filter(|p| (p[0] as u32 + p[1] as u32 + p[2] as u32) < 3 * 160)
        .count();
    let blue = rgba
        .chunks(4)
        .filter(|p| p[2] > 200 && p[0] < 60 && p[1] < 60)
        .count();
    assert!(
        dark * 200 > px,
        "the picture is nearly blank: {dark} dark pixels of {px}"
    );
    assert!(blue > 300, "no blue curve drawn: {blue} pixels");
}

/// Every interval of an interval log, added.
fn log_sum(p: &Path) -> (Histogram<u64>, Vec<u64>) {
    let text = std::fs::read(p).unwrap();
    let mut sum = Histogram::<u64>::new(3).unwrap();
    let mut base = 0u64;
    let mut starts = Vec::new();
    for e in IntervalLogIterator::new(&text) {
        match e.unwrap() {
            LogEntry::BaseTime(t) => base = t.as_secs(),
            LogEntry::StartTime(_) => {}
            LogEntry::Interval(i) => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(i.encoded_histogram())
                    .unwrap();
                let h: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut bytes.as_slice())
                    .unwrap();
                sum.add(&h).unwrap();
                starts.push(base + i.start_timestamp().as_secs());
            }
        }
    }
    (sum, starts)
}

fn latency_of(h: &Histogram<u64>) -> Value {
    serde_json::json!({
        "count": h.len(), "min": h.min(), "mean": h.mean(),
        "p50": h.value_at_quantile(0.5), "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99), "p99_9": h.value_at_quantile(0.999), "max": h.max(),
    })
}

/// Equal latency summaries: every integer exactly; the mean (a float summed in another order
/// when the histograms were added in another order) to 1e-12.
fn assert_latency(got: &Value, want: &Value) {
    for k in ["count", "min", "p50", "p90", "p99", "p99_9", "max"] {
        assert_eq!(got[k], want[k], "{k}: {got} vs {want}");
    }
    let (a, b) = (
        got["mean"].as_f64().unwrap(),
        want["mean"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-12 * b.abs(), "mean {a} vs {b}");
}

/// Two benches started together (`--start-at`) against one responder, each writing an interval
/// log; `bench merge` adds counts and histograms exactly and aligns the seconds.
#[test]
fn merged_benches_add_up_exactly() {
    let dir = util::tempdir();
    let port = util::free_udp_tcp_port();
    let _r = responder(dir.path(), port);
    // A whole second, as an operator would give it: both start in the same wall-clock second.
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3;
    let at = humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    let run = |name: &str, rate: &str| {
        let mut c = util::srewatch();
        c.args(["bench", &format!("sip:127.0.0.1:{port}")])
            .args(["--rate", rate, "--duration", "2s", "--timeout", "1s"])
            .args(["--start-at", &at.to_string()])
            .arg("--json")
            .arg(dir.path().join(format!("{name}.json")))
            .arg("--histogram-log")
            .arg(dir.path().join(format!("{name}.hlog")));
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c.spawn().unwrap()
    };
    let mut a = run("a", "300");
    let mut b = run("b", "200");
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let (ja, jb) = (
        load(&dir.path().join("a.json")),
        load(&dir.path().join("b.json")),
    );
    let (ha, sa) = log_sum(&dir.path().join("a.hlog"));
    let (hb, sb) = log_sum(&dir.path().join("b.hlog"));
    // Each log holds exactly its run's latencies.
    assert_latency(&ja["total"]["latency_us"], &latency_of(&ha));
    assert_latency(&jb["total"]["latency_us"], &latency_of(&hb));
    assert_eq!(ha.len(), 600);
    assert_eq!(hb.len(), 400);
    // Started at the same wall-clock second.
    assert_eq!(sa[0], secs, "--start-at starts at the given second");
    assert_eq!(sb[0], secs, "--start-at starts at the given second");

    let m = dir.path().join("m.json");
    let mlog = dir.path().join("m.hlog");
    let out = run_ok(
        util::srewatch()
            .args(["bench", "merge"])
            .arg(dir.path().join("a.json"))
            .arg(dir.path().join("b.json"))
            .arg("--json")
            .arg(&m)
            .arg("--histogram-log")
            .arg(&mlog)
            .arg("--report")
            .arg(dir.path().join("m.html")),
    );
    assert!(
        out.contains("merged 2 runs: sent 1000 = answered 1000"),
        "{out}"
    );
    let mv = load(&m);
    for k in ["sent", "answered", "timed_out", "send_errors"] {
        assert_eq!(
            mv["accounting"][k].as_u64().unwrap(),
            ja["accounting"][k].as_u64().unwrap() + jb["accounting"][k].as_u64().unwrap(),
            "{k}"
        );
    }
    assert_eq!(mv["accounting"]["balanced"], true);
    assert_eq!(mv["total"]["by_status"]["200"], 1000);
    // Exact percentiles: those of one histogram of both runs' latencies.
    let mut both = ha.clone();
    both.add(&hb).unwrap();
    assert_latency(&mv["total"]["latency_us"], &latency_of(&both));
    let (hm, _) = log_sum(&mlog);
    assert_eq!(hm, both);
    // Seconds aligned on the wall clock: each merged second is the sum of the two.
    let secs = mv["seconds"].as_array().unwrap();
    let sent_at = |j: &Value, u: u64| {
        j["seconds"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["unix_s"] == u)
            .map(|s| s["sent"].as_u64().unwrap())
            .sum::<u64>()
    };
    let mut total = 0;
    for s in secs {
        let u = s["unix_s"].as_u64().unwrap();
        assert_eq!(
            s["sent"].as_u64().unwrap(),
            sent_at(&ja, u) + sent_at(&jb, u)
        );
        total += s["sent"].as_u64().unwrap();
    }
    assert_eq!(total, 1000);
    let page = std::fs::read_to_string(dir.path().join("m.html")).unwrap();
    assert_eq!(by_id(&page, "merged"), "2");
    assert_eq!(by_id(&page, "total-sent"), "1000");
    assert_eq!(
        by_id(&page, "latency-p99"),
        ms(&mv["total"]["latency_us"]["p99"])
    );
}

fn csv_files(dir: &Path) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ts = now - now % 60;
    let iso = humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(ts))
        .to_string();
    let iso = iso.trim_end_matches('Z');
    let vals = "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15";
    let counters = format!(
        "h1,request.INVITE,{iso},{ts},{vals}\n\
         h1,request.BYE,{iso},{ts},1,2,x,4,5,6,7,8,9,10,11,12,13,14,15\n\
         h2,request.INVITE,{iso}\n\
         h2,request.BYE,{iso},{ts},1,-2,3,4,5,6,7,8,9,10,11,12,13,14,15\n\
         h2,request.ACK,{iso},{ts},{vals}\n\
         h3,request.ACK,{iso},{ts},1,2,3,4,5,6,7,8,9,10,11,12,13,14,x\n"
    );
    std::fs::write(dir.join("counters.csv"), counters).unwrap();
    std::fs::write(
        dir.join("samples.csv"),
        format!("h1,profiling.cp.INVITE,{iso},{ts},{vals}\n"),
    )
    .unwrap();
}

/// `srewatch run` with `metrics_listen`, scraped every second by a real Prometheus: bad CSV
/// rows per reason, a probe target that goes down and comes back, a real Kamailio (polled: up;
/// probed: taken out of service) and a Kamailio target that is down, points written to a real
/// VictoriaMetrics; the values are read back through Prometheus's query API.
#[test]
fn metrics_scraped_by_prometheus() {
    let dir = util::tempdir();
    let csv = dir.path().join("csv");
    std::fs::create_dir(&csv).unwrap();
    csv_files(&csv);
    let sip_port = util::free_udp_tcp_port();
    let mut resp = responder(dir.path(), sip_port);
    let metrics_port = util::free_tcp_port();
    let dead_rpc = util::free_tcp_port();
    let kam = Kamailio::start(&dir.path().join("kamailio"), Default::default());
    let vm = Victoria::start(dir.path());
    let cfg = dir.path().join("srewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[service]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\nhealth_interval = \"1s\"\n\n\
             [influxdb]\nurl = \"{}\"\ndb_param = true\nspool_dir = \"{}\"\nbatch_max_delay = \"20ms\"\n\n\
             [ingest]\ndir = \"{}\"\ndebounce = \"30ms\"\nrescan_interval = \"500ms\"\n\n\
             [[kamailio]]\nhostname = \"k0\"\naddress = \"http://127.0.0.1:{dead_rpc}/RPC\"\ninterval = \"500ms\"\ntimeout = \"200ms\"\nmax_backoff = \"1s\"\n\n\
             [[kamailio]]\nhostname = \"k1\"\naddress = \"{}\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\n\n\
             [[probe.target]]\nname = \"cp1\"\nuri = \"sip:127.0.0.1:{sip_port}\"\ninterval = \"200ms\"\ntimeout = \"300ms\"\n\n\
             [[probe.target]]\nname = \"cp2\"\nuri = \"{}\"\ninterval = \"200ms\"\ntimeout = \"300ms\"\n",
            vm.url(),
            dir.path().join("spool").display(),
            csv.display(),
            kam.jsonrpc_url(),
            kam.sip_uri()
        ),
    )
    .unwrap();
    let _svc = util::start_run(&cfg, &[], &dir.path().join("run.log"), metrics_port);
    let maddr: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    let (status, body) = http(maddr, "GET", "/metrics", b"").unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("# TYPE srewatch_file_rows_rejected_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# HELP srewatch_probe_rtt_seconds "),
        "{text}"
    );

    let (_prom, prom) = prometheus::start(dir.path(), &format!("127.0.0.1:{metrics_port}"));
    let long = Duration::from_secs(40);
    wait_value(prom, "up{job=\"srewatch\"}", 1.0, long);

    // Bad rows, per file and reason, exactly; every other reason present with 0.
    let rejected = "srewatch_file_rows_rejected_total{file=\"counters.csv\",reason=\"bad_number\"}";
    wait_value(prom, rejected, 2.0, long);
    let mut by_reason: Vec<(String, f64)> = query(
        prom,
        "srewatch_file_rows_rejected_total{file=\"counters.csv\"}",
    )
    .into_iter()
    .map(|(m, v)| (m["reason"].as_str().unwrap_or("").to_string(), v))
    .collect();
    by_reason.retain(|(_, v)| *v != 0.0);
    by_reason.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        by_reason,
        [
            ("bad_number".to_string(), 2.0),
            ("missing_fields".to_string(), 1.0),
            ("negative".to_string(), 1.0)
        ]
    );
    assert_eq!(
        one(
            prom,
            "sum(srewatch_file_rows_rejected_total{file=\"samples.csv\"})"
        ),
        Some(0.0)
    );
    assert_eq!(
        one(prom, "srewatch_file_rows_total{file=\"counters.csv\"}"),
        Some(2.0)
    );
    assert_eq!(
        one(prom, "srewatch_file_rows_total{file=\"samples.csv\"}"),
        Some(1.0)
    );
    // Kamailio: one down, one up.
    wait_value(prom, "srewatch_kamailio_up{hostname=\"k0\"}", 0.0, long);
    wait_value(prom, "srewatch_kamailio_up{hostname=\"k1\"}", 1.0, long);
    // The real Kamailio probed as a CP, then taken out of service (503).
    let cp2 = |s: &str| format!("srewatch_probe_state{{target=\"cp2\",role=\"cp\",state=\"{s}\"}}");
    wait_value(prom, &cp2("in_service"), 1.0, long);
    kam.set_out_of_service(true);
    wait_value(prom, &cp2("out_of_service"), 1.0, long);
    wait_value(
        prom,
        "srewatch_probe_status_code{target=\"cp2\"}",
        503.0,
        long,
    );
    // The sink: nothing rejected, dropped or spooled; the file points among those written.
    wait_value(
        prom,
        "srewatch_ingest_points_total{kind=\"counters\"}",
        30.0,
        long,
    );
    wait_value(prom, "srewatch_sink_points_rejected_total", 0.0, long);
    wait_value(prom, "srewatch_sink_points_dropped_total", 0.0, long);
    wait_value(prom, "srewatch_sink_spool_batches", 0.0, long);
    wait_value(
        prom,
        "srewatch_sink_points_written_total >= bool 30",
        1.0,
        long,
    );

    // The probe target: in service, down, in service again.
    let state =
        |s: &str| format!("srewatch_probe_state{{target=\"cp1\",role=\"cp\",state=\"{s}\"}}");
    wait_value(prom, &state("in_service"), 1.0, long);
    wait_value(
        prom,
        "srewatch_probe_status_code{target=\"cp1\"}",
        200.0,
        long,
    );
    let rtt = one(
        prom,
        "srewatch_probe_last_rtt_seconds{target=\"cp1\",role=\"cp\"}",
    )
    .unwrap();
    assert!(rtt > 0.0 && rtt < 0.3, "rtt {rtt}");
    resp.kill();
    wait_value(prom, &state("down"), 1.0, long);
    // One state per target at a time.
    assert_eq!(
        one(prom, "count(srewatch_probe_state{target=\"cp1\"} == 1)"),
        Some(1.0)
    );
    let _resp = responder(dir.path(), sip_port);
    wait_value(prom, &state("in_service"), 1.0, long);
    assert_eq!(
        one(prom, "count(srewatch_probe_state{target=\"cp1\"} == 1)"),
        Some(1.0)
    );
    // Sent = answered + lost, as counters.
    let sent = one(prom, "srewatch_probe_requests_total{target=\"cp1\"}").unwrap();
    let answered = one(prom, "srewatch_probe_answered_total{target=\"cp1\"}").unwrap();
    assert!(
        sent > answered && answered > 0.0,
        "sent {sent} answered {answered}"
    );
}

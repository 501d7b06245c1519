//! `[global_tags]`: the same tags on every point of every bucket.

use crate::service::Run;
use crate::util::influx::Influx;
use crate::util::kamailio::{Kamailio, Options};
use crate::util::{self, srewatch};
use std::collections::BTreeMap;
use std::time::Duration;

const TAGS: &str = "[global_tags]\nsite = \"paris 1\"\nnode = \"em-2\"\n";
/// The escaped suffix of [`TAGS`], keys sorted.
const SUFFIX: &str = ",node=em-2,site=paris\\ 1";

/// `ingest --once` of the fixtures to stdout with `config`: the line-protocol text.
fn once(config: &std::path::Path) -> String {
    util::run_ok(
        srewatch()
            .args(["ingest", "--once", "--config"])
            .arg(config)
            .arg("--dir")
            .arg(util::fixtures().join("csv")),
    )
}

/// Index of the first unescaped space of a line (the end of its measurement and tags).
fn series_end(line: &str) -> usize {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b' ' => return i,
            _ => {}
        }
        i += 1;
    }
    panic!("no field set: {line:?}");
}

/// The fixtures without global tags come out as before; with them, each line of counters,
/// samples and rollups is the same line with the tags after its own.
#[test]
fn fixtures_once_every_line_of_every_bucket_carries_the_global_tags() {
    let dir = util::tempdir();
    let plain = once(std::path::Path::new("/dev/null"));
    let cfg = dir.path().join("tags.toml");
    std::fs::write(&cfg, TAGS).unwrap();
    let tagged = once(&cfg);

    let mut per_bucket: BTreeMap<String, usize> = BTreeMap::new();
    let mut bucket = String::new();
    let (p, t): (Vec<&str>, Vec<&str>) = (plain.lines().collect(), tagged.lines().collect());
    assert_eq!(p.len(), t.len());
    for (a, b) in p.iter().zip(&t) {
        if let Some(name) = a.strip_prefix("# bucket: ") {
            assert_eq!(a, b);
            bucket = name.to_string();
            continue;
        }
        assert!(!a.contains(SUFFIX), "{a}");
        let at = series_end(a);
        assert_eq!(*b, format!("{}{SUFFIX}{}", &a[..at], &a[at..]));
        *per_bucket.entry(bucket.clone()).or_default() += 1;
    }
    // 22 counters rows and 55 samples rows: 280 counters, 461 samples and 504 rollups points.
    assert_eq!(
        per_bucket,
        BTreeMap::from([
            ("counters".to_string(), 280),
            ("rollups".to_string(), 504),
            ("samples".to_string(), 461),
        ])
    );
}

/// `srewatch run` polling a real Kamailio and probing it, with its health points, into a real
/// InfluxDB 1.6: every stored point of the kamailio, probe and srewatch buckets carries the
/// global tags next to its own.
#[test]
fn run_kamailio_probe_and_health_points_in_influxdb_carry_the_global_tags() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Options::default());
    let influx = Influx::start(dir.path(), &["kamailio", "probe", "srewatch"]);
    let cfg = dir.path().join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "{TAGS}\n[service]\ningest = false\nhealth_interval = \"1s\"\n\n\
             [influxdb]\nurl = \"{url}\"\ntoken_env = \"SREWATCH_TAGS_TEST_TOKEN_UNSET\"\n\
             spool_dir = \"{spool}\"\nbatch_max_delay = \"20ms\"\nretry_base = \"50ms\"\nretry_max = \"200ms\"\n\n\
             [[kamailio]]\nhostname = \"k1\"\naddress = \"{rpc}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nmax_backoff = \"1s\"\n\n\
             [[probe.target]]\nname = \"cp1\"\nuri = \"{sip}\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\n",
            url = influx.url(),
            spool = dir.path().join("spool").display(),
            rpc = k.jsonrpc_url(),
            sip = k.sip_uri()
        ),
    )
    .unwrap();
    let mut run = Run::ready(dir.path(), &cfg, &[], &[]);
    std::thread::sleep(Duration::from_millis(2500));
    run.stop();

    let want_global = [("node", "em-2"), ("site", "paris 1")];
    // The tag each bucket's points carry of their own.
    for (db, own, value) in [
        ("kamailio", "hostname", "k1"),
        ("probe", "target", "cp1"),
        ("srewatch", "host", ""),
    ] {
        let points = influx.points(db);
        assert!(!points.is_empty(), "no point in {db}");
        for (m, tags, t) in points.keys() {
            for (k, v) in want_global {
                assert_eq!(
                    tags.get(k).map(String::as_str),
                    Some(v),
                    "{db}: {m} {tags:?} at {t}"
                );
            }
            if !value.is_empty() && tags.contains_key(own) {
                assert_eq!(tags[own], value, "{db}: {m} {tags:?} at {t}");
            }
        }
        assert!(
            points.keys().any(|(_, tags, _)| tags.contains_key(own)),
            "{db}: no point with its own tag {own}"
        );
    }
}

/// A global tag named like a tag of srewatch's own points is refused by `config check`, naming
/// the key and its line.
#[test]
fn config_check_refuses_a_global_tag_that_collides_with_a_point_tag() {
    let dir = util::tempdir();
    let cfg = dir.path().join("s.toml");
    std::fs::write(
        &cfg,
        "[global_tags]\nsite = \"paris\"\nhostname = \"em1\"\nnode = \"\"\n",
    )
    .unwrap();
    let (code, text) = util::config_check(&cfg);
    assert_eq!(code, Some(1), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "{}:3: global_tags.hostname: \"hostname\" is a tag of srewatch's own points \
                 (hostname, host, target, role, file, group, stat, method, kind, alarm): \
                 choose another name",
                cfg.display()
            ),
            format!(
                "{}:4: global_tags.node: a tag value cannot be empty (line protocol has no \
                 empty tag values)",
                cfg.display()
            ),
        ],
        "{text}"
    );
}

/// `srewatch probe run` reads the same configuration: its points to stdout carry the tags.
#[test]
fn probe_run_points_carry_the_global_tags() {
    let dir = util::tempdir();
    let k = Kamailio::start(dir.path(), Options::default());
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "{TAGS}\n[[probe.target]]\nname = \"cp1\"\nuri = \"{}\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\n",
            k.sip_uri()
        ),
    )
    .unwrap();
    let text = util::run_ok(
        srewatch()
            .args(["probe", "run", "--duration", "1500ms", "--config"])
            .arg(&cfg),
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("probe,target=cp1,")),
        "{text}"
    );
    for l in &lines {
        let at = series_end(l);
        assert!(l[..at].ends_with(SUFFIX), "{l}");
    }
}

//! `srewatch ingest` on real files: the binary runs on a temporary directory, the files are
//! rewritten the way the platform does (one minute later the values shift right, a new v0,
//! v1 revised), with each refresh mode the follower must handle, and the exact line protocol
//! that comes out is asserted step by step.

use crate::util::{self, srewatch, tempdir, Proc};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T0: i64 = 1652193060;
const T1: i64 = T0 + 60;
const T2: i64 = T0 + 120;

/// (bucket, line) pairs of a line-protocol output with `# bucket: NAME` headers.
fn parse(out: &str) -> Vec<(String, String)> {
    let mut bucket = String::new();
    let mut v = Vec::new();
    for l in out.lines() {
        if let Some(b) = l.strip_prefix("# bucket: ") {
            bucket = b.to_string();
        } else if !l.is_empty() {
            v.push((bucket.clone(), l.to_string()));
        }
    }
    v
}

fn set(lines: &[(&str, String)]) -> BTreeSet<(String, String)> {
    lines
        .iter()
        .map(|(b, l)| (b.to_string(), l.clone()))
        .collect()
}

/// Waits until `out` holds `seen + want.len()` points, then a little longer to catch extras,
/// and returns the new points.
fn step(out: &Path, seen: &mut usize, want: &[(&str, String)], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let all = loop {
        let all = parse(&std::fs::read_to_string(out).unwrap_or_default());
        if all.len() >= *seen + want.len() {
            std::thread::sleep(Duration::from_millis(400));
            break parse(&std::fs::read_to_string(out).unwrap_or_default());
        }
        assert!(
            Instant::now() < deadline,
            "{what}: timed out; output so far:\n{}",
            std::fs::read_to_string(out).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let new: BTreeSet<_> = all[*seen..].iter().cloned().collect();
    assert_eq!(
        all.len() - *seen,
        want.len(),
        "{what}: number of new points; new: {new:#?}"
    );
    assert_eq!(new, set(want), "{what}");
    *seen = all.len();
}

fn c(meas: &str, host: &str, v: i64, ts: i64) -> (&'static str, String) {
    (
        "counters",
        format!("{meas},hostname={host} value={v}i {ts}"),
    )
}

/// A joined samples point: `value` (the average, here `elapsed / occ`, exact in these tests),
/// `elapsed_time`, `occurrences`.
fn joined(meas: &str, host: &str, elapsed: &str, occ: i64, ts: i64) -> (&'static str, String) {
    let avg = elapsed.parse::<f64>().unwrap() / occ as f64;
    (
        "samples",
        format!(
            "{meas},hostname={host} value={avg},elapsed_time={elapsed},occurrences={occ}i {ts}"
        ),
    )
}

fn value(meas: &str, host: &str, v: &str, ts: i64) -> (&'static str, String) {
    ("samples", format!("{meas},hostname={host} value={v} {ts}"))
}

fn roll_c(meas: &str, sum: i64, hosts: i64, ts: i64) -> (&'static str, String) {
    (
        "rollups",
        format!("{meas},file=counters sum={sum}i,hosts={hosts}i {ts}"),
    )
}

/// A samples rollup of one host: every quantile is the host's own average.
fn roll_s1(meas: &str, occ: Option<i64>, avg: &str, ts: i64) -> (&'static str, String) {
    let occ = occ.unwrap_or(0);
    ("rollups", format!("{meas},file=samples hosts=1i,occurrences={occ}i,mean={avg},p50={avg},p90={avg},p99={avg},max={avg} {ts}"))
}

/// `srewatch ingest` following `dir/sre` (50 ms debounce, 1 s rescan, then `ingest_keys`),
/// writing line protocol to `dir/out.lp`: the data directory, the output file, the process.
fn follow(dir: &Path, ingest_keys: &str) -> (PathBuf, PathBuf, Proc) {
    let data = dir.join("sre");
    std::fs::create_dir(&data).unwrap();
    let cfg = dir.join("srewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ingest]\ndir = \"{}\"\ndebounce = \"50ms\"\nrescan_interval = \"1s\"\nrollups = \"settled\"\n{ingest_keys}",
            data.display()
        ),
    )
    .unwrap();
    let out = dir.join("out.lp");
    let mut cmd = srewatch();
    cmd.arg("ingest")
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(&out);
    let p = Proc::spawn("srewatch ingest", cmd, &dir.join("srewatch.log"));
    (data, out, p)
}

#[test]
fn follows_platform_rewrites_exactly() {
    let dir = tempdir();
    let (data, out, mut p) = follow(
        dir.path(),
        "quiet_time = \"1s\"\njoin_wait = \"5s\"\nsettle_time = \"1m\"\n",
    );
    let counters = data.join("counters.csv");
    let samples = data.join("samples.csv");
    let mut seen = 0;
    let (req, prof, cpu) = ("request.INVITE", "profiling.cp.INVITE", "system.cpu");

    // Minute T0: the files appear (the follower was waiting for them).
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(
        &counters,
        format!("cp1,{req},2022-05-10T16:31:00,{T0},4,10,12\ncp2,{req},2022-05-10T16:31:00,{T0},1,2,3\ncp1,{prof},2022-05-10T16:31:00,{T0},4,10,12\n"),
    )
    .unwrap();
    step(
        &out,
        &mut seen,
        &[
            c(req, "cp1", 4, T0),
            c(req, "cp1", 10, T0 - 60),
            c(req, "cp1", 12, T0 - 120),
            c(req, "cp2", 1, T0),
            c(req, "cp2", 2, T0 - 60),
            c(req, "cp2", 3, T0 - 120),
            c(prof, "cp1", 4, T0),
            c(prof, "cp1", 10, T0 - 60),
            c(prof, "cp1", 12, T0 - 120),
            roll_c(req, 15, 2, T0 - 120),
            roll_c(req, 12, 2, T0 - 60),
            roll_c(prof, 12, 1, T0 - 120),
            roll_c(prof, 10, 1, T0 - 60),
        ],
        "T0 counters",
    );
    std::fs::write(&samples, format!("cp1,{prof},2022-05-10T16:31:05,{},0.5,0.25,0.125\ncp1,{cpu},2022-05-10T16:31:05,{},11.5,,12\n", T0 + 5, T0 + 5))
        .unwrap();
    step(
        &out,
        &mut seen,
        &[
            joined(prof, "cp1", "2", 4, T0),
            joined(prof, "cp1", "2.5", 10, T0 - 60),
            joined(prof, "cp1", "1.5", 12, T0 - 120),
            value(cpu, "cp1", "11.5", T0),
            value(cpu, "cp1", "12", T0 - 120),
            roll_s1(prof, Some(10), "0.25", T0 - 60),
            roll_s1(prof, Some(12), "0.125", T0 - 120),
            roll_s1(cpu, None, "12", T0 - 120),
        ],
        "T0 samples",
    );

    // Minute T1: counters.csv replaced by rename; v0 of T0 revised 4 -> 6 for cp1.
    util::replace(
        &counters,
        &format!(
            "cp1,{req},2022-05-10T16:32:00,{T1},3,6,10,12\ncp2,{req},2022-05-10T16:32:00,{T1},2,1,2,3\ncp1,{prof},2022-05-10T16:32:00,{T1},3,6,10,12\n"
        ),
    );
    step(
        &out,
        &mut seen,
        &[
            c(req, "cp1", 3, T1),
            c(req, "cp1", 6, T0),
            c(req, "cp2", 2, T1),
            c(prof, "cp1", 3, T1),
            c(prof, "cp1", 6, T0),
            // The samples point of T0 follows its revised occurrences.
            joined(prof, "cp1", "3", 6, T0),
            roll_c(req, 7, 2, T0),
            roll_c(prof, 6, 1, T0),
        ],
        "T1 counters (rename over)",
    );
    // samples.csv truncated then written; the T0 average revised 0.5 -> 0.75.
    std::fs::write(
        &samples,
        format!("cp1,{prof},2022-05-10T16:32:05,{},1,0.75,0.25,0.125\ncp1,{cpu},2022-05-10T16:32:05,{},13,11.5,,12\n", T1 + 5, T1 + 5),
    )
    .unwrap();
    step(
        &out,
        &mut seen,
        &[
            joined(prof, "cp1", "3", 3, T1),
            joined(prof, "cp1", "4.5", 6, T0),
            value(cpu, "cp1", "13", T1),
            roll_s1(prof, Some(6), "0.75", T0),
            roll_s1(cpu, None, "11.5", T0),
        ],
        "T1 samples (truncate then write)",
    );

    // Minute T2: counters.csv deleted, then recreated.
    std::fs::remove_file(&counters).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(
        &counters,
        format!(
            "cp1,{req},2022-05-10T16:33:00,{T2},5,3,6,10,12\ncp2,{req},2022-05-10T16:33:00,{T2},7,2,1,2,3\ncp1,{prof},2022-05-10T16:33:00,{T2},5,4,6,10,12\n"
        ),
    )
    .unwrap();
    step(
        &out,
        &mut seen,
        &[
            c(req, "cp1", 5, T2),
            c(req, "cp2", 7, T2),
            c(prof, "cp1", 5, T2),
            c(prof, "cp1", 4, T1),
            joined(prof, "cp1", "4", 4, T1),
            roll_c(req, 5, 2, T1),
            roll_c(prof, 4, 1, T1),
        ],
        "T2 counters (delete and recreate)",
    );
    util::replace(
        &samples,
        &format!("cp1,{prof},2022-05-10T16:33:05,{},2,1,0.75,0.25,0.125\ncp1,{cpu},2022-05-10T16:33:05,{},14,13,11.5,,12\n", T2 + 5, T2 + 5),
    );
    step(
        &out,
        &mut seen,
        &[
            joined(prof, "cp1", "10", 5, T2),
            value(cpu, "cp1", "14", T2),
            roll_s1(prof, Some(4), "1", T1),
            roll_s1(cpu, None, "13", T1),
        ],
        "T2 samples (rename over)",
    );

    // Still minute T2: v0 of cp2 revised in place; same size, first line unchanged.
    {
        use std::io::{Seek, SeekFrom, Write};
        let text = std::fs::read_to_string(&counters).unwrap();
        let at = text
            .find(&format!("cp2,{req},2022-05-10T16:33:00,{T2},7"))
            .unwrap()
            + format!("cp2,{req},2022-05-10T16:33:00,{T2},").len();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&counters)
            .unwrap();
        f.seek(SeekFrom::Start(at as u64)).unwrap();
        f.write_all(b"8").unwrap();
    }
    step(
        &out,
        &mut seen,
        &[c(req, "cp2", 8, T2)],
        "T2 counters (in place, same size, first line unchanged)",
    );

    // A row written in two parts without a final newline: never half a row; the whole row once
    // the file has been quiet for quiet_time.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&samples)
            .unwrap();
        f.write_all(format!("cp2,{cpu},2022-05-10T16:33:05,{},9", T2 + 5).as_bytes())
            .unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        f.write_all(b".5").unwrap();
        // The file has ended in a newline before: a last line without one is a row still being
        // written, even after the quiet time (1 s here); its newline completes it.
        std::thread::sleep(Duration::from_millis(2500));
        let n = parse(&std::fs::read_to_string(&out).unwrap_or_default()).len();
        assert_eq!(n, seen, "nothing from a last line without its newline");
        f.write_all(b"\n").unwrap();
    }
    step(
        &out,
        &mut seen,
        &[value(cpu, "cp2", "9.5", T2)],
        "partial last row completed by its newline",
    );

    let status = p
        .terminate(Duration::from_secs(10))
        .expect("srewatch exits on SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        parse(&std::fs::read_to_string(&out).unwrap()).len(),
        seen,
        "nothing after the last step"
    );
}

#[test]
fn once_writes_exact_points_and_rollups() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("counters.csv"),
        format!("cp1,\"resp,503\",x,{T0},2,1\r\ncp2,\"resp,503\",x,{T0},,3\ncp1,bad,x,{T0},1,-2\n"),
    )
    .unwrap();
    // Unaligned time, and a last row without a newline (complete: --once reads what is there).
    std::fs::write(
        dir.path().join("samples.csv"),
        format!(
            "cp1,\"resp,503\",x,{},0.5,0.25\ncp1,accounting.openCalls,x,{},3800.000",
            T0 + 21,
            T0 + 21
        ),
    )
    .unwrap();
    let out = dir.path().join("out.lp");
    let st = srewatch()
        .args(["ingest", "--once", "--config", "/dev/null", "--dir"])
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let m = T0 - 60;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!(
            "# bucket: counters\n\
resp\\,503,hostname=cp1 value=2i {T0}\n\
resp\\,503,hostname=cp1 value=1i {m}\n\
resp\\,503,hostname=cp2 value=0i {T0}\n\
resp\\,503,hostname=cp2 value=3i {m}\n\
# bucket: samples\n\
resp\\,503,hostname=cp1 value=0.5,elapsed_time=1,occurrences=2i {T0}\n\
resp\\,503,hostname=cp1 value=0.25,elapsed_time=0.25,occurrences=1i {m}\n\
accounting.openCalls,hostname=cp1 value=3800 {T0}\n\
# bucket: rollups\n\
resp\\,503,file=counters sum=4i,hosts=2i,settled=true {m}\n\
resp\\,503,file=counters sum=2i,hosts=2i,settled=true {T0}\n\
resp\\,503,file=samples hosts=1i,occurrences=1i,mean=0.25,p50=0.25,p90=0.25,p99=0.25,max=0.25,settled=true {m}\n\
resp\\,503,file=samples hosts=1i,occurrences=2i,mean=0.5,p50=0.5,p90=0.5,p99=0.5,max=0.5,settled=true {T0}\n\
accounting.openCalls,file=samples hosts=1i,occurrences=0i,mean=3800,p50=3800,p90=3800,p99=3800,max=3800,settled=true {T0}\n"
        )
    );
}

#[test]
fn fixtures_run_like_the_readme() {
    let out = tempdir();
    let file = out.path().join("out.lp");
    let st = srewatch()
        .args(["ingest", "--once", "--config", "/dev/null", "--dir"])
        .arg(crate::util::fixtures().join("csv"))
        .arg("--out")
        .arg(&file)
        .status()
        .unwrap();
    assert!(st.success());
    let lines = parse(&std::fs::read_to_string(&file).unwrap());
    let has = |b: &str, l: &str| lines.iter().any(|(x, y)| x == b && y == l);
    // The guide's rows (section 4.5): counters.csv at 16:31, samples.csv at 16:32:01.
    assert!(has("counters", "profiling.cp.CAC\\ test.Extract\\ Contacts,hostname=sre32-cp2-testbed value=12i 1652193060"));
    assert!(has("counters", "profiling.cp.CAC\\ test.Extract\\ Contacts,hostname=sre32-cp2-testbed value=11i 1652193000"));
    assert!(has(
        "counters",
        "response.503,hostname=sre32-cp2-testbed value=0i 1652193060"
    ));
    assert!(has(
        "counters",
        "response.http.<GET>/api\\,\\ v2,hostname=sre32-cp1-testbed value=4i 1652193060"
    ));
    // samples v1 (minute 16:31) joins counters v0: 0.121 x 12.
    assert!(has("samples", &format!("profiling.cp.CAC\\ test.Extract\\ Contacts,hostname=sre32-cp2-testbed value=0.121,elapsed_time={},occurrences=12i 1652193060", 0.121f64 * 12.0)));
    // samples v0 (minute 16:32) has no counters value in these files: written as `value`.
    assert!(has("samples", "profiling.cp.CAC\\ test.Extract\\ Contacts,hostname=sre32-cp2-testbed value=0.113 1652193120"));
    assert!(has(
        "samples",
        "system.cpu,hostname=sre32-cp1-testbed value=11718.333 1652193120"
    ));
    assert!(has(
        "samples",
        "system.disk./boot/efi,hostname=sre32-em2-testbed value=0 1652193120"
    ));
    let n = |b: &str| lines.iter().filter(|(x, _)| x == b).count();
    assert_eq!((n("counters"), n("samples"), n("rollups")), (280, 461, 504));
}

#[test]
fn bad_config_is_refused_with_file_and_line() {
    let dir = tempdir();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[ingest]\ndir = \"/tmp\"\nrescan_interval = \"1ms\"\n",
    )
    .unwrap();
    let out = srewatch()
        .args(["ingest", "--once", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:3: ingest.rescan_interval: must be between 100ms and 1h, got 1ms",
            cfg.display()
        )),
        "{err}"
    );
}

#[test]
fn every_ingest_key_is_accepted_by_config_check() {
    let dir = tempdir();
    let cfg = dir.path().join("full.toml");
    std::fs::write(
        &cfg,
        "[ingest]\ndir = \"/var/log/sre\"\ncounters_file = \"counters.csv\"\nsamples_file = \"samples.csv\"\n\
value_order = \"oldest_first\"\njoin_wait = \"45s\"\nsettle_time = \"2m\"\nquiet_time = \"3s\"\nfuture_tolerance = \"10m\"\n\
rescan_interval = \"5s\"\ndebounce = \"100ms\"\ncounters_bucket = \"c\"\nsamples_bucket = \"s\"\nrollups_bucket = \"r\"\n",
    )
    .unwrap();
    let out = srewatch()
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: OK\n", cfg.display())
    );
    assert!(out.status.success());
    std::fs::write(&cfg, "[ingest]\nvalue_order = \"sideways\"\n").unwrap();
    let out = srewatch()
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("{}:2: unknown variant `sideways`", cfg.display())),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1));
}

/// counters.csv rewritten in place in two halves 3 s apart (longer than
/// the default 2 s quiet time), the cut two digits into a value (`19` of 1930). Nothing the
/// sink receives may hold a value the finished files do not: not even briefly.
#[test]
fn half_written_file_never_reaches_the_sink() {
    let dir = tempdir();
    let (data, out, _p) = follow(dir.path(), "settle_time = \"14m\"\n");
    let counters = data.join("counters.csv");
    let req = "request.INVITE";
    let file = |t: i64, v: &[[i64; 3]; 4]| -> String {
        (0..4)
            .map(|h| {
                format!(
                    "cp{h},{req},2022-05-10T16:31:00,{t},{},{},{}\n",
                    v[h][0], v[h][1], v[h][2]
                )
            })
            .collect()
    };
    let first = [[1800, 1700, 1600], [5, 6, 7], [8, 9, 10], [11, 12, 13]];
    let second = [[900, 1810, 1700], [3, 6, 6], [4, 9, 9], [1930, 12, 12]];
    std::thread::sleep(Duration::from_millis(300));
    util::replace(&counters, &file(T0, &first));
    let mut seen = 0;
    let want1: Vec<_> = (0..4)
        .flat_map(|h| (0..3).map(move |i| (h, i)))
        .map(|(h, i)| c(req, &format!("cp{h}"), first[h][i], T0 - 60 * i as i64))
        .collect();
    step(&out, &mut seen, &want1, "first rewrite");

    // In place: truncate, the first half up to two digits into cp3's 1930, 3 s, the rest.
    let text = file(T1, &second);
    let cut = text.find(",1930,").unwrap() + 3;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&counters)
            .unwrap();
        f.write_all(&text.as_bytes()[..cut]).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        f.write_all(&text.as_bytes()[cut..]).unwrap();
    }
    let mut want2 = Vec::new();
    for h in 0..4 {
        let host = format!("cp{h}");
        want2.push(c(req, &host, second[h][0], T1));
        for i in 1..3 {
            if second[h][i] != first[h][i - 1] {
                want2.push(c(req, &host, second[h][i], T1 - 60 * i as i64));
            }
        }
    }
    step(&out, &mut seen, &want2, "second rewrite, once complete");
    // Everything the sink received: each value is one the finished files held for its point.
    let all = parse(&std::fs::read_to_string(&out).unwrap());
    let good: BTreeSet<_> = set(&want1).union(&set(&want2)).cloned().collect();
    for p in &all {
        assert!(
            good.contains(p),
            "a value no finished file held was written: {p:?}"
        );
    }
}

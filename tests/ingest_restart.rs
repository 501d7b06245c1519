//! Restarts of `srewatch run` (the real binary) between and in the middle of rewrites, with a real
//! VictoriaMetrics behind a recording forwarder: after a restart only points that are new or not
//! yet accepted are sent (the checkpoint in the state directory), and nothing is ever lost,
//! whether srewatch stopped cleanly or was killed (SIGKILL) at a random instant, with the server
//! up or down.

use crate::service::{
    base_minute, counters_in, files_only, influx_section, recorded_files_only, wait_counters, Grid,
    Recorder, Run,
};
use crate::util::{self, victoria::Victoria};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

const HOSTS: usize = 40;
const STATS: usize = 25;
/// Rows per file and points per minute of the counters bucket.
const ROWS: usize = HOSTS * STATS;
/// Counters points of the file's 15-minute window.
const WINDOW: usize = ROWS * 15;

/// Value of (host, stat, minute): stable across rewrites, so a point sent twice is a re-send.
fn value(h: usize, s: usize, m: i64) -> i64 {
    (m % 10_000) * 10_000 + (h * 100 + s) as i64
}

const GRID: Grid = Grid {
    hosts: HOSTS,
    stats: STATS,
    value,
};

/// What the server accepted: (bucket, line) → times accepted.
fn arrivals(rec: &Recorder) -> HashMap<(String, String), usize> {
    let mut out = HashMap::new();
    for (path, body) in rec.accepted.lock().unwrap().iter() {
        let bucket = path
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("db="))
            .unwrap_or("")
            .to_string();
        for line in body.lines().filter(|l| !l.is_empty()) {
            *out.entry((bucket.clone(), line.to_string())).or_insert(0) += 1;
        }
    }
    out
}

/// Distinct counters points accepted.
fn counters_accepted(rec: &Recorder) -> usize {
    arrivals(rec)
        .keys()
        .filter(|(b, _)| b == "counters")
        .count()
}

/// Points accepted more than once (every bucket): the re-sends, since no value ever changes.
fn resent(rec: &Recorder) -> usize {
    arrivals(rec).values().map(|n| n - 1).sum()
}

struct Setup {
    dir: tempfile::TempDir,
    vm: Victoria,
    rec: Recorder,
    file: std::path::PathBuf,
    cfg: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = util::tempdir();
    let spool = dir.path().join("spool");
    let vm = Victoria::start(dir.path());
    let (rec, file, cfg) = recorded_files_only(dir.path(), &vm, &spool);
    Setup {
        dir,
        vm,
        rec,
        file,
        cfg,
    }
}

#[test]
fn clean_restart_between_rewrites_resends_under_one_percent() {
    let s = setup();
    let m0 = base_minute();
    let mut run = Run::ready(s.dir.path(), &s.cfg, &[], &[]);
    util::replace(&s.file, &GRID.counters_csv(m0));
    util::wait_until(Duration::from_secs(30), "the first window", || {
        counters_accepted(&s.rec) >= WINDOW
    });
    util::replace(&s.file, &GRID.counters_csv(m0 + 1));
    util::wait_until(Duration::from_secs(30), "the second rewrite", || {
        counters_accepted(&s.rec) >= WINDOW + ROWS
    });
    run.stop();
    let before = resent(&s.rec);
    assert_eq!(before, 0, "re-sends before any restart");
    // Restarted between two rewrites: it reads the unchanged file again, then the next rewrite.
    let mut run = Run::ready(s.dir.path(), &s.cfg, &[], &[]);
    util::replace(&s.file, &GRID.counters_csv(m0 + 2));
    util::wait_until(
        Duration::from_secs(30),
        "the rewrite after the restart",
        || counters_accepted(&s.rec) >= WINDOW + 2 * ROWS,
    );
    run.stop();
    let again = resent(&s.rec);
    assert!(
        again * 100 < WINDOW,
        "{again} points re-sent after a clean restart; the bound is 1% of the window's {WINDOW}"
    );
    assert_eq!(counters_in(&s.vm), GRID.expected(m0, m0 + 2));
    assert!(
        run.log().contains("Checkpoint loaded"),
        "log:\n{}",
        run.log()
    );
    assert!(
        run.log().contains("Table state restored"),
        "log:\n{}",
        run.log()
    );
    // A corrupt checkpoint and table state: set aside with a warning, and the window is sent
    // again (as before there was either), nothing lost.
    for f in ["ingest.checkpoint", "ingest.table"] {
        let path = s.dir.path().join("spool/state").join(f);
        let mut data = std::fs::read(&path).unwrap();
        data[20] ^= 0x40;
        std::fs::write(&path, data).unwrap();
    }
    let mut run = Run::ready(s.dir.path(), &s.cfg, &[], &[]);
    util::wait_until(Duration::from_secs(30), "the window sent again", || {
        resent(&s.rec) >= again + WINDOW
    });
    run.stop();
    assert!(
        run.log().contains("Corrupt checkpoint set aside")
            && run.log().contains("Corrupt table state set aside"),
        "log:\n{}",
        run.log()
    );
    assert_eq!(counters_in(&s.vm), GRID.expected(m0, m0 + 2));
}

/// A small deterministic generator (xorshift), seeded from the clock and printed, so a failing
/// run can be replayed with `SREWATCH_TEST_SEED`.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("SREWATCH_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("SREWATCH_TEST_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn kill_9_at_random_points_of_rewrites_loses_nothing_and_resends_little() {
    let mut s = setup();
    let mut rng = Rng::new();
    let m0 = base_minute();
    let mut run = Run::ready(s.dir.path(), &s.cfg, &[], &[]);
    util::replace(&s.file, &GRID.counters_csv(m0));
    util::wait_until(Duration::from_secs(30), "the first window", || {
        counters_accepted(&s.rec) >= WINDOW
    });
    // The server's answer reaches the recorder before srewatch records it: wait for the
    // checkpoint, or a kill right now would (rightly) send the window again.
    let ck = s.dir.path().join("spool/state/ingest.checkpoint");
    util::wait_until(Duration::from_secs(10), "the checkpoint", || ck.exists());
    // Six rewrites, each followed by kill -9 after 0-400 ms (before, during or after its
    // ingest and delivery); the server is down for rewrites 2 to 4.
    const REWRITES: i64 = 6;
    for k in 1..=REWRITES {
        if k == 2 {
            s.vm.stop();
        }
        if k == 5 {
            s.vm.restart();
        }
        util::replace(&s.file, &GRID.counters_csv(m0 + k));
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        run.proc.kill();
        run = Run::ready(s.dir.path(), &s.cfg, &[], &[]);
    }
    let want = GRID.expected(m0, m0 + REWRITES);
    wait_counters(&s.vm, want.len(), Duration::from_secs(40));
    run.stop();
    assert_eq!(counters_in(&s.vm), want, "lost or wrong points");
    // A kill can only cost what was not yet accepted or spooled: at most the points of the
    // rewrite under way (one minute per series, its rollups) per kill, never the window.
    let again = resent(&s.rec);
    let mut per_minute: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for ((b, line), n) in arrivals(&s.rec) {
        let t: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        *per_minute.entry((b, t / 60 - m0)).or_default() += n - 1;
    }
    per_minute.retain(|_, n| *n > 0);
    let bound = REWRITES as usize * (ROWS + 2 * STATS);
    assert!(
        again <= bound,
        "{again} points re-sent over {REWRITES} kills; at most {bound} (the window is {WINDOW}); \
         re-sent per (bucket, minute - m0): {per_minute:?}"
    );
}

/// The last value of `field` written for each minute of `stat` of Kamailio target `host`, as
/// the server accepted them in order (a later write of a minute replaces the earlier one, as
/// in InfluxDB).
fn kamailio_minutes(rec: &Recorder, host: &str, stat: &str, field: &str) -> BTreeMap<i64, i64> {
    let series = format!("kamailio_counter,hostname={host},group=");
    let tag = format!(",stat={stat} ");
    let mut out = BTreeMap::new();
    for (path, body) in rec.accepted.lock().unwrap().iter() {
        if !path.contains("db=kamailio") {
            continue;
        }
        for line in body.lines() {
            if !line.starts_with(&series) || !line.contains(&tag) {
                continue;
            }
            let mut parts = line.rsplitn(3, ' ');
            let t: i64 = parts.next().unwrap().parse().unwrap();
            let fields = parts.next().unwrap();
            if let Some(v) = fields
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{field}=")))
            {
                out.insert(t, v.trim_end_matches('i').parse().unwrap());
            }
        }
    }
    out
}

/// `up=1` points of Kamailio target `host` accepted so far.
fn ups(rec: &Recorder, host: &str) -> usize {
    let want = format!("kamailio_up,hostname={host} up=1i");
    rec.accepted
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b.lines().filter(|l| l.starts_with(&want)).count())
        .sum()
}

#[test]
fn kamailio_minute_keeps_its_full_increase_across_a_restart() {
    use crate::util::kamailio::Kamailio;
    let dir = util::tempdir();
    let k = Kamailio::start(&dir.path().join("cp"), Default::default());
    let vm = Victoria::start(dir.path());
    let rec = Recorder::start(vm.addr());
    let cfg = dir.path().join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}gzip = false\n[service]\ningest = false\nprobe = false\nhealth_interval = \"1h\"\n\
             [[kamailio]]\nhostname = \"cp1\"\naddress = \"{}\"\ninterval = \"300ms\"\ntimeout = \"250ms\"\n",
            influx_section(&vm, &dir.path().join("spool")).replace(&vm.url(), &rec.url()),
            k.jsonrpc_url()
        ),
    )
    .unwrap();
    // Both runs in one minute: start early enough in it.
    let sec = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if sec > 40 {
        std::thread::sleep(Duration::from_secs(61 - sec));
    }
    let polls_after = |n: usize, what: &str| {
        util::wait_until(Duration::from_secs(10), what, || ups(&rec, "cp1") >= n);
    };
    let mut run = Run::ready(dir.path(), &cfg, &[], &[]);
    polls_after(1, "the first poll (baseline)");
    for _ in 0..5 {
        assert_eq!(util::sipsak_status(&k.sip_uri()), "200");
    }
    let n = ups(&rec, "cp1");
    polls_after(n + 2, "a poll after the first OPTIONS");
    run.stop();
    // Restarted: OPTIONS right away (before its first poll), then a poll, then a clean stop.
    let n = ups(&rec, "cp1");
    let mut run = Run::ready(dir.path(), &cfg, &[], &[]);
    for _ in 0..7 {
        assert_eq!(util::sipsak_status(&k.sip_uri()), "200");
    }
    polls_after(n + 2, "a poll after the restart");
    run.stop();
    assert_eq!(k.kamcmd_stat("core:rcv_requests_options"), 12);
    let minutes = kamailio_minutes(&rec, "cp1", "core:rcv_requests_options", "increase");
    assert_eq!(
        minutes.values().sum::<i64>(),
        12,
        "increase per minute (last write of each): {minutes:?}"
    );
}

#[test]
fn points_the_spool_could_not_take_are_sent_again_after_a_restart() {
    let dir = util::tempdir();
    // The spool is unusable (a regular file in its place) and the server down: the batches are
    // dropped (counted). The checkpoint (in its own state directory) must not record them.
    let spool = dir.path().join("spool");
    std::fs::write(&spool, b"not a directory").unwrap();
    let state = dir.path().join("state");
    let mut vm = Victoria::stopped(dir.path());
    let (file, cfg) = files_only(
        dir.path(),
        &format!(
            "{}state_dir = \"{}\"\n",
            influx_section(&vm, &spool),
            state.display()
        ),
    );
    let m0 = base_minute();
    let mut run = Run::ready(dir.path(), &cfg, &[], &[]);
    util::replace(&file, &GRID.counters_csv(m0));
    let ck = state.join("ingest.checkpoint");
    util::wait_until(Duration::from_secs(10), "the checkpoint", || ck.exists());
    run.stop();
    vm.restart();
    let mut run = Run::ready(dir.path(), &cfg, &[], &[]);
    let want = GRID.expected(m0, m0);
    util::wait_until(
        Duration::from_secs(20),
        "the window after the restart",
        || counters_in(&vm).len() >= want.len(),
    );
    run.stop();
    assert_eq!(counters_in(&vm), want);
}

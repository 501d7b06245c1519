//! Tests of the follower: snapshots under every way the platform may refresh a file.

use super::fingerprint::{content_hash, SPLIT_READ};
use super::read::{read_hashed, read_into, read_split, READ_CHUNK};
use super::*;
use std::io::Write;
use std::path::Path;
use tokio::time::Instant;

fn names() -> Vec<String> {
    vec!["counters.csv".into(), "samples.csv".into()]
}

/// Operations the platform (or an operator) may do to a file.
#[derive(Debug, Clone)]
enum Op {
    /// Overwrite from offset 0 without truncating first (same or larger size).
    InPlace(Vec<u8>),
    TruncateThenWrite(Vec<u8>),
    RenameOver(Vec<u8>),
    Delete,
    AppendPartial(Vec<u8>),
    Wait(Duration),
}

fn apply(path: &Path, op: &Op, model: &mut Option<Vec<u8>>) {
    match op {
        Op::InPlace(d) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .unwrap();
            f.write_all(d).unwrap();
            let m = model.get_or_insert_with(Vec::new);
            if m.len() < d.len() {
                m.resize(d.len(), 0);
            }
            m[..d.len()].copy_from_slice(d);
        }
        Op::TruncateThenWrite(d) => {
            std::fs::write(path, d).unwrap();
            *model = Some(d.clone());
        }
        Op::RenameOver(d) => {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, d).unwrap();
            std::fs::rename(&tmp, path).unwrap();
            *model = Some(d.clone());
        }
        Op::Delete => {
            let _ = std::fs::remove_file(path);
            *model = None;
        }
        Op::AppendPartial(d) => {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .unwrap();
            f.write_all(d).unwrap();
            model.get_or_insert_with(Vec::new).extend_from_slice(d);
        }
        Op::Wait(_) => {}
    }
}

fn content(seed: u64, lines: usize, first_line_fixed: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for l in 0..lines {
        let v = if first_line_fixed && l == 0 { 0 } else { seed };
        out.extend_from_slice(format!("cp1,stat{l},t,60,{v}\n").as_bytes());
    }
    out
}

/// Random write / rename / truncate / delete / partial-append / wait sequences against a
/// simple model: after each step, the scanner yields a snapshot exactly when the file's
/// content differs from the last snapshot (or its unfinished tail has become quiet), and
/// the snapshot is the file's whole content.
#[test]
fn model_based_refreshes() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = Duration::from_secs(2);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..20 {
        let path = dir.path().join("counters.csv");
        let _ = std::fs::remove_file(&path);
        let mut sc = Scanner::new(dir.path(), &names(), quiet);
        let mut model: Option<Vec<u8>> = None;
        let mut last: Option<Vec<u8>> = None;
        let mut tail: Option<(Instant, bool)> = None; // (since, done)
        let mut now = Instant::now();
        for step in 0..40 {
            let n = (rnd() % 4 + 1) as usize;
            let op = match rnd() % 7 {
                0 => Op::InPlace(content(rnd() % 3, n, true)),
                1 => Op::TruncateThenWrite(content(rnd() % 3, n, false)),
                2 => Op::RenameOver(content(rnd() % 3, n, rnd() % 2 == 0)),
                3 => Op::Delete,
                4 => Op::AppendPartial(b"cp9,partial,t,60,1".to_vec()),
                5 => Op::Wait(Duration::from_secs(rnd() % 4)),
                _ => Op::TruncateThenWrite(Vec::new()),
            };
            apply(&path, &op, &mut model);
            if let Op::Wait(d) = op {
                now += d;
            }
            let got = sc.check(0, now, false);
            let want = match &model {
                None => None,
                Some(m) if Some(m) != last.as_ref() => {
                    last = Some(m.clone());
                    let nl = m.is_empty() || m.ends_with(b"\n");
                    tail = (!nl).then_some((now, false));
                    Some(Snapshot {
                        file: 0,
                        data: m.clone(),
                        tail_complete: nl,
                    })
                }
                Some(m) => match tail {
                    Some((since, false)) if now.duration_since(since) >= quiet => {
                        tail = Some((since, true));
                        Some(Snapshot {
                            file: 0,
                            data: m.clone(),
                            tail_complete: true,
                        })
                    }
                    _ => None,
                },
            };
            assert_eq!(got, want, "round {round} step {step} op {op:?}");
            if let Some(s) = got {
                sc.recycle(s.file, s.data);
            }
        }
    }
}

/// A rewrite is read into the buffer of the snapshot handed back (no fresh memory per
/// snapshot); a read whose content is unchanged keeps it for the next one.
#[test]
fn chunked_read_hashes_as_the_whole_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counters.csv");
    for len in [
        0,
        1,
        READ_CHUNK as usize - 1,
        READ_CHUNK as usize,
        2 * READ_CHUNK as usize + 12_345,
        SPLIT_READ - 1,
        SPLIT_READ,
        SPLIT_READ + 3 * READ_CHUNK as usize + 7,
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut buf = Vec::new();
        let h = read_hashed(&path, &mut buf, u64::MAX).unwrap();
        assert_eq!(buf, data);
        assert_eq!(h, content_hash(&data), "len {len}");
        // Again into the same buffer, and without the hash.
        let h = read_hashed(&path, &mut buf, u64::MAX).unwrap();
        assert_eq!(
            (buf.len(), h),
            (data.len(), content_hash(&data)),
            "len {len}"
        );
        let mut plain = vec![1, 2, 3];
        read_into(&path, &mut plain, u64::MAX).unwrap();
        assert!(plain == data, "len {len}");
    }
}

/// The two-thread read gives up (and the caller reads the file again in one piece) when
/// the file is not exactly as long as its metadata said: longer or shorter.
#[test]
fn a_split_read_of_a_file_of_another_length_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counters.csv");
    let data: Vec<u8> = (0..SPLIT_READ + 1001)
        .map(|i| (i * 13 % 251) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    for (len, whole) in [
        (data.len(), true),
        (data.len() - 1, false),
        (data.len() + 1, false),
        (data.len() + 4096, false),
    ] {
        let mut buf = Vec::with_capacity(len);
        let got = read_split(&f, len, &mut buf, true).unwrap();
        if whole {
            assert_eq!(got, Some(content_hash(&data)));
            assert!(buf == data);
        } else {
            assert_eq!(got, None, "len {len}");
            assert!(buf.is_empty(), "len {len}");
        }
    }
}

#[test]
fn rewrites_are_read_into_the_recycled_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counters.csv");
    let mut sc = Scanner::new(dir.path(), &names(), Duration::from_secs(1));
    let now = Instant::now();
    std::fs::write(&path, content(1, 1000, false)).unwrap();
    let first = sc.check(0, now, true).unwrap().data;
    let ptr = first.as_ptr();
    sc.recycle(0, first);
    assert_eq!(sc.check(0, now, true), None, "same content, no snapshot");
    // The other file's reads do not take this file's buffer.
    std::fs::write(dir.path().join("samples.csv"), b"").unwrap();
    let empty = sc.check(1, now, true).unwrap();
    sc.recycle(1, empty.data);
    assert_eq!(sc.check(1, now, true), None);
    std::fs::write(&path, content(2, 1000, false)).unwrap();
    let second = sc.check(0, now, true).unwrap().data;
    assert_eq!(second, content(2, 1000, false));
    assert_eq!(second.as_ptr(), ptr, "read into the recycled buffer");
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// A FIFO, then a file over the cap, then a good file: each problem is recorded once (not
/// at every check) and the good file is read. Nothing blocks on the FIFO.
#[test]
fn follow_problems_are_recorded_once_per_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counters.csv");
    mkfifo(&path);
    let mut sc = Scanner::new(dir.path(), &names(), Duration::from_secs(1)).with_max_bytes(1024);
    let now = Instant::now();
    for _ in 0..3 {
        assert_eq!(sc.check(0, now, true), None);
    }
    assert_eq!(
        sc.problems(),
        vec![(Some(FileProblem::NotRegular("fifo")), 1), (None, 0)]
    );
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, vec![b'x'; 1025]).unwrap();
    assert_eq!(sc.check(0, now, true), None);
    assert_eq!(sc.check(0, now, true), None);
    assert_eq!(
        sc.problems()[0],
        (Some(FileProblem::TooLarge { max: 1024 }), 2)
    );
    std::fs::write(&path, b"a\n").unwrap();
    assert_eq!(sc.check(0, now, true).unwrap().data, b"a\n");
    assert_eq!(sc.problems()[0], (None, 2));
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    assert_eq!(sc.check(0, now, true), None);
    assert_eq!(
        sc.problems()[0],
        (Some(FileProblem::NotRegular("directory")), 3)
    );
}

/// Out of descriptors: "too many open files", not "waiting for file".
#[test]
fn follow_problem_too_many_open_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("counters.csv"), b"a\n").unwrap();
    let mut sc = Scanner::new(dir.path(), &names(), Duration::from_secs(1));
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain rlimit calls on a local struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) };
    let low = libc::rlimit {
        rlim_cur: 128.min(old.rlim_cur),
        rlim_max: old.rlim_max,
    };
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) };
    let mut held = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        held.push(f);
    }
    let got = sc.check(0, Instant::now(), true);
    drop(held);
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
    assert_eq!(got, None);
    assert_eq!(sc.problems()[0], (Some(FileProblem::TooManyOpenFiles), 1));
    assert_eq!(sc.check(0, Instant::now(), true).unwrap().data, b"a\n");
}

#[test]
fn missing_file_then_created() {
    let dir = tempfile::tempdir().unwrap();
    let mut sc = Scanner::new(dir.path(), &names(), Duration::from_secs(1));
    let now = Instant::now();
    assert_eq!(sc.check(1, now, false), None);
    assert_eq!(sc.check(1, now, false), None);
    std::fs::write(dir.path().join("samples.csv"), b"a\n").unwrap();
    assert_eq!(
        sc.check(1, now, false),
        Some(Snapshot {
            file: 1,
            data: b"a\n".to_vec(),
            tail_complete: true
        })
    );
}

async fn next_within(f: &mut Follower, d: Duration) -> Option<Snapshot> {
    tokio::time::timeout(d, f.next()).await.ok()
}

/// Debounce and quiet time run on tokio's clock: with paused time they take no real time.
#[tokio::test(start_paused = true)]
async fn quiet_time_completes_the_last_row() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FollowConfig {
        debounce: Duration::from_millis(100),
        rescan: Duration::from_secs(3600),
        quiet: Duration::from_secs(5),
        max_bytes: u64::MAX,
    };
    std::fs::write(dir.path().join("counters.csv"), b"h,a,t,60,1\nh,b,t,60,2").unwrap();
    let mut f = Follower::new(dir.path(), &names(), cfg).unwrap();
    let s = next_within(&mut f, Duration::from_secs(1)).await.unwrap();
    assert_eq!((s.file, s.tail_complete), (0, false));
    let start = Instant::now();
    let s = next_within(&mut f, Duration::from_secs(60)).await.unwrap();
    assert!(s.tail_complete);
    assert_eq!(s.data, b"h,a,t,60,1\nh,b,t,60,2");
    assert!(Instant::now() - start >= Duration::from_secs(5));
    assert!(Instant::now() - start < Duration::from_secs(6));
    // Nothing more: the same content is not yielded again.
    assert_eq!(next_within(&mut f, Duration::from_secs(30)).await, None);
}

/// A rescan finds a change that produced no event (the watcher is bypassed by using a
/// directory the follower does not watch yet: it is created after the follower starts).
#[tokio::test(start_paused = true)]
async fn rescan_finds_a_directory_created_later() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("sre");
    let cfg = FollowConfig {
        debounce: Duration::from_millis(100),
        rescan: Duration::from_secs(10),
        quiet: Duration::from_secs(1),
        max_bytes: u64::MAX,
    };
    let mut f = Follower::new(&dir, &names(), cfg).unwrap();
    assert_eq!(next_within(&mut f, Duration::from_secs(5)).await, None);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("samples.csv"), b"x\n").unwrap();
    let s = next_within(&mut f, Duration::from_secs(11)).await.unwrap();
    assert_eq!((s.file, s.data.as_slice()), (1, &b"x\n"[..]));
}

#[tokio::test]
async fn reading_a_file_does_not_trigger_another_read() {
    // inotify reports our own open and close-after-read of the file; they must not count
    // as a change (else every read triggers the next: a core busy re-reading and hashing
    // an unchanged file).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("counters.csv"), b"h,a,t,60,1\n").unwrap();
    let cfg = FollowConfig {
        debounce: Duration::from_millis(0),
        rescan: Duration::from_secs(3600),
        quiet: Duration::from_secs(3600),
        max_bytes: u64::MAX,
    };
    let mut f = Follower::new(dir.path(), &names(), cfg).unwrap();
    let wait = Duration::from_secs(5);
    assert!(next_within(&mut f, wait).await.is_some());
    let reads = f.reads();
    assert!(next_within(&mut f, Duration::from_millis(500))
        .await
        .is_none());
    assert_eq!(f.reads(), reads, "reads while nothing changed");
    // A real change is still seen.
    std::fs::write(dir.path().join("counters.csv"), b"h,a,t,60,2\n").unwrap();
    let s = next_within(&mut f, wait).await.unwrap();
    assert_eq!(s.data, b"h,a,t,60,2\n");
}

/// Each way the platform refreshes a file is seen through notify alone (the rescan is an
/// hour away), with real time and a short debounce.
#[tokio::test]
async fn notify_sees_every_refresh_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counters.csv");
    std::fs::write(&path, b"h,a,t,60,1\nh,b,t,60,2\n").unwrap();
    let cfg = FollowConfig {
        debounce: Duration::from_millis(30),
        rescan: Duration::from_secs(3600),
        quiet: Duration::from_secs(3600),
        max_bytes: u64::MAX,
    };
    let mut f = Follower::new(dir.path(), &names(), cfg).unwrap();
    let wait = Duration::from_secs(5);
    assert_eq!(
        next_within(&mut f, wait).await.unwrap().data,
        b"h,a,t,60,1\nh,b,t,60,2\n"
    );
    let mut model = None;
    let steps: Vec<(&str, Op, &[u8])> = vec![
        (
            "same size, first line unchanged",
            Op::InPlace(b"h,a,t,60,1\nh,b,t,60,3\n".to_vec()),
            b"h,a,t,60,1\nh,b,t,60,3\n",
        ),
        (
            "larger, in place",
            Op::InPlace(b"h,a,t,60,1\nh,b,t,60,3\nh,c,t,60,4\n".to_vec()),
            b"h,a,t,60,1\nh,b,t,60,3\nh,c,t,60,4\n",
        ),
        (
            "rename over",
            Op::RenameOver(b"h,a,t,120,5\n".to_vec()),
            b"h,a,t,120,5\n",
        ),
        (
            "truncate then write",
            Op::TruncateThenWrite(b"h,a,t,180,6\n".to_vec()),
            b"h,a,t,180,6\n",
        ),
    ];
    for (what, op, want) in steps {
        apply(&path, &op, &mut model);
        let s = next_within(&mut f, wait)
            .await
            .unwrap_or_else(|| panic!("{what}: no snapshot"));
        assert_eq!(s.data, want, "{what}");
    }
    apply(&path, &Op::Delete, &mut model);
    assert_eq!(next_within(&mut f, Duration::from_millis(300)).await, None);
    apply(
        &path,
        &Op::TruncateThenWrite(b"h,a,t,240,7\n".to_vec()),
        &mut model,
    );
    assert_eq!(
        next_within(&mut f, wait).await.unwrap().data,
        b"h,a,t,240,7\n",
        "delete and recreate"
    );
}

/// The directory itself is removed and created again: the next rescan sets a new watch, and
/// later refreshes are seen through notify again.
#[tokio::test]
async fn directory_recreated_is_watched_again() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("sre");
    std::fs::create_dir(&dir).unwrap();
    let cfg = FollowConfig {
        debounce: Duration::from_millis(30),
        rescan: Duration::from_millis(300),
        quiet: Duration::from_secs(60),
        max_bytes: u64::MAX,
    };
    let mut f = Follower::new(&dir, &names(), cfg).unwrap();
    std::fs::write(dir.join("counters.csv"), b"a\n").unwrap();
    assert_eq!(
        next_within(&mut f, Duration::from_secs(5))
            .await
            .unwrap()
            .data,
        b"a\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("counters.csv"), b"b\n").unwrap();
    assert_eq!(
        next_within(&mut f, Duration::from_secs(5))
            .await
            .unwrap()
            .data,
        b"b\n"
    );
    // Give the rescan time to set the new watch, then stop relying on rescans.
    assert_eq!(next_within(&mut f, Duration::from_millis(700)).await, None);
    assert!(f.watcher.is_some());
    f.cfg.rescan = Duration::from_secs(3600);
    f.next_rescan = Instant::now() + Duration::from_secs(3600);
    std::fs::write(dir.join("counters.csv"), b"c\n").unwrap();
    assert_eq!(
        next_within(&mut f, Duration::from_secs(5))
            .await
            .unwrap()
            .data,
        b"c\n"
    );
}

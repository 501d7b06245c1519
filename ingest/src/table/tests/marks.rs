//! The lines' marks ([`Table::mark_lines`]): the series, fields and minute of each line the
//! table writes, handed to the checkpoint so that it does not parse the line protocol again.

use super::basics::T;
use super::*;
use crate::checkpoint::{bucket_seed, mark, Checkpoint};

const HOSTS: [&str; 3] = ["cp 1", "cp=2", "cp3"];

/// counters.csv at minute `t` (unix seconds): 3 hosts x 3 stats (names that need escaping), 15
/// values each, the same for a minute in every rewrite but `v1`, which is `bump` more; one stat
/// counts above `u32::MAX`.
fn counters(t: i64, bump: u64) -> String {
    let mut s = String::new();
    for h in HOSTS {
        for (j, stat) in ["calls in", "req.INVITE", "big=one"].iter().enumerate() {
            let vals: Vec<String> = (0..15)
                .map(|i| {
                    let m = (t / 60 - i) as u64;
                    let v = match j {
                        2 => 5_000_000_000 + m % 100,
                        _ => m % 1000 + j as u64 * 1000,
                    };
                    (v + if i == 1 { bump } else { 0 }).to_string()
                })
                .collect();
            s += &format!("{h},{stat},x,{t},{}\n", vals.join(","));
        }
    }
    s
}

/// samples.csv at minute `t`: a stat joined with counters, one without, one value missing.
fn samples(t: i64) -> String {
    let mut s = String::new();
    for h in HOSTS {
        s += &format!("{h},calls in,x,{},0.5,12.125,,3\n", t + 1);
        s += &format!("{h},sys cpu,x,{},0.25,0.75\n", t + 1);
    }
    s
}

/// Every counters and samples line comes with its mark, equal to what the checkpoint parses
/// from the line ([`mark`]); rollups come without. The checkpoint keeps the same lines from
/// the marks as from parsing. On both drivers (sequential, and two threads with small chunks,
/// where a first counters snapshot is not deferred).
#[test]
fn table_marks_every_counters_and_samples_line_as_the_checkpoint_parses_it() {
    for parse_ahead_bytes in [usize::MAX, 0] {
        let mut t = Table::new(TableConfig {
            settle_minutes: 0,
            chunk_bytes: 300,
            parse_ahead_bytes,
            parse_chunk_bytes: 200,
            ..TableConfig::default()
        });
        t.mark_lines(true);
        let (mut by_marks, mut by_parse) = (Checkpoint::empty("a"), Checkpoint::empty("b"));
        let mut marked = [0u64; 3];
        let mut lines = [0u64; 3];
        let mut chunks = 0;
        let mut emit = |b: Bucket, text: Bytes, n: usize, marks: &[LineMark]| {
            chunks += 1;
            let name = ["counters", "samples", "rollups"][b as usize];
            let seed = bucket_seed(name);
            let split: Vec<&[u8]> = text.split_inclusive(|&c| c == b'\n').collect();
            assert_eq!(split.len(), n);
            lines[b as usize] += n as u64;
            if b == Bucket::Rollups {
                assert!(marks.is_empty());
            } else {
                assert_eq!(marks.len(), n);
            }
            for (line, m) in split.iter().zip(marks) {
                marked[b as usize] += 1;
                assert_eq!(m.len as usize, line.len());
                let parsed = mark(seed, &line[..line.len() - 1]).unwrap();
                let s = m.series as usize;
                let from_mark = (
                    crate::checkpoint::hash64(seed, &line[..s]),
                    m.minute,
                    (crate::checkpoint::hash64(0x5eed, &line[s + 1..s + 1 + m.fields as usize])
                        >> 32) as u32,
                );
                assert_eq!(from_mark, (parsed.key, parsed.minute, parsed.value));
            }
            let a = by_marks.filter_marked(name, text.clone(), marks);
            let b = by_parse.filter(name, text);
            assert_eq!(a, b);
            by_marks.ack();
            by_parse.ack();
        };
        let now = Instant::now();
        let wall = T + 3600;
        // counters.csv, samples.csv, the counters' rewrite a minute later (values shifted, `v1`
        // revised) and the join wait over, then the same samples again (nothing new).
        let feeds = [
            (Kind::Counters, counters(T, 0)),
            (Kind::Samples, samples(T + 60)),
            (Kind::Counters, counters(T + 60, 1)),
            (Kind::Samples, samples(T + 60)),
        ];
        for (i, (kind, text)) in feeds.iter().enumerate() {
            t.ingest_at_marked(*kind, text.as_bytes(), Tail::Complete, now, wall, &mut emit);
            if i == 2 {
                t.tick_marked(now + Duration::from_secs(31), &mut emit);
            }
        }
        t.finish_marked(now + Duration::from_secs(62), &mut emit);
        let written = t.points_written();
        assert_eq!(marked, [written[0], written[1], 0]);
        assert_eq!(lines, written);
        // 9 series x 15 minutes, then 9 x 2 (the new minute and the revised `v1`).
        assert_eq!(
            written[0],
            135 + 18,
            "parse_ahead_bytes {parse_ahead_bytes}"
        );
        assert!(written[1] > 0 && written[2] > 0 && chunks > 6);
        assert_eq!(by_marks.stats, by_parse.stats);
    }
}

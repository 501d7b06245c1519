//! Live rollups ([`RollupMode::Live`]): a minute's rollups are written as soon as it has data,
//! rewritten with each revision, and written once more with `settled=true` when it settles.

use super::basics::{row, Harness, T};
use super::*;

fn live(settle_minutes: i64) -> Harness {
    Harness::new(TableConfig {
        settle_minutes,
        rollups: RollupMode::Live,
        ..TableConfig::default()
    })
}

/// The rollups lines of a snapshot's output.
fn rollups(got: &[(Bucket, String)]) -> Vec<String> {
    got.iter()
        .filter(|(b, _)| *b == Bucket::Rollups)
        .map(|(_, l)| l.clone())
        .collect()
}

#[test]
fn counters_rollup_of_the_minute_under_way_is_written_at_once_and_rewritten() {
    let mut h = live(1);
    let data = row("cp1", "request.INVITE", T, &["5"]) + &row("cp2", "request.INVITE", T, &["1"]);
    let (got, rep) = h.feed(Kind::Counters, &data);
    assert_eq!(
        rollups(&got),
        vec![format!(
            "request.INVITE,file=counters sum=6i,hosts=2i,settled=false {T}"
        )]
    );
    assert_eq!(rep.points, [2, 0, 1]);
    // Same data: nothing. A revision of the minute under way: the rollup is rewritten.
    assert!(h.lines(Kind::Counters, &data).is_empty());
    let data = row("cp1", "request.INVITE", T, &["7"]) + &row("cp2", "request.INVITE", T, &["1"]);
    assert_eq!(
        h.lines(Kind::Counters, &data),
        vec![
            format!("request.INVITE,hostname=cp1 value=7i {T}"),
            format!("request.INVITE,file=counters sum=8i,hosts=2i,settled=false {T}"),
        ]
    );
    // A minute later T settles: written once more, as settled, with its final values; T + 60
    // is written at once.
    let data = row("cp1", "request.INVITE", T + 60, &["1", "7"])
        + &row("cp2", "request.INVITE", T + 60, &["2", "1"]);
    let (got, _) = h.feed(Kind::Counters, &data);
    assert_eq!(
        rollups(&got),
        vec![
            format!("request.INVITE,file=counters sum=8i,hosts=2i,settled=true {T}"),
            format!(
                "request.INVITE,file=counters sum=3i,hosts=2i,settled=false {}",
                T + 60
            ),
        ]
    );
    // A revision of the settled minute: rewritten, still settled.
    let data = row("cp1", "request.INVITE", T + 60, &["1", "9"])
        + &row("cp2", "request.INVITE", T + 60, &["2", "1"]);
    assert_eq!(
        rollups(&h.feed(Kind::Counters, &data).0),
        vec![format!(
            "request.INVITE,file=counters sum=10i,hosts=2i,settled=true {T}"
        )]
    );
    // The end of a `--once` run settles every minute.
    assert_eq!(
        rollups(&h.finish()),
        vec![format!(
            "request.INVITE,file=counters sum=3i,hosts=2i,settled=true {}",
            T + 60
        )]
    );
}

#[test]
fn samples_rollup_is_live_and_carries_the_same_eight_fields_on_every_write() {
    let mut h = live(1);
    h.feed(Kind::Counters, &row("cp1", "profiling.cp.loop", T, &["4"]));
    let (got, _) = h.feed(
        Kind::Samples,
        &row("cp1", "profiling.cp.loop", T + 1, &["0.5"]),
    );
    assert_eq!(
        rollups(&got),
        vec![format!("profiling.cp.loop,file=samples hosts=1i,occurrences=4i,mean=0.5,p50=0.5,p90=0.5,p99=0.5,max=0.5,settled=false {T}")]
    );
    // A counters revision rewrites the joined point and, at once, the live rollup.
    let (got, _) = h.feed(Kind::Counters, &row("cp1", "profiling.cp.loop", T, &["2"]));
    assert_eq!(
        got.iter()
            .filter(|(_, l)| l.contains("file=samples"))
            .map(|(_, l)| l.clone())
            .collect::<Vec<_>>(),
        vec![format!("profiling.cp.loop,file=samples hosts=1i,occurrences=2i,mean=0.5,p50=0.5,p90=0.5,p99=0.5,max=0.5,settled=false {T}")]
    );
    assert_eq!(
        rollups(&h.finish())
            .into_iter()
            .filter(|l| l.contains("file=samples"))
            .collect::<Vec<_>>(),
        vec![format!("profiling.cp.loop,file=samples hosts=1i,occurrences=2i,mean=0.5,p50=0.5,p90=0.5,p99=0.5,max=0.5,settled=true {T}")]
    );
}

#[test]
fn a_live_minute_restored_from_the_saved_state_is_still_written_as_settled() {
    let mut h = live(1);
    h.feed(Kind::Counters, &row("cp1", "request.INVITE", T, &["5"]));
    let wall = std::time::SystemTime::now();
    let saved = h.table.save_state(h.now, wall);
    let mut h2 = live(1);
    h2.table = Table::restore(h.table.cfg.clone(), &saved, h2.now, wall).unwrap();
    assert_eq!(
        rollups(
            &h2.feed(
                Kind::Counters,
                &row("cp1", "request.INVITE", T + 60, &["1", "5"])
            )
            .0
        ),
        vec![
            format!("request.INVITE,file=counters sum=5i,hosts=1i,settled=true {T}"),
            format!(
                "request.INVITE,file=counters sum=1i,hosts=1i,settled=false {}",
                T + 60
            ),
        ]
    );
}

#[test]
fn final_mode_writes_each_minute_once_settled() {
    let mut h = Harness::new(TableConfig {
        settle_minutes: 14,
        rollups: RollupMode::Final,
        ..TableConfig::default()
    });
    let (got, _) = h.feed(Kind::Counters, &row("cp1", "request.INVITE", T, &["5"]));
    assert!(rollups(&got).is_empty(), "{got:#?}");
    assert_eq!(
        rollups(&h.finish()),
        vec![format!(
            "request.INVITE,file=counters sum=5i,hosts=1i,settled=true {T}"
        )]
    );
}

//! `cargo +nightly fuzz run csvrow` (from `ingest/`): the CSV kernel and the table on arbitrary
//! bytes. Neither may panic; every row is either good or a typed error, and rows never start
//! beyond the parsable part of the snapshot.
#![no_main]

use ingest::csvrow::{Kind, Reader};
use ingest::table::{Table, TableConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in [Kind::Counters, Kind::Samples] {
        for complete in [false, true] {
            let mut r = Reader::new(data, kind, complete);
            while let Some(row) = r.next() {
                match row {
                    Ok(row) => {
                        assert!((row.byte as usize) < data.len() && row.values().len() <= 15)
                    }
                    Err(e) => assert!((e.byte as usize) < data.len()),
                }
            }
            assert!(r.incomplete_tail() <= data.len());
        }
    }
    let mut t = Table::new(TableConfig {
        settle_minutes: 0,
        ..TableConfig::default()
    });
    let now = std::time::Instant::now();
    t.ingest(Kind::Counters, data, true, now, &mut |_, _, _| {});
    t.ingest(Kind::Samples, data, false, now, &mut |_, _, _| {});
    t.finish(now, &mut |_, _, _| {});
});

//! `RUSTC_BOOTSTRAP=1 cargo fuzz run csvrow --sanitizer none` (from `ingest/`): the CSV kernel
//! and the table on arbitrary bytes, with the checks of `ingest::table::fuzz_one`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ingest::table::fuzz_one(data));

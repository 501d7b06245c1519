//! The fuzz corpus (`ingest/fuzz/corpus/csvrow`, minimized inputs of `cargo fuzz run csvrow`)
//! replayed in the normal suite with the fuzz target's own checks.

#[test]
fn corpus_never_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/csvrow");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        crate::table::fuzz_one(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 100, "only {n} corpus inputs in {}", dir.display());
}

//! The sources say what the software does, not how it got there: no comment, doc or usage text
//! names the issue or observation that led to it (that history belongs in commit messages).

use std::path::{Path, PathBuf};

/// Where comments, docs and usage texts live.
const DIRS: &[&str] = &[
    "src",
    "ingest/src",
    "probe/src",
    "tests",
    "scripts",
    "benches",
    "examples",
    "fixtures/kamailio",
    "systemd",
    "monitoring",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Whether `line` names an issue or an observation: `issue N`, `issues N`, `observation N`,
/// `observations N` (any case), or a comment opening with `Observation:`.
fn names_history(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    let numbered = |word: &str| {
        l.match_indices(word).any(|(i, _)| {
            let before = l[..i].chars().next_back();
            let rest = l[i + word.len()..].trim_start_matches('s');
            before.is_none_or(|c| !c.is_ascii_alphanumeric())
                && rest.starts_with(' ')
                && rest[1..]
                    .trim_start_matches('#')
                    .starts_with(|c: char| c.is_ascii_digit())
        })
    };
    let opening = l
        .trim_start()
        .trim_start_matches(['/', '!', '#', '*'])
        .trim_start()
        .starts_with("observation:");
    numbered("issue") || numbered("observation") || opening
}

#[test]
fn no_issue_history_in_comments_docs_or_usage_texts() {
    // SREWATCH_SOURCE_ROOT: check another checkout of the project instead of this one.
    let root = std::env::var_os("SREWATCH_SOURCE_ROOT")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = root.as_path();
    let mut all = Vec::new();
    for d in DIRS {
        files(&root.join(d), &mut all);
    }
    let mut found = Vec::new();
    for p in all {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        // This file's own examples are the one allowed use.
        if rel == "tests/source_tidy.rs" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue; // not text
        };
        for (i, line) in text.lines().enumerate() {
            if names_history(line) {
                found.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "history in the sources:\n{}",
        found.join("\n")
    );
}

#[test]
fn history_references_are_recognised() {
    for (line, want) in [
        ("/// Issue 2, observation 8: a file ...", true),
        ("//! field for field (issue 9, observation 4).", true),
        ("    // Observation 1.", true),
        ("/// Observations 1 and 2 end to end", true),
        ("/// Observation: a FIFO leaked a thread", true),
        ("minutes on the same machine (issue 10).", true),
        ("/// Issues #4 and 5", true),
        ("// One observation per answered OPTIONS", false),
        ("/// The issue with 0 here is the clock", false),
        ("/// tissue 4", false),
        ("/// RTT histogram: observation count", false),
    ] {
        assert_eq!(names_history(line), want, "{line}");
    }
}

//! The readable core's layout, checked on the source text: the table is a façade over one
//! type per concern, and the CSV kernel is split by path with no parse-ahead API of its own.
//! Every file of `src/table*` and `src/csvrow*` but tests: at most 1,000 lines before its
//! test module, and no struct of more than 12 fields without a doc line saying why.

use std::path::{Path, PathBuf};

/// The `.rs` files under `src/` whose path starts with `prefix` (a file or a directory),
/// tests left out.
fn sources(prefix: &str) -> Vec<(PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut todo = vec![src.clone()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            if !rel.starts_with(prefix) || rel.contains("tests") || rel.contains("_model") {
                continue;
            }
            if p.is_dir() {
                todo.push(p);
            } else if rel.ends_with(".rs") {
                out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    assert!(!out.is_empty(), "no sources for {prefix}");
    out
}

/// The part of a file before its test module (`#[cfg(test)]` then `mod`).
fn before_tests(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| w[0] == "#[cfg(test)]" && w[1].starts_with("mod "))
        .unwrap_or(lines.len());
    lines[..end].to_vec()
}

/// The name of the field a line of a struct declares, if it declares one.
fn field_name(line: &str) -> Option<&str> {
    let f = line.strip_prefix("    ")?;
    let f = ["pub(super) ", "pub(crate) ", "pub "]
        .iter()
        .find_map(|v| f.strip_prefix(v))
        .unwrap_or(f);
    let (name, _) = f.split_once(':')?;
    let ident = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_';
    (!name.is_empty() && name.bytes().all(ident)).then_some(name)
}

/// Each struct of the lines: (name, its doc comment, its field declarations).
fn structs<'a>(lines: &[&'a str]) -> Vec<(String, Vec<&'a str>, Vec<&'a str>)> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.split("struct ").nth(1).filter(|_| l.ends_with('{')) else {
            continue;
        };
        if !(l.starts_with("struct ") || l.starts_with("pub")) {
            continue;
        }
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        let doc = lines[..i]
            .iter()
            .rev()
            .take_while(|d| d.starts_with("///") || d.starts_with("#["))
            .copied()
            .collect();
        let fields: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|f| **f != "}")
            .filter(|f| field_name(f).is_some())
            .copied()
            .collect();
        if std::env::var_os("LAYOUT_DEBUG").is_some() {
            eprintln!("struct {name}: {} fields", fields.len());
        }
        out.push((name, doc, fields));
    }
    out
}

/// No file over 1,000 lines before its tests; no struct over 12 fields unless a line of its
/// doc comment says why (mentions its fields).
fn readable(prefix: &str) {
    for (path, text) in sources(prefix) {
        let lines = before_tests(&text);
        assert!(
            lines.len() <= 1000,
            "{}: {} lines before its tests",
            path.display(),
            lines.len()
        );
        for (name, doc, fields) in structs(&lines) {
            assert!(
                fields.len() <= 12 || doc.iter().any(|d| d.contains("fields")),
                "{}: struct {name} has {} fields and no doc line saying why",
                path.display(),
                fields.len()
            );
        }
    }
}

/// The field declarations of `struct Table`.
fn table_fields() -> Vec<String> {
    let (_, text) = sources("table")
        .into_iter()
        .find(|(_, t)| t.contains("\npub struct Table {"))
        .unwrap();
    let lines = before_tests(&text);
    let (_, _, fields) = structs(&lines)
        .into_iter()
        .find(|s| s.0 == "Table")
        .unwrap();
    fields.into_iter().map(str::to_owned).collect()
}

#[test]
fn table_is_a_facade_over_concept_types() {
    readable("table");
    let fields = table_fields();
    // One array by file kind: the files' windows, not one array per per-file value.
    let parallel: Vec<&str> = fields
        .iter()
        .map(String::as_str)
        .filter(|f| f.contains("; 2]"))
        .collect();
    assert_eq!(
        parallel,
        ["    files: [FileWindow; 2],"],
        "per-file arrays in struct Table"
    );
    assert!(
        fields.len() <= 12,
        "struct Table has {} fields",
        fields.len()
    );
}

#[test]
fn csv_kernel_is_split_by_path() {
    readable("csvrow");
    for (path, text) in sources("csvrow") {
        for api in ["pub enum Ahead", "pub fn range(", "pub fn quoted_line("] {
            assert!(
                !text.contains(api),
                "{}: {api} is the table's pipeline API",
                path.display()
            );
        }
    }
}

/// `Table`'s fields are one per concern: each of a type of its own (the names are one
/// `Names`, not a field per kind of name plus the encoder and the previous row's host), and
/// `Names` lives in `table/names.rs`.
#[test]
fn table_fields_are_one_per_concern() {
    let fields = table_fields();
    let types: Vec<&str> = fields
        .iter()
        .map(|f| f.split_once(':').unwrap().1.trim().trim_end_matches(','))
        .collect();
    assert_eq!(
        types,
        [
            "TableConfig",
            "Names",
            "Series",
            "[FileWindow; 2]",
            "Join",
            "Rollups",
            "Out",
            "Phases"
        ],
        "the types of struct Table's fields"
    );
    let names: Vec<_> = sources("table")
        .iter()
        .filter(|(_, t)| t.contains("\npub(super) struct Names {"))
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["names.rs"], "the files that declare Names");
}

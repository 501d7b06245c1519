//! The configuration file: one TOML document holding the pipeline.
//!
//! Every section has defaults, so the common case needs no file. Unknown keys and bad values are
//! refused with the file, the line and the reason: syntax and type errors come from the TOML
//! parser's spans, and each library's `validate()` names the key path of a bad value, which
//! [`locate`] turns into a line.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the service looks when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/srewatch/srewatch.toml";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[ingest]`: the CSV files.
    pub ingest: ingest::files::FilesConfig,
    /// `[influxdb]`: where points go; absent means line protocol to stdout.
    pub influxdb: Option<ingest::sink::influx::InfluxConfig>,
    /// `[[kamailio]]`: Kamailio statistics targets.
    pub kamailio: Vec<ingest::kamailio::TargetConfig>,
    /// `[probe]` and `[[probe.target]]`.
    pub probe: probe::monitor::ProbeConfig,
    /// `[service]`: `srewatch run` itself.
    pub service: ServiceConfig,
    /// `[global_tags]`: tags added to every point of every bucket (none by default).
    pub global_tags: ingest::sink::tags::GlobalTags,
}

/// `[service]`: which parts `srewatch run` runs, its own health reports and its shutdown.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Run the CSV file ingest (`[ingest]`).
    pub ingest: bool,
    /// Poll the `[[kamailio]]` targets.
    pub kamailio: bool,
    /// Probe the `[[probe.target]]`s.
    pub probe: bool,
    /// Bucket of srewatch's own health points.
    pub health_bucket: String,
    /// How often the health points are written (and the `STATUS=` line updated).
    #[serde(with = "humantime_serde")]
    pub health_interval: std::time::Duration,
    /// On SIGTERM, how long to wait for the last batches to reach InfluxDB or the spool.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: std::time::Duration,
    /// Serve `/metrics` (Prometheus text format) on this address; off when absent.
    #[serde(deserialize_with = "crate::metrics::listen_address")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            ingest: true,
            kamailio: true,
            probe: true,
            health_bucket: "srewatch".into(),
            health_interval: std::time::Duration::from_secs(10),
            shutdown_deadline: std::time::Duration::from_secs(20),
            metrics_listen: None,
        }
    }
}

impl ServiceConfig {
    /// Bad values as (key path under `service.`, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        if self.health_bucket.is_empty()
            || !self
                .health_bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            bad.push((
                "service.health_bucket".into(),
                format!(
                    "{:?}: use letters, digits, '-', '_' or '.'",
                    self.health_bucket
                ),
            ));
        }
        if self.health_interval < std::time::Duration::from_secs(1) {
            bad.push((
                "service.health_interval".into(),
                "must be at least 1s".into(),
            ));
        }
        if self.shutdown_deadline < std::time::Duration::from_secs(1)
            || self.shutdown_deadline > std::time::Duration::from_secs(300)
        {
            bad.push((
                "service.shutdown_deadline".into(),
                "must be between 1s and 5m".into(),
            ));
        }
        bad
    }
}

impl Config {
    /// `probe.shard` (already checked by [`parse`]); 1/1 when not set.
    pub fn shard(&self) -> crate::shard::Shard {
        self.probe
            .shard
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default()
    }

    /// The probe targets this instance owns under `probe.shard`, with the `[probe]` defaults
    /// (`source`) applied.
    pub fn own_probe_targets(&self) -> Vec<probe::monitor::TargetConfig> {
        let shard = self.shard();
        self.probe
            .effective_targets()
            .into_iter()
            .filter(|t| shard.owns(&t.name))
            .collect()
    }
}

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no single line.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
        } else {
            write!(f, "{}: {}", self.file.display(), self.reason)
        }
    }
}

/// Every problem found in one file.
#[derive(Debug)]
pub struct Invalid(pub Vec<Problem>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// Loads `path`, or the defaults when `path` is `None` and the default file does not exist.
pub fn load(path: Option<&Path>) -> Result<(Config, Option<PathBuf>), Invalid> {
    let (path, explicit) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path).map(|c| (c, Some(path))),
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
            Ok((Config::default(), None))
        }
        Err(e) => Err(Invalid(vec![Problem {
            file: path,
            line: 0,
            reason: format!("cannot read: {e}"),
        }])),
    }
}

/// Parses and validates one document, reporting every problem it can find in one go: each
/// syntax or type error with its line (the lines it covers are blanked and the document parsed
/// again, up to [`MAX_PARSE_ERRORS`]), then every bad value of what did parse. Problems are in
/// line order.
pub fn parse(text: &str, file: &Path) -> Result<Config, Invalid> {
    let mut problems = Vec::new();
    let mut doc = text.to_string();
    let mut blanked = Vec::new();
    let cfg = loop {
        match toml::from_str::<Config>(&doc) {
            Ok(cfg) => break Some(cfg),
            Err(e) => {
                let span = e.span();
                problems.push(Problem {
                    file: file.to_path_buf(),
                    line: span.as_ref().map(|s| line_of(&doc, s.start)).unwrap_or(0),
                    reason: e.message().trim_end().to_string(),
                });
                let next = span.and_then(|s| blank_lines(&doc, s));
                match next {
                    Some((next, lines)) if problems.len() < MAX_PARSE_ERRORS => {
                        doc = next;
                        blanked.extend(lines);
                    }
                    _ => break None,
                }
            }
        }
    };
    if let Some(cfg) = &cfg {
        // A value missing only because its line was skipped is not a second problem.
        problems.extend(
            validate(cfg, &doc, file)
                .into_iter()
                .filter(|p| !(is_header(&doc, p.line) && section_has(&doc, p.line, &blanked))),
        );
    }
    problems.sort_by_key(|p| p.line);
    match cfg {
        Some(cfg) if problems.is_empty() => Ok(cfg),
        _ => Err(Invalid(problems)),
    }
}

/// At most this many syntax and type errors are reported from one file.
pub const MAX_PARSE_ERRORS: usize = 50;

/// `doc` with the lines `span` touches made empty (line numbers kept), and those lines
/// (1-based); `None` when they already were empty (nothing left to skip). A span starting on a
/// table header (a missing key) takes the whole table.
fn blank_lines(doc: &str, span: std::ops::Range<usize>) -> Option<(String, Vec<usize>)> {
    let first = line_of(doc, span.start);
    let mut last = line_of(doc, span.end.max(span.start + 1) - 1).max(first);
    let lines: Vec<&str> = doc.split('\n').collect();
    if is_header(doc, first) {
        last = first;
        while last < lines.len() && !lines[last].trim_start().starts_with('[') {
            last += 1;
        }
    }
    let range = first..=last.min(lines.len());
    if lines[first - 1..range.end().to_owned()]
        .iter()
        .all(|l| l.trim().is_empty())
    {
        return None;
    }
    let out: Vec<&str> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| if range.contains(&(i + 1)) { "" } else { *l })
        .collect();
    Some((out.join("\n"), range.collect()))
}

/// Whether 1-based `line` of `doc` is a table header.
fn is_header(doc: &str, line: usize) -> bool {
    line > 0
        && doc
            .split('\n')
            .nth(line - 1)
            .is_some_and(|l| l.trim_start().starts_with('['))
}

/// Whether the table whose header is on `header` holds one of `lines`.
fn section_has(doc: &str, header: usize, lines: &[usize]) -> bool {
    let end = doc
        .split('\n')
        .enumerate()
        .skip(header)
        .find(|(_, l)| l.trim_start().starts_with('['))
        .map(|(i, _)| i + 1)
        .unwrap_or(usize::MAX);
    lines.iter().any(|&l| l > header && l < end)
}

/// Every bad value of a parsed document, each with the line `locate` finds in `text`.
fn validate(cfg: &Config, text: &str, file: &Path) -> Vec<Problem> {
    let mut found: Vec<(String, String)> = Vec::new();
    found.extend(cfg.ingest.validate());
    found.extend(ingest::kamailio::validate_targets(&cfg.kamailio));
    if let Some(i) = &cfg.influxdb {
        found.extend(i.validate());
    }
    found.extend(
        cfg.probe
            .validate()
            .into_iter()
            .map(|(p, r)| (format!("probe.{p}"), r)),
    );
    if let Some(s) = &cfg.probe.shard {
        if let Err(e) = s.parse::<crate::shard::Shard>() {
            found.push(("probe.shard".into(), e));
        }
    }
    found.extend(cfg.service.validate());
    found.extend(cfg.global_tags.validate());
    if let Some(i) = &cfg.influxdb {
        // Closing the sink takes at most close_timeout + request_timeout; the service's
        // deadline must leave it that time, or batches still in memory would be lost.
        let need = i.close_timeout + i.request_timeout;
        if cfg.service.shutdown_deadline <= need {
            found.push((
                "service.shutdown_deadline".into(),
                format!(
                    "must be more than influxdb.close_timeout + influxdb.request_timeout ({})",
                    humantime::format_duration(need)
                ),
            ));
        }
    }
    found
        .into_iter()
        .map(|(path, reason)| Problem {
            file: file.to_path_buf(),
            line: locate(text, &path),
            reason: format!("{path}: {reason}"),
        })
        .collect()
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line of a key path such as `probe.target[1].uri` or `ingest.dir` in `text`: the key's own
/// line when it is written, else the line of its table header, else 0.
pub fn locate(text: &str, path: &str) -> usize {
    // Split "a.b[1].c" into the table part ("a.b", index 1) and the key ("c").
    let (table, index, key) = match path.rfind(']') {
        Some(close) => {
            let open = path[..close].rfind('[').unwrap_or(0);
            let key = path[close + 1..].trim_start_matches('.');
            let idx = path[open + 1..close].parse::<usize>().unwrap_or(0);
            (
                &path[..open],
                Some(idx),
                key.split('.').next().unwrap_or(""),
            )
        }
        None => match path.rsplit_once('.') {
            Some((t, k)) => (t, None, k),
            None => ("", None, path),
        },
    };
    let mut seen = 0usize;
    let mut in_section = table.is_empty();
    let mut header_line = 0;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            let is_array = line.starts_with("[[");
            let name = line
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            if in_section && header_line > 0 {
                break; // left our section without finding the key
            }
            in_section = false;
            if name == table && is_array == index.is_some() {
                if let Some(i) = index {
                    if seen == i {
                        in_section = true;
                        header_line = n + 1;
                    }
                    seen += 1;
                } else {
                    in_section = true;
                    header_line = n + 1;
                }
            }
            continue;
        }
        if in_section && !key.is_empty() {
            if let Some((k, _)) = line.split_once('=') {
                if k.trim().trim_matches('"') == key {
                    return n + 1;
                }
            }
        }
    }
    header_line
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# srewatch\n[ingest]\ndir = \"/var/log/sre\"\n\n[[kamailio]]\nhostname = \"cp1\"\n\n[[kamailio]]\nhostname = \"cp2\"\naddress = \"x\"\n";

    #[test]
    fn locate_keys_and_headers() {
        assert_eq!(locate(DOC, "ingest.dir"), 3);
        assert_eq!(locate(DOC, "kamailio[1].address"), 10);
        assert_eq!(locate(DOC, "kamailio[0].address"), 5);
        assert_eq!(locate(DOC, "nothing.here"), 0);
    }

    #[test]
    fn unknown_key_names_its_line() {
        let err = parse("[ingest]\n\nbogus_key = 1\n", Path::new("x.toml")).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].line, 3, "{}", err);
        assert!(err.0[0].reason.contains("bogus_key"), "{}", err);
    }

    #[test]
    fn service_and_shard_are_checked() {
        let doc =
            "[service]\nprobe = false\nhealth_interval = \"100ms\"\n\n[probe]\nshard = \"3/2\"\n";
        let err = parse(doc, Path::new("x.toml")).unwrap_err();
        let got: Vec<String> = err.0.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            got,
            [
                "x.toml:3: service.health_interval: must be at least 1s",
                "x.toml:6: probe.shard: shard \"3/2\": need 1 <= K <= N",
            ]
        );
        let ok = parse(
            "[probe]\nshard = \"2/2\"\n[[probe.target]]\nname = \"cp1\"\nuri = \"sip:127.0.0.1\"\n[[probe.target]]\nname = \"cp2\"\nuri = \"sip:127.0.0.2\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        let mine: Vec<String> = ok.own_probe_targets().into_iter().map(|t| t.name).collect();
        let expect: Vec<&str> = ["cp1", "cp2"]
            .into_iter()
            .filter(|n| crate::shard::fnv1a64(n.as_bytes()) % 2 == 1)
            .collect();
        assert_eq!(mine, expect);
    }

    #[test]
    fn shutdown_deadline_leaves_the_sink_time_to_close() {
        let doc =
            "[service]\nshutdown_deadline = \"10s\"\n\n[influxdb]\nrequest_timeout = \"8s\"\n";
        let err = parse(doc, Path::new("x.toml")).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].line, 2, "{err}");
        assert!(err.0[0].reason.contains("13s"), "{err}");
        parse(&doc.replace("10s", "14s"), Path::new("x.toml")).unwrap();
    }

    #[test]
    fn probe_hysteresis_and_alive_codes_name_their_line() {
        let doc = "[probe]\n[[probe.target]]\nname = \"cp1\"\nuri = \"sip:127.0.0.1\"\ndown_after = 0\nalive_codes = [200, 503]\n";
        let err = parse(doc, Path::new("x.toml")).unwrap_err();
        let got: Vec<String> = err.0.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            got,
            [
                "x.toml:5: probe.target[0].down_after: 0: must be between 1 and 100",
                "x.toml:6: probe.target[0].alive_codes: 503 always means out of service; it cannot mean alive",
            ]
        );
    }

    /// A file with nine problems (`fixtures/config/nine-problems.toml`: a syntax error, an
    /// unknown key, a wrong type, a missing key, a duplicate Kamailio hostname and bad values)
    /// lists all nine in one run, in line order.
    #[test]
    fn every_problem_of_a_file_in_one_run() {
        let doc = include_str!("../fixtures/config/nine-problems.toml");
        let err = parse(doc, Path::new("x.toml")).unwrap_err();
        let lines: Vec<usize> = err.0.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 4, 5, 7, 10, 11, 12, 18, 22], "{err}");
        let text = err.to_string();
        for needle in [
            "x.toml:2: unknown field `bogus`",
            "x.toml:4: service.health_interval: must be at least 1s",
            "x.toml:5: invalid type: integer `7`",
            "x.toml:7: probe.shard:",
            "x.toml:10: probe.target[0].uri:",
            "x.toml:11: probe.target[0].down_after: 0: must be between 1 and 100",
            "x.toml:12: missing field `uri`",
            "x.toml:18: kamailio[1].hostname: \"k1\" is also the hostname of kamailio[0]: their series would collide",
            "x.toml:22: ",
        ] {
            assert!(text.contains(needle), "{needle:?} not in\n{text}");
        }
    }

    #[test]
    fn empty_document_is_defaults() {
        parse("", Path::new("x.toml")).unwrap();
    }
}

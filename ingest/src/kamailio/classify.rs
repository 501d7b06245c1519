//! Classify: is a statistic a counter (cumulative since Kamailio started) or a gauge (a level
//! that goes up and down, or a configuration value)?
//!
//! | pattern                          | kind    | why                                            |
//! |----------------------------------|---------|------------------------------------------------|
//! | `shmem:*`, `pkmem:*`             | gauge   | memory sizes and fragments                     |
//! | `*:active_*`                     | gauge   | `tmx:active_transactions`, `*:active_dialogs`  |
//! | `*:early_dialogs`                | gauge   | dialogs currently in early state               |
//! | `*current*`                      | gauge   | `tcp:current_opened_connections`, ...          |
//! | `tmx:inuse_transactions`         | gauge   | transactions in memory now                     |
//! | `usrloc:*`                       | gauge   | registered users and contacts now              |
//! | `usrloc:location_expires`        | counter | contacts expired so far (the one usrloc counter)|
//! | `dialog:active_dialogs`          | gauge   | (also matched by `*:active_*`)                  |
//! | `registrar:max_expires`, `registrar:default_expire`, `registrar:default_expires_range`, `registrar:expires_range`, `registrar:max_contacts` | gauge | configuration values |
//! | anything else                    | counter |                                                |
//!
//! Patterns: an exact `group:name`, or one with `*` wildcards (any run of characters) matched
//! against the whole `group:name`. An exact entry wins over a wildcard; among wildcards the first
//! that matches wins. Entries from the configuration (`gauges = [...]`, `counters = [...]`) come
//! before the table.
//!
//! Classification runs once per statistic name per target (the result is kept with the
//! statistic's state), never per poll.

/// Counter or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// The built-in table (see the module doc), exact entries first.
pub const DEFAULT_TABLE: &[(&str, Kind)] = &[
    ("usrloc:location_expires", Kind::Counter),
    ("tmx:inuse_transactions", Kind::Gauge),
    ("dialog:active_dialogs", Kind::Gauge),
    ("registrar:max_expires", Kind::Gauge),
    ("registrar:default_expire", Kind::Gauge),
    ("registrar:default_expires_range", Kind::Gauge),
    ("registrar:expires_range", Kind::Gauge),
    ("registrar:max_contacts", Kind::Gauge),
    ("shmem:*", Kind::Gauge),
    ("pkmem:*", Kind::Gauge),
    ("*:active_*", Kind::Gauge),
    ("*:early_dialogs", Kind::Gauge),
    ("*current*", Kind::Gauge),
    ("usrloc:*", Kind::Gauge),
];

/// The table in use for one target: overrides first, then [`DEFAULT_TABLE`].
#[derive(Debug, Clone)]
pub struct Classifier {
    exact: Vec<(String, Kind)>,
    wild: Vec<(String, Kind)>,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier::new(&[], &[])
    }
}

impl Classifier {
    /// `gauges` and `counters` are the configuration's overrides.
    pub fn new(gauges: &[String], counters: &[String]) -> Classifier {
        let mut exact = Vec::new();
        let mut wild = Vec::new();
        let overrides = gauges
            .iter()
            .map(|p| (p.as_str(), Kind::Gauge))
            .chain(counters.iter().map(|p| (p.as_str(), Kind::Counter)));
        for (p, k) in overrides.chain(DEFAULT_TABLE.iter().copied()) {
            if p.contains('*') {
                wild.push((p.to_string(), k));
            } else {
                exact.push((p.to_string(), k));
            }
        }
        Classifier { exact, wild }
    }

    /// The kind of `full` (`group:name`).
    pub fn kind(&self, full: &str) -> Kind {
        if let Some((_, k)) = self.exact.iter().find(|(p, _)| p == full) {
            return *k;
        }
        self.wild
            .iter()
            .find(|(p, _)| glob(p.as_bytes(), full.as_bytes()))
            .map_or(Kind::Counter, |(_, k)| *k)
    }
}

/// Whether a pattern is usable: non-empty, and either has a `group:` part or a wildcard.
pub fn valid_pattern(p: &str) -> bool {
    !p.is_empty() && (p.contains(':') || p.contains('*')) && !p.contains(char::is_whitespace)
}

/// `*` matches any run of bytes (including none); everything else matches itself.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_sample_kinds() {
        let c = Classifier::default();
        for g in [
            "shmem:used_size",
            "shmem:max_used_size",
            "tmx:active_transactions",
            "tmx:inuse_transactions",
            "app_python3:active_dialogs",
            "app_python3:early_dialogs",
            "dialog:active_dialogs",
            "tcp:current_opened_connections",
            "tcp:current_write_queue_size",
            "usrloc:registered_users",
            "usrloc:location_contacts",
            "registrar:max_expires",
            "registrar:default_expire",
            "registrar:max_contacts",
        ] {
            assert_eq!(c.kind(g), Kind::Gauge, "{g}");
        }
        for k in [
            "core:rcv_requests_options",
            "sl:5xx_replies",
            "app_python3:processed_dialogs",
            "tmx:2xx_transactions",
            "usrloc:location_expires",
            "registrar:accepted_regs",
            "unknown:thing",
        ] {
            assert_eq!(c.kind(k), Kind::Counter, "{k}");
        }
    }

    #[test]
    fn overrides_come_first() {
        let c = Classifier::new(
            &["htable:*".into(), "core:fwd_requests".into()],
            &["shmem:fragments".into(), "*:active_calls".into()],
        );
        assert_eq!(c.kind("htable:items"), Kind::Gauge);
        assert_eq!(c.kind("core:fwd_requests"), Kind::Gauge);
        assert_eq!(c.kind("shmem:fragments"), Kind::Counter);
        assert_eq!(c.kind("shmem:used_size"), Kind::Gauge);
        assert_eq!(c.kind("acc:active_calls"), Kind::Counter);
        assert_eq!(c.kind("acc:active_other"), Kind::Gauge);
    }

    #[test]
    fn globbing() {
        assert!(glob(b"*", b""));
        assert!(glob(b"*current*", b"tcp:current_opened_connections"));
        assert!(glob(b"a*b*c", b"aXbYbZc"));
        assert!(!glob(b"a*b*c", b"aXbYbZ"));
        assert!(!glob(b"shmem:*", b"pkmem:x"));
        assert!(glob(b"x:y", b"x:y"));
        assert!(valid_pattern("*current*") && valid_pattern("a:b") && !valid_pattern("ab"));
    }
}

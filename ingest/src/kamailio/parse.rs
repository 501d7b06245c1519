//! Parse: one statistic line, `group:name = value`, as Kamailio's `stats.get_statistics` prints
//! it (`core:rcv_requests_options = 1767298`). Pure, no I/O, no allocation.
//!
//! Values are Kamailio `unsigned long`s printed with `%lu`. A value above `i64::MAX` is read as
//! the two's complement it came from (a gauge that went below zero inside Kamailio prints as
//! `18446744073709551615`, which is read as -1). A leading `-` is accepted too.

/// One statistic, borrowed from the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat<'a> {
    /// `core:rcv_requests_options`: the key used for classification and the `stat` tag.
    pub full: &'a str,
    /// `core`.
    pub group: &'a str,
    /// `rcv_requests_options`.
    pub name: &'a str,
    pub value: i64,
}

/// Why a line is not a statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("no ` = ` between name and value")]
    NoEquals,
    #[error("name has no `group:` part")]
    NoGroup,
    #[error("empty group or name")]
    EmptyName,
    #[error("value is not a whole number")]
    NotNumeric,
    #[error("line is not UTF-8")]
    NotUtf8,
}

impl LineError {
    /// Short fixed label, usable as a metric or log field.
    pub fn as_str(&self) -> &'static str {
        match self {
            LineError::NoEquals => "no_equals",
            LineError::NoGroup => "no_group",
            LineError::EmptyName => "empty_name",
            LineError::NotNumeric => "not_numeric",
            LineError::NotUtf8 => "not_utf8",
        }
    }
}

/// Parses one line such as `sl:5xx_replies = 4`.
pub fn parse_line(line: &[u8]) -> Result<Stat<'_>, LineError> {
    let eq = memchr::memchr(b'=', line).ok_or(LineError::NoEquals)?;
    let key = trim(&line[..eq]);
    // Names are short: plain loops beat SIMD set-up here.
    let colon = key
        .iter()
        .position(|&b| b == b':')
        .ok_or(LineError::NoGroup)?;
    if colon == 0 || colon + 1 == key.len() || key.iter().any(|&b| b <= b' ') {
        return Err(LineError::EmptyName);
    }
    let value = parse_int(trim(&line[eq + 1..])).ok_or(LineError::NotNumeric)?;
    let full = if key.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(key) }
    } else {
        std::str::from_utf8(key).map_err(|_| LineError::NotUtf8)?
    };
    Ok(Stat {
        full,
        group: &full[..colon],
        name: &full[colon + 1..],
        value,
    })
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &b[start..end.max(start)]
}

/// Whole number from ASCII digits, optional leading `-`; `u64` values wrap into `i64`.
pub fn parse_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    if digits.len() <= 19 {
        // At most 19 digits cannot overflow a u64.
        for &c in digits {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + d as u64;
        }
    } else {
        for &c in digits {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v.checked_mul(10)?.checked_add(d as u64)?;
        }
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        Some(v as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_lines() {
        let s = parse_line(b"core:rcv_requests_options = 1767298").unwrap();
        assert_eq!(
            s,
            Stat {
                full: "core:rcv_requests_options",
                group: "core",
                name: "rcv_requests_options",
                value: 1767298
            }
        );
        let s = parse_line(b"  shmem:free_size=64144248 \n").unwrap();
        assert_eq!((s.full, s.value), ("shmem:free_size", 64144248));
        let s = parse_line(b"dialog:active_dialogs = 18446744073709551615").unwrap();
        assert_eq!(s.value, -1);
        assert_eq!(parse_line(b"x:y = -5").unwrap().value, -5);
        assert_eq!(parse_line(b"x:y = 0").unwrap().value, 0);
    }

    #[test]
    fn bad_lines() {
        assert_eq!(parse_line(b"core rcv 5"), Err(LineError::NoEquals));
        assert_eq!(parse_line(b"core_rcv = 5"), Err(LineError::NoGroup));
        assert_eq!(parse_line(b":rcv = 5"), Err(LineError::EmptyName));
        assert_eq!(parse_line(b"core: = 5"), Err(LineError::EmptyName));
        assert_eq!(parse_line(b"core:a b = 5"), Err(LineError::EmptyName));
        assert_eq!(parse_line(b"core :a = 5"), Err(LineError::EmptyName));
        assert_eq!(parse_line(b"core:\x01 = 5"), Err(LineError::EmptyName));
        assert_eq!(parse_line(b"core:a = 5x"), Err(LineError::NotNumeric));
        assert_eq!(parse_line(b"core:a = "), Err(LineError::NotNumeric));
        assert_eq!(parse_line(b"core:a = 1.5"), Err(LineError::NotNumeric));
        assert_eq!(
            parse_line(b"core:a = 99999999999999999999999"),
            Err(LineError::NotNumeric)
        );
        assert_eq!(parse_line(b"core:\xff = 1"), Err(LineError::NotUtf8));
        assert_eq!(parse_line(b""), Err(LineError::NoEquals));
    }

    /// Differential: the byte parser agrees with a naive `str`-based one on generated lines.
    #[test]
    fn agrees_with_naive_parser() {
        fn naive(s: &str) -> Option<(String, i64)> {
            let (k, v) = s.split_once('=')?;
            let k = k.trim();
            let (g, n) = k.split_once(':')?;
            if g.is_empty() || n.is_empty() || k.bytes().any(|b| b <= b' ') {
                return None;
            }
            let v = v.trim();
            let n: i64 = match v.parse::<i64>() {
                Ok(n) => n,
                Err(_) => v.parse::<u64>().ok()? as i64,
            };
            Some((k.to_string(), n))
        }
        let pieces = [
            "core",
            ":",
            "rcv",
            " = ",
            "=",
            " ",
            "12",
            "-3",
            "x",
            "18446744073709551615",
            "\t",
            "a:b",
            "",
            "0",
            "9",
        ];
        let mut seed = 0x2545F4914F6CDD1Du64;
        for _ in 0..20000 {
            let mut line = String::new();
            for _ in 0..(seed % 7) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                line.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            seed = seed.wrapping_add(0x9E3779B97F4A7C15);
            let got = parse_line(line.as_bytes())
                .ok()
                .map(|s| (s.full.to_string(), s.value));
            assert_eq!(got, naive(&line), "line {line:?}");
        }
    }
}

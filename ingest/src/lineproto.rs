//! Line-protocol encoder: points written straight into one reused `BytesMut`.
//!
//! Escaping follows the InfluxDB 2 line-protocol reference ("Special characters"):
//!
//! | element            | escaped                               |
//! |--------------------|---------------------------------------|
//! | measurement        | comma, space, backslash               |
//! | tag key/value      | comma, equals, space, backslash       |
//! | field key          | comma, equals, space, backslash       |
//! | string field value | double quote, backslash               |
//!
//! A backslash is always doubled ("with two contiguous backslashes, the first is interpreted as
//! an escape character"), so a name that already contains `\ ` cannot be misread. Line protocol
//! has no escape for newlines: CR and LF in names become a plain escaped space. Empty tag values
//! are left out (line protocol forbids them), and non-finite floats are left out (InfluxDB rejects
//! them); a point left with no field is not written at all and `push` returns `false`.
//!
//! Timestamps are whole seconds: every batch is written with `precision=s`.
//!
//! Floats are written in the shortest form that reads back as the same `f64` (`ryu`). A value
//! computed in binary floating point (`0.000908 s * 1000`) is not the decimal it stands for
//! (`0.9079999999999999`), so measured values are rounded to their real precision where they are
//! made: [`millis`] for durations (milliseconds to the microsecond), [`round_to`] for rates and
//! ratios. The rounded value is the `f64` nearest to a short decimal, and is written as that
//! decimal (`0.908`).

use bytes::{Bytes, BytesMut};
use std::time::Duration;

/// `x` rounded to `decimals` places after the point: the `f64` nearest to that decimal, so it
/// is written as the short decimal. Values too large for the rounding (over 2^53 units of the
/// last place) are returned unchanged.
pub fn round_to(x: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    let scaled = x * p;
    if !scaled.is_finite() || scaled.abs() >= 9_007_199_254_740_992.0 {
        return x;
    }
    scaled.round() / p
}

/// A duration in milliseconds, to the microsecond (the precision of the probes' and pollers'
/// clocks as written): 908 µs is `0.908`, 1 ms 499.6 µs is `1.5`.
pub fn millis(d: Duration) -> f64 {
    let us = d.as_nanos().saturating_add(500) / 1000;
    us.min(u64::MAX as u128) as f64 / 1000.0
}

/// One field value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    /// Written with the `i` suffix.
    Int(i64),
    /// Written in the shortest form that reads back as the same `f64`.
    Float(f64),
    Bool(bool),
    Str(&'a str),
}

/// An encoder that appends points to an internal buffer; `take` hands out the bytes written so
/// far without copying and keeps the allocation for the next batch.
#[derive(Debug, Default)]
pub struct LineEncoder {
    buf: BytesMut,
    lines: usize,
}

impl LineEncoder {
    pub fn new() -> Self {
        Self::with_capacity(64 * 1024)
    }

    pub fn with_capacity(cap: usize) -> Self {
        LineEncoder {
            buf: BytesMut::with_capacity(cap),
            lines: 0,
        }
    }

    /// Appends one point. Returns `false` (and writes nothing) when no field is writable.
    pub fn push(
        &mut self,
        measurement: &str,
        tags: &[(&str, &str)],
        fields: &[(&str, Field<'_>)],
        ts_secs: i64,
    ) -> bool {
        if measurement.is_empty() || !fields.iter().any(|(k, v)| writable(k, v)) {
            return false;
        }
        let start = self.buf.len();
        escape_into(&mut self.buf, measurement, Element::Measurement);
        for (k, v) in tags {
            if k.is_empty() || v.is_empty() {
                continue;
            }
            self.buf.extend_from_slice(b",");
            escape_into(&mut self.buf, k, Element::Key);
            self.buf.extend_from_slice(b"=");
            escape_into(&mut self.buf, v, Element::Key);
        }
        let mut sep = b' ';
        for (k, v) in fields {
            if !writable(k, v) {
                continue;
            }
            self.buf.extend_from_slice(&[sep]);
            sep = b',';
            escape_into(&mut self.buf, k, Element::Key);
            self.buf.extend_from_slice(b"=");
            match *v {
                Field::Int(i) => {
                    self.buf
                        .extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
                    self.buf.extend_from_slice(b"i");
                }
                Field::Float(f) => write_float(&mut self.buf, f),
                Field::Bool(b) => self
                    .buf
                    .extend_from_slice(if b { b"true" } else { b"false" }),
                Field::Str(s) => {
                    self.buf.extend_from_slice(b"\"");
                    escape_into(&mut self.buf, s, Element::StrValue);
                    self.buf.extend_from_slice(b"\"");
                }
            }
        }
        debug_assert!(self.buf.len() > start);
        self.buf.extend_from_slice(b" ");
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(ts_secs).as_bytes());
        self.buf.extend_from_slice(b"\n");
        self.lines += 1;
        true
    }

    /// Number of points since the last `take`.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Bytes since the last `take`.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded lines so far; the encoder starts empty again.
    pub fn take(&mut self) -> Bytes {
        self.lines = 0;
        self.buf.split().freeze()
    }

    /// Forgets what was written since the last `take`.
    pub fn clear(&mut self) {
        self.lines = 0;
        self.buf.clear();
    }
}

/// Appends `s` escaped as a tag key or value (comma, equals, space, backslash; CR and LF as an
/// escaped space), as [`LineEncoder::push`] writes them.
pub fn escape_tag_into(buf: &mut BytesMut, s: &str) {
    escape_into(buf, s, Element::Key);
}

fn writable(key: &str, v: &Field<'_>) -> bool {
    !key.is_empty() && !matches!(v, Field::Float(f) if !f.is_finite())
}

fn write_float(buf: &mut BytesMut, f: f64) {
    if f == f.trunc() && f.abs() < 1e15 {
        // Whole numbers print without exponent or ".0": `3` reads back as the float 3.
        buf.extend_from_slice(itoa::Buffer::new().format(f as i64).as_bytes());
    } else {
        buf.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Element {
    Measurement,
    Key,
    StrValue,
}

fn escape_into(buf: &mut BytesMut, s: &str, el: Element) {
    let bytes = s.as_bytes();
    let needs = |b: u8| match el {
        Element::Measurement => matches!(b, b',' | b' ' | b'\\' | b'\n' | b'\r'),
        Element::Key => matches!(b, b',' | b'=' | b' ' | b'\\' | b'\n' | b'\r'),
        Element::StrValue => matches!(b, b'"' | b'\\'),
    };
    let mut last = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if needs(b) {
            buf.extend_from_slice(&bytes[last..i]);
            match b {
                b'\n' | b'\r' => buf.extend_from_slice(b"\\ "),
                _ => buf.extend_from_slice(&[b'\\', b]),
            }
            last = i + 1;
        }
    }
    buf.extend_from_slice(&bytes[last..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(m: &str, tags: &[(&str, &str)], fields: &[(&str, Field<'_>)], ts: i64) -> String {
        let mut e = LineEncoder::new();
        e.push(m, tags, fields, ts);
        String::from_utf8(e.take().to_vec()).unwrap()
    }

    // Examples from the InfluxDB 2 line-protocol reference, "Special characters".
    #[test]
    fn spec_examples() {
        assert_eq!(
            one(
                "my Measurement",
                &[],
                &[("fieldKey", Field::Str("string value"))],
                1
            ),
            "my\\ Measurement fieldKey=\"string value\" 1\n"
        );
        assert_eq!(
            one(
                "myMeasurement",
                &[],
                &[("fieldKey", Field::Str("\"string\" within a string"))],
                1
            ),
            "myMeasurement fieldKey=\"\\\"string\\\" within a string\" 1\n"
        );
        assert_eq!(
            one(
                "myMeasurement",
                &[("tag Key1", "tag Value1"), ("tag Key2", "tag Value2")],
                &[("fieldKey", Field::Int(100))],
                1
            ),
            "myMeasurement,tag\\ Key1=tag\\ Value1,tag\\ Key2=tag\\ Value2 fieldKey=100i 1\n"
        );
        assert_eq!(
            one(
                "myMeasurement",
                &[],
                &[("fieldKey", Field::Str("Launch 🚀"))],
                1
            ),
            "myMeasurement fieldKey=\"Launch 🚀\" 1\n"
        );
    }

    #[test]
    fn commas_equals_backslashes() {
        assert_eq!(
            one(
                "profiling.cp.CAC test.a,b=c\\d",
                &[("hostname", "h,1=x y")],
                &[("v=1", Field::Float(0.5))],
                1652193060
            ),
            "profiling.cp.CAC\\ test.a\\,b=c\\\\d,hostname=h\\,1\\=x\\ y v\\=1=0.5 1652193060\n"
        );
        assert_eq!(
            one("a\nb", &[], &[("f", Field::Bool(true))], 2),
            "a\\ b f=true 2\n"
        );
    }

    #[test]
    fn floats_and_skips() {
        assert_eq!(
            one(
                "m",
                &[("empty", ""), ("t", "v")],
                &[
                    ("a", Field::Float(3.0)),
                    ("b", Field::Float(f64::NAN)),
                    ("c", Field::Float(0.113))
                ],
                60
            ),
            "m,t=v a=3,c=0.113 60\n"
        );
        let mut e = LineEncoder::new();
        assert!(!e.push("m", &[], &[("a", Field::Float(f64::INFINITY))], 1));
        assert!(e.is_empty());
        assert_eq!(e.lines(), 0);
        assert_eq!(
            one(
                "m",
                &[],
                &[("big", Field::Float(1e20)), ("neg", Field::Int(-5))],
                0
            ),
            "m big=1e20,neg=-5i 0\n"
        );
    }

    /// `rtt_p50_ms=0.908`, not `0.9079999999999999`: 908 µs times 1000 in binary floating
    /// point is not 0.908; [`millis`] and [`round_to`] give the nearest `f64` to the
    /// decimal, written as the decimal.
    #[test]
    fn measured_values_written_at_their_precision() {
        let d = Duration::from_micros(908);
        assert_eq!(
            one(
                "m",
                &[],
                &[("v", Field::Float(d.as_secs_f64() * 1000.0))],
                0
            ),
            "m v=0.9079999999999999 0\n"
        );
        assert_eq!(
            one("m", &[], &[("rtt_p50_ms", Field::Float(millis(d)))], 0),
            "m rtt_p50_ms=0.908 0\n"
        );
        // Nanoseconds round to the microsecond.
        let fields = [
            ("a", Field::Float(millis(Duration::from_nanos(1_499_600)))),
            ("b", Field::Float(millis(Duration::from_nanos(912_345)))),
            ("c", Field::Float(millis(Duration::from_secs(2)))),
            ("d", Field::Float(round_to(145.0 / 30.0, 3))),
            ("e", Field::Float(round_to(7.0 * 1000.0 / 1399.0, 3))),
            ("f", Field::Float(round_to(1.0 / 3.0, 4))),
            ("g", Field::Float(round_to(1e300, 3))),
        ];
        assert_eq!(
            one("m", &[], &fields, 0),
            "m a=1.5,b=0.912,c=2000,d=4.833,e=5.004,f=0.3333,g=1e300 0\n"
        );
    }

    #[test]
    fn take_reuses_and_counts() {
        let mut e = LineEncoder::new();
        e.push("a", &[], &[("v", Field::Int(1))], 1);
        e.push("b", &[], &[("v", Field::Int(2))], 1);
        assert_eq!(e.lines(), 2);
        assert_eq!(&e.take()[..], b"a v=1i 1\nb v=2i 1\n");
        assert_eq!(e.lines(), 0);
        e.push("c", &[], &[("v", Field::Int(3))], 1);
        assert_eq!(&e.take()[..], b"c v=3i 1\n");
    }
}

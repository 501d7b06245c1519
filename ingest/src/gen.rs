//! A deterministic generator of counters.csv / samples.csv content, for the benchmark
//! (`benches/ingest_csv.rs`), the memory measurement (`examples/gen_csv.rs`) and tests.
//!
//! The value of (host, stat, minute) is a fixed function of the three, so a file generated one
//! minute later is exactly what the platform would write: values shifted right, a new `v0`,
//! and `v1` revised (`v0` is written as a partial minute, half the full count).

use std::io::Write;

/// Stat names with spaces, dots and angle brackets, like the platform's.
pub fn stat_name(s: usize) -> String {
    match s % 4 {
        0 => format!("profiling.cp.Service {}.node {s}", s % 37),
        1 => format!("request.http.<GET>.{s}"),
        2 => format!("response.dns.NOERROR.{s}"),
        _ => format!("custom.flag_{s}"),
    }
}

pub fn host_name(h: usize) -> String {
    format!("sre-cp{h}-site{}", h % 7)
}

/// Full count of (host, stat, minute): 0 for about a quarter of them.
pub fn count(h: usize, s: usize, minute: i64) -> u64 {
    let mut x = (h as u64) << 40 ^ (s as u64) << 20 ^ minute as u64;
    x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    let v = x % 200;
    if v < 50 {
        0
    } else {
        v
    }
}

/// Writes a counters.csv of `hosts x stats` rows whose newest minute starts at `t` (seconds,
/// a multiple of 60). Zero counts are written as empty fields.
pub fn counters<W: Write>(out: &mut W, hosts: usize, stats: usize, t: i64) -> std::io::Result<()> {
    let names: Vec<String> = (0..stats).map(stat_name).collect();
    let mut line = Vec::with_capacity(256);
    let mut ib = itoa::Buffer::new();
    for h in 0..hosts {
        let host = host_name(h);
        for (s, name) in names.iter().enumerate() {
            line.clear();
            line.extend_from_slice(host.as_bytes());
            line.push(b',');
            line.extend_from_slice(name.as_bytes());
            line.extend_from_slice(b",2022-05-10T16:31:00,");
            line.extend_from_slice(ib.format(t).as_bytes());
            for i in 0..15 {
                let m = t / 60 - i;
                let mut v = count(h, s, m);
                if i == 0 {
                    v /= 2;
                }
                line.push(b',');
                if v > 0 {
                    line.extend_from_slice(ib.format(v).as_bytes());
                }
            }
            line.push(b'\n');
            out.write_all(&line)?;
        }
    }
    Ok(())
}

/// Writes a samples.csv for the same series: averages with 3 decimals, times 1 s past the
/// minute; an empty field where the count is 0.
pub fn samples<W: Write>(out: &mut W, hosts: usize, stats: usize, t: i64) -> std::io::Result<()> {
    let names: Vec<String> = (0..stats).map(stat_name).collect();
    for h in 0..hosts {
        let host = host_name(h);
        for (s, name) in names.iter().enumerate() {
            write!(out, "{host},{name},2022-05-10T16:31:01,{}", t + 1)?;
            for i in 0..15 {
                let c = count(h, s, t / 60 - i);
                if c == 0 {
                    write!(out, ",")?;
                } else {
                    write!(out, ",{:.3}", (c % 97) as f64 / 7.0)?;
                }
            }
            writeln!(out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shifting() {
        let mut a = Vec::new();
        counters(&mut a, 2, 3, 600).unwrap();
        let mut b = Vec::new();
        counters(&mut b, 2, 3, 600).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.iter().filter(|&&c| c == b'\n').count(), 6);
        let first = String::from_utf8(a).unwrap();
        let first = first.lines().next().unwrap();
        assert!(
            first.starts_with(
                "sre-cp0-site0,profiling.cp.Service 0.node 0,2022-05-10T16:31:00,600,"
            ),
            "{first}"
        );
        assert_eq!(first.split(',').count(), 19);
    }
}

//! The CSV kernel against hand-written rows, the general path against the fast ones, and the
//! memo of rewrites.

use super::numbers::count_values;
use super::*;

/// host, stat, time, values, line
type Owned = (String, String, i64, Vec<Value>, u64);
/// host, stat, time, values
type Bytes4 = (Vec<u8>, Vec<u8>, i64, Vec<Value>);

fn rows(data: &[u8], kind: Kind, complete: bool) -> Vec<Result<Owned, RowError>> {
    let mut r = Reader::new(data, kind, complete);
    let mut out = Vec::new();
    while let Some(x) = r.next() {
        out.push(x.map(|row| {
            (
                row.host.to_string(),
                row.stat.to_string(),
                row.time,
                row.values().to_vec(),
                row.line,
            )
        }));
    }
    out
}

fn ints(v: &[u64]) -> Vec<Value> {
    v.iter().map(|&x| Value::Int(x)).collect()
}

#[test]
fn guide_counters_rows() {
    let data = b"sre32-cp2-testbed,custom.fleg_relay,2022-05-10T16:31:00,1652193060,,,,,,,,,,,,,\n\
sre32-cp2-testbed,profiling.cp.CAC test.Extract Contacts,2022-05-10T16:31:00,1652193060,12,11,13,12,12,12,12,12,12,12,12,12,12,12\n";
    let got = rows(data, Kind::Counters, false);
    assert_eq!(
        got,
        vec![
            Ok((
                "sre32-cp2-testbed".into(),
                "custom.fleg_relay".into(),
                1652193060,
                ints(&[0; 13]),
                1
            )),
            Ok((
                "sre32-cp2-testbed".into(),
                "profiling.cp.CAC test.Extract Contacts".into(),
                1652193060,
                ints(&[12, 11, 13, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12]),
                2
            )),
        ]
    );
}

#[test]
fn guide_samples_row() {
    let data = b"sre32-cp2-testbed,accounting.openCalls,2022-05-10T16:32:01,1652193121,3800.000,3800.000,3800.000,3700.000,3566.667,3833.333,3833.333,3866.667\r\nh,profiling.cp.CAC test.503,x,1652193121,,,0.113\r\n";
    let got = rows(data, Kind::Samples, false);
    let f = |v: &[f64]| v.iter().map(|&x| Value::Float(x)).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            Ok((
                "sre32-cp2-testbed".into(),
                "accounting.openCalls".into(),
                1652193121,
                f(&[3800.0, 3800.0, 3800.0, 3700.0, 3566.667, 3833.333, 3833.333, 3866.667]),
                1
            )),
            Ok((
                "h".into(),
                "profiling.cp.CAC test.503".into(),
                1652193121,
                vec![Value::Missing, Value::Missing, Value::Float(0.113)],
                2
            )),
        ]
    );
    let mut r = Reader::new(data, Kind::Samples, false);
    assert_eq!(r.next().unwrap().unwrap().minute(), 1652193120);
}

#[test]
fn quoted_fields() {
    let data =
        "\"cp,1\",\"stat \"\"q\"\" <a>/b, c ü\",2022,60,\"5\",6\r\nh,\"multi\nline\",t,120,1\n";
    let got = rows(data.as_bytes(), Kind::Counters, false);
    assert_eq!(
        got,
        vec![
            Ok((
                "cp,1".into(),
                "stat \"q\" <a>/b, c ü".into(),
                60,
                ints(&[5, 6]),
                1
            )),
            // One record per line: a quote that does not close on its line spoils that line.
            Err(RowError {
                reason: Reason::UnclosedQuote,
                line: 2,
                byte: 47,
                field: 2
            }),
            Ok(("line\"".into(), "t".into(), 1, vec![], 3)),
        ]
    );
    let data2 = "h,\"a\nb\",t,60,1\nh,c,t,60,\n";
    let got = rows(data2.as_bytes(), Kind::Counters, false);
    assert_eq!(got[2], Ok(("h".into(), "c".into(), 60, ints(&[0]), 3)));
}

#[test]
fn incomplete_tail_is_left() {
    let data = b"h,a,t,60,1,2\nh,b,t,60,3,";
    let mut r = Reader::new(data, Kind::Counters, false);
    assert_eq!(r.next().unwrap().unwrap().stat, "a");
    assert!(r.next().is_none());
    assert_eq!(r.incomplete_tail(), 11);
    // Once the file is quiet the last row counts.
    let got = rows(data, Kind::Counters, true);
    assert_eq!(got[1], Ok(("h".into(), "b".into(), 60, ints(&[3, 0]), 2)));
    // A quote still open at the end of its line spoils that line only; the unfinished
    // last line is left.
    let data = b"h,a,t,60,1\nh,\"b\nstill";
    let mut r = Reader::new(data, Kind::Counters, false);
    assert!(r.next().unwrap().is_ok());
    assert_eq!(r.next().unwrap().unwrap_err().reason, Reason::UnclosedQuote);
    assert!(r.next().is_none());
    assert_eq!(r.incomplete_tail(), 5);
    assert_eq!(r.records(), 2);
    let got = rows(data, Kind::Counters, true);
    assert_eq!(
        got[1],
        Err(RowError {
            reason: Reason::UnclosedQuote,
            line: 2,
            byte: 11,
            field: 2
        })
    );
    assert_eq!(got[2].as_ref().unwrap_err().reason, Reason::MissingFields);
    // Only a partial line: nothing.
    assert!(rows(b"h,a,t,6", Kind::Counters, false).is_empty());
}

#[test]
fn bad_rows() {
    let data = b"h,a,t\n\
h,a,t,60,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16\n\
,a,t,60,1\n\
h,,t,60,1\n\
h,\xff,t,60,1\n\
h,a,t,6x,1\n\
h,a,t,,1\n\
h,a,t,60.5,1\n\
h,a,t,60,1x\n\
h,a,t,60,-3\n\
h,a,t,60,99999999999999999999\n\
h,a,t,60,9223372036854775808\n\
\n\
h,a,t,60,9223372036854775807\n";
    let got = rows(data, Kind::Counters, false);
    let reasons: Vec<_> = got
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|_| ())
                .map_err(|e| (e.reason, e.line, e.field))
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            Err((Reason::MissingFields, 1, 0)),
            Err((Reason::TooManyValues, 2, 0)),
            Err((Reason::EmptyName, 3, 1)),
            Err((Reason::EmptyName, 4, 2)),
            Err((Reason::InvalidUtf8, 5, 2)),
            Err((Reason::BadTimestamp, 6, 4)),
            Err((Reason::BadTimestamp, 7, 4)),
            Err((Reason::BadTimestamp, 8, 4)),
            Err((Reason::BadNumber, 9, 5)),
            Err((Reason::Negative, 10, 5)),
            Err((Reason::Overflow, 11, 5)),
            Err((Reason::Overflow, 12, 5)),
            Ok(()),
        ]
    );
    assert_eq!(got[12].as_ref().unwrap().3, ints(&[i64::MAX as u64]));
    // Byte offsets point at the row start.
    let mut r = Reader::new(b"h,a,t,60,1\nh,b,t,x,1\n", Kind::Counters, false);
    r.next();
    assert_eq!(r.next().unwrap().unwrap_err().byte, 11);
}

#[test]
fn bad_averages() {
    for (text, want) in [
        (&b"abc"[..], Err(Reason::BadNumber)),
        (b"nan", Err(Reason::BadNumber)),
        (b"inf", Err(Reason::BadNumber)),
        (b"1e999", Err(Reason::Overflow)),
        (b"-0.5", Err(Reason::Negative)),
        (b"+1", Err(Reason::BadNumber)),
        (b"1.2.3", Err(Reason::BadNumber)),
        (b"0.113", Ok(Value::Float(0.113))),
        (b".5", Ok(Value::Float(0.5))),
        (b"1e3", Ok(Value::Float(1000.0))),
        (b"", Ok(Value::Missing)),
    ] {
        assert_eq!(
            parse_average(text),
            want,
            "{}",
            String::from_utf8_lossy(text)
        );
    }
    let got = rows(b"h,a,t,60,1.0,x\n", Kind::Samples, false);
    assert_eq!(
        got[0],
        Err(RowError {
            reason: Reason::BadNumber,
            line: 1,
            byte: 0,
            field: 6
        })
    );
}

/// A stray `"` before one value of a middle row makes that one
/// line bad (`unclosed_quote`); every other line parses, and every line is accounted for.
#[test]
fn a_stray_quote_spoils_one_line_only() {
    let mut data = String::new();
    for i in 0..6 {
        let q = if i == 2 { "\"" } else { "" };
        data += &format!("cp1,stat{i},t,60,1,{q}2,3\n");
    }
    for complete in [false, true] {
        let got = rows(data.as_bytes(), Kind::Counters, complete);
        let summary: Vec<_> = got
            .iter()
            .map(|r| {
                r.as_ref()
                    .map(|o| (o.1.clone(), o.4))
                    .map_err(|e| (e.reason, e.line))
            })
            .collect();
        let mut want: Vec<Result<(String, u64), (Reason, u64)>> = (0..6)
            .map(|i| Ok((format!("stat{i}"), i as u64 + 1)))
            .collect();
        want[2] = Err((Reason::UnclosedQuote, 3));
        assert_eq!(summary, want, "tail_complete={complete}");
    }
}

/// A naive reference parser: split into lines (one record per line), then each line into
/// fields the slow, obvious way (RFC 4180 quoting within the line), then apply the same
/// field rules. The kernel must agree with it on every input.
fn naive(data: &[u8], kind: Kind) -> Vec<Result<Bytes4, Reason>> {
    let mut out = Vec::new();
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for raw in lines {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        let mut rec: Vec<Vec<u8>> = Vec::new();
        let mut field = Vec::new();
        let mut in_q = false;
        let mut at_start = true;
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if in_q {
                if b == b'"' {
                    if raw.get(i + 1) == Some(&b'"') {
                        field.push(b'"');
                        i += 1;
                    } else {
                        in_q = false;
                    }
                } else {
                    field.push(b);
                }
            } else if b == b'"' && at_start {
                in_q = true;
                at_start = false;
            } else if b == b',' {
                rec.push(std::mem::take(&mut field));
                at_start = true;
            } else {
                field.push(b);
                at_start = false;
            }
            i += 1;
        }
        if in_q {
            out.push(Err(Reason::UnclosedQuote));
            continue;
        }
        rec.push(field);
        if rec.len() > MAX_FIELDS {
            out.push(Err(Reason::TooManyValues));
            continue;
        }
        let refs: Vec<&[u8]> = rec.iter().map(|f| &f[..]).collect();
        out.push(
            build(&refs, kind, 0, 0)
                .map(|row| {
                    (
                        row.host.as_bytes().to_vec(),
                        row.stat.as_bytes().to_vec(),
                        row.time,
                        row.values().to_vec(),
                    )
                })
                .map_err(|e| e.reason),
        );
    }
    out
}

/// A deterministic pseudo-random sequence (xorshift64) from `seed` (not 0).
fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// The values fast path against [`parse_values`]: every length of number from 0 to 20
/// digits, at every position in the first 24 bytes of a line and further on.
#[test]
fn count_values_as_parse_values() {
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let head = (next() % 24) as usize;
        let mut line: Vec<u8> = (0..head).map(|i| b"h,s,t,1"[i % 7]).collect();
        let v0 = line.len();
        let n = next() % 17 + 1;
        for i in 0..n {
            if i > 0 {
                line.push(b',');
            }
            let digits = match next() % 4 {
                0 => next() % 21,
                _ => next() % 9,
            };
            for _ in 0..digits {
                line.push(b'0' + (next() % 10) as u8);
            }
        }
        if next().is_multiple_of(8) {
            let at = v0 + (next() as usize) % (line.len() - v0 + 1);
            line.insert(
                at,
                [b'-', b'x', b'/', b':', 0xc3, b' '][(next() % 6) as usize],
            );
        }
        let end = line.len();
        line.extend_from_slice(b"\nnext,line");
        let text = &line[v0..end];
        let want = match parse_values(text, Kind::Counters) {
            Ok((v, n))
                if text.split(|&b| b == b',').all(|f| f.len() <= 18)
                    && text.iter().all(|&b| b == b',' || b.is_ascii_digit()) =>
            {
                Some(v[..n].to_vec())
            }
            _ => None,
        };
        let got = count_values(&line, v0, end).map(|c| {
            let commas: Vec<usize> = text
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b',')
                .map(|(i, _)| i)
                .collect();
            assert_eq!(
                &c.commas[..c.n - 1]
                    .iter()
                    .map(|&x| x as usize)
                    .collect::<Vec<_>>(),
                &commas
            );
            c.vals[..c.n]
                .iter()
                .map(|&x| Value::Int(x))
                .collect::<Vec<_>>()
        });
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(text));
    }
}

#[test]
fn differential_against_naive_parser() {
    // Deterministic pseudo-random rows built from pieces that exercise every path.
    let pieces: &[&[u8]] = &[
        b"h",
        b"cp1",
        b"a b",
        b"\"q,1\"",
        b"\"x\"\"y\"",
        b"\"l\nm\"",
        b"",
        b"60",
        b"1652193121",
        b"12",
        b"0.113",
        b"-1",
        b"x",
        b"\xc3\xbc",
        b"\xff",
        b"99999999999999999999",
        b"1e5",
        b"\r",
        b"\"",
        b"\"\"",
        b"7.",
    ];
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    for _ in 0..3000 {
        let mut data = Vec::new();
        let nrows = next() % 4 + 1;
        for _ in 0..nrows {
            let nf = next() % 22;
            for f in 0..nf {
                if f > 0 {
                    data.push(b',');
                }
                // Keep the fixed fields mostly well-formed so values get exercised.
                let p: &[u8] = match f {
                    0 | 1 if !next().is_multiple_of(3) => b"host",
                    3 if !next().is_multiple_of(4) => b"120",
                    _ => pieces[(next() % pieces.len() as u64) as usize],
                };
                data.extend_from_slice(p);
            }
            data.extend_from_slice(if next().is_multiple_of(3) {
                b"\r\n"
            } else {
                b"\n"
            });
        }
        for kind in [Kind::Counters, Kind::Samples] {
            let mut r = Reader::new(&data, kind, true);
            let mut fast = Vec::new();
            while let Some(x) = r.next() {
                fast.push(
                    x.map(|row| {
                        (
                            row.host.as_bytes().to_vec(),
                            row.stat.as_bytes().to_vec(),
                            row.time,
                            row.values().to_vec(),
                        )
                    })
                    .map_err(|e| e.reason),
                );
            }
            assert_eq!(
                fast,
                naive(&data, kind),
                "input {:?}",
                String::from_utf8_lossy(&data)
            );
        }
    }
}

/// The one-pass line scan of the fast paths against a plain reading of its contract.
#[test]
fn line_parts_as_documented() {
    fn plain<const N: usize>(rest: &[u8]) -> Option<([usize; N], usize, usize, usize)> {
        let stop = rest.iter().position(|&b| b == b'\n' || b == b'"');
        if stop.is_some_and(|i| rest[i] == b'"') {
            return None;
        }
        let s = stop.unwrap_or(rest.len());
        let commas: Vec<usize> = (0..s).filter(|&i| rest[i] == b',').collect();
        // The N commas in whole 16-byte blocks.
        if commas.len() < N || commas[N - 1] >= rest.len() / 16 * 16 {
            return None;
        }
        let next = stop.map_or(rest.len(), |i| i + 1);
        let mut end = s;
        if end > commas[N - 1] + 1 && rest[end - 1] == b'\r' {
            end -= 1;
        }
        Some((
            commas[..N].try_into().unwrap(),
            end,
            next,
            *commas.last().unwrap(),
        ))
    }
    let bytes = b",,,,,\n\r\"abc";
    let mut next = xorshift(0x1234_5678_9abc_def1);
    for _ in 0..200_000 {
        let len = (next() % 70) as usize;
        let line: Vec<u8> = (0..len)
            .map(|_| {
                let r = next() as usize;
                // Mostly letters, so that lines run over several blocks.
                if r.is_multiple_of(4) {
                    bytes[r / 4 % bytes.len()]
                } else {
                    b'0' + (r % 10) as u8
                }
            })
            .collect();
        assert_eq!(line_parts::<4>(&line), plain::<4>(&line), "{line:?}");
        assert_eq!(line_parts::<6>(&line), plain::<6>(&line), "{line:?}");
    }
}

/// Readers of consecutive ranges of whole lines ([`Reader::range`], as the table's chunks
/// on two threads) read the same records as one reader of the whole snapshot: rows and
/// errors with their lines and bytes, the records count and the memo.
#[test]
fn ranges_read_as_the_whole() {
    let lines: &[&[u8]] = &[
        b"cp1,a,t,1652193120,5,4,3,2\n",
        b"cp1,b b,t,1652193120,,,,7\r\n",
        b"\n",
        b"cp2,\"q,1\",t,1652193120,1,2,3\n",
        b"cp2,a,t,x,1,2,3\n",
        b"cp3,a,t,1652193120,-1,2,3\n",
        b"\r\n",
        b"cp3,c,t,1652193120,0.5,2,3,4,5,6\n",
        b"cp4\n",
        b"cp4,\"a,t,1652193120,1,2\n",
        b"cp5,a,t,1652193120,99999999999999999999,1,1\n",
    ];
    type Rec = Result<(String, String, i64, Vec<Value>, u64, u64, u64), RowError>;
    let read = |r: &mut Reader<'_>, out: &mut Vec<Rec>| {
        while let Some(x) = r.next() {
            out.push(x.map(|row| {
                let v = row.values().to_vec();
                let (h, s) = (row.host.to_string(), row.stat.to_string());
                (h, s, row.time, v, row.line, row.byte, row.keep)
            }));
        }
    };
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    for case in 0..400 {
        let n = (next() % 9 + 1) as usize;
        let mut data = Vec::new();
        let mut starts = vec![0];
        for _ in 0..n {
            data.extend_from_slice(lines[(next() % lines.len() as u64) as usize]);
            starts.push(data.len());
        }
        if case % 3 == 0 {
            // A last line without a newline, left unparsed.
            data.extend_from_slice(b"cp9,z,t,1652193120,1");
        }
        for kind in [Kind::Counters, Kind::Samples] {
            let mut whole = Reader::new(&data, kind, false).with_memo(&[], Vec::new(), true);
            let mut want = Vec::new();
            read(&mut whole, &mut want);
            let end = whole.parsable_len();
            let want_memo = whole.take_memo();
            // Every way to cut the lines into up to three ranges.
            for a in 0..starts.len() {
                for b in a..starts.len() {
                    let cuts = [0, starts[a], starts[b], end];
                    let (mut got, mut records, mut memo) = (Vec::new(), 0, Vec::new());
                    let mut line = 1;
                    for w in cuts.windows(2) {
                        let mut r = Reader::range(&data, kind, w[0], w[1], line).with_memo(
                            &[],
                            Vec::new(),
                            true,
                        );
                        read(&mut r, &mut got);
                        records += r.records();
                        let part = r.take_memo();
                        if !part.is_empty() {
                            memo.resize(line as usize - 1, 0);
                            memo.extend_from_slice(&part);
                        }
                        line = r.next_line();
                        assert_eq!(
                            line,
                            1 + data[..w[1]].iter().filter(|&&c| c == b'\n').count() as u64
                        );
                    }
                    let what = format!(
                        "{kind:?} cut at {a}, {b}: {:?}",
                        String::from_utf8_lossy(&data)
                    );
                    assert_eq!(got, want, "{what}");
                    assert_eq!(records, whole.records(), "{what}");
                    assert_eq!(memo, want_memo, "{what}");
                }
            }
        }
    }
}

/// The memo of a rewrite ([`Reader::with_memo`]): rows that repeat the previous snapshot's
/// row at the same position, shifted by one minute, are read from two values, and every
/// row reads as exactly what a reader without memo gives.
mod repeats {
    use super::*;

    const T: i64 = 1652193060;

    /// How a record of the second snapshot was read.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Got {
        /// `same_tail != 0`, read by the fast path: `values()` is exactly `[v0, v1]`.
        Repeat,
        /// `same_tail != 0`, read by the general path (split in full): `values()` has
        /// all `n` values, the two newest parsed and the others [`Value::Missing`].
        RepeatSplit,
        /// `same_tail == 0`: every value parsed.
        Full,
        Bad(Reason),
    }
    use Got::{Bad, Full, Repeat, RepeatSplit};

    /// host, stat, time, values, line, byte
    type Whole = (String, String, i64, Vec<Value>, u64, u64);

    fn whole(row: &Row<'_>, values: Vec<Value>) -> Whole {
        (
            row.host.to_string(),
            row.stat.to_string(),
            row.time,
            values,
            row.line,
            row.byte,
        )
    }

    /// Every record of `data` read without memo.
    fn plain(data: &[u8], kind: Kind, complete: bool) -> (Vec<Result<Whole, RowError>>, u64) {
        let mut r = Reader::new(data, kind, complete);
        let mut out = Vec::new();
        while let Some(x) = r.next() {
            out.push(x.map(|row| whole(&row, row.values().to_vec())));
        }
        (out, r.incomplete_tail() as u64)
    }

    /// Every record of `data` read with `memo`: (record, keep, same_tail, values, text).
    #[allow(clippy::type_complexity)]
    fn with_memo(
        data: &[u8],
        kind: Kind,
        complete: bool,
        memo: &[u32],
        newest_first: bool,
    ) -> (
        Vec<Result<(Whole, u64, u64, Vec<u8>), RowError>>,
        Vec<u32>,
        u64,
    ) {
        let mut r = Reader::new(data, kind, complete).with_memo(memo, Vec::new(), newest_first);
        let mut out = Vec::new();
        while let Some(x) = r.next() {
            out.push(x.map(|row| {
                (
                    whole(&row, row.values().to_vec()),
                    row.keep,
                    row.same_tail,
                    row.values_text.to_vec(),
                )
            }));
        }
        let records = r.records();
        assert_eq!(records, out.len() as u64);
        let tail = r.incomplete_tail() as u64;
        let memo = r.take_memo();
        (out, memo, tail)
    }

    /// A reader of `cur` (newest first) with `memo`, the memo of the snapshot before it.
    fn after<'a>(cur: &'a [u8], kind: Kind, complete: bool, memo: &'a [u32]) -> Reader<'a> {
        Reader::new(cur, kind, complete).with_memo(memo, Vec::new(), true)
    }

    /// [`second_read_as_is`] with a long row that repeats (its values all equal: in either
    /// order) after `prev` and `cur`, so that their own rows are not near the end of the
    /// data: a row whose 6th comma is not in a whole 16-byte block of the data takes the
    /// general path ([`the_last_line_without_newline`]).
    fn second_read(
        prev: &str,
        cur: &str,
        kind: Kind,
        complete: bool,
        newest_first: bool,
    ) -> Vec<Got> {
        let pad = |t: i64| line("zz", "trailer", t, &["12"; 15]);
        let mut got = second_read_as_is(
            &(prev.to_string() + &pad(T)),
            &(cur.to_string() + &pad(T + 60)),
            kind,
            complete,
            newest_first,
        );
        // The memo is by line: the trailer repeats when it is on the same one.
        let lines = |s: &str| s.lines().count();
        let trailer = match (lines(prev) == lines(cur), newest_first) {
            (false, _) => Full,
            (true, true) => Repeat,
            (true, false) => RepeatSplit,
        };
        assert_eq!(got.pop(), Some(trailer), "the trailer");
        got
    }

    /// Reads `prev` then `cur` with the memo, checks every record of `cur` against a reader
    /// without memo (all values, errors with reason, line, byte and field), the older
    /// values of a repeat left out as documented, `same_tail` equal to the full `keep` of
    /// the previous snapshot's row at the same position, and `keep` and the memo
    /// independent of the hints. How each record of `cur` was read.
    fn second_read_as_is(
        prev: &str,
        cur: &str,
        kind: Kind,
        complete: bool,
        newest_first: bool,
    ) -> Vec<Got> {
        let (first, memo, _) = with_memo(prev.as_bytes(), kind, true, &[], newest_first);
        // The keep of each line's record (0 for a bad one, a blank line or none).
        let mut prev_keep: Vec<u64> = Vec::new();
        for r in &first {
            let (line, keep) = match r {
                Ok(r) => (r.0 .4, r.1),
                Err(e) => (e.line, 0),
            };
            prev_keep.resize(line as usize, 0);
            prev_keep[line as usize - 1] = keep;
        }
        for r in first.iter().flatten() {
            assert_eq!(r.2, 0, "no memo, no repeat");
        }
        assert_eq!(
            memo,
            prev_keep.iter().map(|&k| k as u32).collect::<Vec<_>>(),
            "the memo holds the low 32 bits of each line's keep"
        );
        let (want, want_tail) = plain(cur.as_bytes(), kind, complete);
        let (got, memo_after, tail) =
            with_memo(cur.as_bytes(), kind, complete, &memo, newest_first);
        // The same snapshot read without hints: keeps and memo must not depend on them.
        let (fresh, fresh_memo, _) = with_memo(cur.as_bytes(), kind, complete, &[], newest_first);
        assert_eq!(tail, want_tail);
        assert_eq!(got.len(), want.len(), "records");
        assert_eq!(memo_after, fresh_memo, "memo");
        let mut how = Vec::new();
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let g = match (g, w) {
                (Err(g), Err(w)) => {
                    assert_eq!(g, w, "record {k}");
                    how.push(Bad(g.reason));
                    continue;
                }
                (Ok(g), Ok(_)) => g,
                _ => panic!("record {k}: {g:?}, want {w:?}"),
            };
            let (row, keep, same_tail, text) = g;
            let w = w.as_ref().unwrap();
            assert_eq!(*keep, fresh[k].as_ref().unwrap().1, "record {k}: keep");
            if *same_tail == 0 {
                assert_eq!(row, w, "record {k}");
                how.push(Full);
                continue;
            }
            assert_eq!(
                *same_tail,
                prev_keep[row.4 as usize - 1],
                "record {k}: same_tail is the keep of the row it repeats"
            );
            let (vals, n) = parse_values(text, kind).unwrap();
            let mut all = row.clone();
            all.3 = vals[..n].to_vec();
            assert_eq!(&all, w, "record {k}: all values from values_text");
            let n = w.3.len();
            if newest_first && row.3.len() == 2 {
                // Only v0 and v1 split and parsed.
                assert_eq!(row.3, w.3[..2], "record {k}: values()");
                how.push(Repeat);
            } else {
                // The general path: the two newest parsed, the rest missing.
                let newest = if newest_first { 0..2 } else { n - 2..n };
                let mut v = vec![Value::Missing; n];
                v[newest.clone()].copy_from_slice(&w.3[newest]);
                assert_eq!(row.3, v, "record {k}: values()");
                how.push(RepeatSplit);
            }
        }
        how
    }

    fn line(host: &str, stat: &str, t: i64, vals: &[&str]) -> String {
        format!("{host},{stat},2022-05-10T16:31:00,{t},{}\n", vals.join(","))
    }

    fn gen_file(f: fn(&mut Vec<u8>, usize, usize, i64) -> std::io::Result<()>, t: i64) -> String {
        let mut out = Vec::new();
        f(&mut out, 3, 4, t).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_rewrite_one_minute_later_repeats_every_row() {
        for kind in [Kind::Counters, Kind::Samples] {
            let file = |t| match kind {
                Kind::Counters => gen_file(crate::gen::counters, t),
                Kind::Samples => gen_file(crate::gen::samples, t),
            };
            for k in 1..4 {
                let (prev, cur) = (file(T + 60 * (k - 1)), file(T + 60 * k));
                assert_eq!(
                    second_read(&prev, &cur, kind, false, true),
                    vec![Repeat; 12],
                    "{kind:?} rewrite {k}"
                );
            }
            // The memo a repeat leaves is the one the next rewrite needs: three in a row.
            let (_, memo, _) = with_memo(file(T).as_bytes(), kind, false, &[], true);
            let (got, memo, _) = with_memo(file(T + 60).as_bytes(), kind, false, &memo, true);
            assert!(got.iter().all(|r| r.as_ref().unwrap().2 != 0));
            let (got, _, _) = with_memo(file(T + 120).as_bytes(), kind, false, &memo, true);
            assert!(got.iter().all(|r| r.as_ref().unwrap().2 != 0), "{kind:?}");
        }
    }

    /// The exact values of a repeat, by hand: v0 and v1 only, the rest from the text.
    #[test]
    fn a_repeat_parses_two_values_and_keeps_the_text() {
        let prev = line("cp1", "a", T, &["5", "40", "30", "20", "10"]);
        let cur = line("cp1", "a", T + 60, &["6", "41", "40", "30", "20"]);
        let (_, memo, _) = with_memo(prev.as_bytes(), Kind::Counters, false, &[], true);
        let mut r = after(cur.as_bytes(), Kind::Counters, false, &memo);
        let row = r.next().unwrap().unwrap();
        assert_ne!(row.same_tail, 0);
        assert_eq!(row.values(), ints(&[6, 41]));
        assert_eq!(row.values_text, b"6,41,40,30,20");
        assert_eq!(
            (row.host, row.stat, row.time, row.line, row.byte),
            ("cp1", "a", T + 60, 1, 0)
        );
        let (vals, n) = parse_values(row.values_text, Kind::Counters).unwrap();
        assert_eq!(vals[..n], ints(&[6, 41, 40, 30, 20])[..]);
    }

    #[test]
    fn a_changed_older_value_is_not_a_repeat() {
        let prev = line("cp1", "a", T, &["5", "40", "30", "20", "10", "9", "8"])
            + &line("cp2", "a", T, &["1", "2", "3", "4", "5", "6", "7"]);
        // cp1's v5 (the old v4) revised from 10 to 11; cp2 shifted as it should be.
        let cur = line(
            "cp1",
            "a",
            T + 60,
            &["6", "41", "40", "30", "20", "11", "9"],
        ) + &line("cp2", "a", T + 60, &["0", "1", "2", "3", "4", "5", "6"]);
        assert_eq!(
            second_read(&prev, &cur, Kind::Counters, false, true),
            [Full, Repeat]
        );
        // v1 (the old v0, a partial minute) may be revised; the last value (the old v5)
        // may not.
        for (vals, want) in [
            (["6", "99", "40", "30", "20", "10", "9"], Repeat),
            (["6", "41", "40", "30", "20", "10", "90"], Full),
        ] {
            let cur = line("cp1", "a", T + 60, &vals);
            assert_eq!(
                second_read(&prev, &cur, Kind::Counters, false, true),
                [want],
                "{vals:?}"
            );
        }
    }

    /// The hash is seeded with the minute: values equal in every position (a shift changes
    /// no text) repeat only one minute later.
    #[test]
    fn only_one_minute_later_is_a_repeat() {
        let v = ["12"; 15];
        let prev = line("cp1", "a", T, &v);
        for (dt, want) in [
            (0, Full),
            (30, Full),
            (60, Repeat),
            (119, Repeat),
            (120, Full),
            (-60, Full),
        ] {
            let cur = line("cp1", "a", T + dt, &v);
            assert_eq!(
                second_read(&prev, &cur, Kind::Counters, false, true),
                [want],
                "{dt} s later"
            );
        }
        // Shifted values in the same minute: not a repeat either.
        let prev = line("cp1", "a", T, &["5", "4", "3", "2"]);
        let cur = line("cp1", "a", T, &["6", "5", "4", "3"]);
        assert_eq!(
            second_read(&prev, &cur, Kind::Counters, false, true),
            [Full]
        );
    }

    #[test]
    fn the_memo_is_by_position() {
        let a = |t, v: &[&str]| line("cp1", "a", t, v);
        let b = |t, v: &[&str]| line("cp2", "a", t, v);
        let prev = a(T, &["5", "4", "3"]) + &b(T, &["9", "8", "7"]);
        // Swapped: neither row is at its old position.
        let cur = b(T + 60, &["1", "9", "8"]) + &a(T + 60, &["6", "5", "4"]);
        assert_eq!(
            second_read(&prev, &cur, Kind::Counters, false, true),
            [Full, Full]
        );
        // The next rewrite in the new order repeats again.
        let next = b(T + 120, &["1", "1", "9"]) + &a(T + 120, &["6", "6", "5"]);
        assert_eq!(
            second_read(&cur, &next, Kind::Counters, false, true),
            [Repeat, Repeat]
        );
        // The memo is by line (so that a snapshot can be read in chunks on several
        // threads): blank lines move the rows after them, like any line (the platform
        // writes none).
        let blanks = format!(
            "\n{}\r\n\n{}",
            b(T + 120, &["1", "1", "9"]),
            a(T + 120, &["6", "6", "5"])
        );
        assert_eq!(
            second_read(&cur, &blanks, Kind::Counters, false, true),
            [Full, Full]
        );
        // A blank line at the end moves nothing (the last row, near the end of the data,
        // takes the general path).
        let blank_after = next.clone() + "\n";
        assert_eq!(
            second_read_as_is(&cur, &blank_after, Kind::Counters, false, true),
            [Repeat, RepeatSplit]
        );
        // A row inserted before: everything after it is one position off.
        let ins = line("cp0", "a", T + 120, &["1", "1", "1"]) + &next;
        assert_eq!(
            second_read(&cur, &ins, Kind::Counters, false, true),
            [Full, Full, Full]
        );
    }

    #[test]
    fn a_line_with_a_quote_is_never_a_repeat() {
        let prev = line("cp1", "a", T, &["5", "4", "3", "2"])
            + &line("cp2", "a", T, &["5", "4", "3", "2"]);
        // A quoted host; a quoted older value (same numbers); a stray quote (bad line).
        for (cur, want) in [
            (line("\"cp1\"", "a", T + 60, &["6", "5", "4", "3"]), Full),
            (line("cp1", "a", T + 60, &["6", "5", "\"4\"", "3"]), Full),
            (
                line("cp1", "a", T + 60, &["6", "5", "4", "\"3"]),
                Bad(Reason::UnclosedQuote),
            ),
            (line("cp1", "a", T + 60, &["\"6\"", "5", "4", "3"]), Full),
        ] {
            let cur = cur + &line("cp2", "a", T + 60, &["6", "5", "4", "3"]);
            assert_eq!(
                second_read(&prev, &cur, Kind::Counters, false, true),
                [want, Repeat],
                "{cur}"
            );
            // After a quoted line, its position holds no memo: the next rewrite reads it
            // in full even if it repeats.
            let next = line("cp1", "a", T + 120, &["7", "6", "5", "4"])
                + &line("cp2", "a", T + 120, &["7", "6", "5", "4"]);
            assert_eq!(
                second_read(&cur, &next, Kind::Counters, false, true),
                [Full, Repeat],
                "{cur}"
            );
        }
    }

    #[test]
    fn crlf_rows_repeat_with_exact_values() {
        let crlf = |s: String| s.replace('\n', "\r\n");
        let prev =
            line("cp1", "a", T, &["5", "4", "3", "2"]) + &line("cp2", "a", T, &["5", "4", "3"]);
        let cur = line("cp1", "a", T + 60, &["6", "5", "4", "3"])
            + &line("cp2", "a", T + 60, &["6", "5", "4"]);
        for (p, c) in [
            (crlf(prev.clone()), crlf(cur.clone())),
            (prev.clone(), crlf(cur.clone())),
            (crlf(prev.clone()), cur.clone()),
        ] {
            for kind in [Kind::Counters, Kind::Samples] {
                assert_eq!(
                    second_read(&p, &c, kind, false, true),
                    [Repeat, Repeat],
                    "{c:?}"
                );
                assert_eq!(
                    second_read(&p, &c, kind, true, true),
                    [Repeat, Repeat],
                    "{c:?}"
                );
            }
        }
        // The CR is not part of the values' text.
        let (_, memo, _) = with_memo(crlf(prev).as_bytes(), Kind::Counters, false, &[], true);
        let c = crlf(cur);
        let mut r = after(c.as_bytes(), Kind::Counters, false, &memo);
        assert_eq!(r.next().unwrap().unwrap().values_text, b"6,5,4,3");
        assert_eq!(r.next().unwrap().unwrap().values_text, b"6,5,4");
    }

    #[test]
    fn three_values_repeat_two_never() {
        let at = |t, v: &[&str]| line("cp1", "a", t, v);
        // (previous values, current values one minute later, what the second read is)
        let cases: [(&[&str], &[&str], _); 6] = [
            (&["5", "4", "3"], &["6", "5", "4"], Repeat),
            (&["5", "4"], &["6", "5"], Full),
            (&["5", "5"], &["5", "5"], Full),
            (&["5", "4", "3"], &["6", "5"], Full),
            // One value more or fewer than the row it would repeat.
            (&["5", "4", "3"], &["6", "5", "4", "3"], Full),
            (&["5", "4", "3", "2"], &["6", "5", "4"], Full),
        ];
        for kind in [Kind::Counters, Kind::Samples] {
            for (prev, cur, want) in cases {
                assert_eq!(
                    second_read(&at(T, prev), &at(T + 60, cur), kind, false, true),
                    [want],
                    "{kind:?} {prev:?} -> {cur:?}"
                );
            }
        }
    }

    #[test]
    fn empty_values_repeat_as_text() {
        for kind in [Kind::Counters, Kind::Samples] {
            // An empty last value: the row's text ends in a comma.
            let prev = line("cp1", "a", T, &["5", "4", "", ""])
                + &line("cp2", "a", T, &["5", "", "3", ""]);
            let cur = line("cp1", "a", T + 60, &["6", "5", "4", ""])
                + &line("cp2", "a", T + 60, &["", "5", "", "3"]);
            assert_eq!(
                second_read(&prev, &cur, kind, false, true),
                [Repeat, Repeat],
                "{kind:?}"
            );
            // One more empty value is one more value: not a repeat.
            let cur = line("cp1", "a", T + 60, &["6", "5", "4", "", ""])
                + &line("cp2", "a", T + 60, &["", "5", "", "3", ""]);
            assert_eq!(
                second_read(&prev, &cur, kind, false, true),
                [Full, Full],
                "{kind:?}"
            );
            // All empty but v0 and v1.
            let prev = line("cp1", "a", T, &["", "", "", "", ""]);
            let cur = line("cp1", "a", T + 60, &["1", "", "", "", ""]);
            assert_eq!(
                second_read(&prev, &cur, kind, false, true),
                [Repeat],
                "{kind:?}"
            );
        }
        let prev = line("cp1", "a", T, &["5", "4", "", ""]);
        let cur = line("cp1", "a", T + 60, &["6", "5", "4", ""]);
        let (_, memo, _) = with_memo(prev.as_bytes(), Kind::Samples, false, &[], true);
        let mut r = after(cur.as_bytes(), Kind::Samples, false, &memo);
        let row = r.next().unwrap().unwrap();
        assert_eq!(row.values_text, b"6,5,4,");
        let (vals, n) = parse_values(row.values_text, Kind::Samples).unwrap();
        assert_eq!(
            vals[..n],
            [
                Value::Float(6.0),
                Value::Float(5.0),
                Value::Float(4.0),
                Value::Missing
            ]
        );
    }

    /// A bad v0 or v1 in a row whose older values repeat: the same error (reason, line,
    /// byte, field) as without memo, and no memo for the next rewrite at that position.
    #[test]
    fn a_bad_newest_value_is_the_same_error() {
        let prev =
            line("cp0", "a", T, &["1", "1", "1"]) + &line("cp1", "a", T, &["5", "4", "3", "2"]);
        for (v0, v1, want, field) in [
            ("x", "5", Reason::BadNumber, 5),
            ("6", "x", Reason::BadNumber, 6),
            ("-6", "5", Reason::Negative, 5),
            ("6", "-5", Reason::Negative, 6),
            ("99999999999999999999", "5", Reason::Overflow, 5),
            ("x", "y", Reason::BadNumber, 5),
        ] {
            let cur = line("cp0", "a", T + 60, &["1", "1", "1"])
                + &line("cp1", "a", T + 60, &[v0, v1, "4", "3"]);
            assert_eq!(
                second_read(&prev, &cur, Kind::Counters, false, true),
                [Repeat, Bad(want)],
                "{v0},{v1}"
            );
            let e = plain(cur.as_bytes(), Kind::Counters, false).0[1]
                .clone()
                .unwrap_err();
            let byte = cur.find('\n').unwrap() as u64 + 1;
            assert_eq!((e.line, e.byte, e.field), (2, byte, field), "{v0},{v1}");
            let next = line("cp0", "a", T + 120, &["1", "1", "1"])
                + &line("cp1", "a", T + 120, &["7", "6", "5", "4"]);
            assert_eq!(
                second_read(&cur, &next, Kind::Counters, false, true),
                [Repeat, Full]
            );
        }
        // Samples: the same.
        let prev = line("cp1", "a", T + 1, &["0.5", "0.25", "0.125"]);
        for (v0, v1, want, field) in [
            ("abc", "0.5", Reason::BadNumber, 5),
            ("0.75", "-0.5", Reason::Negative, 6),
            ("1e999", "0.5", Reason::Overflow, 5),
        ] {
            let cur = line("cp1", "a", T + 61, &[v0, v1, "0.25"]);
            assert_eq!(
                second_read(&prev, &cur, Kind::Samples, false, true),
                [Bad(want)]
            );
            let e = plain(cur.as_bytes(), Kind::Samples, false).0[0]
                .clone()
                .unwrap_err();
            assert_eq!((e.reason, e.field), (want, field));
        }
        // A bad older value, or too many values, can never be a repeat: the row it would
        // repeat had to be good.
        let prev = line("cp1", "a", T, &["5", "4", "x", "2"]);
        let cur = line("cp1", "a", T + 60, &["6", "5", "4", "x"]);
        assert_eq!(
            second_read(&prev, &cur, Kind::Counters, false, true),
            [Bad(Reason::BadNumber)]
        );
        let sixteen: Vec<String> = (0..16).map(|i| i.to_string()).collect();
        let sixteen: Vec<&str> = sixteen.iter().map(|s| s.as_str()).collect();
        let mut shifted = vec!["99"];
        shifted.extend_from_slice(&sixteen[..15]);
        assert_eq!(
            second_read(
                &line("cp1", "a", T, &sixteen),
                &line("cp1", "a", T + 60, &shifted),
                Kind::Counters,
                false,
                true
            ),
            [Bad(Reason::TooManyValues)]
        );
        // Fifteen values, the most a row may have, do repeat.
        assert_eq!(
            second_read(
                &line("cp1", "a", T, &sixteen[..15]),
                &line("cp1", "a", T + 60, &shifted[..15]),
                Kind::Counters,
                false,
                true
            ),
            [Repeat]
        );
    }

    /// The last line without a newline: a repeat once the file is quiet, left unread
    /// otherwise; a short last line (too close to the end of the data for the 16-byte
    /// scan) is found by the general path, which leaves the older values missing.
    #[test]
    fn the_last_line_without_newline() {
        let prev = line("cp1", "a", T, &["5", "4", "3", "2", "1"])
            + &line("cp2", "a", T, &["50", "40", "30", "20", "10"]);
        let cur = line("cp1", "a", T + 60, &["6", "5", "4", "3", "2"])
            + &line("cp2", "a", T + 60, &["60", "50", "40", "30", "20"]);
        let cut = cur.trim_end_matches('\n');
        assert_eq!(
            second_read_as_is(&prev, cut, Kind::Counters, true, true),
            [Repeat, Repeat]
        );
        // Until then the parsable part ends after cp1's row, 47 bytes whose 6th comma (at
        // 40) is not in a whole 16-byte block: the general path.
        assert_eq!(
            second_read_as_is(&prev, cut, Kind::Counters, false, true),
            [RepeatSplit]
        );
        // "h,a,t,120,6,5,4": the 6th comma is in the last 16 bytes.
        let prev = "h,a,t,60,5,4,3\n";
        let (_, memo, _) = with_memo(prev.as_bytes(), Kind::Counters, false, &[], true);
        // 15 bytes: the general path; 16 or more: the fast one.
        for (cur, want) in [
            ("h,a,t,120,6,5,4", RepeatSplit),
            ("h,a,t,120,6,5,4\n", Repeat),
            ("h,a,t,120,6,5,4\r\n", Repeat),
        ] {
            assert_eq!(
                second_read_as_is(prev, cur, Kind::Counters, true, true),
                [want],
                "{cur:?}"
            );
        }
        let mut r = after(b"h,a,t,120,6,5,4", Kind::Counters, true, &memo);
        let row = r.next().unwrap().unwrap();
        assert_ne!(row.same_tail, 0);
        assert_eq!(row.values(), [Value::Int(6), Value::Int(5), Value::Missing]);
        assert_eq!(row.values_text, b"6,5,4");
    }

    /// The parse stage fills one slot after the other in place
    /// ([`Reader::next_ahead_into`]): a slot that held a repeat, a full row or an error
    /// reads the next record exactly as a new one.
    #[test]
    fn one_slot_filled_in_place_reads_every_record_as_new() {
        let rows = [
            ("cp0", vec!["5", "4", "3", "2", "1", "9", "8", "7"]),
            ("cp1", vec!["5", "4"]),
            ("cp2", vec!["50", "40", "30", "20", "10"]),
            ("cp3", vec!["5", "x", "3", "2", "1"]),
            (
                "cp4",
                vec![
                    "15", "14", "13", "12", "11", "10", "9", "8", "7", "6", "5", "4", "3", "2", "1",
                ],
            ),
            ("cp5", vec!["1", "2", "3"]),
        ];
        let file = |k: i64| {
            let mut out = String::new();
            for (i, (h, v)) in rows.iter().enumerate() {
                // Shifted k minutes: k new values in front, the oldest dropped.
                let mut vals: Vec<String> = (0..k).map(|j| (100 + j).to_string()).collect();
                vals.extend(v.iter().map(|s| s.to_string()));
                vals.truncate(v.len());
                let host = if i == 4 && k == 1 {
                    "\"cp4\"".to_string()
                } else {
                    h.to_string()
                };
                out += &line(
                    &host,
                    "a",
                    T + 60 * k,
                    &vals.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                );
                if i == 2 {
                    out += "cp2b,a,t,1,-1\n\n";
                }
            }
            out
        };
        for kind in [Kind::Counters, Kind::Samples] {
            let mut memo = Vec::new();
            for k in 0..3 {
                let text = file(k);
                let data = text.as_bytes();
                let mut r = after(data, kind, false, &memo);
                let mut quoted = Reader::new(data, kind, false);
                let mut slot = Ahead::Row(Row::EMPTY);
                let mut got = Vec::new();
                let mut repeats = 0;
                while r.next_ahead_into(&mut slot) {
                    got.push(match &slot {
                        Ahead::Row(row) if row.same_tail != 0 => {
                            repeats += 1;
                            let (v, n) = parse_values(row.values_text, kind).unwrap();
                            Ok(whole(row, v[..n].to_vec()))
                        }
                        Ahead::Row(row) => Ok(whole(row, row.values().to_vec())),
                        Ahead::Bad(e) => Err(*e),
                        Ahead::Quoted(start, line) => quoted
                            .quoted_line(*start, *line)
                            .map(|row| whole(&row, row.values().to_vec())),
                    });
                }
                assert_eq!(got, plain(data, kind, false).0, "{kind:?} rewrite {k}");
                // cp0, cp2 and cp5 (cp4 was quoted a minute before: no memo).
                assert_eq!(repeats, [0, 3, 3][k as usize], "{kind:?} rewrite {k}");
                let next = r.take_memo();
                memo = next;
            }
        }
    }

    /// Oldest first (the last value is the row's own minute): the repeat is found by the
    /// general path, the two newest are the last two values.
    #[test]
    fn oldest_first_repeats_through_the_general_path() {
        for kind in [Kind::Counters, Kind::Samples] {
            let prev = line("cp1", "a", T, &["1", "2", "3", "4", "5", "6", "7", "8"])
                + &line("cp2", "a", T, &["1", "2", "3"]);
            let cur = line(
                "cp1",
                "a",
                T + 60,
                &["2", "3", "4", "5", "6", "7", "9", "4"],
            ) + &line("cp2", "a", T + 60, &["2", "4", "0"]);
            assert_eq!(
                second_read(&prev, &cur, kind, false, false),
                [RepeatSplit, RepeatSplit],
                "{kind:?}"
            );
            // The newest-first shift is not a repeat oldest first, nor the other way round.
            let nf = line(
                "cp1",
                "a",
                T + 60,
                &["0", "1", "2", "3", "4", "5", "6", "7"],
            ) + &line("cp2", "a", T + 60, &["0", "1", "2"]);
            assert_eq!(second_read(&prev, &nf, kind, false, false), [Full, Full]);
            assert_eq!(second_read(&prev, &cur, kind, false, true), [Full, Full]);
            // A changed older value; the same minute; two minutes later; a bad newest value
            // (the error without memo).
            for (t, last, want) in [
                (T + 60, ["0", "6", "7", "9", "4"], Full),
                (T, ["5", "6", "7", "9", "4"], Full),
                (T + 120, ["5", "6", "7", "9", "4"], Full),
                (T + 60, ["5", "6", "7", "9", "x"], Bad(Reason::BadNumber)),
            ] {
                let vals = [["2", "3", "4"].as_slice(), &last].concat();
                let cur = line("cp1", "a", t, &vals);
                assert_eq!(
                    second_read(&prev, &cur, kind, false, false),
                    [want],
                    "{vals:?} at {t}"
                );
            }
        }
    }
}

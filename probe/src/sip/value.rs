//! Readers of header values. Every function here takes LWS (SP, HTAB, and the CR/LF of a
//! folded line) wherever RFC 3261's grammar allows it, and borrows from the value.

/// SP, HTAB, or the CR / LF of a fold.
#[inline]
pub fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// A token character (RFC 3261 §25.1).
#[inline]
pub fn is_token(c: u8) -> bool {
    TOKEN[c as usize]
}

/// [`is_token`] as a table: header names and branches are checked byte by byte on the hot
/// path.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

/// Without LWS at either end.
#[inline]
pub fn trim(mut v: &[u8]) -> &[u8] {
    while let [c, rest @ ..] = v {
        if !is_lws(*c) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., c] = v {
        if !is_lws(*c) {
            break;
        }
        v = rest;
    }
    v
}

#[inline]
fn skip_lws(v: &[u8]) -> &[u8] {
    let n = v.iter().position(|&c| !is_lws(c)).unwrap_or(v.len());
    &v[n..]
}

/// The longest prefix of `v` whose bytes pass `f`, and the rest.
#[inline]
fn take(v: &[u8], f: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
    let n = v.iter().position(|&c| !f(c)).unwrap_or(v.len());
    v.split_at(n)
}

/// End of the first of the values separated by `sep` outside quotes (with `\` escapes) and
/// angle brackets.
#[inline]
fn value_end(v: &[u8], sep: u8) -> usize {
    // Up to the first quote or `<` nothing is quoted or bracketed: look for the three at once.
    match memchr::memchr3(sep, b'"', b'<', v) {
        None => v.len(),
        Some(i) if v[i] == sep => i,
        Some(i) => i + value_end_quoted(&v[i..], sep),
    }
}

/// [`value_end`] from a quote or `<` on, byte by byte.
fn value_end_quoted(v: &[u8], sep: u8) -> usize {
    let mut angle = false;
    for (i, c) in unquoted(v) {
        match c {
            b'<' => angle = true,
            b'>' => angle = false,
            c if c == sep && !angle => return i,
            _ => {}
        }
    }
    v.len()
}

/// The bytes of `v` outside quoted strings (with their `\` escapes), with their positions.
fn unquoted(v: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let (mut quoted, mut esc) = (false, false);
    v.iter().enumerate().filter_map(move |(i, &c)| {
        if esc {
            esc = false;
            return None;
        }
        match c {
            b'\\' if quoted => {
                esc = true;
                None
            }
            b'"' => {
                quoted = !quoted;
                None
            }
            _ if quoted => None,
            _ => Some((i, c)),
        }
    })
}

/// The comma-separated values of a header (§7.3.1), each without surrounding LWS; empty values
/// (`a,,b`) are skipped.
pub fn values(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(v);
    std::iter::from_fn(move || loop {
        let r = rest?;
        let end = value_end(r, b',');
        let one = trim(&r[..end]);
        rest = (end < r.len()).then(|| &r[end + 1..]);
        if !one.is_empty() {
            return Some(one);
        }
    })
}

/// The value of parameter `name` (case-insensitive) in `params` (`;a=b ; c = d;e`, starting at
/// or before the first `;`): `Some(b"")` for a parameter without a value.
pub fn param<'a>(params: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let start = value_end(params, b';');
    let mut rest = params.get(start + 1..)?;
    loop {
        let end = value_end(rest, b';');
        let p = &rest[..end];
        let (k, v) = match memchr::memchr(b'=', p) {
            Some(eq) => (trim(&p[..eq]), trim(&p[eq + 1..])),
            None => (trim(p), &p[p.len()..]),
        };
        if k.eq_ignore_ascii_case(name) {
            return Some(v);
        }
        rest = rest.get(end + 1..)?;
    }
}

/// The top value of a Via header (§20.42): `SIP / 2.0 / transport sent-by *(; via-params)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaValue<'a> {
    /// The transport token as written (`UDP`, `tcp`, ...).
    pub transport: &'a [u8],
    /// The host as written (an IPv6 reference keeps its brackets).
    pub host: &'a [u8],
    pub port: Option<u16>,
    /// The `;params` part (starting with `;`), or empty.
    pub params: &'a [u8],
}

/// Reads one Via value (the first of `v`'s comma-separated values is the caller's business).
pub fn via(v: &[u8]) -> Option<ViaValue<'_>> {
    fn slash(v: &[u8]) -> Option<&[u8]> {
        skip_lws(v).strip_prefix(b"/").map(skip_lws)
    }
    let (proto, r) = take(trim(v), is_token);
    let (version, r) = take(slash(r)?, is_token);
    let (transport, r) = take(slash(r)?, is_token);
    if !proto.eq_ignore_ascii_case(b"SIP") || version != b"2.0" || transport.is_empty() {
        return None;
    }
    let r0 = skip_lws(r);
    if r0.len() == r.len() {
        return None;
    }
    let (host, r) = if r0.starts_with(b"[") {
        let close = memchr::memchr(b']', r0)?;
        r0.split_at(close + 1)
    } else {
        take(r0, |c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
    };
    if host.is_empty() {
        return None;
    }
    let r = skip_lws(r);
    let (port, r) = match r.strip_prefix(b":") {
        Some(p) => {
            let (digits, r) = take(skip_lws(p), |c| c.is_ascii_digit());
            (
                Some(number(digits).and_then(|n| u16::try_from(n).ok())?),
                skip_lws(r),
            )
        }
        None => (None, r),
    };
    if !(r.is_empty() || r.starts_with(b";")) {
        return None;
    }
    Some(ViaValue {
        transport,
        host,
        port,
        params: r,
    })
}

/// A decimal number of 1 to 10 significant digits that fits in a u32 (leading zeros allowed).
#[inline]
pub fn number(d: &[u8]) -> Option<u32> {
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sig = &d[d.iter().position(|&c| c != b'0').unwrap_or(d.len())..];
    if sig.len() > 10 {
        return None;
    }
    let n = sig.iter().fold(0u64, |a, &c| a * 10 + u64::from(c - b'0'));
    u32::try_from(n).ok()
}

/// A CSeq value (§20.16): number, LWS, method token.
#[inline]
pub fn cseq(v: &[u8]) -> Option<(u32, &[u8])> {
    let v = trim(v);
    let (digits, r) = take(v, |c| c.is_ascii_digit());
    let m = skip_lws(r);
    if m.len() == r.len() || m.is_empty() || !m.iter().all(|&c| is_token(c)) {
        return None;
    }
    Some((number(digits)?, m))
}

/// The first `<` outside quotes.
fn first_lt(v: &[u8]) -> Option<usize> {
    unquoted(v).find(|&(_, c)| c == b'<').map(|(i, _)| i)
}

/// Where a name-addr's URI is (inside `<>` outside quotes), or an addr-spec's (up to `;`).
fn uri_span(v: &[u8]) -> Option<(usize, usize)> {
    if let Some(lt) = first_lt(v) {
        let gt = lt + 1 + memchr::memchr(b'>', &v[lt + 1..])?;
        return Some((lt + 1, gt));
    }
    let end = v
        .iter()
        .position(|&c| matches!(c, b';' | b',') || is_lws(c))
        .unwrap_or(v.len());
    Some((0, end))
}

/// The header parameters of a From / To / Contact value: what follows its URI.
pub fn addr_params(v: &[u8]) -> &[u8] {
    match uri_span(v) {
        Some((s, e)) if s > 0 => &v[e + 1..],
        Some((_, e)) => &v[e..],
        None => &[],
    }
}

/// The `tag` of a From or To value.
pub fn tag(v: &[u8]) -> Option<&[u8]> {
    param(addr_params(v), b"tag").filter(|t| !t.is_empty())
}

/// The URI of a name-addr or addr-spec, usable on a request line: not empty, not `*`, no LWS or
/// control bytes.
pub fn uri(v: &[u8]) -> Option<&[u8]> {
    let (s, e) = uri_span(v)?;
    let u = trim(&v[s..e]);
    (!u.is_empty() && u != b"*" && u.iter().all(|&c| c > b' ' && c < 0x7f)).then_some(u)
}

/// The leading number of a value (`30 (maintenance);duration=60` → 30).
pub fn leading_number(v: &[u8]) -> Option<u32> {
    let (d, _) = take(trim(v), |c| c.is_ascii_digit());
    number(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_table_is_the_grammar() {
        let tokens: Vec<u8> = (0..=255u8).filter(|&c| is_token(c)).collect();
        let mut want: Vec<u8> = b"-.!%*_+`'~".to_vec();
        want.extend((b'0'..=b'9').chain(b'A'..=b'Z').chain(b'a'..=b'z'));
        want.sort();
        assert_eq!(tokens, want);
    }

    #[test]
    fn value_end_skips_separators_in_quotes_and_brackets() {
        assert_eq!(value_end(b"a;b", b';'), 1);
        assert_eq!(value_end(b"abc", b';'), 3);
        assert_eq!(value_end(b"\"x;\\\";y\";z", b';'), 8);
        assert_eq!(value_end(b"<sip:a;lr>;q=1", b';'), 10);
        assert_eq!(value_end(b"x <sip:a,b>, y", b','), 11);
    }

    #[test]
    fn via_with_lws_everywhere() {
        let v = via(b"SIP / 2.0 / UDP\r\n 127.0.0.1 : 5060 ; branch = z9hG4bKa ;rport").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, b"127.0.0.1");
        assert_eq!(v.port, Some(5060));
        assert_eq!(param(v.params, b"BRANCH"), Some(&b"z9hG4bKa"[..]));
        assert_eq!(param(v.params, b"rport"), Some(&b""[..]));
        let v6 = via(b"sip/2.0/tcp [::1]:5;branch=x").unwrap();
        assert_eq!((v6.host, v6.port), (&b"[::1]"[..], Some(5)));
        for bad in [
            &b"SIP/2.0/UDP"[..],
            b"SIP/2.0/UDPh",
            b"SIP/3.0/UDP h",
            b"SIP/2.0/UDP h:99999",
            b"SIP/2.0/UDP h:x",
            b"SIP/2.0/UDP h junk",
        ] {
            assert_eq!(via(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn values_params_tags_uris() {
        let v: Vec<&[u8]> = values(b"<sip:a,b>;x=\"1,2\" , sip:c,,d").collect();
        assert_eq!(v, vec![&b"<sip:a,b>;x=\"1,2\""[..], b"sip:c", b"d"]);
        assert_eq!(
            tag(b"\"a;tag=no\" <sip:x;tag=no>;tag=yes"),
            Some(&b"yes"[..])
        );
        assert_eq!(tag(b"sip:x;tag=t1"), Some(&b"t1"[..]));
        assert_eq!(tag(b"<sip:x>"), None);
        assert_eq!(
            uri(b"\"CP\" <sip:cp@10.0.0.1;transport=udp>;expires=6"),
            Some(&b"sip:cp@10.0.0.1;transport=udp"[..])
        );
        assert_eq!(uri(b"sip:cp@h;expires=6"), Some(&b"sip:cp@h"[..]));
        assert_eq!(uri(b"*"), None);
        assert_eq!(cseq(b"0009\r\n INVITE"), Some((9, &b"INVITE"[..])));
        assert_eq!(cseq(b"4294967296 INVITE"), None);
        assert_eq!(cseq(b"1INVITE"), None);
        assert_eq!(leading_number(b"30 (maintenance)"), Some(30));
    }
}

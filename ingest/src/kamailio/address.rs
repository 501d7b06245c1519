//! Target addresses: which transport an address means, whether it can work at all, and the
//! default `hostname` tag it gives.
//!
//! - `http://HOST[:PORT]/PATH`, `https://...`: JSON-RPC;
//! - `unix:PATH` (`unixs:PATH`), `tcp:HOST:PORT`, `udp:HOST:PORT` (`[v6]:PORT`): BINRPC;
//! - anything else without a `scheme://` prefix: a file path.
//!
//! An address with an unknown scheme (`htp://...`), a `tcp:`/`udp:` address without a port or
//! with a port out of 1-65535 is refused by [`check`] (so `config check` names it) instead of
//! becoming a file target that fails at every poll.

use super::Transport;

/// The transport an address implies when `transport` is not given.
pub fn infer(address: &str) -> Transport {
    if address.starts_with("http://") || address.starts_with("https://") {
        Transport::Jsonrpc
    } else if ["unix:", "unixs:", "tcp:", "udp:"]
        .iter()
        .any(|p| address.starts_with(p))
    {
        Transport::Binrpc
    } else {
        Transport::File
    }
}

/// The `scheme` of a `scheme://...` address.
fn url_scheme(address: &str) -> Option<&str> {
    let (scheme, _) = address.split_once("://")?;
    let mut b = scheme.bytes();
    (b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || b"+.-".contains(&c)))
    .then_some(scheme)
}

/// Splits `HOST:PORT` (`[v6]:PORT`) and checks the port: (host, port).
fn host_port(a: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(v6) = a.strip_prefix('[') {
        let (h, rest) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{a}`: `[` without `]`"))?;
        let port = rest
            .strip_prefix(':')
            .ok_or_else(|| format!("`{a}` has no port (HOST:PORT)"))?;
        (h, port)
    } else {
        a.rsplit_once(':')
            .ok_or_else(|| format!("`{a}` has no port (HOST:PORT)"))?
    };
    if host.is_empty() {
        return Err(format!("`{a}` has no host (HOST:PORT)"));
    }
    match port.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok((host, p as u16)),
        Ok(p) => Err(format!("port {p} of `{a}` is out of range (1-65535)")),
        Err(_) => Err(format!("`{port}` in `{a}` is not a port number (1-65535)")),
    }
}

/// Why `address` cannot work with `transport` (`None`: it can).
pub fn check(transport: Transport, address: &str) -> Option<String> {
    match transport {
        Transport::Jsonrpc => {
            let url = match reqwest::Url::parse(address) {
                Ok(u) => u,
                Err(e) => return Some(format!("`{address}` is not a URL: {e}")),
            };
            if !matches!(url.scheme(), "http" | "https") {
                return Some(format!(
                    "`{address}`: JSON-RPC needs an http:// or https:// URL"
                ));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Some(format!("`{address}` has no host"));
            }
            if url.port() == Some(0) {
                return Some(format!("port 0 of `{address}` is out of range (1-65535)"));
            }
            None
        }
        Transport::Binrpc => {
            if let Some(p) = address
                .strip_prefix("unix:")
                .or_else(|| address.strip_prefix("unixs:"))
            {
                return p
                    .is_empty()
                    .then(|| format!("`{address}` has no socket path (unix:PATH)"));
            }
            let Some(a) = address
                .strip_prefix("tcp:")
                .or_else(|| address.strip_prefix("udp:"))
            else {
                return Some(format!(
                    "`{address}` is not unix:PATH, tcp:HOST:PORT or udp:HOST:PORT"
                ));
            };
            host_port(a).err()
        }
        Transport::File => url_scheme(address).map(|s| {
            format!(
                "unknown scheme `{s}` in `{address}` (http://, https://, unix:, tcp:, udp:, or a file path)"
            )
        }),
    }
}

/// (host, the address's distinct part under that host) of an address: `cp1` and `cp1:5071`
/// for `http://cp1:5071/RPC`, `127.0.0.1` and `127.0.0.1:2046` for `tcp:127.0.0.1:2046`, the
/// path (twice) for `unix:PATH`, the file stem and the path for a file.
fn parts(address: &str) -> (String, String) {
    match infer(address) {
        Transport::Jsonrpc => match reqwest::Url::parse(address) {
            Ok(u) => {
                let host = u
                    .host_str()
                    .unwrap_or("")
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let port = u.port_or_known_default().unwrap_or(0);
                let full = format!("{host}:{port}");
                (host, full)
            }
            Err(_) => (address.to_string(), address.to_string()),
        },
        Transport::Binrpc => {
            let a = address.split_once(':').map_or(address, |(_, a)| a);
            if address.starts_with("unix") {
                return (a.to_string(), a.to_string());
            }
            match host_port(a) {
                Ok((h, p)) => (h.to_string(), format!("{h}:{p}")),
                Err(_) => (a.to_string(), a.to_string()),
            }
        }
        Transport::File => {
            let stem = std::path::Path::new(address)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| address.to_string());
            (stem, address.to_string())
        }
    }
}

/// The default `hostname` tag of one address: its host (`cp1` for `http://cp1:5071/RPC`,
/// `127.0.0.1` for `tcp:127.0.0.1:2046`), the socket path for `unix:PATH`, the file stem for a
/// file.
pub fn default_hostname(address: &str) -> String {
    parts(address).0
}

/// Default `hostname` tags for several targets polled together, distinct where the addresses
/// are: the host alone when no other address has it, else `HOST:PORT`, else the whole address.
pub fn default_hostnames(addresses: &[&str]) -> Vec<String> {
    let parts: Vec<(String, String)> = addresses.iter().map(|a| parts(a)).collect();
    let count = |f: &dyn Fn(&(String, String)) -> &String, v: &String| {
        parts.iter().filter(|p| f(p) == v).count()
    };
    parts
        .iter()
        .zip(addresses)
        .map(|(p, a)| {
            if count(&|x| &x.0, &p.0) == 1 {
                p.0.clone()
            } else if count(&|x| &x.1, &p.1) == 1 {
                p.1.clone()
            } else {
                a.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each transport's address is checked: `tcp:127.0.0.1` (no port), `htp://127.0.0.1:6171/RPC`
    /// and `tcp:127.0.0.1:99999` are refused with the reason, not taken as file targets.
    #[test]
    fn kamailio_address_checked_per_transport() {
        for (a, want) in [
            ("tcp:127.0.0.1", Some("`127.0.0.1` has no port (HOST:PORT)")),
            (
                "tcp:127.0.0.1:99999",
                Some("port 99999 of `127.0.0.1:99999` is out of range (1-65535)"),
            ),
            (
                "udp:127.0.0.1:0",
                Some("port 0 of `127.0.0.1:0` is out of range (1-65535)"),
            ),
            ("tcp::2046", Some("`:2046` has no host (HOST:PORT)")),
            (
                "htp://127.0.0.1:6171/RPC",
                Some("unknown scheme `htp` in `htp://127.0.0.1:6171/RPC` (http://, https://, unix:, tcp:, udp:, or a file path)"),
            ),
            (
                "http://127.0.0.1:99999/RPC",
                Some("`http://127.0.0.1:99999/RPC` is not a URL: invalid port number"),
            ),
            ("unix:", Some("`unix:` has no socket path (unix:PATH)")),
            ("tcp:127.0.0.1:2046", None),
            ("udp:[::1]:2046", None),
            ("unix:/run/kamailio/kamailio_ctl", None),
            ("http://cp1:5071/RPC", None),
            ("https://cp1/RPC", None),
            ("/var/tmp/kamctl-stats.json", None),
        ] {
            assert_eq!(check(infer(a), a).as_deref(), want, "{a}");
        }
        assert_eq!(infer("tcp:127.0.0.1"), Transport::Binrpc);
        assert_eq!(infer("htp://x/RPC"), Transport::File);
    }

    /// The default hostname is the address's host (not `tcp:127.0.0` or `RPC`), and two
    /// `http://127.0.0.1:*` targets get distinct ones.
    #[test]
    fn kamailio_default_hostnames_are_hosts_and_distinct() {
        assert_eq!(default_hostname("tcp:127.0.0.1:9000"), "127.0.0.1");
        assert_eq!(default_hostname("http://h/RPC"), "h");
        assert_eq!(default_hostname("http://cp1:5071/RPC"), "cp1");
        assert_eq!(default_hostname("udp:[::1]:2046"), "::1");
        assert_eq!(default_hostname("unix:/run/k.sock"), "/run/k.sock");
        assert_eq!(
            default_hostname("fixtures/kamailio/kamctl-stats.json"),
            "kamctl-stats"
        );
        assert_eq!(
            default_hostnames(&[
                "http://127.0.0.1:6171/RPC",
                "http://127.0.0.1:6172/RPC",
                "tcp:cp9:2046",
                "http://h/RPC",
                "http://h:80/other",
            ]),
            [
                "127.0.0.1:6171",
                "127.0.0.1:6172",
                "cp9",
                "http://h/RPC",
                "http://h:80/other"
            ]
        );
    }
}

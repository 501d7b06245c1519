//! The systemd notification protocol (`sd_notify(3)`), spoken directly: one datagram per state
//! change to the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
//! namespace). Outside systemd (`$NOTIFY_SOCKET` unset) every call is a no-op.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to systemd's notification socket.
pub struct Notifier {
    sock: Option<(UnixDatagram, String)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` / `$WATCHDOG_PID` from the environment.
    pub fn from_env() -> Notifier {
        let sock = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|p| !p.is_empty())
            .and_then(|path| UnixDatagram::unbound().ok().map(|s| (s, path)));
        let pid_ok = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&us| us > 0 && pid_ok)
            .map(Duration::from_micros);
        Notifier { sock, watchdog }
    }

    /// Whether systemd is listening.
    pub fn enabled(&self) -> bool {
        self.sock.is_some()
    }

    /// How often to send `WATCHDOG=1`: half of `WatchdogSec=`, as systemd recommends.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Sends newline-separated `KEY=VALUE` assignments.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let Some((sock, path)) = &self.sock else {
            return Ok(());
        };
        if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), path)?;
        }
        Ok(())
    }

    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", one_line(status)))
    }

    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC=` systemd 253+ asks for.
    pub fn reloading(&self) -> io::Result<()> {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()))
    }

    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }
}

/// `CLOCK_MONOTONIC` in microseconds.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            sock: Some((
                UnixDatagram::unbound().unwrap(),
                path.to_str().unwrap().to_string(),
            )),
            watchdog: Some(Duration::from_secs(10)),
        };
        n.ready("up\n2 targets").unwrap();
        n.watchdog().unwrap();
        n.stopping().unwrap();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..3 {
            let len = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8(buf[..len].to_vec()).unwrap());
        }
        assert_eq!(
            got,
            ["READY=1\nSTATUS=up 2 targets", "WATCHDOG=1", "STOPPING=1"]
        );
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));
    }

    #[test]
    fn sends_to_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("srewatch-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier {
            sock: Some((UnixDatagram::unbound().unwrap(), format!("@{name}"))),
            watchdog: None,
        };
        n.status("ok").unwrap();
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=ok");
    }

    #[test]
    fn disabled_without_socket() {
        let n = Notifier {
            sock: None,
            watchdog: None,
        };
        assert!(!n.enabled());
        n.ready("x").unwrap();
        assert_eq!(n.watchdog_interval(), None);
    }
}

//! The systemd notification protocol (`sd_notify(3)`) with the `sd-notify` crate: its messages
//! ([`NotifyState`]), `$WATCHDOG_USEC` / `$WATCHDOG_PID` and the monotonic clock for
//! `RELOADING=1`. The datagram itself is sent here, to the `AF_UNIX` socket named by
//! `$NOTIFY_SOCKET`, because the crate's `notify()` connects to that name as a path and so cannot
//! reach an abstract one (`@name`, which `sd_notify(3)` allows). Outside systemd
//! (`$NOTIFY_SOCKET` unset) every call is a no-op.

use sd_notify::NotifyState;
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
        let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
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

    /// Sends the states as one datagram, one `KEY=VALUE` a line.
    pub fn send(&self, states: &[NotifyState]) -> io::Result<()> {
        let Some((sock, path)) = &self.sock else {
            return Ok(());
        };
        let msg = states
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(msg.as_bytes(), &addr)?;
        } else {
            sock.send_to(msg.as_bytes(), path)?;
        }
        Ok(())
    }

    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))])
    }

    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&[NotifyState::Status(&one_line(status))])
    }

    pub fn watchdog(&self) -> io::Result<()> {
        self.send(&[NotifyState::Watchdog])
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC=` systemd 253+ asks for.
    pub fn reloading(&self) -> io::Result<()> {
        self.send(&[NotifyState::Reloading, NotifyState::monotonic_usec_now()?])
    }

    pub fn stopping(&self) -> io::Result<()> {
        self.send(&[NotifyState::Stopping])
    }
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
        n.reloading().unwrap();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..4 {
            let len = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8(buf[..len].to_vec()).unwrap());
        }
        let reload = got.pop().unwrap();
        assert_eq!(
            got,
            ["READY=1\nSTATUS=up 2 targets", "WATCHDOG=1", "STOPPING=1"]
        );
        let usec = reload.strip_prefix("RELOADING=1\nMONOTONIC_USEC=").unwrap();
        assert!(usec.parse::<u64>().unwrap() > 0, "{reload:?}");
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

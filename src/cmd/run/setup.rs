//! Process set-up for `srewatch run`: the token credential, the open-file limit, the host name.

use crate::config::Config;
use std::path::Path;

use super::TOKEN_CREDENTIAL;

/// Uses `$CREDENTIALS_DIRECTORY/influx-token` when it holds a token and no `token_file` is
/// configured (an empty credential means none: the environment variable, or no token).
pub(super) fn apply_credentials(cfg: &mut Config) {
    credentials_from(cfg, std::env::var_os("CREDENTIALS_DIRECTORY").as_deref());
}

fn credentials_from(cfg: &mut Config, dir: Option<&std::ffi::OsStr>) {
    let (Some(influx), Some(dir)) = (cfg.influxdb.as_mut(), dir) else {
        return;
    };
    if influx.token_file.is_some() {
        return;
    }
    let p = Path::new(dir).join(TOKEN_CREDENTIAL);
    if std::fs::read_to_string(&p).is_ok_and(|t| !t.trim().is_empty()) {
        influx.token_file = Some(p);
    }
}

/// The permission bits of a token file that its group or others may read (as ssh refuses a
/// private key they can read); none when only its owner can, or it cannot be read at all.
fn loose_token_file(p: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

/// Raises the soft limit of open descriptors to the hard one (systemd's default is 1024 soft,
/// 524288 hard; nothing here uses `select()`), so files, sockets and `/metrics` clients have
/// room. Logged when it changes.
pub(super) fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let from = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            tracing::info!(from, to = lim.rlim_max, "Raised the open-file limit");
        }
    }
}

/// Warns when the configured token file is readable by group or others.
pub(super) fn warn_loose_token_file(cfg: &Config) {
    if let Some(t) = cfg.influxdb.as_ref().and_then(|i| i.token_file.as_deref()) {
        if let Some(mode) = loose_token_file(t) {
            tracing::warn!(
                file = %t.display(),
                mode = %format!("{mode:04o}"),
                "InfluxDB token file is readable by group or others; chmod 600 it, or give it with LoadCredential=influx-token:FILE"
            );
        }
    }
}

pub(super) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn token_file_readable_by_others_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "secret\n").unwrap();
        let mode = |m: u32| {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
            loose_token_file(&p)
        };
        assert_eq!(mode(0o600), None);
        assert_eq!(mode(0o400), None);
        assert_eq!(mode(0o640), Some(0o640));
        assert_eq!(mode(0o604), Some(0o604));
        assert_eq!(mode(0o644), Some(0o644));
        assert_eq!(loose_token_file(&dir.path().join("none")), None);
    }

    #[test]
    fn token_from_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        let with_influx = || crate::config::parse("[influxdb]\n", Path::new("x")).unwrap();
        // No credential file: the environment variable (token_file stays unset).
        let mut cfg = with_influx();
        credentials_from(&mut cfg, Some(dir.path().as_os_str()));
        assert_eq!(cfg.influxdb.unwrap().token_file, None);
        // An empty credential: none.
        std::fs::write(dir.path().join(TOKEN_CREDENTIAL), " \n").unwrap();
        let mut cfg = with_influx();
        credentials_from(&mut cfg, Some(dir.path().as_os_str()));
        assert_eq!(cfg.influxdb.unwrap().token_file, None);
        std::fs::write(dir.path().join(TOKEN_CREDENTIAL), "secret\n").unwrap();
        let mut cfg = with_influx();
        credentials_from(&mut cfg, Some(dir.path().as_os_str()));
        assert_eq!(
            cfg.influxdb.unwrap().token_file,
            Some(dir.path().join(TOKEN_CREDENTIAL))
        );
        // A configured token_file wins.
        let mut cfg =
            crate::config::parse("[influxdb]\ntoken_file = \"/etc/t\"\n", Path::new("x")).unwrap();
        credentials_from(&mut cfg, Some(dir.path().as_os_str()));
        assert_eq!(
            cfg.influxdb.unwrap().token_file,
            Some(PathBuf::from("/etc/t"))
        );
        // No [influxdb]: nothing to do.
        let mut cfg = crate::config::parse("", Path::new("x")).unwrap();
        credentials_from(&mut cfg, Some(dir.path().as_os_str()));
        assert!(cfg.influxdb.is_none());
    }
}

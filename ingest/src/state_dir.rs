//! A directory of state files owned by one process: created if missing, locked with `flock` on
//! its `lock` file (a second srewatch on the same directory does not start), written only with
//! atomic replaces (a temporary file written and `fsync`ed, renamed over the file, the
//! directory `fsync`ed), and created and locked again if it is removed while in use.
//!
//! Used by the checkpoint and the saved windows ([`crate::checkpoint`], the state directory)
//! and by the InfluxDB spool ([`crate::sink::spool`], the spool directory).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// How the temporary file of an atomic write of `name` is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempName {
    /// `.name.new` (the state directory).
    Hidden,
    /// `name` followed by the suffix (the spool: `NNN.batch.tmp`).
    Suffix(&'static str),
}

/// The state directory (`[influxdb] state_dir`, by default `SPOOL_DIR/state`): created if
/// missing, locked with `flock` (a second srewatch on the same directory does not start), and
/// written only with atomic replaces.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    /// What the directory is, for the log ("State", "Spool").
    what: &'static str,
    temp: TempName,
    /// The `flock`ed lock file (replaced when the directory is recreated).
    lock: std::sync::Mutex<File>,
}

/// The state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create or open state directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("state directory {path} is in use by another process")]
    Locked { path: PathBuf },
}

impl StateDir {
    /// Opens the state directory `dir` (temporary files `.name.new`).
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        Self::open_with(dir, "State", TempName::Hidden)
    }

    /// Opens `dir`, named `what` in the log, with temporary files named by `temp`.
    pub fn open_with(
        dir: &Path,
        what: &'static str,
        temp: TempName,
    ) -> Result<StateDir, StateError> {
        let lock = Self::create_and_lock(dir)?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
            what,
            temp,
            lock: std::sync::Mutex::new(lock),
        })
    }

    /// Creates `dir` if missing and takes its lock file's `flock`.
    fn create_and_lock(dir: &Path) -> Result<File, StateError> {
        let err = |source| StateError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(err)?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StateError::Locked {
                path: dir.to_path_buf(),
            });
        }
        Ok(lock)
    }

    /// The directory was removed while in use (an operator, a cleanup job): creates it again
    /// and takes its lock again (logged once per removal), so the next writes succeed instead
    /// of failing at every snapshot.
    fn recreate(&self) -> io::Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        let lock = Self::create_and_lock(&self.dir).map_err(|e| match e {
            StateError::Dir { source, .. } => source,
            e @ StateError::Locked { .. } => io::Error::other(e.to_string()),
        })?;
        if let Ok(mut l) = self.lock.lock() {
            *l = lock;
        }
        tracing::warn!(dir = %self.dir.display(), "{} directory was removed while running; created it again", self.what);
        Ok(())
    }

    /// [`StateDir::open`] for a service: a directory another process holds is an error (two
    /// srewatch must not share it); one that cannot be created or written is logged and the
    /// service runs without state (as before there was any: a restart sends the window again).
    pub fn open_or_warn(dir: &Path) -> Result<Option<StateDir>, StateError> {
        match StateDir::open(dir) {
            Ok(s) => Ok(Some(s)),
            Err(e @ StateError::Locked { .. }) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "State directory unusable; running without checkpoint and saved windows (a restart sends the files' window again)");
                Ok(None)
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Replaces `name` with `data` atomically: its temporary file ([`TempName`]) written and
    /// `fsync`ed, renamed over `name`, directory `fsync`ed.
    pub fn write_atomic(&self, name: &str, data: &[u8]) -> io::Result<()> {
        self.write_atomic_with(name, |f| f.write_all(data))
    }

    /// [`StateDir::write_atomic`] with the content written by `fill` into the new file.
    pub fn write_atomic_with<T>(
        &self,
        name: &str,
        fill: impl FnOnce(&mut File) -> io::Result<T>,
    ) -> io::Result<T> {
        let tmp = self.dir.join(match self.temp {
            TempName::Hidden => format!(".{name}.new"),
            TempName::Suffix(s) => format!("{name}{s}"),
        });
        let dst = self.dir.join(name);
        let r = (|| {
            let mut f = match File::create(&tmp) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.recreate()?;
                    File::create(&tmp)?
                }
                r => r?,
            };
            let t = fill(&mut f)?;
            f.sync_all()?;
            fs::rename(&tmp, &dst)?;
            File::open(&self.dir)?.sync_all()?;
            Ok(t)
        })();
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    }

    /// The content of `name`; `Ok(None)` when it does not exist.
    pub fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.dir.join(name)) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Moves a file that could not be used to `name.bad` (kept for inspection, replaced by the
    /// next bad one).
    pub fn set_aside(&self, name: &str) {
        let _ = fs::rename(self.dir.join(name), self.dir.join(format!("{name}.bad")));
    }
}

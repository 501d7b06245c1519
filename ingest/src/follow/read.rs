//! Opening a followed file safely: never a blocking open or read, never more than a cap.
//!
//! A file is opened with `O_NONBLOCK` (opening a FIFO without a writer returns at once instead
//! of waiting for one) and `fstat`ed before anything is read: anything but a regular file (a
//! FIFO, a directory, a device such as a symlink to `/dev/zero`, a socket) is refused. A
//! regular file larger than the cap (`[ingest] max_file_bytes`) is refused too, and the read
//! itself stops one byte past the cap (a file that grows while it is read).
//!
//! Every reason a file cannot be read is a [`FileProblem`] with a stable label (for the metric
//! and the health point) and a hint for the operator; only "no such file" is not a problem
//! (the file is waited for).

use super::fingerprint::{content_hash, join_halves, SPLIT_READ};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Why a file that exists (or whose directory exists) cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileProblem {
    /// `EACCES`/`EPERM` on the file or a directory on its path.
    PermissionDenied,
    /// Not a regular file: the kind found (`fifo`, `directory`, `character device`, ...).
    NotRegular(&'static str),
    /// `EMFILE`/`ENFILE`: the process (or the system) is out of file descriptors.
    TooManyOpenFiles,
    /// Larger than the configured cap (bytes).
    TooLarge { max: u64 },
    /// Any other I/O error, by errno.
    Io(i32),
}

impl FileProblem {
    /// Every label [`FileProblem::cause`] gives (for the metric's `cause` label).
    pub const CAUSES: [&'static str; 5] = [
        "permission_denied",
        "not_a_regular_file",
        "too_many_open_files",
        "too_large",
        "io_error",
    ];

    /// Stable label for the metric and the health point.
    pub fn cause(&self) -> &'static str {
        match self {
            FileProblem::PermissionDenied => "permission_denied",
            FileProblem::NotRegular(_) => "not_a_regular_file",
            FileProblem::TooManyOpenFiles => "too_many_open_files",
            FileProblem::TooLarge { .. } => "too_large",
            FileProblem::Io(_) => "io_error",
        }
    }

    /// What the operator can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            FileProblem::PermissionDenied => {
                "make the file and its directory readable by srewatch's user: group-readable \
                 (chmod g+r, directories g+x) by a group srewatch is in (the unit's \
                 SupplementaryGroups=), or world-readable"
            }
            FileProblem::NotRegular(_) => {
                "the platform writes regular files; replace this one with a regular file \
                 (a FIFO, directory or device is never read)"
            }
            FileProblem::TooManyOpenFiles => {
                "srewatch is out of file descriptors: raise LimitNOFILE= in the unit, or look \
                 for what holds them (/metrics clients, Kamailio sockets)"
            }
            FileProblem::TooLarge { .. } => {
                "raise [ingest] max_file_bytes if the file is really this large, or find what \
                 wrote it"
            }
            FileProblem::Io(_) => "see the error; the file is tried again at every rescan",
        }
    }

    /// Classifies an error of `stat`, `open` or `read`; `None` for "no such file" (waited for).
    pub fn of_error(e: &io::Error) -> Option<FileProblem> {
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => None,
            Some(libc::EACCES) | Some(libc::EPERM) => Some(FileProblem::PermissionDenied),
            Some(libc::EMFILE) | Some(libc::ENFILE) => Some(FileProblem::TooManyOpenFiles),
            Some(n) => Some(FileProblem::Io(n)),
            None if e.kind() == io::ErrorKind::NotFound => None,
            None => Some(FileProblem::Io(0)),
        }
    }

    /// The problem for a file of this type, `None` for a regular file.
    pub fn of_type(t: std::fs::FileType) -> Option<FileProblem> {
        let kind = if t.is_file() {
            return None;
        } else if t.is_fifo() {
            "fifo"
        } else if t.is_dir() {
            "directory"
        } else if t.is_char_device() {
            "character device"
        } else if t.is_block_device() {
            "block device"
        } else if t.is_socket() {
            "socket"
        } else {
            "unknown file type"
        };
        Some(FileProblem::NotRegular(kind))
    }
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::PermissionDenied => write!(f, "permission denied"),
            FileProblem::NotRegular(kind) => write!(f, "not a regular file ({kind})"),
            FileProblem::TooManyOpenFiles => write!(f, "too many open files"),
            FileProblem::TooLarge { max } => write!(f, "larger than {max} bytes"),
            FileProblem::Io(n) => write!(f, "{}", io::Error::from_raw_os_error(*n)),
        }
    }
}

/// Why a read gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// No such file (or directory): waited for.
    Missing,
    Problem(FileProblem),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        FileProblem::of_error(&e).map_or(ReadError::Missing, ReadError::Problem)
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => write!(f, "no such file"),
            ReadError::Problem(p) => p.fmt(f),
        }
    }
}

/// Checks what `stat` says of a file before it is opened: a problem for anything but a regular
/// file of at most `max` bytes.
pub fn check_meta(m: &std::fs::Metadata, max: u64) -> Result<(), FileProblem> {
    if let Some(p) = FileProblem::of_type(m.file_type()) {
        return Err(p);
    }
    if m.len() > max {
        return Err(FileProblem::TooLarge { max });
    }
    Ok(())
}

/// Opens `path` for reading without blocking (`O_NONBLOCK`: a FIFO without a writer does not
/// wait) and checks the open file with `fstat`: only a regular file of at most `max` bytes is
/// returned, with its length.
pub fn open_regular(path: &Path, max: u64) -> Result<(File, u64), ReadError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let m = f.metadata()?;
    check_meta(&m, max).map_err(ReadError::Problem)?;
    Ok((f, m.len()))
}

/// Owner, group and mode of `path`, and the uid and gid srewatch runs as, for the log of a
/// permission problem (`None` where `stat` itself is refused).
pub fn access_context(path: &Path) -> String {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "file owner uid {} gid {}, mode {:04o}; srewatch runs as uid {uid} gid {gid}",
            m.uid(),
            m.gid(),
            m.mode() & 0o7777
        ),
        Err(_) => format!("the file cannot be stat'ed; srewatch runs as uid {uid} gid {gid}"),
    }
}

/// Bytes read (and hashed while still in cache) at a time by [`read_hashed`].
pub(super) const READ_CHUNK: u64 = 1 << 20;

/// Reads the whole file at `path` into `buf` (replacing its content), reusing its capacity.
/// Only a regular file of at most `max` bytes is read (see [`open_regular`]).
pub(crate) fn read_into(path: &Path, buf: &mut Vec<u8>, max: u64) -> Result<(), ReadError> {
    let (f, len) = open_for(path, buf, max)?;
    let len = buf.capacity().min(len as usize);
    if len >= SPLIT_READ {
        if read_split(&f, len, buf, false)?.is_some() {
            return Ok(());
        }
        buf.clear();
    }
    f.take(max.saturating_add(1)).read_to_end(buf)?;
    if buf.len() as u64 > max {
        buf.clear();
        return Err(ReadError::Problem(FileProblem::TooLarge { max }));
    }
    Ok(())
}

/// [`read_into`], returning the content's 64-bit XXH3 (as `xxh3_64` of the whole content),
/// computed chunk by chunk as it is read: each chunk is hashed while it is still in the CPU's
/// cache instead of in a second pass over the whole buffer.
/// Only a regular file of at most `max` bytes is read (see [`open_regular`]).
pub(crate) fn read_hashed(path: &Path, buf: &mut Vec<u8>, max: u64) -> Result<u64, ReadError> {
    let (mut f, len) = open_for(path, buf, max)?;
    let len = buf.capacity().min(len as usize);
    if len >= SPLIT_READ {
        if let Some(h) = read_split(&f, len, buf, true)? {
            return Ok(h);
        }
        // The file changed size while it was read: once more, from the start, in one piece.
        buf.clear();
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    loop {
        let at = buf.len();
        if (&mut f).take(READ_CHUNK).read_to_end(buf)? == 0 {
            break;
        }
        if buf.len() as u64 > max {
            buf.clear();
            return Err(ReadError::Problem(FileProblem::TooLarge { max }));
        }
        h.update(&buf[at..]);
    }
    Ok(if buf.len() >= SPLIT_READ {
        content_hash(buf)
    } else {
        h.digest()
    })
}

/// Reads the `len` bytes of `f` into the empty `buf` (with room for them) in two halves, one
/// on a second thread (for a fresh buffer, each thread also takes half of its page faults),
/// with `hash` each hashed chunk by chunk as it is read: [`content_hash`] of the content (0
/// without `hash`). `None` when `f` does not have exactly `len` bytes (it changed while read).
pub(super) fn read_split(
    f: &std::fs::File,
    len: usize,
    buf: &mut Vec<u8>,
    hash: bool,
) -> std::io::Result<Option<u64>> {
    use std::os::fd::AsRawFd;
    assert!(buf.is_empty() && buf.capacity() >= len);
    let fd = f.as_raw_fd();
    // The two threads write disjoint ranges of `buf`'s spare capacity through a raw pointer
    // (no reference to memory not yet written is made), and `buf` is not touched meanwhile.
    let base = buf.as_mut_ptr() as usize;
    let half = |from: usize, to: usize| -> std::io::Result<Option<u64>> {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let mut at = from;
        while at < to {
            let want = (to - at).min(READ_CHUNK as usize);
            // SAFETY: `base + at .. base + at + want` lies in `buf`'s capacity (`to <= len`),
            // written by this thread only.
            let n = unsafe {
                libc::pread(
                    fd,
                    (base + at) as *mut libc::c_void,
                    want,
                    at as libc::off_t,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(None);
            }
            if hash {
                // SAFETY: these `n` bytes were just written by pread.
                h.update(unsafe {
                    std::slice::from_raw_parts((base + at) as *const u8, n as usize)
                });
            }
            at += n as usize;
        }
        Ok(Some(h.digest()))
    };
    let mid = len / 2;
    let (first, second) = std::thread::scope(|sc| {
        let second = sc.spawn(|| half(mid, len));
        (half(0, mid), second.join().expect("a read does not panic"))
    });
    let (Some(first), Some(second)) = (first?, second?) else {
        return Ok(None);
    };
    // Nothing past `len`: a file that grew is read again.
    let mut probe = [0u8; 1];
    // SAFETY: one byte into a local buffer.
    let n = unsafe {
        libc::pread(
            fd,
            probe.as_mut_ptr() as *mut libc::c_void,
            1,
            len as libc::off_t,
        )
    };
    if n != 0 {
        return Ok(None);
    }
    // SAFETY: both halves of `0..len` were written (each read loop ran to its end).
    unsafe { buf.set_len(len) };
    Ok(Some(join_halves(first, second)))
}

/// Opens `path` (a regular file of at most `max` bytes, [`open_regular`]) and empties
/// `buf`, sized for the file. A file that does not grow while it is read is then read without
/// growing the buffer (read_to_end probes for the end without reserving more).
fn open_for(path: &Path, buf: &mut Vec<u8>, max: u64) -> Result<(std::fs::File, u64), ReadError> {
    let (f, file_len) = open_regular(path, max)?;
    let len = file_len as usize;
    buf.clear();
    if buf.capacity() < len {
        // Dropped before the new one is allocated (growing it would copy the old bytes), with
        // room for a file that grows a little from one rewrite to the next (pages never
        // written are not resident).
        *buf = Vec::new();
        buf.reserve_exact(len + len / 16);
    } else if buf.capacity() > 2 * len + (1 << 20) {
        // A file that shrank a lot gives its memory back.
        *buf = Vec::new();
        buf.reserve_exact(len);
    }
    Ok((f, file_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    /// A FIFO without a writer is refused at once (a blocking open would wait forever), as are
    /// a directory and a symlink to /dev/zero; a file over the cap is refused by size.
    #[test]
    fn follow_read_refuses_what_is_not_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.csv");
        mkfifo(&fifo);
        let zero = dir.path().join("zero.csv");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let big = dir.path().join("big.csv");
        std::fs::write(&big, [b'x'; 101]).unwrap();
        let ok = dir.path().join("ok.csv");
        std::fs::write(&ok, [b'x'; 100]).unwrap();
        let started = std::time::Instant::now();
        for (p, want) in [
            (&fifo, FileProblem::NotRegular("fifo")),
            (&zero, FileProblem::NotRegular("character device")),
            (&sub, FileProblem::NotRegular("directory")),
            (&big, FileProblem::TooLarge { max: 100 }),
        ] {
            let got = open_regular(p, 100).map(|(_, n)| n);
            assert_eq!(
                got.unwrap_err(),
                ReadError::Problem(want),
                "{}",
                p.display()
            );
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(open_regular(&ok, 100).unwrap().1, 100);
        assert_eq!(
            open_regular(&dir.path().join("none"), 100).unwrap_err(),
            ReadError::Missing
        );
    }

    #[test]
    fn follow_read_classifies_errors() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(FileProblem::of_error(&e(libc::ENOENT)), None);
        assert_eq!(
            FileProblem::of_error(&e(libc::EACCES)),
            Some(FileProblem::PermissionDenied)
        );
        assert_eq!(
            FileProblem::of_error(&e(libc::EMFILE)),
            Some(FileProblem::TooManyOpenFiles)
        );
        assert_eq!(
            FileProblem::of_error(&e(libc::EIO)),
            Some(FileProblem::Io(libc::EIO))
        );
        for p in [
            FileProblem::PermissionDenied,
            FileProblem::NotRegular("fifo"),
            FileProblem::TooManyOpenFiles,
            FileProblem::TooLarge { max: 1 },
            FileProblem::Io(libc::EIO),
        ] {
            assert!(FileProblem::CAUSES.contains(&p.cause()), "{p}");
        }
    }
}

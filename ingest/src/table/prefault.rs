//! Faulting in a first snapshot's series array ahead of the thread that fills it.
//!
//! In a first snapshot every row becomes a series, so the applying thread (the slower stage
//! there) writes the whole array, 96 MB at 1,000,000 counters series, page by page, each page
//! a fault (faults, zeroing and accounting were about a tenth of such a run's CPU). The parse
//! thread, which waits for the applying thread in a first snapshot, faults the pages in just
//! ahead of it with `madvise(MADV_POPULATE_WRITE)` (Linux 5.14; before, nothing happens): one
//! call per [`STEP`] bytes or more, which maps zeroed pages and writes nothing. It never gets
//! more than [`LEAD`] bytes ahead of the series stored, so memory that is never written is not
//! made resident (a file of bad rows makes no series and faults in at most `LEAD`).

use std::sync::atomic::{AtomicUsize, Ordering};

/// How far ahead of the stored series pages are faulted in, and in steps of how much.
const LEAD: usize = 1 << 20;
const STEP: usize = 128 << 10;

/// Series stored so far, published by the applying thread; [`Progress::STOP`] once the array
/// has moved (grown past its reserve) or the snapshot is over.
pub(super) struct Progress(AtomicUsize);

impl Progress {
    const STOP: usize = usize::MAX;

    pub(super) fn new() -> Self {
        Progress(AtomicUsize::new(0))
    }

    /// `stored` series in the spare room; `moved`: the array is not where it was.
    pub(super) fn publish(&self, stored: usize, moved: bool) {
        self.0
            .store(if moved { Self::STOP } else { stored }, Ordering::Relaxed);
    }
}

/// The spare room of a series array: addresses, not a borrow (the applying thread owns the
/// array; this only names the range to the kernel).
pub(super) struct Prefault {
    /// Address of the first spare element, and the end of the reserve.
    start: usize,
    end: usize,
    elem: usize,
    page: usize,
    /// Faulted in up to here (page-aligned).
    done: usize,
    works: bool,
}

impl Prefault {
    /// The spare room of `v` (from its length to its capacity).
    pub(super) fn spare<T>(v: &mut Vec<T>) -> Prefault {
        let spare = v.spare_capacity_mut();
        let elem = std::mem::size_of::<T>();
        let start = spare.as_mut_ptr() as usize;
        Prefault::range(start, start + spare.len() * elem, elem)
    }

    /// The bytes from `start` to `end`, elements of `elem` bytes.
    fn range(start: usize, end: usize, elem: usize) -> Prefault {
        // SAFETY: sysconf only reads a system value.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => 4096,
        };
        Prefault {
            start,
            end,
            elem,
            page,
            done: start & !(page - 1),
            works: true,
        }
    }

    /// Faults in the pages up to [`LEAD`] bytes past the first `stored` spare elements, if
    /// [`STEP`] bytes or more are due.
    pub(super) fn ahead_of(&mut self, progress: &Progress) {
        let stored = progress.0.load(Ordering::Relaxed);
        if !self.works || stored == Progress::STOP {
            return;
        }
        let want = (self.start + stored.saturating_mul(self.elem))
            .saturating_add(LEAD)
            .min(self.end);
        let want = want & !(self.page - 1);
        if want < self.done + STEP {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            // SAFETY: MADV_POPULATE_WRITE maps (zeroed) pages where none are and reads or
            // writes no memory: it cannot change what a thread sees in the range, whoever
            // owns it. A range not mapped any more fails with ENOMEM, which stops nothing.
            let r = unsafe {
                libc::madvise(
                    self.done as *mut libc::c_void,
                    want - self.done,
                    libc::MADV_POPULATE_WRITE,
                )
            };
            if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                // A kernel before 5.14: the applying thread faults its pages in itself.
                self.works = false;
            }
        }
        self.done = want;
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Resident pages of `len` bytes at `addr` (page-aligned), by mincore(2).
    fn resident(addr: usize, len: usize, page: usize) -> Vec<bool> {
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: mincore writes one byte per page of the range into `vec`, which has that
        // many; the range is mapped by the caller.
        let r = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().map(|b| b & 1 == 1).collect()
    }

    /// The spare room of an array is faulted in [`LEAD`] bytes past the series stored, in
    /// steps of at least [`STEP`], and no further; nothing once the array has moved. An
    /// array of 64-byte elements in 8 MiB of fresh anonymous memory, starting 16 bytes into
    /// its first page (as after malloc's header).
    #[test]
    fn faults_in_just_ahead_of_the_series_stored() {
        let len = 8 << 20;
        // SAFETY: a private anonymous mapping of `len` bytes, unmapped at the end.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        let start = map as usize;
        let mut p = Prefault::range(start + 16, start + len, 64);
        let page = p.page;
        assert_eq!(p.done, start);
        // Resident bytes from the start: one range from the start, and its length.
        let faulted = || {
            let r = resident(start, len, page);
            let prefix = r.iter().take_while(|&&x| x).count() * page;
            assert_eq!(prefix, r.iter().filter(|&&x| x).count() * page, "one range");
            prefix
        };
        assert_eq!(faulted(), 0);
        let progress = Progress::new();
        p.ahead_of(&progress);
        assert!(p.works, "MADV_POPULATE_WRITE needs Linux 5.14");
        assert_eq!(faulted(), LEAD);
        // Less than a step more: nothing.
        progress.publish(STEP / 64 - 1, false);
        p.ahead_of(&progress);
        assert_eq!(faulted(), LEAD);
        // A step more.
        progress.publish(STEP / 64, false);
        p.ahead_of(&progress);
        assert_eq!(faulted(), LEAD + STEP);
        // Moved: nothing more.
        progress.publish(STEP / 64 * 4, true);
        p.ahead_of(&progress);
        assert_eq!(faulted(), LEAD + STEP);
        // Past the end: up to the end.
        progress.publish(len / 64, false);
        p.ahead_of(&progress);
        assert_eq!(faulted(), len);
        // SAFETY: the mapping made above, not used after this.
        unsafe { libc::munmap(map, len) };
    }
}

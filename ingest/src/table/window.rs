//! One file's window: its newest minute and horizon, the memo of its last snapshot, what the
//! completeness rule remembers, and the checks of a row's minute, made before the row changes
//! any state.

use super::*;

/// The window of one file (counters.csv or samples.csv).
pub(super) struct FileWindow {
    /// The file's newest minute: the minute most of its valid rows carry in the latest
    /// snapshot (settling is counted from it; one odd row cannot move it).
    pub(super) top: i64,
    /// The newest minute any series of the file holds: minutes older than this minus
    /// [`RING`] have left the rings, so their rollups are written before it moves.
    pub(super) horizon: i64,
    /// A snapshot ended in a newline once (the platform ends its rows with one), and the
    /// record count of the last snapshot.
    pub(super) ends_nl: bool,
    pub(super) last_records: u64,
    /// Snapshots read, wrapping: a series' row of this snapshot carries it (duplicates).
    pub(super) gen: u32,
    /// Series of the previous row.
    pub(super) last: u32,
    /// The parse stage's memo of the last snapshot ([`Reader::with_memo`]).
    pub(super) memo: Vec<u32>,
    /// Rows applied as repeats, and rows taken for repeats but parsed in full (see
    /// [`FileReport::repeats`]).
    pub(super) repeats: u64,
    pub(super) reparsed: u64,
}

impl FileWindow {
    pub(super) fn new() -> Self {
        FileWindow {
            top: i64::MIN,
            horizon: i64::MIN,
            ends_nl: false,
            last_records: 0,
            gen: 0,
            last: NONE,
            memo: Vec::new(),
            repeats: 0,
            reparsed: 0,
        }
    }

    /// A row's minute must be after this one: older minutes have left the window.
    pub(super) fn oldest(&self) -> i64 {
        match self.top {
            i64::MIN => i64::MIN,
            t => t - RING,
        }
    }

    /// The completeness rule for a quiet file's last line without a newline (see
    /// [`Table::ingest_at`]).
    pub(super) fn tail_is_complete(&self, kind: Kind, data: &[u8]) -> bool {
        if data.last() == Some(&b'\n') || data.is_empty() {
            return true;
        }
        if self.ends_nl {
            return false;
        }
        let Some(nl) = memchr::memrchr(b'\n', data) else {
            return self.last_records <= 1;
        };
        let prev_start = data[..nl]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let values = |line: &[u8]| {
            Reader::new(line, kind, true)
                .next()
                .and_then(|r| r.ok().map(|r| r.values().len()))
        };
        let (prev, last) = (values(&data[prev_start..=nl]), values(&data[nl + 1..]));
        if prev.is_none() || prev != last {
            return false;
        }
        let records = memchr::memchr_iter(b'\n', data).count() as u64 + 1;
        records >= self.last_records
    }
}

/// The checks of a row's minute, decided once per snapshot before any row is applied.
#[derive(Clone, Copy)]
pub(super) struct Minutes {
    /// The newest minute accepted (the wall clock plus [`TableConfig::future_minutes`]).
    pub(super) latest: i64,
    /// A row's minute must be after this one ([`FileWindow::oldest`]).
    pub(super) oldest: i64,
}

impl Minutes {
    /// [`Reason::Future`] or [`Reason::TooOld`] for a row of minute `m` outside the window.
    #[inline]
    pub(super) fn check(self, m: i64) -> Result<(), Reason> {
        if m > self.latest {
            Err(Reason::Future)
        } else if m <= self.oldest {
            Err(Reason::TooOld)
        } else {
            Ok(())
        }
    }
}

/// Rows read to find a large file's newest minute (evenly spread over the file).
const MINUTE_SAMPLE: usize = 1024;

/// The minute most valid rows of a snapshot carry (ties: the newest), ignoring rows after
/// `latest`, with how many of the rows read carry it and how many were valid; `None` without a
/// valid row. A snapshot of up to [`MINUTE_SAMPLE`] lines is read
/// whole, a larger one at [`MINUTE_SAMPLE`] evenly spread lines.
pub(super) fn file_minute(data: &[u8], kind: Kind, latest: i64) -> Option<(i64, usize, usize)> {
    let mut mins: Vec<i64> = Vec::with_capacity(MINUTE_SAMPLE);
    let mut take = |line: &[u8]| {
        if let Some(Ok(row)) = Reader::new(line, kind, true).next() {
            let t = row.minute() / 60;
            if t <= latest {
                mins.push(t);
            }
        }
    };
    let lines = memchr::memchr_iter(b'\n', data)
        .take(MINUTE_SAMPLE + 1)
        .count();
    if lines <= MINUTE_SAMPLE {
        data.split(|&b| b == b'\n').for_each(&mut take);
    } else {
        let mut last = usize::MAX;
        for i in 0..MINUTE_SAMPLE {
            let off = i * data.len() / MINUTE_SAMPLE;
            let start = match off {
                0 => 0,
                o => match memchr::memchr(b'\n', &data[o - 1..]) {
                    Some(j) => o + j,
                    None => break,
                },
            };
            if start >= data.len() || start == last {
                continue;
            }
            last = start;
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |j| start + j);
            take(&data[start..end]);
        }
    }
    mins.sort_unstable();
    let (mut best, mut best_n) = (None, 0);
    let mut i = 0;
    while i < mins.len() {
        let j = mins[i..].iter().take_while(|&&m| m == mins[i]).count();
        if j >= best_n {
            best = Some(mins[i]);
            best_n = j;
        }
        i += j;
    }
    best.map(|m| (m, best_n, mins.len()))
}

//! Host and stat names, interned once: dense ids (a series is a pair of them), each name's
//! escaped line-protocol form kept beside it, and the previous row's host tried first (rows
//! come grouped by host).

use super::*;

/// The host and stat names seen so far.
pub(super) struct Names {
    hosts: Interned,
    stats: Interned,
    /// Escapes a new name (one encoder for both kinds: hosts are tag values, stats
    /// measurements).
    enc: LineEncoder,
    /// Host of the previous row ([`NONE`] before the first).
    last_host: u32,
}

/// One kind of name: ids by name, and per id the name and its escaped form.
#[derive(Default)]
struct Interned {
    map: HashMap<Box<[u8]>, u32, Fx>,
    raw: Vec<Box<str>>,
    /// Escaped forms, each followed by [`points::NAME_PAD`] zero bytes (copied in whole 32-byte
    /// blocks, `points::copy_blocks`); their lengths in `esc_len`. Only grows, and each form is
    /// its own allocation: the pointers [`defer`] keeps stay valid.
    esc: Vec<Box<[u8]>>,
    esc_len: Vec<u32>,
}

impl Interned {
    #[inline]
    fn id(&mut self, s: &str, enc: &mut LineEncoder, host: bool) -> u32 {
        if let Some(&id) = self.map.get(s.as_bytes()) {
            return id;
        }
        let id = self.raw.len() as u32;
        let (esc, len) = escape_name(enc, s, host);
        self.map.insert(s.as_bytes().into(), id);
        self.raw.push(s.into());
        self.esc.push(esc);
        self.esc_len.push(len);
        id
    }

    /// Whether name `id` is `s`.
    #[inline]
    fn is(&self, id: u32, s: &str) -> bool {
        same_name(self.raw[id as usize].as_bytes(), s.as_bytes())
    }

    #[inline]
    fn esc(&self, id: u32) -> &[u8] {
        &self.esc[id as usize][..self.esc_len[id as usize] as usize]
    }

    #[inline]
    fn padded(&self, id: u32) -> (&[u8], usize) {
        (
            &self.esc[id as usize][..],
            self.esc_len[id as usize] as usize,
        )
    }
}

impl Names {
    pub(super) fn new() -> Self {
        Names {
            hosts: Interned::default(),
            stats: Interned::default(),
            enc: LineEncoder::with_capacity(256),
            last_host: NONE,
        }
    }

    /// The id of a row's host, usually the previous row's.
    #[inline]
    pub(super) fn host_id(&mut self, host: &str) -> u32 {
        let last = self.last_host;
        if (last as usize) < self.hosts.raw.len() && self.hosts.is(last, host) {
            return last;
        }
        self.last_host = self.hosts.id(host, &mut self.enc, true);
        self.last_host
    }

    /// The id of a stat, interned if new.
    #[inline]
    pub(super) fn stat_id(&mut self, stat: &str) -> u32 {
        self.stats.id(stat, &mut self.enc, false)
    }

    /// Whether stat `id` is named `stat` (a guessed series checked by name).
    #[inline]
    pub(super) fn stat_is(&self, id: u32, stat: &str) -> bool {
        self.stats.is(id, stat)
    }

    /// The name of stat `id` (the rollups' measurement).
    #[inline]
    pub(super) fn stat(&self, id: u32) -> &str {
        &self.stats.raw[id as usize]
    }

    /// The escaped line-protocol form of stat `id`.
    #[inline]
    pub(super) fn stat_esc(&self, id: u32) -> &[u8] {
        self.stats.esc(id)
    }

    /// The escaped line-protocol form of host `id`.
    #[inline]
    pub(super) fn host_esc(&self, id: u32) -> &[u8] {
        self.hosts.esc(id)
    }

    /// Stat `id`'s escaped form followed by its padding, and the form's length
    /// ([`PointWriter::counters`]).
    #[inline]
    pub(super) fn stat_padded(&self, id: u32) -> (&[u8], usize) {
        self.stats.padded(id)
    }

    /// Host `id`'s escaped form followed by its padding, and the form's length.
    #[inline]
    pub(super) fn host_padded(&self, id: u32) -> (&[u8], usize) {
        self.hosts.padded(id)
    }

    /// The host names by id (saved with the table's state).
    pub(super) fn hosts(&self) -> &[Box<str>] {
        &self.hosts.raw
    }

    /// The stat names by id.
    pub(super) fn stats(&self) -> &[Box<str>] {
        &self.stats.raw
    }

    /// Interns a saved name of a host (`host`) or a stat; its id is the number of names of
    /// that kind before it unless it is a duplicate.
    pub(super) fn restore(&mut self, host: bool, s: &str) -> u32 {
        let n = if host {
            &mut self.hosts
        } else {
            &mut self.stats
        };
        n.id(s, &mut self.enc, host)
    }
}

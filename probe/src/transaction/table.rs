//! The table of outstanding client transactions: a slab owned by one task (no lock).
//!
//! The branch we send encodes where the transaction lives:
//! `z9hG4bK` + instance prefix + `-` + slot + `-` + generation (lowercase hex, no leading
//! zeros), e.g. `z9hG4bKa1b2c3d4-1f-3`. Matching a response is an O(1) index plus a full
//! comparison of the branch and CSeq method (RFC 3261 section 17.1.3); a response whose
//! generation is not the slot's current one belongs to a transaction that is gone (late) and
//! one that does not carry our prefix is not ours at all (stray).
//!
//! A CANCEL uses the branch of the INVITE it cancels (section 9.1), so an INVITE slot also
//! matches responses whose CSeq method is CANCEL; the caller tells them apart by the method.

use super::key::Method;
use crate::consts::BRANCH_MAGIC;
use std::fmt;

/// Longest instance prefix accepted by [`Table::new`].
pub const MAX_PREFIX: usize = 16;
/// Longest branch the table writes: magic + prefix + `-` + 8 hex + `-` + 8 hex.
pub const MAX_BRANCH: usize = BRANCH_MAGIC.len() + MAX_PREFIX + 1 + 8 + 1 + 8;

/// Where a transaction lives: index and generation. Stale slots are refused by every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    pub index: u32,
    pub gen: u32,
}

/// A branch written on the stack (no allocation per request).
#[derive(Clone, Copy)]
pub struct Branch {
    buf: [u8; MAX_BRANCH],
    len: u8,
}

impl Branch {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written (checked prefix, hex digits).
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    fn push(&mut self, b: &[u8]) {
        let l = self.len as usize;
        self.buf[l..l + b.len()].copy_from_slice(b);
        self.len += b.len() as u8;
    }

    fn push_hex(&mut self, mut v: u32) {
        let mut tmp = [0u8; 8];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b"0123456789abcdef"[(v & 0xf) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.push(&tmp[i..]);
    }
}

impl fmt::Debug for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Branch({})", self.as_str())
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of looking a response's branch up.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A live transaction with that branch and a method it answers for.
    Found(Slot),
    /// Our branch, but the transaction is gone (removed, or the slot reused): a late response.
    Late,
    /// Not a branch this table wrote (other instance, garbage): a stray response.
    Stray,
}

#[derive(Debug)]
struct Entry<T> {
    gen: u32,
    method: Method,
    value: Option<T>,
}

/// A slab of outstanding transactions keyed by the branch it hands out.
#[derive(Debug)]
pub struct Table<T> {
    prefix: [u8; MAX_PREFIX],
    prefix_len: u8,
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
}

/// A prefix the table cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("branch prefix must be 1..={MAX_PREFIX} ASCII letters or digits, got {0:?}")]
pub struct BadPrefix(pub String);

impl<T> Table<T> {
    /// A table whose branches carry `prefix` (1 to 16 ASCII alphanumerics), which should be
    /// unique per process and run so that responses to another instance are recognised as stray.
    pub fn new(prefix: &str) -> Result<Self, BadPrefix> {
        let p = prefix.as_bytes();
        if p.is_empty() || p.len() > MAX_PREFIX || !p.iter().all(|b| b.is_ascii_alphanumeric()) {
            return Err(BadPrefix(prefix.to_string()));
        }
        let mut buf = [0u8; MAX_PREFIX];
        buf[..p.len()].copy_from_slice(p);
        Ok(Table {
            prefix: buf,
            prefix_len: p.len() as u8,
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        })
    }

    /// A table with a random 8-hex-digit prefix.
    pub fn with_random_prefix() -> Self {
        let v: u32 = rand::random();
        let mut b = Branch {
            buf: [0; MAX_BRANCH],
            len: 0,
        };
        b.push_hex(v | 0x1000_0000);
        Table::new(b.as_str()).expect("hex prefix is valid")
    }

    /// Pre-allocates room for `n` outstanding transactions.
    pub fn with_capacity(mut self, n: usize) -> Self {
        self.entries.reserve(n);
        self.free.reserve(n);
        self
    }

    pub fn prefix(&self) -> &str {
        std::str::from_utf8(&self.prefix[..self.prefix_len as usize]).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` for a new transaction of `method`; returns its slot and the branch to put
    /// in the top Via of the request.
    pub fn insert(&mut self, method: Method, value: T) -> (Slot, Branch) {
        let index = match self.free.pop() {
            Some(i) => {
                let e = &mut self.entries[i as usize];
                e.method = method;
                e.value = Some(value);
                i
            }
            None => {
                self.entries.push(Entry {
                    gen: 0,
                    method,
                    value: Some(value),
                });
                (self.entries.len() - 1) as u32
            }
        };
        self.len += 1;
        let slot = Slot {
            index,
            gen: self.entries[index as usize].gen,
        };
        (slot, self.branch(slot))
    }

    /// The branch of `slot` (whether or not it is still live).
    pub fn branch(&self, slot: Slot) -> Branch {
        let mut b = Branch {
            buf: [0; MAX_BRANCH],
            len: 0,
        };
        b.push(BRANCH_MAGIC.as_bytes());
        b.push(&self.prefix[..self.prefix_len as usize]);
        b.push(b"-");
        b.push_hex(slot.index);
        b.push(b"-");
        b.push_hex(slot.gen);
        b
    }

    /// Where a response with top Via `branch` and CSeq `method` belongs.
    pub fn lookup(&self, branch: &[u8], method: Method) -> Lookup {
        let Some(slot) = self.parse_branch(branch) else {
            return Lookup::Stray;
        };
        match self.entries.get(slot.index as usize) {
            Some(e) if e.gen == slot.gen && e.value.is_some() => {
                if e.method == method || (e.method == Method::Invite && method == Method::Cancel) {
                    Lookup::Found(slot)
                } else {
                    Lookup::Stray
                }
            }
            Some(_) => Lookup::Late,
            None => Lookup::Stray,
        }
    }

    /// The transaction a response with top Via `branch` and CSeq `method` belongs to.
    pub fn get_by_branch(&mut self, branch: &[u8], method: Method) -> Option<(Slot, &mut T)> {
        match self.lookup(branch, method) {
            Lookup::Found(slot) => self.get_mut(slot).map(|v| (slot, v)),
            _ => None,
        }
    }

    /// The method the transaction at `slot` was created for.
    pub fn method(&self, slot: Slot) -> Option<Method> {
        self.entries
            .get(slot.index as usize)
            .filter(|e| e.gen == slot.gen && e.value.is_some())
            .map(|e| e.method)
    }

    pub fn get(&self, slot: Slot) -> Option<&T> {
        self.entries
            .get(slot.index as usize)
            .filter(|e| e.gen == slot.gen)
            .and_then(|e| e.value.as_ref())
    }

    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut T> {
        self.entries
            .get_mut(slot.index as usize)
            .filter(|e| e.gen == slot.gen)
            .and_then(|e| e.value.as_mut())
    }

    /// Removes the transaction; its branch is then answered with [`Lookup::Late`].
    pub fn remove(&mut self, slot: Slot) -> Option<T> {
        let e = self.entries.get_mut(slot.index as usize)?;
        if e.gen != slot.gen {
            return None;
        }
        let v = e.value.take()?;
        e.gen = e.gen.wrapping_add(1);
        self.free.push(slot.index);
        self.len -= 1;
        Some(v)
    }

    /// Live slots, for sweeping timers (order unspecified).
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.value.is_some())
            .map(|(i, e)| Slot {
                index: i as u32,
                gen: e.gen,
            })
    }

    /// Parses a branch this table wrote; `None` for anything else, including non-canonical hex.
    fn parse_branch(&self, branch: &[u8]) -> Option<Slot> {
        let rest = branch.strip_prefix(BRANCH_MAGIC.as_bytes())?;
        let rest = rest.strip_prefix(&self.prefix[..self.prefix_len as usize])?;
        let rest = rest.strip_prefix(b"-")?;
        let dash = memchr::memchr(b'-', rest)?;
        let index = parse_hex(&rest[..dash])?;
        let gen = parse_hex(&rest[dash + 1..])?;
        Some(Slot { index, gen })
    }
}

/// Lowercase hex without leading zeros (as [`Branch::push_hex`] writes), at most 8 digits.
fn parse_hex(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 8 || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    let mut v: u32 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u32;
    }
    Some(v)
}

/// Bytes one entry takes in the slab for a value of type `T`.
pub const fn entry_size<T>() -> usize {
    std::mem::size_of::<Entry<T>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_encodes_prefix_slot_and_generation() {
        let mut t: Table<u8> = Table::new("ab12").unwrap();
        let (s0, b0) = t.insert(Method::Options, 1);
        let (s1, b1) = t.insert(Method::Invite, 2);
        assert_eq!(b0.as_str(), "z9hG4bKab12-0-0");
        assert_eq!(b1.as_str(), "z9hG4bKab12-1-0");
        assert_eq!(s1, Slot { index: 1, gen: 0 });
        assert_eq!(t.len(), 2);
        assert_eq!(t.remove(s0), Some(1));
        assert_eq!(t.remove(s0), None);
        let (s2, b2) = t.insert(Method::Options, 3);
        assert_eq!(s2, Slot { index: 0, gen: 1 });
        assert_eq!(b2.as_str(), "z9hG4bKab12-0-1");
        // Large values are plain lowercase hex.
        let big = t.branch(Slot {
            index: 0x1f,
            gen: 0xffff_ffff,
        });
        assert_eq!(big.as_str(), "z9hG4bKab12-1f-ffffffff");
        assert!(big.as_bytes().len() <= MAX_BRANCH);
    }

    #[test]
    fn lookup_rules() {
        let mut t: Table<u32> = Table::new("p").unwrap();
        let (s0, b0) = t.insert(Method::Options, 10);
        let (s1, b1) = t.insert(Method::Invite, 11);
        assert_eq!(t.lookup(b0.as_bytes(), Method::Options), Lookup::Found(s0));
        // Wrong method: not this transaction.
        assert_eq!(t.lookup(b0.as_bytes(), Method::Invite), Lookup::Stray);
        // CANCEL shares the INVITE's branch.
        assert_eq!(t.lookup(b1.as_bytes(), Method::Cancel), Lookup::Found(s1));
        assert_eq!(t.lookup(b1.as_bytes(), Method::Invite), Lookup::Found(s1));
        assert_eq!(t.lookup(b1.as_bytes(), Method::Bye), Lookup::Stray);
        // Another instance, garbage, non-canonical hex, trailing junk.
        for b in [
            &b"z9hG4bKq-0-0"[..],
            b"z9hG4bKp-0-00",
            b"z9hG4bKp-00-0",
            b"z9hG4bKp-0-0x",
            b"z9hG4bKp-0",
            b"z9hG4bKp--0",
            b"z9hG4bKp-A-0",
            b"z9hG4bKp-123456789-0",
            b"",
            b"xyz",
            b"z9hG4bK",
        ] {
            assert_eq!(t.lookup(b, Method::Options), Lookup::Stray, "{b:?}");
        }
        // Out-of-range slot index is stray, not a panic.
        assert_eq!(t.lookup(b"z9hG4bKp-99-0", Method::Options), Lookup::Stray);
        // After removal the branch is late; after reuse the old generation stays late.
        *t.get_by_branch(b0.as_bytes(), Method::Options).unwrap().1 += 5;
        assert_eq!(t.remove(s0), Some(15));
        assert_eq!(t.lookup(b0.as_bytes(), Method::Options), Lookup::Late);
        let (s2, b2) = t.insert(Method::Options, 20);
        assert_eq!(s2.index, s0.index);
        assert_eq!(t.lookup(b0.as_bytes(), Method::Options), Lookup::Late);
        assert_eq!(t.lookup(b2.as_bytes(), Method::Options), Lookup::Found(s2));
        assert_eq!(t.get(s0), None);
        assert_eq!(t.get(s2), Some(&20));
        assert_eq!(t.method(s1), Some(Method::Invite));
        let mut live: Vec<_> = t.slots().collect();
        live.sort_by_key(|s| s.index);
        assert_eq!(live, vec![s2, s1]);
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(Table::<()>::new("").is_err());
        assert!(Table::<()>::new("a-b").is_err());
        assert!(Table::<()>::new("0123456789abcdefg").is_err());
        assert!(Table::<()>::new("0123456789abcdef").is_ok());
        let t = Table::<()>::with_random_prefix();
        assert_eq!(t.prefix().len(), 8);
    }
}

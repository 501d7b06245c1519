//! The timer queue of a worker's transactions.

use crate::transaction::table::Slot;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Timer entries: (due ns, slot index, slot generation). Most arrive in due order (every
/// transaction's first wakeup is its send time plus the same delay) and go to a FIFO; the rest
/// to a heap. Entries of transactions that ended stay until due and are then skipped, so the
/// queue holds at most rate × (first wakeup delay) stale entries of 16 bytes.
#[derive(Default)]
pub(super) struct Timers {
    pub(super) fifo: VecDeque<(u64, Slot)>,
    pub(super) heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
}

impl Timers {
    pub(super) fn with_capacity(n: usize) -> Self {
        Timers {
            fifo: VecDeque::with_capacity(n),
            heap: BinaryHeap::new(),
        }
    }

    #[inline]
    pub(super) fn arm(&mut self, due: u64, slot: Slot) {
        if self.fifo.back().is_none_or(|b| b.0 <= due) {
            self.fifo.push_back((due, slot));
        } else {
            self.heap.push(Reverse((due, slot.index, slot.gen)));
        }
    }

    pub(super) fn next_due(&self) -> Option<u64> {
        let a = self.fifo.front().map(|e| e.0);
        let b = self.heap.peek().map(|e| e.0 .0);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The earliest entry, without removing it.
    pub(super) fn peek(&self) -> Option<(u64, Slot)> {
        let a = self.fifo.front().copied();
        let b = self.heap.peek().map(|Reverse((d, index, gen))| {
            (
                *d,
                Slot {
                    index: *index,
                    gen: *gen,
                },
            )
        });
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// When the first entry whose slot is `live` is due; the entries before it are dropped.
    pub(super) fn next_live(&mut self, live: impl Fn(Slot) -> bool) -> Option<u64> {
        loop {
            let (due, slot) = self.peek()?;
            if live(slot) {
                return Some(due);
            }
            self.pop_due(due);
        }
    }

    #[inline]
    pub(super) fn pop_due(&mut self, now: u64) -> Option<Slot> {
        let a = self.fifo.front().map(|e| e.0).filter(|&d| d <= now);
        let b = self.heap.peek().map(|e| e.0 .0).filter(|&d| d <= now);
        match (a, b) {
            (Some(a), Some(b)) if b < a => self.pop_heap(),
            (Some(_), _) => self.fifo.pop_front().map(|e| e.1),
            (None, Some(_)) => self.pop_heap(),
            (None, None) => None,
        }
    }

    pub(super) fn pop_heap(&mut self) -> Option<Slot> {
        self.heap
            .pop()
            .map(|Reverse((_, index, gen))| Slot { index, gen })
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::key::Method;
    use crate::transaction::table::Table;
    #[test]
    fn timers_of_ended_transactions_wake_nobody() {
        let mut t = Timers::default();
        let mut table: Table<u32> = Table::with_random_prefix();
        let (a, _) = table.insert(Method::Options, 1);
        let (b, _) = table.insert(Method::Options, 2);
        t.arm(10, a);
        t.arm(20, b);
        t.arm(5, b); // out of order: to the heap
        assert_eq!(t.peek(), Some((5, b)));
        table.remove(b);
        // b's entries are skipped (and dropped) as they reach the front, a's is kept.
        let live = |s| table.method(s).is_some();
        assert_eq!(t.next_live(live), Some(10));
        assert_eq!(t.len(), 2);
        assert_eq!(t.pop_due(10), Some(a));
        assert_eq!(t.next_live(live), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn timers_pop_in_due_order() {
        let mut t = Timers::default();
        let s = |i| Slot { index: i, gen: 0 };
        t.arm(10, s(1));
        t.arm(20, s(2));
        t.arm(15, s(3)); // out of order: heap
        t.arm(30, s(4));
        assert_eq!(t.len(), 4);
        assert_eq!(t.next_due(), Some(10));
        assert_eq!(t.pop_due(9), None);
        let mut got = Vec::new();
        while let Some(x) = t.pop_due(100) {
            got.push(x.index);
        }
        assert_eq!(got, [1, 3, 2, 4]);
        assert_eq!(t.next_due(), None);
    }
}

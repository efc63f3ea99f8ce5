//! The iteration order of a CPython 3.11 `set` of small non-negative integers.
//!
//! Whisper propagates an update to a lower archive once per distinct lower interval, iterating a
//! Python `set`. The order is visible in the file: the first interval propagated into an empty
//! lower archive becomes that archive's base (its slot 0), which fixes where every later point
//! lands. To be byte-identical we reproduce CPython's open-addressing table exactly: an integer
//! hashes to itself, the table starts with 8 slots, probes 10 neighbouring slots linearly before
//! jumping by `i*5 + 1 + perturb` (perturb shifted right by 5 each jump), and is rebuilt at four
//! times its used size when it becomes 60% full; iteration walks the slots in index order.

/// CPython's `LINEAR_PROBES`.
const LINEAR_PROBES: usize = 9;
/// CPython's `PERTURB_SHIFT`.
const PERTURB_SHIFT: u32 = 5;
/// CPython's `PySet_MINSIZE`.
const MIN_SIZE: usize = 8;

/// The distinct `values` in the order `for v in set(values)` visits them in CPython 3.11.
/// Values must be below 2^61 - 1 (where an int's hash stops being the int itself).
pub fn python_set_order(values: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let mut order = Vec::new();
    python_set_order_into(values, &mut SetBuffers::default(), &mut order);
    order
}

/// Tables reused by [`python_set_order_into`] from one call to the next, so that the many small
/// sets of an update cost no allocation.
#[derive(Debug, Default)]
pub(crate) struct SetBuffers {
    slots: Vec<Option<u64>>,
    spare: Vec<Option<u64>>,
}

impl SetBuffers {
    /// Capacity kept between calls, at most (in slots).
    const KEPT_SLOTS: usize = 1 << 12;

    /// Gives back memory a large set left behind.
    pub(crate) fn shrink(&mut self) {
        for table in [&mut self.slots, &mut self.spare] {
            if table.capacity() > Self::KEPT_SLOTS {
                *table = Vec::new();
            }
        }
    }
}

/// [`python_set_order`] into `order` (cleared first), with tables from `buffers`.
pub(crate) fn python_set_order_into(
    values: impl IntoIterator<Item = u64>,
    buffers: &mut SetBuffers,
    order: &mut Vec<u64>,
) {
    buffers.slots.clear();
    buffers.slots.resize(MIN_SIZE, None);
    let mut table = SetTable {
        slots: &mut buffers.slots,
        spare: &mut buffers.spare,
        used: 0,
    };
    for value in values {
        table.add(value);
    }
    order.clear();
    order.extend(table.slots.iter().flatten());
}

struct SetTable<'a> {
    slots: &'a mut Vec<Option<u64>>,
    /// Where the old slots go while the table is rebuilt.
    spare: &'a mut Vec<Option<u64>>,
    used: usize,
}

impl SetTable<'_> {
    /// `set_add_entry`: insert unless present, then grow when the table is 60% full.
    fn add(&mut self, key: u64) {
        let mask = self.slots.len() - 1;
        match probe(self.slots, key) {
            Probe::Present => {}
            Probe::Free(index) => {
                self.slots[index] = Some(key);
                self.used += 1;
                // No deletions happen, so CPython's `fill` equals `used`.
                if self.used * 5 >= mask * 3 {
                    let min_used = if self.used > 50_000 {
                        self.used * 2
                    } else {
                        self.used * 4
                    };
                    self.resize(min_used);
                }
            }
        }
    }

    /// `set_table_resize`: the smallest power of two above `min_used`, old slots re-inserted in
    /// index order.
    fn resize(&mut self, min_used: usize) {
        let mut size = MIN_SIZE;
        while size <= min_used {
            size <<= 1;
        }
        std::mem::swap(self.slots, self.spare);
        self.slots.clear();
        self.slots.resize(size, None);
        for &key in self.spare.iter().flatten() {
            if let Probe::Free(index) = probe(self.slots, key) {
                self.slots[index] = Some(key);
            }
        }
    }
}

enum Probe {
    Present,
    Free(usize),
}

/// CPython's probe sequence: slot `hash & mask` and up to 9 following slots, then a
/// perturbed jump.
fn probe(slots: &[Option<u64>], key: u64) -> Probe {
    let mask = slots.len() - 1;
    // size_t arithmetic on a 64-bit build; small ints hash to themselves.
    let mut perturb = key as usize;
    let mut index = perturb & mask;
    loop {
        let probes = if index + LINEAR_PROBES <= mask {
            LINEAR_PROBES
        } else {
            0
        };
        for (slot, entry) in slots.iter().enumerate().skip(index).take(probes + 1) {
            match *entry {
                None => return Probe::Free(slot),
                Some(existing) if existing == key => return Probe::Present,
                Some(_) => {}
            }
        }
        perturb >>= PERTURB_SHIFT;
        index = index.wrapping_mul(5).wrapping_add(1).wrapping_add(perturb) & mask;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sets_follow_hash_slots() {
        // In an 8-slot table, 9 goes to slot 1, 16 to slot 0, 3 to slot 3.
        assert_eq!(python_set_order([3, 9, 16, 9]), vec![16, 9, 3]);
    }

    #[test]
    fn keeps_each_value_once() {
        let values: Vec<u64> = (0..1000)
            .map(|i| 1_700_000_000 + (i * 37 % 500) * 60)
            .collect();
        let mut ordered = python_set_order(values.iter().copied());
        ordered.sort_unstable();
        let mut expected = values;
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(ordered, expected);
    }
}

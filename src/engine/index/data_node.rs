//! ALEX data nodes: gapped arrays placed by a linear model.
//!
//! ```text
//!   slot      0    1    2    3    4    5    6    7
//!   occupied  .    x    x    .    .    x    .    .        (bitmap)
//!   keys      12   12   17   40   40   40   MAX  MAX
//!                  ^real     ^gaps hold the next real key; trailing gaps MAX
//! ```
//!
//! Gaps hold the key of the next occupied slot, so the key array is sorted and
//! an exponential search from the model's predicted slot finds any key
//! without consulting the bitmap. An insert into a gap touches nothing else;
//! an insert where the slot is taken shifts keys towards the nearest gap.
//! The node counts search iterations and shifts of its inserts, which the
//! tree's cost model compares against the costs expected when the node was
//! built. Lookups take `&self` and are not counted, so readers share a node.
//!
//! Appends (time series, sequences) get their own shape. A node whose inserts
//! nearly all land at its end is *append-mostly*: new keys go into the slot
//! after the last key instead of where an overshooting model points, and when
//! the end is reached the arrays grow in place (see [`DataNode::extend`])
//! rather than being retrained at a lower density. Nodes the append front has
//! left behind are *packed* (see [`DataNode::packed`]): no insert is expected
//! there, so gaps would only cost memory; if one comes, the node is full and
//! expands like any other.

use super::model::LinearModel;

/// Weight of one exponential-search iteration in the cost model (the paper's default).
const SEARCH_WEIGHT: f64 = 20.0;
/// Weight of one shifted slot in the cost model (the paper's default).
const SHIFT_WEIGHT: f64 = 0.5;
/// An insert this close to the node's end (in slots) counts as an append.
const TAIL_WINDOW: usize = 16;
/// Inserts a node must have seen before it is judged append-mostly.
const APPEND_EVIDENCE: u64 = 8;

/// What [`DataNode::upsert`] did.
pub enum Upsert<V> {
    /// The key was present; its old payload.
    Replaced(V),
    Inserted,
    /// The key is absent and the node has no room for it.
    Full,
}

/// A gapped array of keys and payloads.
#[derive(Clone, Debug)]
pub struct DataNode<V> {
    keys: Vec<u64>,
    payloads: Vec<V>,
    bitmap: Vec<u64>,
    len: usize,
    /// One past the last occupied slot (0 when empty).
    end: usize,
    model: LinearModel,
    /// Expected cost per operation when built, from the model's accuracy.
    expected_cost: f64,
    searches: u64,
    search_iterations: u64,
    inserts: u64,
    shifts: u64,
    /// Inserts that landed within `TAIL_WINDOW` slots of the end.
    tail_inserts: u64,
    /// The neighbouring data nodes in key order (arena ids).
    pub prev: Option<u32>,
    /// See `prev`.
    pub next: Option<u32>,
}

impl<V: Copy + Default> DataNode<V> {
    /// A node holding `items` (sorted, unique keys) spread over `capacity` slots.
    pub fn build(items: &[(u64, V)], capacity: usize) -> DataNode<V> {
        DataNode::build_in(items, capacity, capacity)
    }

    /// A node holding `items` with almost no gaps, for a key range that
    /// expects no more inserts.
    pub fn packed(items: &[(u64, V)]) -> DataNode<V> {
        DataNode::build_in(items, items.len(), items.len() + 1)
    }

    /// A node for the end of an append front: `items` packed at the start of
    /// `capacity` slots, the rest free for the keys to come, and already
    /// judged append-mostly.
    pub fn tail(items: &[(u64, V)], capacity: usize) -> DataNode<V> {
        let mut node = DataNode::build_in(items, items.len(), capacity);
        node.inserts = APPEND_EVIDENCE;
        node.tail_inserts = APPEND_EVIDENCE;
        node
    }

    /// A node holding `items` (sorted, unique keys) in the first `span` of
    /// `capacity` slots.
    fn build_in(items: &[(u64, V)], span: usize, capacity: usize) -> DataNode<V> {
        let capacity = capacity.max(items.len() + 1).max(4);
        let n = items.len();
        let span = span.clamp(n, capacity);
        let model = LinearModel::fit(items.iter().map(|(k, _)| *k), |i| {
            (i * span) as f64 / n.max(1) as f64
        });
        let mut node = DataNode {
            keys: vec![u64::MAX; capacity],
            payloads: vec![V::default(); capacity],
            bitmap: vec![0; capacity.div_ceil(64)],
            len: n,
            end: 0,
            model,
            expected_cost: 0.0,
            searches: 0,
            search_iterations: 0,
            inserts: 0,
            shifts: 0,
            tail_inserts: 0,
            prev: None,
            next: None,
        };
        let mut next_free = 0;
        let mut log_error = 0.0;
        for (i, (key, payload)) in items.iter().enumerate() {
            let predicted = model.predict(*key, capacity);
            // Leave room for the keys still to come.
            let pos = predicted.max(next_free).min(capacity - (n - i));
            // log2 of the model's error, rounded up, by bit length (a float log2
            // per key was a tenth of insert time in profiles).
            log_error += (usize::BITS - pos.abs_diff(predicted).leading_zeros()) as f64;
            node.keys[pos] = *key;
            node.payloads[pos] = *payload;
            node.set_bit(pos);
            next_free = pos + 1;
        }
        node.end = next_free;
        node.fill_gaps(0, capacity);
        node.expected_cost = SEARCH_WEIGHT * (log_error / n.max(1) as f64 + 1.0)
            + SHIFT_WEIGHT * node.expected_shifts();
        node
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.keys.len()
    }

    /// Bytes this node holds on the heap and inline.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * 8
            + self.payloads.capacity() * std::mem::size_of::<V>()
            + self.bitmap.capacity() * 8
    }

    /// Mean cost per insert observed since the node was built, when enough
    /// operations were seen to judge.
    pub fn observed_cost(&self) -> Option<f64> {
        if self.searches + self.inserts < 64 {
            return None;
        }
        let iterations = self.search_iterations as f64 / self.searches.max(1) as f64;
        let shifts = self.shifts as f64 / self.inserts.max(1) as f64;
        Some(SEARCH_WEIGHT * iterations + SHIFT_WEIGHT * shifts)
    }

    /// The cost per operation predicted when the node was built.
    pub fn expected_cost(&self) -> f64 {
        self.expected_cost
    }

    /// Every (key, payload) in key order.
    pub fn items(&self) -> Vec<(u64, V)> {
        let mut out = Vec::with_capacity(self.len);
        let mut pos = self.next_occupied(0);
        while let Some(p) = pos {
            out.push((self.keys[p], self.payloads[p]));
            pos = self.next_occupied(p + 1);
        }
        out
    }

    /// Expected shifts per insert: an insert landing in a run of L occupied
    /// slots moves about L/2 of them.
    fn expected_shifts(&self) -> f64 {
        let (mut run, mut total) = (0usize, 0usize);
        for pos in 0..self.capacity() {
            if self.occupied(pos) {
                run += 1;
            } else {
                total += run * run;
                run = 0;
            }
        }
        total += run * run;
        total as f64 / (2 * self.len.max(1)) as f64
    }

    #[inline]
    fn occupied(&self, pos: usize) -> bool {
        self.bitmap[pos / 64] & (1 << (pos % 64)) != 0
    }

    fn set_bit(&mut self, pos: usize) {
        self.bitmap[pos / 64] |= 1 << (pos % 64);
    }

    fn clear_bit(&mut self, pos: usize) {
        self.bitmap[pos / 64] &= !(1 << (pos % 64));
    }

    /// Word `i` of the occupied-slot bitmap (bit `p % 64` of word `p / 64` is slot `p`).
    #[inline]
    pub fn bitmap_word(&self, i: usize) -> u64 {
        self.bitmap[i]
    }

    /// Number of bitmap words.
    pub fn bitmap_words(&self) -> usize {
        self.bitmap.len()
    }

    /// The first occupied slot at or after `pos`.
    pub fn next_occupied(&self, pos: usize) -> Option<usize> {
        self.next_set(pos, |word| word)
    }

    /// The last occupied slot at or before `pos`.
    pub fn prev_occupied(&self, pos: usize) -> Option<usize> {
        self.prev_set(pos, |word| word)
    }

    /// The first free slot at or after `pos`.
    fn next_gap(&self, pos: usize) -> Option<usize> {
        self.next_set(pos, |word| !word)
    }

    /// The last free slot at or before `pos`.
    fn prev_gap(&self, pos: usize) -> Option<usize> {
        self.prev_set(pos, |word| !word)
    }

    /// The first slot at or after `pos` whose bit is set in `view` of its
    /// bitmap word (the word itself for occupied slots, its complement for gaps).
    #[inline]
    fn next_set(&self, pos: usize, view: impl Fn(u64) -> u64) -> Option<usize> {
        if pos >= self.capacity() {
            return None;
        }
        let mut word = pos / 64;
        let mut bits = view(self.bitmap[word]) & (!0u64 << (pos % 64));
        loop {
            if bits != 0 {
                let p = word * 64 + bits.trailing_zeros() as usize;
                return (p < self.capacity()).then_some(p);
            }
            word += 1;
            if word == self.bitmap.len() {
                return None;
            }
            bits = view(self.bitmap[word]);
        }
    }

    /// The last slot at or before `pos` (clamped to the node) whose bit is
    /// set in `view` of its bitmap word.
    #[inline]
    fn prev_set(&self, pos: usize, view: impl Fn(u64) -> u64) -> Option<usize> {
        let pos = pos.min(self.capacity().checked_sub(1)?);
        let mut word = pos / 64;
        let mut bits = view(self.bitmap[word]) & (!0u64 >> (63 - pos % 64));
        loop {
            if bits != 0 {
                return Some(word * 64 + 63 - bits.leading_zeros() as usize);
            }
            if word == 0 {
                return None;
            }
            word -= 1;
            bits = view(self.bitmap[word]);
        }
    }

    /// Sets every gap in `from..to` to the key of the next occupied slot.
    fn fill_gaps(&mut self, from: usize, to: usize) {
        let mut next = match self.next_occupied(to) {
            Some(p) => self.keys[p],
            None => u64::MAX,
        };
        for pos in (from..to).rev() {
            if self.occupied(pos) {
                next = self.keys[pos];
            } else {
                self.keys[pos] = next;
            }
        }
    }

    /// The first slot whose key is >= `key`, by exponential search from the
    /// model's prediction (`capacity` when there is none), and the number of
    /// search iterations it took.
    fn lower_bound(&self, key: u64) -> (usize, u64) {
        let cap = self.capacity();
        let predicted = self.model.predict(key, cap);
        let mut iterations = 1u64;
        let (lo, hi) = if self.keys[predicted] >= key {
            let mut step = 1;
            while step <= predicted && self.keys[predicted - step] >= key {
                step *= 2;
                iterations += 1;
            }
            (predicted.saturating_sub(step), predicted - step / 2)
        } else {
            let mut step = 1;
            while predicted + step < cap && self.keys[predicted + step] < key {
                step *= 2;
                iterations += 1;
            }
            (predicted + step / 2 + 1, (predicted + step).min(cap))
        };
        (
            lo + self.keys[lo..hi].partition_point(|k| *k < key),
            iterations,
        )
    }

    /// The slot holding `key`.
    pub fn find(&self, key: u64) -> Option<usize> {
        if key == u64::MAX {
            // Trailing gaps also read MAX: only the bitmap tells them apart.
            let (pos, _) = self.lower_bound(key);
            let pos = self.next_occupied(pos)?;
            return (self.keys[pos] == key).then_some(pos);
        }
        // Gaps hold the next key to their right, so among the slots reading
        // `key` the last is the occupied one: the slot before the first key
        // above `key`. No bitmap read needed.
        let (above, _) = self.lower_bound(key + 1);
        let pos = above.checked_sub(1)?;
        (self.keys[pos] == key).then_some(pos)
    }

    /// The payload of `key`.
    pub fn get(&self, key: u64) -> Option<V> {
        self.find(key).map(|p| self.payloads[p])
    }

    /// The payload in `pos`, which is occupied.
    pub fn payload(&self, pos: usize) -> V {
        self.payloads[pos]
    }

    /// The key in `pos`, which is occupied.
    pub fn key(&self, pos: usize) -> u64 {
        self.keys[pos]
    }

    /// Replaces the payload in occupied slot `pos`; returns the old one.
    pub fn replace(&mut self, pos: usize, payload: V) -> V {
        std::mem::replace(&mut self.payloads[pos], payload)
    }

    /// The first occupied slot with a key >= `key`.
    pub fn seek(&self, key: u64) -> Option<usize> {
        let (pos, _) = self.lower_bound(key);
        self.next_occupied(pos)
    }

    /// Whether one more key fits: under `max_density`, or for an
    /// append-mostly node, while there is a free slot after its last key.
    pub fn has_room(&self, max_density: f64) -> bool {
        if self.append_mostly() {
            return self.end < self.capacity();
        }
        ((self.len + 1) as f64) <= self.capacity() as f64 * max_density
            && self.len + 1 < self.capacity()
    }

    /// Whether nearly all inserts seen land at the node's end.
    pub fn append_mostly(&self) -> bool {
        self.inserts >= APPEND_EVIDENCE && self.tail_inserts * 10 >= self.inserts * 9
    }

    /// Grows the node to `capacity` slots in place: keys keep their slots, the
    /// new slots are free for appends, and the model is refit to where the
    /// keys are, so it also predicts where appends land.
    pub fn extend(&mut self, capacity: usize) {
        debug_assert!(capacity >= self.capacity());
        self.keys.resize(capacity, u64::MAX);
        self.payloads.resize(capacity, V::default());
        self.bitmap.resize(capacity.div_ceil(64), 0);
        let mut slots = Vec::with_capacity(self.len);
        let mut pos = self.next_occupied(0);
        while let Some(p) = pos {
            slots.push(p);
            pos = self.next_occupied(p + 1);
        }
        self.model = LinearModel::fit(slots.iter().map(|p| self.keys[*p]), |i| slots[i] as f64);
    }

    /// Replaces the payload of `key`, or inserts it when the node has room
    /// under `max_density` (see [`DataNode::has_room`]).
    pub fn upsert(&mut self, key: u64, payload: V, max_density: f64) -> Upsert<V> {
        let (p, iterations) = self.lower_bound(key);
        if p < self.capacity() && self.keys[p] == key {
            // Gaps hold the next occupied slot's key, so the first occupied
            // slot from p holds `key` (none: trailing gaps reading u64::MAX).
            if let Some(pos) = self.next_occupied(p) {
                return Upsert::Replaced(self.replace(pos, payload));
            }
        }
        if !self.has_room(max_density) {
            return Upsert::Full;
        }
        self.insert_at(p, iterations, key, payload);
        Upsert::Inserted
    }

    /// Inserts `key`, which is not present, before slot `p` (the first slot
    /// whose key is greater), found in `iterations` search steps. The node
    /// must have a gap.
    fn insert_at(&mut self, p: usize, iterations: u64, key: u64, payload: V) {
        debug_assert!(self.len < self.capacity());
        let cap = self.capacity();
        self.searches += 1;
        self.search_iterations += iterations;
        self.inserts += 1;
        if p + TAIL_WINDOW >= self.end {
            self.tail_inserts += 1;
        }
        if p < cap && !self.occupied(p) {
            // A run of gaps [p, q): place the key where the model wants it,
            // except past the last key when the model points beyond the
            // array: there the next slot keeps the rest free for later keys.
            let q = self.next_occupied(p).unwrap_or(cap);
            let predicted = self.model.predict(key, cap);
            let pos = if q == cap && predicted == cap - 1 {
                p
            } else {
                predicted.clamp(p, q - 1)
            };
            self.place(pos, key, payload);
            for gap in p..pos {
                self.keys[gap] = key;
            }
            return;
        }
        // Slot p is taken (or p is past the end): shift towards the nearest gap.
        let right = self.next_gap(p);
        let left = p.checked_sub(1).and_then(|q| self.prev_gap(q));
        let shift_right = match (left, right) {
            (None, None) => unreachable!("insert into a full data node"),
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (Some(l), Some(g)) => g - p <= p - 1 - l,
        };
        if shift_right {
            let g = right.expect("chosen because it exists");
            self.keys.copy_within(p..g, p + 1);
            self.payloads.copy_within(p..g, p + 1);
            self.set_bit(g);
            self.end = self.end.max(g + 1);
            self.shifts += (g - p) as u64;
            self.place(p, key, payload);
        } else {
            let g = left.expect("chosen because it exists");
            self.keys.copy_within(g + 1..p, g);
            self.payloads.copy_within(g + 1..p, g);
            self.set_bit(g);
            self.shifts += (p - 1 - g) as u64;
            self.place(p - 1, key, payload);
        }
    }

    fn place(&mut self, pos: usize, key: u64, payload: V) {
        self.keys[pos] = key;
        self.payloads[pos] = payload;
        self.set_bit(pos);
        self.len += 1;
        self.end = self.end.max(pos + 1);
    }

    /// Removes the key in occupied slot `pos`; returns its payload.
    pub fn remove_at(&mut self, pos: usize) -> V {
        self.clear_bit(pos);
        self.len -= 1;
        let start = self.prev_occupied(pos).map_or(0, |p| p + 1);
        if pos + 1 == self.end {
            self.end = start;
        }
        self.fill_gaps(start, pos + 1);
        std::mem::take(&mut self.payloads[pos])
    }
}

//! The ALEX tree: inner nodes route by linear models, data nodes are gapped arrays.
//!
//! ```text
//!                 inner: model(key) -> slot 0..4
//!          ┌─────────┬─────────┬─────────┐
//!        slot 0    slot 1    slot 2    slot 3
//!          │         └────┬────┘         │        slots 1 and 2 share a child
//!        data A         data B        inner ...
//!          A <──────────> B <──────────> ...      data nodes linked in key order
//! ```
//!
//! A full data node either expands (retrained into a larger gapped array) or
//! splits, chosen by the cost model of the paper: when the node's observed
//! cost (search iterations and shifts per operation) has drifted well above
//! what its model promised, or the node is at its size limit, it splits:
//! sideways when it owns several slots of its parent (each half takes half
//! the slots, doubling the parent first when it owns one), else down (a new
//! inner node splitting its keys at their median).
//!
//! Nodes live in an arena and refer to each other by index.

use std::ops::Bound;

use super::data_node::{DataNode, Upsert};
use super::model::LinearModel;

/// Size limits of the tree.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Most keys a data node holds before it must split.
    pub max_data_keys: usize,
    /// Slots per key when a data node is built or expanded (1 / density).
    pub initial_density: f64,
    /// A data node expands or splits past this fraction of its slots.
    pub max_density: f64,
    /// Most children an inner node has.
    pub max_fanout: usize,
    /// Most children the root has after expanding to cover keys beyond its range.
    pub max_root_fanout: usize,
}

impl Default for Config {
    fn default() -> Config {
        if cfg!(test) {
            // Tiny nodes so that tests split and expand constantly.
            Config {
                max_data_keys: 16,
                initial_density: 0.6,
                max_density: 0.8,
                max_fanout: 8,
                max_root_fanout: 1 << 12,
            }
        } else {
            Config::production()
        }
    }
}

impl Config {
    /// The limits outside tests.
    pub fn production() -> Config {
        Config {
            max_data_keys: 1 << 14,
            initial_density: 0.7,
            max_density: 0.8,
            max_fanout: 1 << 12,
            max_root_fanout: 1 << 22,
        }
    }
}

#[derive(Clone, Debug)]
struct InnerNode {
    model: LinearModel,
    /// Slots added on the left by root expansion. Kept apart from the model so
    /// that expanding never changes how the model rounds a key.
    offset: i64,
    children: Vec<u32>,
}

impl InnerNode {
    fn new(model: LinearModel, children: Vec<u32>) -> InnerNode {
        InnerNode {
            model,
            offset: 0,
            children,
        }
    }

    /// The unclamped slot of `key`.
    fn raw_slot(&self, key: u64) -> i64 {
        let raw = self.model.raw(key);
        if raw.is_nan() {
            return 0;
        }
        (raw.floor() as i64).saturating_add(self.offset)
    }

    fn slot(&self, key: u64) -> usize {
        self.raw_slot(key).clamp(0, self.children.len() as i64 - 1) as usize
    }
}

#[derive(Clone, Debug)]
enum Node<V> {
    Inner(InnerNode),
    Data(DataNode<V>),
    Free,
}

/// What `expand_for` did.
#[derive(PartialEq, Eq)]
enum Expanded {
    No,
    Yes,
    /// The whole tree was rebuilt: node ids taken before are stale.
    Rebuilt,
}

/// An ALEX learned index from u64 keys to small payloads.
#[derive(Clone, Debug)]
pub struct Alex<V> {
    nodes: Vec<Node<V>>,
    free: Vec<u32>,
    root: u32,
    len: usize,
    config: Config,
    /// Keys held when the tree was last rebuilt whole (see `expand_root_for`).
    rebuilt_at: usize,
    /// Scratch space for the (inner node, slot) path of an insert.
    path: Vec<(u32, usize)>,
}

impl<V: Copy + Default> Default for Alex<V> {
    fn default() -> Self {
        Alex::new()
    }
}

impl<V: Copy + Default> Alex<V> {
    /// An empty index.
    pub fn new() -> Alex<V> {
        Alex::with_config(Config::default())
    }

    /// An empty index with explicit size limits.
    pub fn with_config(config: Config) -> Alex<V> {
        let mut alex = Alex {
            nodes: Vec::new(),
            free: Vec::new(),
            root: 0,
            len: 0,
            config,
            rebuilt_at: 0,
            path: Vec::new(),
        };
        alex.root = alex.alloc(Node::Data(DataNode::build(&[], 16)));
        alex
    }

    /// Builds an index from items sorted by key with no duplicate keys.
    pub fn bulk_load(items: &[(u64, V)]) -> Alex<V> {
        Alex::bulk_load_with(items, Config::default())
    }

    /// [`Alex::bulk_load`] with explicit size limits.
    pub fn bulk_load_with(items: &[(u64, V)], config: Config) -> Alex<V> {
        assert!(
            items.windows(2).all(|w| w[0].0 < w[1].0),
            "bulk load needs sorted, unique keys"
        );
        let mut alex = Alex {
            nodes: Vec::new(),
            free: Vec::new(),
            root: 0,
            len: items.len(),
            config,
            rebuilt_at: items.len(),
            path: Vec::new(),
        };
        let mut last_leaf = None;
        alex.root = alex.build(items, &mut last_leaf);
        alex
    }

    fn build(&mut self, items: &[(u64, V)], last_leaf: &mut Option<u32>) -> u32 {
        if items.len() <= self.config.max_data_keys {
            return self.new_leaf(items, last_leaf);
        }
        let n = items.len();
        let target = (n / (self.config.max_data_keys / 2).max(1)).next_power_of_two();
        let mut fanout = target.clamp(2, self.config.max_fanout);
        let mut model = LinearModel::fit(items.iter().map(|(k, _)| *k), |i| {
            (i * fanout) as f64 / n as f64
        });
        let mut bounds = partition(items, &model, fanout);
        // Skewed keys crowd some slots past what one data node holds, and each
        // of those keys pays for another level on every lookup: widen the
        // node while that removes at least a tenth of them.
        let max_keys = self.config.max_data_keys;
        let crowded = |bounds: &[std::ops::Range<usize>]| -> usize {
            bounds
                .iter()
                .map(|r| r.len())
                .filter(|l| *l > max_keys)
                .sum()
        };
        let mut deep = crowded(&bounds);
        while deep > n / 20 && fanout * 2 <= self.config.max_fanout {
            let wider = model.scaled(2.0);
            let wider_bounds = partition(items, &wider, fanout * 2);
            let wider_deep = crowded(&wider_bounds);
            if wider_deep * 10 > deep * 9 {
                break;
            }
            (fanout, model, bounds, deep) = (fanout * 2, wider, wider_bounds, wider_deep);
        }
        if bounds.iter().any(|r| r.len() == n) {
            // The fit puts everything in one slot (extreme skew): split at the median.
            model = LinearModel::through(items[0].0, items[n / 2].0, 1.0);
            bounds = partition(items, &model, 2);
        }
        let fanout = bounds.len();
        let mut children = Vec::with_capacity(fanout);
        let mut slot = 0;
        while slot < fanout {
            // Consecutive slots with few keys share one child.
            let start = slot;
            let mut end = bounds[slot].end;
            slot += 1;
            while slot < fanout
                && end - bounds[start].start + bounds[slot].len() <= self.config.max_data_keys / 2
            {
                end = bounds[slot].end;
                slot += 1;
            }
            let child = self.build(&items[bounds[start].start..end], last_leaf);
            children.extend(std::iter::repeat_n(child, slot - start));
        }
        self.alloc(Node::Inner(InnerNode::new(model, children)))
    }

    /// Slots for a data node of `keys` keys: the initial density, and always
    /// room for one more key under the maximum density.
    fn capacity_for(&self, keys: usize) -> usize {
        let at_initial = (keys as f64 / self.config.initial_density).ceil() as usize;
        let with_room = ((keys + 2) as f64 / self.config.max_density).ceil() as usize + 1;
        at_initial.max(with_room)
    }

    fn new_leaf(&mut self, items: &[(u64, V)], last_leaf: &mut Option<u32>) -> u32 {
        let capacity = self.capacity_for(items.len());
        self.new_leaf_with(DataNode::build(items, capacity), last_leaf)
    }

    /// Adds `leaf` to the arena, linked after `last_leaf`, and makes it the last leaf.
    fn new_leaf_with(&mut self, mut leaf: DataNode<V>, last_leaf: &mut Option<u32>) -> u32 {
        leaf.prev = *last_leaf;
        let id = self.alloc(Node::Data(leaf));
        if let Some(prev) = *last_leaf {
            self.data_mut(prev).next = Some(id);
        }
        *last_leaf = Some(id);
        id
    }

    fn alloc(&mut self, node: Node<V>) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn release(&mut self, id: u32) {
        self.nodes[id as usize] = Node::Free;
        self.free.push(id);
    }

    fn data(&self, id: u32) -> &DataNode<V> {
        match &self.nodes[id as usize] {
            Node::Data(d) => d,
            _ => unreachable!("node {id} is not a data node"),
        }
    }

    fn data_mut(&mut self, id: u32) -> &mut DataNode<V> {
        match &mut self.nodes[id as usize] {
            Node::Data(d) => d,
            _ => unreachable!("node {id} is not a data node"),
        }
    }

    /// The data node for `key` and the (inner node, slot) path to it, for an
    /// insert: widens every inner node on the way whose model does not reach
    /// `key` (see `expand_for`).
    fn descend_expanding(&mut self, key: u64, path: &mut Vec<(u32, usize)>) -> u32 {
        'restart: loop {
            path.clear();
            let mut id = self.root;
            while let Node::Inner(_) = &self.nodes[id as usize] {
                if self.expand_for(id, key) == Expanded::Rebuilt {
                    continue 'restart;
                }
                let inner = self.inner(id);
                let slot = inner.slot(key);
                path.push((id, slot));
                id = inner.children[slot];
            }
            return id;
        }
    }

    fn leaf_for(&self, key: u64) -> u32 {
        let mut id = self.root;
        while let Node::Inner(inner) = &self.nodes[id as usize] {
            id = inner.children[inner.slot(key)];
        }
        id
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload of `key`.
    pub fn get(&self, key: u64) -> Option<V> {
        self.data(self.leaf_for(key)).get(key)
    }

    /// Inserts or replaces; returns the previous payload.
    pub fn insert(&mut self, key: u64, payload: V) -> Option<V> {
        // The path buffer is kept between calls so an insert allocates nothing.
        let mut path = std::mem::take(&mut self.path);
        let old = loop {
            let leaf = self.descend_expanding(key, &mut path);
            let max_density = self.config.max_density;
            match self.data_mut(leaf).upsert(key, payload, max_density) {
                Upsert::Replaced(old) => break Some(old),
                Upsert::Inserted => {
                    self.len += 1;
                    break None;
                }
                Upsert::Full => self.grow(leaf, &path),
            }
        };
        self.path = path;
        old
    }

    /// Removes `key`; returns its payload.
    pub fn remove(&mut self, key: u64) -> Option<V> {
        let leaf = self.leaf_for(key);
        let node = self.data_mut(leaf);
        let pos = node.find(key)?;
        let payload = node.remove_at(pos);
        let sparse = node.capacity() > 64 && node.len() * 8 < node.capacity();
        self.len -= 1;
        // Give memory back when a node has become mostly gaps.
        if sparse {
            let node = self.data(leaf);
            let items = node.items();
            self.rebuild(leaf, &items);
        }
        Some(payload)
    }

    fn rebuild(&mut self, leaf: u32, items: &[(u64, V)]) {
        let capacity = self.capacity_for(items.len());
        let old = self.data(leaf);
        let (prev, next) = (old.prev, old.next);
        let mut node = DataNode::build(items, capacity);
        node.prev = prev;
        node.next = next;
        self.nodes[leaf as usize] = Node::Data(node);
    }

    /// Makes room in a full data node: expand, or split by the cost model.
    ///
    /// A split divides the node between the parent slots it owns; a node
    /// owning one slot first doubles its parent's slots. When the parent is
    /// at its size limit the split moves up: the parent's whole subtree is
    /// divided (rebuilt) between the slots it owns in the grandparent, and so
    /// on; the tree deepens (a split down) only where one slot's keys must be
    /// separated by a new model.
    fn grow(&mut self, leaf: u32, path: &[(u32, usize)]) {
        let node = self.data(leaf);
        if node.append_mostly() {
            if node.len() < self.config.max_data_keys {
                let capacity = node.capacity() * 2;
                self.data_mut(leaf).extend(capacity);
                return;
            }
            if self.seal(leaf, path) {
                return;
            }
        }
        let node = self.data(leaf);
        let items = node.items();
        let drifted = node
            .observed_cost()
            .is_some_and(|c| c > 1.5 * node.expected_cost());
        if items.len() < self.config.max_data_keys && !drifted {
            self.rebuild(leaf, &items);
            return;
        }
        let mut child = leaf;
        let mut leaf_parent = path.last().copied();
        for &(parent, slot) in path.iter().rev() {
            let (mut start, mut end) = self.owned_slots(parent, slot, child);
            if end - start < 2 {
                let cap = self.fanout_cap(parent);
                if self.inner(parent).children.len() * 2 > cap {
                    child = parent;
                    continue;
                }
                self.double_fanout(parent);
                (start, end) = (2 * start, 2 * end);
                if let Some((p, s)) = &mut leaf_parent {
                    if *p == parent {
                        // The leaf's slots doubled with its parent's.
                        *s *= 2;
                    }
                }
            }
            if self.split_subtree(child, parent, start, end) {
                return;
            }
            if child != leaf {
                // Every key below `child` is in one slot of `parent`, so nothing
                // above can separate them: refit the subtree to its keys.
                let items = self.collect(self.first_leaf(child), self.last_leaf(child));
                let (first, last) = (self.first_leaf(child), self.last_leaf(child));
                let (before, after) = (self.data(first).prev, self.data(last).next);
                self.free_subtree(child);
                let mut chain = before;
                let rebuilt = self.build(&items, &mut chain);
                self.link_after(chain, after);
                self.inner_mut(parent).children[start..end].fill(rebuilt);
                return;
            }
            break;
        }
        if child == self.root && !path.is_empty() && self.len >= 2 * self.rebuilt_at {
            self.rebuild_all();
            return;
        }
        self.split_down(leaf, leaf_parent, &items);
    }

    /// Splits a full append-mostly leaf where the append front is: the keys
    /// of the slots before the one holding its largest key are packed into a
    /// node of their own, and that slot's keys move to a new tail node that
    /// owns the remaining slots, where the appends go on. A parent whose slot
    /// holds all the leaf's keys doubles its slots first, and a root leaf
    /// becomes an inner node of two slots split just below its largest key.
    /// False when the tree is unchanged because neither is possible (the
    /// general split then applies). True also when the parent doubled but
    /// still cannot separate the keys: `path` is stale then, and the insert
    /// descends again.
    fn seal(&mut self, leaf: u32, path: &[(u32, usize)]) -> bool {
        let items = self.data(leaf).items();
        let (Some(&(min, _)), Some(&(max, _))) = (items.first(), items.last()) else {
            return false;
        };
        let Some(&(parent, mut slot)) = path.last() else {
            let model = LinearModel::through(min, max, 1.0);
            let cut = items.partition_point(|(k, _)| model.predict(*k, 2) == 0);
            if cut == 0 || cut == items.len() {
                return false;
            }
            let (low, high) = self.replace_leaf(leaf, &items[..cut], &items[cut..]);
            self.root = self.alloc(Node::Inner(InnerNode::new(model, vec![low, high])));
            return true;
        };
        let mut doubled = false;
        loop {
            let (start, end) = self.owned_slots(parent, slot, leaf);
            let inner = self.inner(parent);
            let mid = inner.slot(max);
            if inner.slot(min) < mid {
                let cut = items.partition_point(|(k, _)| inner.slot(*k) < mid);
                let (low, high) = self.replace_leaf(leaf, &items[..cut], &items[cut..]);
                let children = &mut self.inner_mut(parent).children;
                children[start..mid].fill(low);
                children[mid..end].fill(high);
                return true;
            }
            let cap = self.fanout_cap(parent);
            if inner.children.len() * 2 > cap {
                return doubled;
            }
            self.double_fanout(parent);
            slot *= 2;
            doubled = true;
        }
    }

    /// Replaces leaf `id` by a packed leaf of `low` and a tail leaf of `high`
    /// (its items, split), linked where it was.
    fn replace_leaf(&mut self, id: u32, low: &[(u64, V)], high: &[(u64, V)]) -> (u32, u32) {
        let (before, after) = (self.data(id).prev, self.data(id).next);
        self.release(id);
        let mut chain = before;
        let l = self.new_leaf_with(DataNode::packed(low), &mut chain);
        let capacity = (2 * high.len()).max(16);
        let r = self.new_leaf_with(DataNode::tail(high, capacity), &mut chain);
        self.link_after(chain, after);
        (l, r)
    }

    /// Most children inner node `id` may have. The root may outgrow the
    /// usual limit to cover keys beyond its range, but not past a quarter
    /// slot per key, so a skewed key range cannot fill memory with slots.
    fn fanout_cap(&self, id: u32) -> usize {
        if id == self.root {
            let by_keys = (self.len / 4).max(self.config.max_fanout);
            self.config.max_root_fanout.min(by_keys)
        } else {
            self.config.max_fanout
        }
    }

    fn inner(&self, id: u32) -> &InnerNode {
        match &self.nodes[id as usize] {
            Node::Inner(inner) => inner,
            _ => unreachable!("node {id} is not an inner node"),
        }
    }

    fn inner_mut(&mut self, id: u32) -> &mut InnerNode {
        match &mut self.nodes[id as usize] {
            Node::Inner(inner) => inner,
            _ => unreachable!("node {id} is not an inner node"),
        }
    }

    /// The run of the parent's slots that point at `child`, around `slot`.
    fn owned_slots(&self, parent: u32, slot: usize, child: u32) -> (usize, usize) {
        let children = &self.inner(parent).children;
        let mut start = slot;
        while start > 0 && children[start - 1] == child {
            start -= 1;
        }
        let mut end = slot + 1;
        while end < children.len() && children[end] == child {
            end += 1;
        }
        (start, end)
    }

    fn double_fanout(&mut self, parent: u32) {
        let inner = self.inner_mut(parent);
        inner.children = inner.children.iter().flat_map(|c| [*c, *c]).collect();
        inner.model = inner.model.scaled(2.0);
        inner.offset *= 2;
    }

    /// Divides the subtree at `child`, which owns slots `start..end` of
    /// `parent`, between two rebuilt subtrees at the slot of its median key,
    /// so both get keys and the slots beyond the keys (where appends land)
    /// stay with the upper one. False when every key is in one slot.
    fn split_subtree(&mut self, child: u32, parent: u32, start: usize, end: usize) -> bool {
        let items = self.collect(self.first_leaf(child), self.last_leaf(child));
        let inner = self.inner(parent);
        let median = items
            .get(items.len() / 2)
            .map_or(start, |(k, _)| inner.slot(*k));
        let mid = median.clamp(start + 1, end - 1);
        let cut = items.partition_point(|(k, _)| inner.slot(*k) < mid);
        if cut == 0 || cut == items.len() {
            return false;
        }
        let (left, right) = self.replace_subtree(child, &items[..cut], &items[cut..]);
        let children = &mut self.inner_mut(parent).children;
        children[start..mid].fill(left);
        children[mid..end].fill(right);
        true
    }

    /// Replaces `leaf` by an inner node splitting its keys at the median.
    fn split_down(&mut self, leaf: u32, parent: Option<(u32, usize)>, items: &[(u64, V)]) {
        let first = items.first().map_or(0, |i| i.0);
        let median = items
            .get(items.len() / 2)
            .map_or(first.saturating_add(1), |i| i.0);
        let model = LinearModel::through(first, median, 1.0);
        // Cut where the model does, so routing and contents agree even where
        // floating point rounds a key just below the median up to slot 1.
        let cut = items.partition_point(|(k, _)| model.predict(*k, 2) == 0);
        let owned = parent.map(|(parent, slot)| (parent, self.owned_slots(parent, slot, leaf)));
        let (left, right) = self.replace_subtree(leaf, &items[..cut], &items[cut..]);
        let inner = self.alloc(Node::Inner(InnerNode::new(model, vec![left, right])));
        match owned {
            None => self.root = inner,
            Some((parent, (start, end))) => self.inner_mut(parent).children[start..end].fill(inner),
        }
    }

    /// Widens inner node `id` when `key` lies beyond the key range its model
    /// covers, as the paper does for the root: the model keeps its slope, new
    /// slots are added on that side and point to a new node, and keys that
    /// were clamped into the edge child move there. Appends (time series,
    /// sequences) then spread over the new slots through sideways splits
    /// instead of piling into one edge child.
    fn expand_for(&mut self, id: u32, key: u64) -> Expanded {
        let is_root = id == self.root;
        let inner = self.inner(id);
        let fanout = inner.children.len() as i64;
        let raw = inner.raw_slot(key);
        let grow_right = raw >= fanout;
        if !(grow_right || raw < 0) {
            return Expanded::No;
        }
        let reach = if grow_right { raw - fanout + 1 } else { -raw };
        let added = (reach.max(fanout) as usize).next_power_of_two();
        let fanout = fanout as usize;
        let cap = self.fanout_cap(id);
        if fanout + added > cap {
            // The keys have outgrown the root's model (say, keys growing faster
            // than linearly). Refit the whole tree, at most each time it doubles,
            // so the cost per insert stays constant.
            if is_root && self.len >= 2 * self.rebuilt_at.max(self.config.max_data_keys) {
                self.rebuild_all();
                return Expanded::Rebuilt;
            }
            return Expanded::No;
        }
        let edge_slot = if grow_right { fanout - 1 } else { 0 };
        let edge = inner.children[edge_slot];
        let probe = inner.clone();
        let (start, end) = self.owned_slots(id, edge_slot, edge);
        let inside = |k: u64| {
            let slot = probe.raw_slot(k);
            if grow_right {
                slot < fanout as i64
            } else {
                slot >= 0
            }
        };
        let items = self.collect(self.first_leaf(edge), self.last_leaf(edge));
        let cut = items.partition_point(|(k, _)| inside(*k) == grow_right);
        let appending =
            grow_right && matches!(&self.nodes[edge as usize], Node::Data(d) if d.append_mostly());
        let (low, high) = if appending {
            // The append front moves on to the new slots: the edge leaf's keys
            // stay behind, packed.
            self.replace_leaf(edge, &items[..cut], &items[cut..])
        } else {
            self.replace_subtree(edge, &items[..cut], &items[cut..])
        };
        let node = self.inner_mut(id);
        if grow_right {
            node.children[start..end].fill(low);
            node.children.extend(std::iter::repeat_n(high, added));
        } else {
            node.children[start..end].fill(high);
            let mut children = vec![low; added];
            children.append(&mut node.children);
            node.children = children;
            node.offset += added as i64;
        }
        Expanded::Yes
    }

    /// Frees the subtree at `id` and builds two in its place, from `low` and
    /// `high` (all of its items, split), linked into the leaf list where it was.
    fn replace_subtree(&mut self, id: u32, low: &[(u64, V)], high: &[(u64, V)]) -> (u32, u32) {
        let (first, last) = (self.first_leaf(id), self.last_leaf(id));
        let (before, after) = (self.data(first).prev, self.data(last).next);
        self.free_subtree(id);
        let mut chain = before;
        let l = self.build(low, &mut chain);
        let r = self.build(high, &mut chain);
        self.link_after(chain, after);
        (l, r)
    }

    /// Links the leaf `tail`, the last one built, to the leaf that follows it.
    fn link_after(&mut self, tail: Option<u32>, after: Option<u32>) {
        let tail = tail.expect("build links at least one leaf");
        self.data_mut(tail).next = after;
        if let Some(after) = after {
            self.data_mut(after).prev = Some(tail);
        }
    }

    fn rebuild_all(&mut self) {
        let items = self.collect(self.first_leaf(self.root), self.last_leaf(self.root));
        self.free_subtree(self.root);
        let mut chain = None;
        self.root = self.build(&items, &mut chain);
        self.rebuilt_at = items.len();
    }

    fn first_leaf(&self, mut id: u32) -> u32 {
        while let Node::Inner(inner) = &self.nodes[id as usize] {
            id = inner.children[0];
        }
        id
    }

    fn last_leaf(&self, mut id: u32) -> u32 {
        while let Node::Inner(inner) = &self.nodes[id as usize] {
            id = *inner.children.last().expect("inner nodes have children");
        }
        id
    }

    /// Every item of the leaves from `first` to `last` along the leaf links.
    fn collect(&self, first: u32, last: u32) -> Vec<(u64, V)> {
        let mut items = Vec::new();
        let mut id = first;
        loop {
            items.extend(self.data(id).items());
            if id == last {
                return items;
            }
            id = self.data(id).next.expect("last follows first");
        }
    }

    fn free_subtree(&mut self, id: u32) {
        if let Node::Inner(inner) = &self.nodes[id as usize] {
            let mut children = inner.children.clone();
            children.dedup();
            for child in children {
                self.free_subtree(child);
            }
        }
        self.release(id);
    }

    /// Entries with keys in `range`, in ascending order.
    pub fn range(&self, lower: Bound<u64>, upper: Bound<u64>) -> Range<'_, V> {
        let start = match lower {
            Bound::Included(k) => Some(k),
            Bound::Excluded(k) => k.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let position = start.and_then(|k| {
            let leaf = self.leaf_for(k);
            self.seek_from(leaf, k)
        });
        match position {
            Some((node, pos)) => Range {
                alex: self,
                node: Some(node),
                word: pos / 64,
                bits: node.bitmap_word(pos / 64) & (!0u64 << (pos % 64)),
                upper,
            },
            None => Range {
                alex: self,
                node: None,
                word: 0,
                bits: 0,
                upper,
            },
        }
    }

    /// Entries with keys in `range`, in descending order.
    pub fn range_rev(&self, lower: Bound<u64>, upper: Bound<u64>) -> RangeRev<'_, V> {
        let position = match upper {
            Bound::Unbounded => self.last_position(),
            Bound::Included(k) => self.at_or_before(k),
            Bound::Excluded(k) => k.checked_sub(1).and_then(|k| self.at_or_before(k)),
        };
        RangeRev {
            alex: self,
            position,
            lower,
        }
    }

    /// The first entry at or after `key`, starting in `leaf` and following links.
    fn seek_from(&self, leaf: u32, key: u64) -> Option<Slot<'_, V>> {
        let node = self.data(leaf);
        match node.seek(key) {
            Some(pos) => Some((node, pos)),
            None => self.first_after(node),
        }
    }

    fn at_or_before(&self, key: u64) -> Option<Slot<'_, V>> {
        let leaf = self.leaf_for(key);
        match self.seek_from(leaf, key) {
            // The first entry >= key: step back one unless it is key itself.
            Some((node, pos)) if node.key(pos) == key => Some((node, pos)),
            Some((node, pos)) => self.step_back(node, pos),
            None => self.last_position(),
        }
    }

    /// The entry before slot `pos` of `node`.
    fn step_back<'a>(&'a self, node: &'a DataNode<V>, pos: usize) -> Option<Slot<'a, V>> {
        match pos.checked_sub(1).and_then(|p| node.prev_occupied(p)) {
            Some(p) => Some((node, p)),
            None => self.last_before(node),
        }
    }

    /// The first entry of the leaves after `node`.
    fn first_after<'a>(&'a self, mut node: &'a DataNode<V>) -> Option<Slot<'a, V>> {
        loop {
            node = self.data(node.next?);
            if let Some(p) = node.next_occupied(0) {
                return Some((node, p));
            }
        }
    }

    /// The last entry of the leaves before `node`.
    fn last_before<'a>(&'a self, mut node: &'a DataNode<V>) -> Option<Slot<'a, V>> {
        loop {
            node = self.data(node.prev?);
            if let Some(p) = node.prev_occupied(usize::MAX) {
                return Some((node, p));
            }
        }
    }

    fn last_position(&self) -> Option<Slot<'_, V>> {
        let node = self.data(self.last_leaf(self.root));
        match node.prev_occupied(usize::MAX) {
            Some(p) => Some((node, p)),
            None => self.last_before(node),
        }
    }

    /// Bytes the index holds: keys, payloads, gaps, bitmaps, models, child
    /// arrays, node headers and the arena, from the allocations' capacities.
    pub fn heap_bytes(&self) -> usize {
        let nodes: usize = self
            .nodes
            .iter()
            .map(|n| match n {
                Node::Data(d) => d.heap_bytes(),
                Node::Inner(i) => i.children.capacity() * 4,
                Node::Free => 0,
            })
            .sum();
        std::mem::size_of::<Self>()
            + nodes
            + self.nodes.capacity() * std::mem::size_of::<Node<V>>()
            + self.free.capacity() * 4
    }

    /// Shape of the tree: (inner nodes, data nodes, depth of the deepest data node).
    pub fn shape(&self) -> (usize, usize, usize) {
        let (mut inner, mut data) = (0, 0);
        for n in &self.nodes {
            match n {
                Node::Inner(_) => inner += 1,
                Node::Data(_) => data += 1,
                Node::Free => {}
            }
        }
        fn depth<V>(alex: &Alex<V>, id: u32) -> usize {
            match &alex.nodes[id as usize] {
                Node::Inner(i) => {
                    1 + i
                        .children
                        .iter()
                        .map(|c| depth(alex, *c))
                        .max()
                        .unwrap_or(0)
                }
                _ => 1,
            }
        }
        (inner, data, depth(self, self.root))
    }
}

/// Half-open index ranges of `items` per model slot (monotone, so contiguous).
fn partition<V>(
    items: &[(u64, V)],
    model: &LinearModel,
    fanout: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut bounds = Vec::with_capacity(fanout);
    let mut start = 0;
    for slot in 0..fanout {
        let end =
            start + items[start..].partition_point(|(k, _)| model.predict(*k, fanout) <= slot);
        bounds.push(start..end);
        start = end;
    }
    bounds
}

fn in_upper(key: u64, upper: Bound<u64>) -> bool {
    match upper {
        Bound::Included(u) => key <= u,
        Bound::Excluded(u) => key < u,
        Bound::Unbounded => true,
    }
}

fn in_lower(key: u64, lower: Bound<u64>) -> bool {
    match lower {
        Bound::Included(l) => key >= l,
        Bound::Excluded(l) => key > l,
        Bound::Unbounded => true,
    }
}

/// A leaf and one of its occupied slots.
type Slot<'a, V> = (&'a DataNode<V>, usize);

/// Ascending iterator from [`Alex::range`]. It walks the occupied-slot
/// bitmap a word at a time rather than searching it again for each key.
pub struct Range<'a, V> {
    alex: &'a Alex<V>,
    /// The current leaf; None when the iteration has ended.
    node: Option<&'a DataNode<V>>,
    /// Index of the bitmap word being walked.
    word: usize,
    /// Its occupied slots not yet returned.
    bits: u64,
    upper: Bound<u64>,
}

impl<V: Copy + Default> Iterator for Range<'_, V> {
    type Item = (u64, V);

    fn next(&mut self) -> Option<(u64, V)> {
        let mut node = self.node?;
        while self.bits == 0 {
            self.word += 1;
            if self.word == node.bitmap_words() {
                let Some(next) = node.next else {
                    self.node = None;
                    return None;
                };
                node = self.alex.data(next);
                self.node = Some(node);
                self.word = 0;
            }
            self.bits = node.bitmap_word(self.word);
        }
        let pos = self.word * 64 + self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        let key = node.key(pos);
        if !in_upper(key, self.upper) {
            self.node = None;
            return None;
        }
        Some((key, node.payload(pos)))
    }
}

/// Descending iterator from [`Alex::range_rev`].
pub struct RangeRev<'a, V> {
    alex: &'a Alex<V>,
    position: Option<Slot<'a, V>>,
    lower: Bound<u64>,
}

impl<V: Copy + Default> Iterator for RangeRev<'_, V> {
    type Item = (u64, V);

    fn next(&mut self) -> Option<(u64, V)> {
        let (node, pos) = self.position?;
        let key = node.key(pos);
        if !in_lower(key, self.lower) {
            self.position = None;
            return None;
        }
        self.position = self.alex.step_back(node, pos);
        Some((key, node.payload(pos)))
    }
}

//! ALEX held against `BTreeMap` on long random operation sequences, with tiny
//! nodes (see `Config::default` under `cfg(test)`) so splits and expansions
//! happen constantly.

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{Alex, Config};

#[derive(Clone, Debug)]
enum Op {
    Insert(u64, u32),
    Remove(u64),
    Get(u64),
    Range(Bound<u64>, Bound<u64>),
    RangeRev(Bound<u64>, Bound<u64>),
}

/// Keys from several distributions so runs, clusters and extremes all occur.
fn arb_key() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..200,
        any::<u64>(),
        (0u64..64).prop_map(|i| u64::MAX - i),
        (0u64..1000).prop_map(|i| (1 << 63) + i * 1_000_000),
        (0u32..64).prop_map(|s| 1u64 << s),
    ]
}

fn arb_bound() -> impl Strategy<Value = Bound<u64>> {
    prop_oneof![
        arb_key().prop_map(Bound::Included),
        arb_key().prop_map(Bound::Excluded),
        Just(Bound::Unbounded),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (arb_key(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => arb_key().prop_map(Op::Remove),
        2 => arb_key().prop_map(Op::Get),
        1 => (arb_bound(), arb_bound()).prop_map(|(a, b)| Op::Range(a, b)),
        1 => (arb_bound(), arb_bound()).prop_map(|(a, b)| Op::RangeRev(a, b)),
    ]
}

fn valid(lower: Bound<u64>, upper: Bound<u64>) -> bool {
    // BTreeMap::range panics on inverted or empty-excluded ranges.
    match (lower, upper) {
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b))
            if a > b =>
        {
            false
        }
        (Bound::Excluded(a), Bound::Excluded(b)) if a == b => false,
        _ => true,
    }
}

fn check(alex: &mut Alex<u32>, model: &BTreeMap<u64, u32>, op: &Op) -> Result<(), TestCaseError> {
    match op {
        Op::Insert(..) | Op::Remove(_) => unreachable!("applied by the caller"),
        Op::Get(k) => prop_assert_eq!(alex.get(*k), model.get(k).copied()),
        Op::Range(a, b) if valid(*a, *b) => {
            let got: Vec<_> = alex.range(*a, *b).collect();
            let want: Vec<_> = model.range((*a, *b)).map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(got, want);
        }
        Op::RangeRev(a, b) if valid(*a, *b) => {
            let got: Vec<_> = alex.range_rev(*a, *b).collect();
            let want: Vec<_> = model.range((*a, *b)).rev().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(got, want);
        }
        Op::Range(..) | Op::RangeRev(..) => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn matches_btreemap(ops in proptest::collection::vec(arb_op(), 1..1500), preload in proptest::collection::btree_map(arb_key(), any::<u32>(), 0..300)) {
        let items: Vec<_> = preload.iter().map(|(k, v)| (*k, *v)).collect();
        let mut alex = Alex::bulk_load(&items);
        let mut model = preload;
        for op in &ops {
            match op {
                Op::Insert(k, v) => prop_assert_eq!(alex.insert(*k, *v), model.insert(*k, *v)),
                Op::Remove(k) => prop_assert_eq!(alex.remove(*k), model.remove(k)),
                other => check(&mut alex, &model, other)?,
            }
            prop_assert_eq!(alex.len(), model.len());
        }
        let all: Vec<_> = alex.range(Bound::Unbounded, Bound::Unbounded).collect();
        let want: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
        prop_assert_eq!(all, want);
        for (k, v) in &model {
            prop_assert_eq!(alex.get(*k), Some(*v));
        }
    }
}

fn roundtrip(keys: impl Iterator<Item = u64> + Clone) {
    roundtrip_with(keys.clone(), Config::default());
    // The production densities, with nodes still small enough to split often.
    let config = Config {
        max_data_keys: 64,
        initial_density: 0.7,
        max_density: 0.8,
        max_fanout: 16,
        max_root_fanout: 1 << 16,
    };
    roundtrip_with(keys, config);
}

fn roundtrip_with(keys: impl Iterator<Item = u64>, config: Config) {
    let mut alex = Alex::with_config(config);
    let mut model = BTreeMap::new();
    for (i, k) in keys.enumerate() {
        assert_eq!(alex.insert(k, i as u32), model.insert(k, i as u32));
    }
    for (k, v) in &model {
        assert_eq!(alex.get(*k), Some(*v), "key {k}");
    }
    let got: Vec<_> = alex
        .range(Bound::Unbounded, Bound::Unbounded)
        .map(|(k, _)| k)
        .collect();
    let want: Vec<_> = model.keys().copied().collect();
    assert_eq!(got, want);
    let (inner, data, depth) = alex.shape();
    assert!(
        model.len() <= config.max_data_keys || (inner > 0 && data > 1),
        "tiny nodes must split: {inner} inner, {data} data"
    );
    // No chains of single-child levels: depth stays near the logarithm of the
    // key count even with nodes this small (it was hundreds before root
    // expansion and upward splits).
    assert!(
        depth <= 12,
        "depth {depth} ({inner} inner, {data} data nodes), {config:?}"
    );
}

#[test]
fn sequential_reverse_and_skewed_orders() {
    roundtrip(0..5000);
    roundtrip((0..5000).rev());
    roundtrip((0..5000u64).map(|i| i * i * i));
    roundtrip((0..3000u64).map(|i| if i % 2 == 0 { i } else { u64::MAX - i }));
    roundtrip((0..64u32).map(|s| 1u64 << s).chain(0..1000));
    // Duplicates: the same keys over and over.
    roundtrip((0..5000u64).map(|i| i % 37));
}

#[test]
fn bulk_load_of_extreme_skew() {
    let items: Vec<(u64, u32)> = (0..2000u64)
        .map(|i| (i, 0))
        .chain((0..50).map(|i| (u64::MAX - 50 + i, 1)))
        .collect();
    let alex = Alex::bulk_load(&items);
    for (k, v) in &items {
        assert_eq!(alex.get(*k), Some(*v));
    }
    assert_eq!(
        alex.range(Bound::Included(u64::MAX - 10), Bound::Unbounded)
            .count(),
        10
    );
}

#[test]
fn memory_is_reported() {
    let items: Vec<(u64, u64)> = (0..10_000u64).map(|i| (i * 3, i)).collect();
    let alex = Alex::bulk_load(&items);
    let per_key = alex.heap_bytes() as f64 / items.len() as f64;
    // 16 bytes of key and payload per key, plus gaps, bitmaps and headers
    // (which weigh a lot here: test nodes hold at most 16 keys).
    assert!((16.0..80.0).contains(&per_key), "{per_key} bytes per key");
}

/// Timestamps one millisecond apart (in microseconds), arriving up to 5 ms late.
fn time_series(n: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(3);
    let start = 1_767_225_600_000_000u64;
    let mut keys: Vec<u64> = (0..n)
        .map(|i| start + i * 1000 + rng.random_range(0..5000))
        .collect();
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert(*k));
    keys
}

fn built_by_inserts(keys: &[u64]) -> (Alex<u64>, BTreeMap<u64, u64>) {
    let mut alex = Alex::with_config(Config::production());
    let mut model = BTreeMap::new();
    for k in keys {
        assert_eq!(alex.insert(*k, !*k), model.insert(*k, !*k));
    }
    (alex, model)
}

fn assert_same(alex: &Alex<u64>, model: &BTreeMap<u64, u64>) {
    assert_eq!(alex.len(), model.len());
    let all: Vec<_> = alex.range(Bound::Unbounded, Bound::Unbounded).collect();
    let want: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
    assert!(all == want, "ordered contents differ");
    for (k, v) in model {
        assert_eq!(alex.get(*k), Some(*v), "key {k}");
    }
}

#[test]
fn appends_leave_packed_nodes_behind() {
    // Appends fill nodes densely and the nodes behind the append front are
    // packed: with 16 bytes of key and payload, gapped nodes at the build
    // density (0.7) would hold about 24 bytes per key.
    for keys in [(0..200_000u64).collect(), time_series(200_000)] {
        let (alex, model) = built_by_inserts(&keys);
        assert_same(&alex, &model);
        let per_key = alex.heap_bytes() as f64 / alex.len() as f64;
        assert!(per_key < 18.0, "{per_key} bytes per key");
    }
}

#[test]
fn packed_nodes_take_inserts_between_their_keys() {
    // Keys 0, 10, 20, ... appended, then the keys between them in random
    // order: every packed node must expand again and stay correct.
    let keys: Vec<u64> = (0..100_000u64).map(|i| i * 10).collect();
    let (mut alex, mut model) = built_by_inserts(&keys);
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..100_000 {
        let k = rng.random_range(0..1_000_000u64);
        assert_eq!(alex.insert(k, k), model.insert(k, k));
        if k % 7 == 0 {
            assert_eq!(alex.remove(k + 3), model.remove(&(k + 3)));
        }
    }
    assert_same(&alex, &model);
}

#[test]
fn skewed_keys_do_not_fill_the_root_with_slots() {
    // Lognormal keys: a long tail of large keys widens the root again and
    // again; its slots are capped by the key count, so they cost little
    // next to the keys (four million slots were 16 bytes per key here).
    let mut rng = StdRng::seed_from_u64(9);
    let keys: Vec<u64> = (0..200_000)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            ((z * 2.0).exp() * 1e9) as u64
        })
        .collect();
    let (alex, model) = built_by_inserts(&keys);
    assert_same(&alex, &model);
    let per_key = alex.heap_bytes() as f64 / alex.len() as f64;
    assert!(per_key < 28.0, "{per_key} bytes per key");
}

//! ALEX against std's BTreeMap, in memory: bulk load, random point lookups,
//! inserts, a 50/50 mix of lookups and inserts, and range scans of 100 keys,
//! on sequential, uniform random, lognormal and time-series keys.
//!
//! Bytes per key are measured by a counting allocator (heap bytes held after
//! building each structure), not computed, and printed before the timings.
//!
//! `OMEN_BENCH_KEYS` sets the sizes (default "1000000,10000000").

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use omen::engine::index::Alex;
use rand::{rngs::StdRng, Rng, SeedableRng};

struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(new_size, Ordering::Relaxed);
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes per key that `build` leaves allocated.
fn measured_bytes<T>(keys: usize, build: impl FnOnce() -> T) -> (T, f64) {
    let before = HELD.load(Ordering::Relaxed);
    let built = build();
    let after = HELD.load(Ordering::Relaxed);
    (built, after.saturating_sub(before) as f64 / keys as f64)
}

#[derive(Clone, Copy, Debug)]
enum Dist {
    Sequential,
    Uniform,
    Lognormal,
    TimeSeries,
}

/// Keys in arrival order (duplicates removed, first arrival kept).
fn keys(dist: Dist, n: usize) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(42);
    let mut out: Vec<u64> = match dist {
        Dist::Sequential => (0..n as u64).collect(),
        Dist::Uniform => (0..n).map(|_| rng.random()).collect(),
        Dist::Lognormal => (0..n)
            .map(|_| {
                // Box-Muller: a standard normal, then exp(mu + sigma * z).
                let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                ((z * 2.0).exp() * 1e9) as u64
            })
            .collect(),
        Dist::TimeSeries => {
            // Microsecond timestamps, one per millisecond, arriving up to 5 ms late.
            let start: u64 = 1_767_225_600_000_000;
            (0..n as u64)
                .map(|i| start + i * 1000 + rng.random_range(0..5000))
                .collect()
        }
    };
    let mut seen = std::collections::HashSet::with_capacity(out.len());
    out.retain(|k| seen.insert(*k));
    out
}

fn sizes() -> Vec<usize> {
    std::env::var("OMEN_BENCH_KEYS")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("OMEN_BENCH_KEYS: numbers separated by commas")
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    eprintln!("omen {}", omen::VERSION);
    for n in sizes() {
        for dist in [
            Dist::Sequential,
            Dist::Uniform,
            Dist::Lognormal,
            Dist::TimeSeries,
        ] {
            bench_one(c, dist, n);
        }
    }
}

fn bench_one(c: &mut Criterion, dist: Dist, n: usize) {
    let arrivals = keys(dist, n);
    let mut sorted: Vec<(u64, u64)> = arrivals.iter().map(|k| (*k, *k ^ 0xabcd)).collect();
    sorted.sort_unstable();
    let n = sorted.len();

    let (alex, alex_bytes) = measured_bytes(n, || Alex::bulk_load(&sorted));
    let (btree, btree_bytes) =
        measured_bytes(n, || sorted.iter().copied().collect::<BTreeMap<_, _>>());
    let (_, alex_inserted) = measured_bytes(n, || {
        let mut a = Alex::new();
        arrivals.iter().for_each(|k| {
            a.insert(*k, *k);
        });
        a
    });
    let (_, btree_inserted) = measured_bytes(n, || {
        let mut b = BTreeMap::new();
        arrivals.iter().for_each(|k| {
            b.insert(*k, *k);
        });
        b
    });
    let (inner, data, depth) = alex.shape();
    eprintln!(
        "bytes/key {dist:?} n={n}: bulk-loaded alex {alex_bytes:.1} btree {btree_bytes:.1}; \
         inserted one by one alex {alex_inserted:.1} btree {btree_inserted:.1}; \
         alex self-reported {:.1}; shape {inner} inner / {data} data nodes, depth {depth}",
        alex.heap_bytes() as f64 / n as f64
    );

    let mut rng = StdRng::seed_from_u64(7);
    let probes: Vec<u64> = (0..100_000)
        .map(|_| sorted[rng.random_range(0..n)].0)
        .collect();
    let name = format!("{dist:?}/{n}");
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(BenchmarkId::new("bulk_load", "alex"), |b| {
        b.iter(|| Alex::bulk_load(black_box(&sorted)))
    });
    group.bench_function(BenchmarkId::new("bulk_load", "btree"), |b| {
        b.iter(|| {
            black_box(&sorted)
                .iter()
                .copied()
                .collect::<BTreeMap<_, _>>()
        })
    });

    group.throughput(Throughput::Elements(probes.len() as u64));
    group.bench_function(BenchmarkId::new("lookup", "alex"), |b| {
        b.iter(|| {
            probes
                .iter()
                .map(|k| alex.get(*k).unwrap_or(0))
                .fold(0, u64::wrapping_add)
        })
    });
    group.bench_function(BenchmarkId::new("lookup", "btree"), |b| {
        b.iter(|| {
            probes
                .iter()
                .map(|k| *btree.get(k).unwrap_or(&0))
                .fold(0, u64::wrapping_add)
        })
    });

    // Inserts: the second half of the arrivals into a structure holding the first half.
    let half = arrivals.len() / 2;
    let mut first: Vec<(u64, u64)> = arrivals[..half].iter().map(|k| (*k, *k)).collect();
    first.sort_unstable();
    let later = &arrivals[half..];
    let alex_half = Alex::bulk_load(&first);
    let btree_half: BTreeMap<u64, u64> = first.iter().copied().collect();
    group.throughput(Throughput::Elements(later.len() as u64));
    group.bench_function(BenchmarkId::new("insert", "alex"), |b| {
        b.iter_batched(
            || alex_half.clone(),
            |mut a| {
                later.iter().for_each(|k| {
                    a.insert(*k, *k);
                });
                a
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function(BenchmarkId::new("insert", "btree"), |b| {
        b.iter_batched(
            || btree_half.clone(),
            |mut t| {
                later.iter().for_each(|k| {
                    t.insert(*k, *k);
                });
                t
            },
            BatchSize::PerIteration,
        )
    });

    // Mixed: each new key inserted is followed by a lookup of an existing one.
    let mixed = &later[..later.len().min(200_000)];
    group.throughput(Throughput::Elements(2 * mixed.len() as u64));
    group.bench_function(BenchmarkId::new("mixed", "alex"), |b| {
        b.iter_batched(
            || alex_half.clone(),
            |mut a| {
                let mut sum = 0u64;
                for (k, p) in mixed.iter().zip(probes.iter().cycle()) {
                    a.insert(*k, *k);
                    sum = sum.wrapping_add(a.get(*p).unwrap_or(0));
                }
                (a, sum)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function(BenchmarkId::new("mixed", "btree"), |b| {
        b.iter_batched(
            || btree_half.clone(),
            |mut t| {
                let mut sum = 0u64;
                for (k, p) in mixed.iter().zip(probes.iter().cycle()) {
                    t.insert(*k, *k);
                    sum = sum.wrapping_add(*t.get(p).unwrap_or(&0));
                }
                (t, sum)
            },
            BatchSize::PerIteration,
        )
    });

    let starts = &probes[..10_000];
    group.throughput(Throughput::Elements(starts.len() as u64));
    group.bench_function(BenchmarkId::new("range100", "alex"), |b| {
        b.iter(|| {
            starts.iter().fold(0u64, |acc, k| {
                alex.range(Bound::Included(*k), Bound::Unbounded)
                    .take(100)
                    .fold(acc, |a, (k, _)| a.wrapping_add(k))
            })
        })
    });
    group.bench_function(BenchmarkId::new("range100", "btree"), |b| {
        b.iter(|| {
            starts.iter().fold(0u64, |acc, k| {
                btree
                    .range(*k..)
                    .take(100)
                    .fold(acc, |a, (k, _)| a.wrapping_add(*k))
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

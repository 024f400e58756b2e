//! Many threads moving money between accounts under SERIALIZABLE, retrying on
//! conflict: the total never changes and every committed transfer is in the
//! balances.

use omen::engine::catalog::ColumnDef;
use omen::engine::types::{DataType, Value};
use omen::IsolationLevel;
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::support::TestDb;

const ACCOUNTS: i64 = 8;
const THREADS: i64 = 8;
const TRANSFERS_PER_THREAD: i64 = 120;
const START_BALANCE: i64 = 1000;

fn int(v: &Value) -> i64 {
    match v {
        Value::Int64(v) => *v,
        other => panic!("unexpected {other:?}"),
    }
}

fn transfer(
    s: &mut omen::Session,
    thread: i64,
    seq: i64,
    from: i64,
    to: i64,
    amount: i64,
) -> omen::Result<()> {
    s.begin_with(IsolationLevel::Serializable)?;
    let result = (|| {
        let a = s
            .get("accounts", &[Value::Int64(from)])?
            .expect("account exists");
        let b = s
            .get("accounts", &[Value::Int64(to)])?
            .expect("account exists");
        s.update(
            "accounts",
            vec![Value::Int64(from), Value::Int64(int(&a[1]) - amount)],
        )?;
        s.update(
            "accounts",
            vec![Value::Int64(to), Value::Int64(int(&b[1]) + amount)],
        )?;
        s.insert(
            "transfers",
            vec![
                Value::Int64(thread),
                Value::Int64(seq),
                Value::Int64(from),
                Value::Int64(to),
                Value::Int64(amount),
            ],
        )
    })();
    match result {
        Ok(()) => s.commit(),
        Err(e) => {
            s.rollback()?;
            Err(e)
        }
    }
}

pub fn serializable_transfers_keep_the_total() {
    let t = TestDb::new();
    let mut s = t.session();
    let int_col = |n: &str| ColumnDef::new(n, DataType::Int64).not_null();
    s.create_table(
        "accounts",
        vec![int_col("id"), int_col("balance")],
        &["id".to_string()],
        false,
    )
    .unwrap();
    s.create_table(
        "transfers",
        vec![
            int_col("thread"),
            int_col("seq"),
            int_col("src"),
            int_col("dst"),
            int_col("amount"),
        ],
        &["thread".to_string(), "seq".to_string()],
        false,
    )
    .unwrap();
    for id in 0..ACCOUNTS {
        s.insert(
            "accounts",
            vec![Value::Int64(id), Value::Int64(START_BALANCE)],
        )
        .unwrap();
    }

    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let db = t.db.clone();
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(thread as u64);
                let mut s = db.session();
                // Transfers between the same accounts in opposite orders
                // deadlock; find those fast and retry them.
                s.execute("SET deadlock_timeout = '20ms'").unwrap();
                let mut retries = 0;
                for seq in 0..TRANSFERS_PER_THREAD {
                    let from = rng.random_range(0..ACCOUNTS);
                    let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
                    let amount = rng.random_range(1..50);
                    loop {
                        match transfer(&mut s, thread, seq, from, to, amount) {
                            Ok(()) => break,
                            Err(e) if e.is_retryable() => retries += 1,
                            Err(e) => panic!("transfer failed: {e}"),
                        }
                    }
                }
                retries
            })
        })
        .collect();
    let retries: i64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(
        retries > 0,
        "the threads never conflicted; the test is not exercising anything"
    );

    let mut s = t.session();
    let balances: Vec<i64> = s
        .scan_all("accounts")
        .unwrap()
        .iter()
        .map(|r| int(&r[1]))
        .collect();
    assert_eq!(balances.iter().sum::<i64>(), ACCOUNTS * START_BALANCE);
    let transfers = s.scan_all("transfers").unwrap();
    assert_eq!(
        transfers.len() as i64,
        THREADS * TRANSFERS_PER_THREAD,
        "a committed transfer is missing"
    );
    let mut replay = vec![START_BALANCE; ACCOUNTS as usize];
    for r in &transfers {
        replay[int(&r[2]) as usize] -= int(&r[4]);
        replay[int(&r[3]) as usize] += int(&r[4]);
    }
    assert_eq!(
        balances, replay,
        "balances disagree with the committed transfers"
    );
}

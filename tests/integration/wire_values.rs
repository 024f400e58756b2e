//! Extreme values over the wire, as binary parameters and results (the
//! extended protocol) and as text (the simple protocol). Each test opens with
//! the bug it pins.

use std::error::Error as StdError;

use chrono::{NaiveDate, NaiveDateTime};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::server::{code, connect, runtime, simple_rows, Server};

/// A DATE or TIMESTAMP parameter sent as raw bytes (days or microseconds
/// since 2000-01-01), to reach values chrono cannot hold.
#[derive(Debug)]
struct Raw(Vec<u8>);

impl ToSql for Raw {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(t: &Type) -> bool {
        matches!(*t, Type::DATE | Type::TIMESTAMP)
    }

    to_sql_checked!();
}

pub fn extreme_values_over_the_wire() {
    // Bug: binary DATE and TIMESTAMP parameters were shifted to omen's epoch
    // without overflow checks, and integer arithmetic wrapped.
    let server = Server::start();
    runtime().block_on(async {
        let client = connect(&server.conninfo("a", None)).await.expect("connect");
        client
            .batch_execute(
                "CREATE TABLE v (id INT PRIMARY KEY, i2 SMALLINT, i4 INT, i8 BIGINT, \
                 f4 REAL, f8 DOUBLE PRECISION, d DATE, ts TIMESTAMP)",
            )
            .await
            .expect("create");
        let insert = client
            .prepare("INSERT INTO v VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .await
            .expect("prepare");
        let dates = [
            NaiveDate::from_ymd_opt(1, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(9999, 12, 31).unwrap(),
        ];
        let times = [
            dates[0].and_hms_opt(0, 0, 0).unwrap(),
            dates[1].and_hms_micro_opt(23, 59, 59, 999_999).unwrap(),
        ];
        let rows: [(i32, i16, i32, i64, f32, f64); 2] = [
            (1, i16::MIN, i32::MIN, i64::MIN, f32::MIN_POSITIVE, f64::MAX),
            (
                2,
                i16::MAX,
                i32::MAX,
                i64::MAX,
                f32::INFINITY,
                f64::NEG_INFINITY,
            ),
        ];
        for (n, (id, a, b, c, e, f)) in rows.iter().enumerate() {
            client
                .execute(&insert, &[id, a, b, c, e, f, &dates[n], &times[n]])
                .await
                .expect("insert extremes");
        }
        // Binary results.
        for (n, (id, a, b, c, e, f)) in rows.iter().enumerate() {
            let row = client
                .query_one(
                    "SELECT i2, i4, i8, f4, f8, d, ts FROM v WHERE id = $1",
                    &[id],
                )
                .await
                .expect("select");
            assert_eq!(row.get::<_, i16>(0), *a);
            assert_eq!(row.get::<_, i32>(1), *b);
            assert_eq!(row.get::<_, i64>(2), *c);
            assert_eq!(row.get::<_, f32>(3), *e);
            assert_eq!(row.get::<_, f64>(4), *f);
            assert_eq!(row.get::<_, NaiveDate>(5), dates[n]);
            assert_eq!(row.get::<_, NaiveDateTime>(6), times[n]);
        }
        // Text results.
        assert_eq!(
            simple_rows(&client, "SELECT i8, d, ts FROM v ORDER BY id").await,
            vec![
                vec![
                    Some("-9223372036854775808".into()),
                    Some("0001-01-01".into()),
                    Some("0001-01-01 00:00:00".into())
                ],
                vec![
                    Some("9223372036854775807".into()),
                    Some("9999-12-31".into()),
                    Some("9999-12-31 23:59:59.999999".into())
                ],
            ]
        );
        // Out of range: an error, never a wrapped value.
        for value in [i64::MAX, i64::MIN] {
            let e = client
                .execute(
                    "INSERT INTO v (id, ts) VALUES (9, $1)",
                    &[&Raw(value.to_be_bytes().to_vec())],
                )
                .await
                .unwrap_err();
            assert_eq!(code(&e), "22008", "{e:?}");
        }
        for value in [i32::MAX, i32::MIN] {
            let e = client
                .execute(
                    "INSERT INTO v (id, d) VALUES (9, $1)",
                    &[&Raw(value.to_be_bytes().to_vec())],
                )
                .await
                .unwrap_err();
            assert_eq!(code(&e), "22008", "{e:?}");
        }
        let e = client
            .query_one("SELECT i8 + $1 FROM v WHERE id = 2", &[&1i64])
            .await
            .unwrap_err();
        assert_eq!(code(&e), "22003");
        let e = client
            .simple_query("SELECT i4 + i4 FROM v WHERE id = 1")
            .await
            .unwrap_err();
        assert_eq!(code(&e), "22003");
        assert_eq!(
            simple_rows(&client, "SELECT count(*) FROM v").await,
            vec![vec![Some("2".into())]]
        );
    });
}

pub fn random_values_round_trip_over_the_wire() {
    // Random values of each type, sent as binary parameters, read back in
    // binary and in text, equal what was sent.
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let server = Server::start();
    let rt = runtime();
    let client = rt.block_on(async {
        let client = connect(&server.conninfo("a", None)).await.expect("connect");
        client
            .batch_execute(
                "CREATE TABLE r (id INT PRIMARY KEY, i2 SMALLINT, i4 INT, i8 BIGINT, \
                 f8 DOUBLE PRECISION, b BOOLEAN, t TEXT, d DATE, ts TIMESTAMP, by BYTEA)",
            )
            .await
            .expect("create");
        client
    });
    let insert = rt
        .block_on(client.prepare("INSERT INTO r VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
        .expect("prepare");
    let select = rt
        .block_on(client.prepare("SELECT i2, i4, i8, f8, b, t, d, ts, by FROM r WHERE id = $1"))
        .expect("prepare");
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let next = std::cell::Cell::new(0);
    let values = (
        (any::<i16>(), any::<i32>(), any::<i64>()),
        (
            any::<f64>().prop_filter("NaN", |f| !f.is_nan()),
            any::<bool>(),
        ),
        "[a-zA-Z0-9 éü'\"\\\\]{0,40}",
        (
            1i32..=9999,
            1u32..=12,
            1u32..=28,
            0u32..86_400,
            0u32..1_000_000,
        ),
        proptest::collection::vec(any::<u8>(), 0..32),
    );
    runner
        .run(
            &values,
            |((a, b, c), (f, flag), text, (y, mo, day, secs, micros), bytes)| {
                let id = next.get() + 1;
                next.set(id);
                let date = NaiveDate::from_ymd_opt(y, mo, day).unwrap();
                let time = date
                    .and_hms_micro_opt(secs / 3600, secs / 60 % 60, secs % 60, micros)
                    .unwrap();
                rt.block_on(client.execute(
                    &insert,
                    &[&id, &a, &b, &c, &f, &flag, &text, &date, &time, &bytes],
                ))
                .expect("insert");
                let row = rt
                    .block_on(client.query_one(&select, &[&id]))
                    .expect("select");
                prop_assert_eq!(row.get::<_, i16>(0), a);
                prop_assert_eq!(row.get::<_, i32>(1), b);
                prop_assert_eq!(row.get::<_, i64>(2), c);
                prop_assert_eq!(row.get::<_, f64>(3), f);
                prop_assert_eq!(row.get::<_, bool>(4), flag);
                prop_assert_eq!(row.get::<_, String>(5), text.clone());
                prop_assert_eq!(row.get::<_, NaiveDate>(6), date);
                prop_assert_eq!(row.get::<_, NaiveDateTime>(7), time);
                prop_assert_eq!(row.get::<_, Vec<u8>>(8), bytes);
                let sql = format!("SELECT i8, t, d FROM r WHERE id = {id}");
                let texts = rt.block_on(simple_rows(&client, &sql));
                prop_assert_eq!(texts[0][0].clone(), Some(c.to_string()));
                prop_assert_eq!(texts[0][1].clone(), Some(text));
                prop_assert_eq!(
                    texts[0][2].clone(),
                    Some(date.format("%Y-%m-%d").to_string())
                );
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
}

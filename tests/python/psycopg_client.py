"""Drives `omen serve` with psycopg 3, as a Python application would.

Run by the integration test `server::psycopg_driver` with the connection
string as its one argument; exits non-zero (with a traceback) on any failure.
"""

import datetime
import decimal
import sys

import psycopg

conninfo = sys.argv[1]

with psycopg.connect(conninfo, autocommit=True) as conn:
    conn.execute(
        "CREATE TABLE readings (id BIGINT PRIMARY KEY, sensor TEXT NOT NULL,"
        " at TIMESTAMP, value DOUBLE PRECISION, ok BOOLEAN, amount NUMERIC(10, 2), raw BYTEA)"
    )

with psycopg.connect(conninfo) as conn:
    with conn.cursor() as cur:
        # Parameters: psycopg sends them in the extended protocol.
        cur.executemany(
            "INSERT INTO readings VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (i, f"s{i % 3}", datetime.datetime(2026, 1, 1, 0, 0, i), i * 1.5, i % 2 == 0,
                 decimal.Decimal(f"{i}.25"), bytes([i, 255]))
                for i in range(1, 11)
            ],
        )
    conn.commit()

    with conn.cursor() as cur:
        cur.execute("SELECT count(*), sum(value) FROM readings WHERE sensor = %s", ("s1",))
        count, total = cur.fetchone()
        assert (count, total) == (4, (1 + 4 + 7 + 10) * 1.5), (count, total)

        cur.execute("SELECT at, ok, amount, raw FROM readings WHERE id = %s", (2,))
        at, ok, amount, raw = cur.fetchone()
        assert at == datetime.datetime(2026, 1, 1, 0, 0, 2), at
        assert ok is True, ok
        assert amount == decimal.Decimal("2.25"), amount
        assert raw == bytes([2, 255]), raw

        # Binary results.
        cur.execute("SELECT id, sensor, value FROM readings WHERE id = %s", (3,), binary=True)
        assert cur.fetchone() == (3, "s0", 4.5)

    # A failed statement rolls the transaction back; the connection goes on.
    # (Committed first: inside an open transaction psycopg would nest with a
    # SAVEPOINT, which omen does not have.)
    conn.commit()
    try:
        with conn.transaction():
            conn.execute("UPDATE readings SET value = 0 WHERE id = 1")
            conn.execute("INSERT INTO readings (id, sensor) VALUES (1, 'dup')")
        raise AssertionError("the duplicate key was accepted")
    except psycopg.errors.UniqueViolation:
        pass
    value = conn.execute("SELECT value FROM readings WHERE id = 1").fetchone()[0]
    assert value == 1.5, value

    # COPY in and out.
    with conn.cursor() as cur:
        with cur.copy("COPY readings (id, sensor, value) FROM STDIN") as copy:
            copy.write_row((100, "copied", 9.5))
            copy.write_row((101, "tab\there", None))
        conn.commit()
        cur.execute("SELECT sensor, value FROM readings WHERE id >= 100 ORDER BY id")
        assert cur.fetchall() == [("copied", 9.5), ("tab\there", None)]
        lines = []
        with cur.copy("COPY (SELECT id, sensor FROM readings WHERE id >= 100 ORDER BY id) TO STDOUT") as copy:
            for row in copy.rows():
                lines.append(row)
        assert lines == [("100", "copied"), ("101", "tab\there")], lines

# Nested transaction blocks: psycopg uses savepoints for the inner ones.
with psycopg.connect(conninfo) as conn:
    with conn.transaction():
        conn.execute("INSERT INTO readings (id, sensor) VALUES (200, 'outer')")
        try:
            with conn.transaction():
                conn.execute("INSERT INTO readings (id, sensor) VALUES (201, 'inner')")
                conn.execute("INSERT INTO readings (id, sensor) VALUES (200, 'duplicate')")
        except psycopg.errors.UniqueViolation:
            pass
        conn.execute("INSERT INTO readings (id, sensor) VALUES (202, 'after')")
    ids = [r[0] for r in conn.execute("SELECT id FROM readings WHERE id >= 200 ORDER BY id")]
    assert ids == [200, 202], ids

# Type introspection, as psycopg does for types it has no adapter for.
with psycopg.connect(conninfo, autocommit=True) as conn:
    from psycopg.types import TypeInfo

    # Result columns carry PostgreSQL's names, which dict rows are keyed by.
    cur = conn.execute("SELECT count(*), max(value), 1 + 1, 'x'::text, sensor FROM readings GROUP BY sensor")
    assert [c.name for c in cur.description] == ["count", "max", "?column?", "text", "sensor"], cur.description

    info = TypeInfo.fetch(conn, "numeric")
    assert (info.oid, info.array_oid) == (1700, 1231), info
    assert TypeInfo.fetch(conn, "no_such_type") is None

print("psycopg ok")

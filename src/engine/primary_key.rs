//! ALTER TABLE ... ADD PRIMARY KEY on a table whose rows are keyed by
//! hidden row ids (made without one, or by `omen import` without
//! `--primary-key`): every row is stored again under its key, in one change
//! under the exclusive table lock, and its index entries (which name the
//! row's key) with it. A NULL in a key column fails with 23502 and a key
//! that two rows share with 23505, and nothing changes.

use super::catalog::Table;
use super::error::{Error, Result};
use super::locks::Mode;
use super::secondary::{lock_table, unique_violation, write_row, Change};
use super::session::{lock_for_insert, stage_definition, Session};

impl Session {
    /// Makes `columns` the primary key of `table` (as the session sees it),
    /// called `name` (None: `<table>_pkey`).
    pub(super) fn add_primary_key(
        &mut self,
        table: Table,
        name: Option<String>,
        columns: &[String],
    ) -> Result<()> {
        let shared = self.shared.clone();
        let altered = table.with_primary_key(columns)?.with_key_name(name)?;
        let explicit = self.in_transaction();
        // The key directory knows row ids, not the new keys: without one,
        // reads go to storage until the database is opened again.
        shared.directories.remove_table(table.id);
        let unchanged = shared.catalog.unchanged_check(&[table.id]);
        self.statement(|open| {
            lock_table(open, table.id, Mode::Update)?;
            open.txn.lock().refresh_snapshot();
            let rows: Vec<(Vec<u8>, Vec<u8>)> = {
                let mut txn = open.txn.lock();
                txn.scan(&table.key_prefix(), Some(&table.key_end()))
                    .collect::<Result<_>>()?
            };
            // The rows move, their values stay: no foreign key action runs.
            open.constraints.suspended = true;
            let moved = (|| {
                let mut decoded = Vec::with_capacity(rows.len());
                for (key, bytes) in rows {
                    decoded.push(table.decode_row(&bytes)?);
                    write_row(&shared, open, &table, &key, Change::Delete)?;
                }
                for row in decoded {
                    let row = shared.checks.row(&altered, row)?;
                    let key = altered.row_key(&row)?;
                    if lock_for_insert(open, &key)?.is_some() {
                        let name = altered.primary_key_name();
                        let columns = altered.primary_key_indices();
                        return Err(unique_violation(&altered, &name, &columns, &row, true));
                    }
                    write_row(&shared, open, &altered, &key, Change::Insert(&row))?;
                }
                Ok::<_, Error>(())
            })();
            open.constraints.suspended = false;
            moved?;
            stage_definition(&shared, open, altered, explicit, unchanged)
        })
    }
}

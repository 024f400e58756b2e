//! Whole-table writes: COPY ... FROM's rows, which arrive as text, and
//! TRUNCATE.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::sql::sqlparser::ast::{self, Statement};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::execute::{assign, full_rows, insert_targets, parse, table_name, Output};
use crate::engine::catalog::Table;
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::session::{commit, insert_row, CopyIn, Open};
use crate::engine::Session;

/// COPY's boolean options spelled `on`/`off` (`WITH (FREEZE on)`, as
/// pgbench sends), which the parser reads only as `true`/`false`.
pub fn copy_booleans(sql: &str) -> String {
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let Ok(mut tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return sql.to_string();
    };
    let word = |t: &Token| match t {
        Token::Word(w) if w.quote_style.is_none() => w.value.to_lowercase(),
        _ => String::new(),
    };
    let mut previous: Option<usize> = None;
    for i in 0..tokens.len() {
        if matches!(tokens[i], Token::Whitespace(_)) {
            continue;
        }
        if let Some(p) = previous {
            let option = word(&tokens[p]);
            let is_flag = matches!(option.as_str(), "freeze" | "header");
            match word(&tokens[i]).as_str() {
                "on" if is_flag => tokens[i] = Token::make_keyword("TRUE"),
                "off" if is_flag => tokens[i] = Token::make_keyword("FALSE"),
                _ => {}
            }
        }
        previous = Some(i);
    }
    tokens.iter().map(|t| t.to_string()).collect()
}

/// Rows of text fields (None for NULL) for columns `targets` of `table`,
/// each field read as its column's type reads a string literal, completed
/// with the other columns' defaults.
fn text_rows(
    shared: &crate::engine::database::Shared,
    planner: &super::Planner,
    table: &Table,
    targets: &[usize],
    rows: &[Vec<Option<String>>],
) -> Result<Vec<Vec<crate::engine::types::Value>>> {
    let arrays = targets
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let text: ArrayRef =
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r[i].as_deref())));
            let column = &table.columns[c];
            assign(&text, column.data_type, &column.name)
        })
        .collect::<Result<Vec<_>>>()?;
    full_rows(shared, planner, table, targets, &arrays)
}

impl Session {
    /// The table a COPY writes and the index of each column it fills.
    pub(super) fn copy_targets(
        &self,
        table: &str,
        columns: &[String],
    ) -> Result<(Arc<Table>, Vec<usize>)> {
        let table = self.table(table)?;
        let names: Vec<ast::ObjectName> = columns
            .iter()
            .map(|c| ast::ObjectName::from(vec![ast::Ident::with_quote('"', c)]))
            .collect();
        let targets = insert_targets(&table, &names)?;
        Ok((table, targets))
    }

    /// Inserts rows of text fields (None for NULL) into `columns` of `table`
    /// (all columns when empty), each field read as its column's type reads
    /// a string literal. All rows or none are written.
    pub fn copy_from(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Option<String>>],
    ) -> Result<u64> {
        self.copy_begin(table, columns)?;
        self.copy_rows(rows)?;
        self.copy_end()
    }

    /// Starts a COPY FROM into `columns` of `table` whose rows arrive in
    /// batches ([`copy_rows`](Session::copy_rows)): one statement, in the open
    /// transaction or in one of its own, that [`copy_end`](Session::copy_end)
    /// finishes and a failing batch or [`copy_abort`](Session::copy_abort)
    /// undoes whole. Returns the number of fields each row has.
    pub fn copy_begin(&mut self, table: &str, columns: &[String]) -> Result<usize> {
        let _scope = self.catalog_scope();
        self.copy_abort();
        let (table, targets) = self.copy_targets(table, columns)?;
        let implicit = match &mut self.txn {
            Some(open) => {
                open.begin_statement()?;
                None
            }
            None => Some(Open::new(self.begin_transaction(self.default_isolation()))),
        };
        let fields = targets.len();
        self.copy = Some(CopyIn {
            table,
            targets,
            implicit,
            rows: 0,
        });
        Ok(fields)
    }

    /// Inserts a batch of the running COPY's rows. A failure undoes the whole
    /// COPY (and aborts an explicit transaction).
    pub fn copy_rows(&mut self, rows: &[Vec<Option<String>>]) -> Result<u64> {
        let _scope = self.catalog_scope();
        let result = self.copy_batch(rows);
        if result.is_err() {
            self.copy_abort();
        }
        result
    }

    fn copy_batch(&mut self, rows: &[Vec<Option<String>>]) -> Result<u64> {
        let planner = self.planner()?;
        let shared = self.shared.clone();
        let copy = self.copy.as_mut().ok_or_else(|| {
            Error::invalid(
                SqlState::PROTOCOL_VIOLATION,
                "COPY data without a COPY FROM",
            )
        })?;
        let (table, targets) = (copy.table.clone(), copy.targets.clone());
        if let Some((n, row)) = rows
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != targets.len())
        {
            return Err(Error::invalid(
                SqlState::BAD_COPY_FILE_FORMAT,
                format!(
                    "row {} has {} fields where COPY expects {}",
                    copy.rows as usize + n + 1,
                    row.len(),
                    targets.len()
                ),
            ));
        }
        let full = text_rows(&shared, &planner, &table, &targets, rows)?;
        let open = match &mut copy.implicit {
            Some(open) => open,
            None => self.txn.as_mut().ok_or_else(|| {
                Error::Internal("the transaction of a COPY ended before it".into())
            })?,
        };
        for row in full {
            insert_row(&shared, open, &table, row)?;
        }
        copy.rows += rows.len() as u64;
        Ok(rows.len() as u64)
    }

    /// Finishes the running COPY: commits its own transaction, or ends its
    /// statement in the open one. Returns the rows it wrote.
    pub fn copy_end(&mut self) -> Result<u64> {
        let _scope = self.catalog_scope();
        let copy = self.copy.take().ok_or_else(|| {
            Error::invalid(
                SqlState::PROTOCOL_VIOLATION,
                "COPY done without a COPY FROM",
            )
        })?;
        match copy.implicit {
            Some(open) => commit(&self.shared, open)?,
            None => {
                if let Some(open) = &mut self.txn {
                    if let Err(e) = crate::engine::foreign_keys::verify(&self.shared, open, false) {
                        self.abort_statement();
                        return Err(e);
                    }
                    open.txn.lock().end_statement();
                }
            }
        }
        Ok(copy.rows)
    }

    /// Undoes the running COPY, if any: its own transaction is rolled back;
    /// in an explicit one its rows are undone and the transaction aborted.
    pub fn copy_abort(&mut self) {
        let Some(copy) = self.copy.take() else {
            return;
        };
        if copy.implicit.is_none() {
            self.abort_statement();
        }
    }

    /// TRUNCATE: deletes every row of each table, in the current transaction.
    pub(super) fn truncate_sql(&mut self, truncate: ast::Truncate) -> Result<Output> {
        let mut names = truncate
            .table_names
            .iter()
            .map(|t| table_name(&t.name))
            .collect::<Result<Vec<_>>>()?;
        let mut ids = Vec::new();
        for name in &names {
            ids.push(self.table(name)?.id);
        }
        // A table that foreign keys reference goes only with the tables that
        // reference it (CASCADE adds them); no foreign key action runs.
        let cascade = matches!(truncate.cascade, Some(ast::CascadeOption::Cascade));
        let mut i = 0;
        while i < ids.len() {
            for child in self.shared.catalog.referencing(ids[i]) {
                if ids.contains(&child.id) {
                    continue;
                }
                if !cascade {
                    let parent = &names[i];
                    return Err(Error::invalid(
                        SqlState::FEATURE_NOT_SUPPORTED,
                        format!(
                            "cannot truncate a table referenced in a foreign key constraint: Table \"{}\" references \"{parent}\". Truncate table \"{}\" at the same time, or use TRUNCATE ... CASCADE.",
                            child.name, child.name
                        ),
                    ));
                }
                self.notice(format!("truncate cascades to table \"{}\"", child.name));
                ids.push(child.id);
                names.push(child.name.clone());
            }
            i += 1;
        }
        // RESTART IDENTITY sets the tables' own sequences back to their
        // start. PostgreSQL undoes that with a transaction that rolls back;
        // omen's sequences are not transactional, so it is done only for a
        // TRUNCATE that commits by itself.
        let restart = matches!(
            truncate.identity,
            Some(ast::TruncateIdentityOption::Restart)
        );
        if restart && self.in_transaction() {
            return Err(Error::Unsupported(
                "TRUNCATE ... RESTART IDENTITY inside a transaction block".into(),
            ));
        }
        let deletes = names
            .iter()
            .map(|name| {
                let quoted = format!("\"{}\"", name.replace('"', "\"\""));
                Ok(parse(&format!("DELETE FROM {quoted}"))?.remove(0))
            })
            .collect::<Result<Vec<Statement>>>()?;
        let run_delete = |session: &mut Session, delete: Statement| match delete {
            Statement::Delete(delete) => session.delete_sql(delete).map(|_| ()),
            _ => unreachable!("parsed from DELETE text"),
        };
        let suspend = |session: &mut Session, on: bool| {
            if let Some(open) = &mut session.txn {
                open.constraints.suspended = on;
            }
        };
        if self.in_transaction() {
            suspend(self, true);
            let deleted = deletes.into_iter().try_for_each(|d| run_delete(self, d));
            suspend(self, false);
            deleted?;
        } else {
            // Every table or none.
            self.begin()?;
            suspend(self, true);
            for delete in deletes {
                if let Err(e) = run_delete(self, delete) {
                    self.rollback()?;
                    return Err(e);
                }
            }
            suspend(self, false);
            self.commit()?;
        }
        if restart {
            let sequences = self.shared.sequences.clone();
            for name in &names {
                for sequence in sequences.owned_by(name) {
                    sequences.set(&sequence, sequence.def.start, false)?;
                }
            }
        }
        Ok(Output::command("TRUNCATE TABLE"))
    }
}

#[cfg(test)]
mod tests {
    use super::copy_booleans;

    #[test]
    fn copy_flags_spelled_on_and_off() {
        assert_eq!(
            copy_booleans("copy t from stdin with (freeze on)"),
            "copy t from stdin with (freeze TRUE)"
        );
        assert_eq!(
            copy_booleans("COPY t TO STDOUT (FORMAT csv, HEADER off)"),
            "COPY t TO STDOUT (FORMAT csv, HEADER FALSE)"
        );
    }
}

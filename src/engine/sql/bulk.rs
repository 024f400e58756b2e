//! Whole-table writes: COPY ... FROM's rows, which arrive as text, and
//! TRUNCATE.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::sql::sqlparser::ast::{self, Statement};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::convert;
use super::execute::{assign, insert_targets, parse, table_name, Output};
use crate::engine::catalog::Table;
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::session::insert_row;
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

impl Session {
    /// The number of fields each row of a COPY into `table` has: one per
    /// named column, or one per column when none are named.
    pub fn copy_columns(&self, table: &str, columns: &[String]) -> Result<usize> {
        Ok(self.copy_targets(table, columns)?.1.len())
    }

    /// The table a COPY writes and the index of each column it fills.
    fn copy_targets(&self, table: &str, columns: &[String]) -> Result<(Arc<Table>, Vec<usize>)> {
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
        let (table, targets) = self.copy_targets(table, columns)?;
        if let Some((n, row)) = rows
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != targets.len())
        {
            return Err(Error::invalid(
                SqlState::BAD_COPY_FILE_FORMAT,
                format!(
                    "row {} has {} fields where COPY expects {}",
                    n + 1,
                    row.len(),
                    targets.len()
                ),
            ));
        }
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
        let shared = self.shared.clone();
        self.statement(|open| {
            for r in 0..rows.len() {
                let mut row = table.default_row();
                for (array, &c) in arrays.iter().zip(&targets) {
                    row[c] = convert::value_at(array.as_ref(), r)?;
                }
                insert_row(&shared, open, &table, row)?;
            }
            Ok(rows.len() as u64)
        })
    }

    /// TRUNCATE: deletes every row of each table, in the current transaction.
    pub(super) fn truncate_sql(&mut self, truncate: ast::Truncate) -> Result<Output> {
        let names = truncate
            .table_names
            .iter()
            .map(|t| table_name(&t.name))
            .collect::<Result<Vec<_>>>()?;
        for name in &names {
            self.table(name)?;
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
        if self.in_transaction() {
            for delete in deletes {
                run_delete(self, delete)?;
            }
        } else {
            // Every table or none.
            self.begin()?;
            for delete in deletes {
                if let Err(e) = run_delete(self, delete) {
                    self.rollback()?;
                    return Err(e);
                }
            }
            self.commit()?;
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

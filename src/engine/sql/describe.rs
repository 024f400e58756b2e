//! What a statement takes and returns, without running it: the types of its
//! `$n` placeholders and its result columns. The server answers a client's
//! Describe with this, and decodes the parameters of a Bind by it.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{self, AssignmentTarget, Expr, SetExpr, Statement, Visit};
use std::ops::ControlFlow;

use super::convert::arrow_type;
use super::execute::{column_name, insert_targets, table_name};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::Session;

/// A statement's placeholders and result columns.
#[derive(Clone, Debug, Default)]
pub struct Description {
    /// The type of each placeholder (`$1` first); None where the statement
    /// does not fix one.
    pub params: Vec<Option<ArrowType>>,
    /// The result columns; None for a statement that returns no rows.
    pub columns: Option<SchemaRef>,
}

/// The highest placeholder number in `statement` (0 when it has none).
pub fn placeholder_count(statement: &Statement) -> Result<usize> {
    let mut count = 0;
    if let ControlFlow::Break(n) = statement.visit(&mut PlaceholderVisitor(&mut count)) {
        return Err(Error::NotFound {
            code: SqlState::UNDEFINED_PARAMETER,
            message: format!(
                "there is no parameter ${n} (a statement takes at most {MAX_PARAMETERS})"
            ),
        });
    }
    Ok(count)
}

/// The most parameters a statement may have: the extended protocol counts
/// them in 16 bits, as PostgreSQL does.
pub const MAX_PARAMETERS: usize = u16::MAX as usize;

struct PlaceholderVisitor<'a>(&'a mut usize);

impl ast::Visitor for PlaceholderVisitor<'_> {
    /// A placeholder number past [`MAX_PARAMETERS`].
    type Break = String;

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        match placeholder(expr) {
            Some(n) if n <= MAX_PARAMETERS => *self.0 = (*self.0).max(n),
            Some(n) => return ControlFlow::Break(n.to_string()),
            // `$` and more digits than a number holds.
            None => {
                if let Expr::Value(v) = expr {
                    if let ast::Value::Placeholder(p) = &v.value {
                        let digits = p.strip_prefix('$').unwrap_or(p);
                        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                            return ControlFlow::Break(digits.to_string());
                        }
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Placeholders cast to a type (`$1::int`) take that type, as in PostgreSQL.
struct CastVisitor<'a>(&'a mut Vec<Option<ArrowType>>);

impl ast::Visitor for CastVisitor<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Cast {
            expr: inner,
            data_type,
            ..
        } = expr
        {
            if let (Some(n), Ok(t)) = (placeholder(inner), super::ddl::data_type(data_type)) {
                if let Some(slot) = self.0.get_mut(n - 1) {
                    slot.get_or_insert(arrow_type(t));
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// The number of a `$n` placeholder expression.
pub fn placeholder(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Value(v) => match &v.value {
            ast::Value::Placeholder(p) => p.strip_prefix('$')?.parse().ok().filter(|&n| n > 0),
            _ => None,
        },
        _ => None,
    }
}

impl Session {
    /// Describes `statement`: the types its placeholders take from context
    /// and the columns it returns.
    pub fn describe(&mut self, statement: &Statement) -> Result<Description> {
        let _scope = self.catalog_scope();
        let mut bound = statement.clone();
        self.bind_settings(&mut bound)?;
        let statement = &bound;
        let count = placeholder_count(statement)?;
        let mut description = Description {
            params: vec![None; count],
            columns: None,
        };
        let _ = statement.visit(&mut CastVisitor(&mut description.params));
        let fixed = |description: &mut Description, expr: &Expr, t: ArrowType| {
            if let Some(n) = placeholder(expr) {
                description.params[n - 1].get_or_insert(t);
            }
        };
        // The query DataFusion plans to find the remaining types (and, for
        // queries, the columns), with the table whose keys it reads.
        let query = match statement {
            Statement::Query(_) | Statement::Explain { .. } => Some((statement.clone(), None)),
            Statement::Insert(insert) => {
                let ast::TableObject::TableName(name) = &insert.table else {
                    return Ok(description);
                };
                let table = self.table(&table_name(name)?)?;
                let targets = insert_targets(&table, &insert.columns)?;
                let source = insert.source.clone();
                if let Some(SetExpr::Values(values)) = source.as_ref().map(|s| s.body.as_ref()) {
                    for row in &values.rows {
                        for (expr, &c) in row.iter().zip(&targets) {
                            fixed(
                                &mut description,
                                expr,
                                arrow_type(table.columns[c].data_type),
                            );
                        }
                    }
                }
                source.map(|s| (Statement::Query(s), None))
            }
            Statement::Update(update) => {
                let (table, query) = self.update_query(update)?;
                for assignment in &update.assignments {
                    if let AssignmentTarget::ColumnName(name) = &assignment.target {
                        let c = table.column_index(&column_name(name)?)?;
                        let t = arrow_type(table.columns[c].data_type);
                        fixed(&mut description, &assignment.value, t);
                    }
                }
                Some((query, Some(table.id)))
            }
            Statement::Delete(delete) => {
                let (table, query) = self.delete_query(delete)?;
                Some((query, Some(table.id)))
            }
            Statement::Fetch { name, .. } => {
                description.columns = self.cursor_columns(name);
                None
            }
            Statement::Execute { name, .. } => {
                description.columns = self.prepared_columns(name.as_ref());
                None
            }
            Statement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(super::execute::ident)
                    .collect::<Vec<_>>();
                let field = Field::new(name.join(" "), ArrowType::Utf8, false);
                description.columns = Some(Arc::new(Schema::new(vec![field])));
                None
            }
            _ => None,
        };
        if let Some(returning) = returning_query(statement)? {
            // A write's RETURNING columns are those of its items over the
            // written table (the server describes them before it runs).
            let (_, columns) = self.plan_description(returning, None)?;
            description.columns = Some(columns);
        }
        let Some((query, keyed)) = query else {
            return Ok(description);
        };
        let returns_rows = matches!(statement, Statement::Query(_) | Statement::Explain { .. });
        if count == 0 && !returns_rows {
            return Ok(description);
        }
        let (params, columns) = self.plan_description(query, keyed)?;
        for (slot, t) in description.params.iter_mut().zip(params) {
            if slot.is_none() {
                *slot = t.filter(|t| *t != ArrowType::Null);
            }
        }
        if returns_rows {
            description.columns = Some(columns);
        }
        Ok(description)
    }
}

impl Session {
    /// What DataFusion's plan of `query` says of its placeholders' types
    /// and its columns (`keyed`: the table whose keys it reads).
    fn plan_description(
        &mut self,
        query: Statement,
        keyed: Option<u32>,
    ) -> Result<(Vec<Option<ArrowType>>, SchemaRef)> {
        let planner = self.planner()?;
        let shared = self.shared.clone();
        self.statement(|open| {
            shared
                .runtime
                .block_on(planner.describe(&open.txn, query, keyed))
        })
    }
}

/// `SELECT <items> FROM <table> [AS alias]` for a write with RETURNING
/// items: the query whose columns are the write's result.
fn returning_query(statement: &Statement) -> Result<Option<Statement>> {
    let (name, alias, items) = match statement {
        Statement::Insert(insert) => {
            let (ast::TableObject::TableName(name), Some(items)) =
                (&insert.table, &insert.returning)
            else {
                return Ok(None);
            };
            (
                name.clone(),
                insert.table_alias.as_ref().map(|a| a.alias.clone()),
                items,
            )
        }
        Statement::Update(update) => {
            let (ast::TableFactor::Table { name, alias, .. }, Some(items)) =
                (&update.table.relation, &update.returning)
            else {
                return Ok(None);
            };
            (name.clone(), alias.as_ref().map(|a| a.name.clone()), items)
        }
        Statement::Delete(delete) => {
            let (ast::FromTable::WithFromKeyword(from) | ast::FromTable::WithoutKeyword(from)) =
                &delete.from;
            let (Some(target), Some(items)) = (from.first(), &delete.returning) else {
                return Ok(None);
            };
            let ast::TableFactor::Table { name, alias, .. } = &target.relation else {
                return Ok(None);
            };
            (name.clone(), alias.as_ref().map(|a| a.name.clone()), items)
        }
        _ => return Ok(None),
    };
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    let alias = alias.map(|a| format!(" AS {a}")).unwrap_or_default();
    let sql = format!("SELECT {} FROM {name}{alias} WHERE false", items.join(", "));
    Ok(Some(super::execute::parse(&sql)?.remove(0)))
}

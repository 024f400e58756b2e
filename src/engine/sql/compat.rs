//! PostgreSQL syntax that clients' catalog queries use and DataFusion does not
//! plan, rewritten into what it does, before a query is planned:
//!
//! ```text
//!   pg_catalog.format_type(...)          -> format_type(...)
//!   x OPERATOR(pg_catalog.~) y           -> x ~ y
//!   'x' COLLATE pg_catalog.default       -> 'x'
//!   'users'::regclass, c.oid::regclass   -> omen_regclass('users'), omen_regclass(c.oid)
//!   x::pg_catalog.text, x::oid, x::name  -> CAST(x AS TEXT), CAST(x AS BIGINT), ...
//!   x::timestamp, timestamp 'x'          -> CAST(x AS TIMESTAMP(6)), TIMESTAMP(6) 'x'
//!   FROM pg_type                         -> FROM pg_catalog.pg_type (unless a table is named so)
//!   ARRAY(SELECT e FROM ... ORDER BY 1)  -> (SELECT array_agg(e ORDER BY e) FROM ...)
//! ```
//!
//! In statements that read the system catalogs, a scalar subquery that
//! returns one row per outer row by construction, such as psql's lookup of a
//! column's default, is also aggregated (`(SELECT max(e) ...)`), because
//! DataFusion only decorrelates aggregated scalar subqueries.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, ArrayElemTypeDef, BinaryOperator, DataType as SqlType, Expr, FunctionArg,
    FunctionArgExpr, FunctionArgumentClause, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, ObjectNamePart, OrderByKind, Query, SelectItem, SetExpr, Statement, Visit,
    VisitMut, Visitor, VisitorMut,
};

use super::pg_catalog::{is_always_empty, is_catalog_relation};
use crate::engine::catalog::Catalog;

/// Rewrites `statement` in place; see the module documentation.
pub fn rewrite(statement: &mut Statement, catalog: &Catalog) {
    let mut reads = ReadsCatalog(false);
    let _ = Visit::visit(&*statement, &mut reads);
    let mut rewriter = Rewriter {
        catalog,
        catalog_query: reads.0,
    };
    // Names come from the statement as written, before it is rewritten; in
    // derived tables too, so `(SELECT count(*) FROM t) AS x` has x.count.
    let _ = VisitMut::visit(statement, &mut NameColumns);
    let _ = VisitMut::visit(statement, &mut rewriter);
}

/// Gives every query's unnamed result columns PostgreSQL's names.
struct NameColumns;

impl VisitorMut for NameColumns {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        name_result_columns(query);
        ControlFlow::Continue(())
    }
}

/// Result columns without a name get the one PostgreSQL gives them
/// (`count(*)` is "count", `'x'::bytea` is "bytea", `1 + 1` is "?column?"),
/// so clients that read rows by column name see PostgreSQL's names.
fn name_result_columns(query: &mut Query) {
    let mut bodies = vec![query.body.as_mut()];
    while let Some(body) = bodies.pop() {
        match body {
            SetExpr::Select(select) => {
                for item in &mut select.projection {
                    if let SelectItem::UnnamedExpr(e) = item {
                        if let Some(name) = column_name(e) {
                            *item = SelectItem::ExprWithAlias {
                                expr: e.clone(),
                                alias: Ident::with_quote('"', name),
                            };
                        }
                    }
                }
                name_duplicates(select);
            }
            SetExpr::SetOperation { left, .. } => bodies.push(left.as_mut()),
            SetExpr::Query(inner) => bodies.push(inner.body.as_mut()),
            _ => {}
        }
    }
}

/// PostgreSQL's name for a result column computed by `expr`; None where
/// DataFusion already gives that name (a column reference).
fn column_name(expr: &Expr) -> Option<String> {
    Some(match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => return None,
        Expr::Nested(inner) => return column_name(inner),
        Expr::Function(f) => names(&f.name).pop()?,
        Expr::Cast {
            expr: inner,
            data_type,
            ..
        } => match inner.as_ref() {
            Expr::Identifier(i) => super::ident(i),
            Expr::CompoundIdentifier(parts) => super::ident(parts.last()?),
            other => match column_name(other) {
                Some(name) if name != "?column?" => name,
                _ => type_name(data_type),
            },
        },
        Expr::TypedString(typed) => type_name(&typed.data_type),
        Expr::Value(v) if matches!(v.value, ast::Value::Boolean(_)) => "bool".into(),
        Expr::Case { .. } => "case".into(),
        Expr::Array(_) => "array".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Interval(_) => "interval".into(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Substring { .. } => "substring".into(),
        Expr::Position { .. } => "position".into(),
        Expr::Trim { .. } => "btrim".into(),
        Expr::Subquery(q) => subquery_column(q).unwrap_or_else(|| "?column?".into()),
        _ => "?column?".into(),
    })
}

/// The name of the one column a scalar subquery returns.
fn subquery_column(query: &Query) -> Option<String> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    match select.projection.first()? {
        SelectItem::ExprWithAlias { alias, .. } => Some(super::ident(alias)),
        SelectItem::UnnamedExpr(e) => column_name(e).or_else(|| last_ident(e)),
        _ => None,
    }
}

fn last_ident(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(i) => Some(super::ident(i)),
        Expr::CompoundIdentifier(parts) => parts.last().map(super::ident),
        _ => None,
    }
}

/// The name PostgreSQL gives a type in column names (`int4`, `float8`).
fn type_name(data_type: &SqlType) -> String {
    let text = data_type.to_string().to_lowercase();
    super::pg_catalog::type_named(&text)
        .and_then(|oid| {
            super::pg_catalog::all_types()
                .into_iter()
                .find(|t| t.oid == oid)
                .map(|t| t.name.to_string())
        })
        .unwrap_or(text)
}

/// Finds whether a statement names a system catalog relation.
struct ReadsCatalog(bool);

impl Visitor for ReadsCatalog {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let parts = names(relation);
        let system = match parts.as_slice() {
            [schema, _] => schema == "pg_catalog" || schema == "information_schema",
            [name] => is_catalog_relation(name),
            _ => false,
        };
        if system {
            self.0 = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

struct Rewriter<'a> {
    catalog: &'a Catalog,
    catalog_query: bool,
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        if let [name] = names(relation).as_slice() {
            if is_catalog_relation(name) && self.catalog.table(name).is_err() {
                relation
                    .0
                    .insert(0, ObjectNamePart::Identifier(Ident::new("pg_catalog")));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut ast::TableFactor) -> ControlFlow<()> {
        name_function_column(factor);
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, select: &mut ast::Select) -> ControlFlow<()> {
        if self.catalog_query {
            if has_no_rows(select) {
                // No row reaches the projection, so what it would compute does
                // not matter; subqueries there may be beyond DataFusion.
                for item in &mut select.projection {
                    if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } =
                        item
                    {
                        if contains_subquery(e) {
                            *e = null();
                        }
                    }
                }
            }
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    count_exists(e);
                }
            }
        }
        name_duplicates(select);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Collate { expr: inner, .. } => {
                *expr = std::mem::replace(inner.as_mut(), null());
            }
            Expr::BinaryOp { op, left, right } => {
                if let BinaryOperator::PGCustomBinaryOperator(parts) = op {
                    if let Some(plain) = parts.last().and_then(|o| operator(o)) {
                        *op = plain;
                    }
                }
                if self.catalog_query && matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq) {
                    for side in [left, right] {
                        if let Some(array) = array_literal(side) {
                            **side = array;
                        }
                    }
                }
            }
            Expr::Function(function) => {
                let parts = names(&function.name);
                if let [schema, name] = parts.as_slice() {
                    if schema == "pg_catalog" {
                        function.name = ObjectName::from(vec![Ident::new(name)]);
                    }
                }
                if let Some(subscripts) = subscripts_of(function) {
                    *expr = subscripts;
                    return ControlFlow::Continue(());
                }
                if parts.len() == 1 && parts[0] == "array" {
                    if let FunctionArguments::Subquery(query) = &mut function.args {
                        let mut query = std::mem::replace(query.as_mut(), empty_query());
                        if aggregate_into_array(&mut query) {
                            *expr = Expr::Subquery(Box::new(query));
                        } else if let Expr::Function(f) = expr {
                            f.args = FunctionArguments::Subquery(Box::new(query));
                        }
                    }
                }
            }
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } => {
                if let Some(function) = reg_function(data_type) {
                    let inner = std::mem::replace(inner.as_mut(), null());
                    *expr = call(function, vec![inner]);
                } else {
                    plain_type(data_type);
                }
            }
            Expr::TypedString(typed) => plain_type(&mut typed.data_type),
            Expr::Subquery(query) if self.catalog_query => {
                if let Some(condition) = aggregate_scalar(query) {
                    let subquery = std::mem::replace(expr, null());
                    *expr = Expr::Case {
                        case_token: ast::helpers::attached_token::AttachedToken::empty(),
                        end_token: ast::helpers::attached_token::AttachedToken::empty(),
                        operand: None,
                        conditions: vec![ast::CaseWhen {
                            condition,
                            result: subquery,
                        }],
                        else_result: None,
                    };
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Whether a SELECT reads an inner join (or product) with a catalog relation
/// omen always keeps empty, and so returns no rows before aggregation.
/// A set-returning function of one column in FROM names its column as
/// PostgreSQL does: after the alias (`generate_series(1, 3) g` has g) or,
/// without one, after the function (`generate_series`).
fn name_function_column(factor: &mut ast::TableFactor) {
    const SCALAR_FUNCTIONS: [&str; 2] = ["generate_series", "range"];
    let ast::TableFactor::Table {
        name,
        alias,
        args: Some(_),
        ..
    } = factor
    else {
        return;
    };
    let Some(function) = names(name)
        .pop()
        .filter(|n| SCALAR_FUNCTIONS.contains(&n.as_str()))
    else {
        return;
    };
    let alias = alias.get_or_insert_with(|| ast::TableAlias {
        explicit: true,
        name: Ident::new(&function),
        columns: Vec::new(),
        at: None,
    });
    if alias.columns.is_empty() {
        alias.columns.push(ast::TableAliasColumnDef::from_name(
            alias.name.value.clone(),
        ));
    }
}

fn has_no_rows(select: &ast::Select) -> bool {
    let empty = |factor: &ast::TableFactor| match factor {
        ast::TableFactor::Table { name, .. } => {
            matches!(names(name).as_slice(), [schema, n] if schema == "pg_catalog" && is_always_empty(n))
        }
        _ => false,
    };
    select.from.iter().any(|from| {
        empty(&from.relation)
            || from.joins.iter().any(|j| {
                matches!(
                    j.join_operator,
                    ast::JoinOperator::Join(_)
                        | ast::JoinOperator::Inner(_)
                        | ast::JoinOperator::CrossJoin(_)
                ) && empty(&j.relation)
            })
    })
}

/// `EXISTS (SELECT ...)` in a result column, which DataFusion does not plan
/// there, as `(SELECT count(*) FROM ...) > 0`.
fn count_exists(expr: &mut Expr) {
    let _ = ast::visit_expressions_mut(expr, |e| {
        if let Expr::Exists { subquery, negated } = e {
            let mut query = subquery.as_ref().clone();
            if single_item(&query).is_some() {
                set_single_item(&mut query, count_star());
                let op = if *negated {
                    BinaryOperator::Eq
                } else {
                    BinaryOperator::Gt
                };
                *e = Expr::Nested(Box::new(Expr::BinaryOp {
                    left: Box::new(Expr::Subquery(Box::new(query))),
                    op,
                    right: Box::new(Expr::Value(ast::Value::Number("0".into(), false).into())),
                }));
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn contains_subquery(expr: &Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(expr, |e| {
        if matches!(
            e,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
        ) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// PostgreSQL allows several result columns of one name (`SELECT NULL,
/// NULL`, `SELECT 1 AS a, 2 AS a`); DataFusion does not, so later ones get
/// a numbered name.
fn name_duplicates(select: &mut ast::Select) {
    let mut seen = std::collections::HashSet::new();
    for (i, item) in select.projection.iter_mut().enumerate() {
        let name = match item {
            SelectItem::UnnamedExpr(e) => e.to_string(),
            SelectItem::ExprWithAlias { alias, .. } => super::ident(alias),
            _ => continue,
        };
        if !seen.insert(name.clone()) {
            let alias = Ident::with_quote('"', format!("{name}_{i}"));
            match item {
                SelectItem::UnnamedExpr(e) => {
                    *item = SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias,
                    }
                }
                SelectItem::ExprWithAlias { alias: a, .. } => *a = alias,
                _ => {}
            }
        }
    }
}

/// A PostgreSQL array literal in a string (`'{0}'`, `'{r,v}'`) as an array.
fn array_literal(expr: &Expr) -> Option<Expr> {
    let Expr::Value(v) = expr else {
        return None;
    };
    let ast::Value::SingleQuotedString(text) = &v.value else {
        return None;
    };
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let elem = inner
        .split(',')
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let e = e.trim().trim_matches('"');
            let value = if e.parse::<i64>().is_ok() {
                ast::Value::Number(e.to_string(), false)
            } else {
                ast::Value::SingleQuotedString(e.to_string())
            };
            Expr::Value(value.into())
        })
        .collect();
    Some(Expr::Array(ast::Array { elem, named: true }))
}

/// The parts of a name as PostgreSQL folds them.
fn names(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => super::ident(ident),
            other => other.to_string(),
        })
        .collect()
}

fn null() -> Expr {
    Expr::Value(ast::Value::Null.into())
}

fn empty_query() -> Query {
    match super::parse("SELECT 1").map(|mut s| s.remove(0)) {
        Ok(Statement::Query(query)) => *query,
        _ => unreachable!("SELECT 1 parses as a query"),
    }
}

/// `count(*)`.
fn count_star() -> Expr {
    let mut count = call("count", vec![]);
    if let Expr::Function(ast::Function {
        args: FunctionArguments::List(list),
        ..
    }) = &mut count
    {
        list.args
            .push(FunctionArg::Unnamed(FunctionArgExpr::Wildcard));
    }
    count
}

/// A call of function `name` with `args`.
pub fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// `generate_subscripts(a, d)` in a select list, as what DataFusion plans:
/// `unnest(generate_series(1, array_length(a, d)))`, so it lines up with an
/// `unnest(a)` beside it (SQLAlchemy reads index columns so). None for any
/// other call.
fn subscripts_of(function: &ast::Function) -> Option<Expr> {
    if names(&function.name).last().map(String::as_str) != Some("generate_subscripts") {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array)), FunctionArg::Unnamed(FunctionArgExpr::Expr(dimension))] =
        list.args.as_slice()
    else {
        return None;
    };
    // omen's arrays have one dimension, numbered from 1 (pg_index's
    // int2vector and oidvector columns from 0, as in PostgreSQL): any other
    // dimension has no length, so no subscripts.
    let vector = matches!(
        last_ident(array).as_deref(),
        Some("indkey" | "indclass" | "indoption" | "indcollation")
    );
    let number = |n: &str| Expr::Value(ast::Value::Number(n.into(), false).into());
    let length = Expr::Cast {
        kind: ast::CastKind::Cast,
        expr: Box::new(call("array_length", vec![array.clone(), dimension.clone()])),
        data_type: SqlType::BigInt(None),
        array: false,
        format: None,
    };
    let (first, last) = match vector {
        true => (
            number("0"),
            Expr::BinaryOp {
                left: Box::new(length),
                op: BinaryOperator::Minus,
                right: Box::new(number("1")),
            },
        ),
        false => (number("1"), length),
    };
    Some(call(
        "unnest",
        vec![call("generate_series", vec![first, last])],
    ))
}

/// The operator `OPERATOR(pg_catalog.op)` names.
fn operator(op: &str) -> Option<BinaryOperator> {
    Some(match op {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "~~" => BinaryOperator::PGLikeMatch,
        "!~~" => BinaryOperator::PGNotLikeMatch,
        "=" => BinaryOperator::Eq,
        "<>" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "||" => BinaryOperator::StringConcat,
        _ => return None,
    })
}

/// The last part of a custom type's name, folded.
fn custom_name(data_type: &SqlType) -> Option<String> {
    match data_type {
        SqlType::Custom(name, _) => names(name).pop(),
        _ => None,
    }
}

/// The function an object-identifier cast (`::regclass`, ...) becomes.
fn reg_function(data_type: &SqlType) -> Option<&'static str> {
    if matches!(data_type, SqlType::Regclass) {
        return Some("omen_regclass");
    }
    Some(match custom_name(data_type)?.as_str() {
        "regclass" => "omen_regclass",
        "regtype" => "omen_regtype",
        "regnamespace" => "omen_regnamespace",
        "regrole" => "omen_regrole",
        _ => return None,
    })
}

/// Replaces PostgreSQL-only type names (`pg_catalog.text`, `oid`, `name`,
/// `"char"`, `int2[]`) with the types DataFusion plans.
fn plain_type(data_type: &mut SqlType) {
    if let SqlType::Array(ArrayElemTypeDef::SquareBracket(inner, _)) = data_type {
        plain_type(inner);
        return;
    }
    // PostgreSQL's timestamps count microseconds; DataFusion's default unit,
    // nanoseconds, reaches only from 1677 to 2262.
    if let SqlType::Timestamp(precision @ None, _) = data_type {
        *precision = Some(6);
        return;
    }
    let Some(name) = custom_name(data_type) else {
        return;
    };
    *data_type = match name.as_str() {
        "text" | "name" | "char" | "bpchar" | "varchar" | "regproc" | "regprocedure"
        | "regoper" | "int2vector" | "oidvector" | "pg_node_tree" | "aclitem" => SqlType::Text,
        "oid" | "int8" | "xid" | "cid" => SqlType::BigInt(None),
        "int4" => SqlType::Integer(None),
        "int2" => SqlType::SmallInt(None),
        "float8" => SqlType::DoublePrecision,
        "float4" => SqlType::Real,
        "bool" => SqlType::Boolean,
        _ => return,
    };
}

/// `ARRAY(SELECT e FROM ... [ORDER BY ...])` as `(SELECT array_agg(e ORDER BY
/// ...) FROM ...)`; false (and the query unchanged) for other shapes.
fn aggregate_into_array(query: &mut Query) -> bool {
    let Some(item) = single_item(query) else {
        return false;
    };
    let order: Vec<ast::OrderByExpr> = match query.order_by.take() {
        None => vec![],
        Some(ast::OrderBy {
            kind: OrderByKind::Expressions(exprs),
            ..
        }) => exprs
            .into_iter()
            .map(|mut o| {
                if matches!(&o.expr, Expr::Value(v) if v.value.to_string() == "1") {
                    o.expr = item.clone();
                }
                o
            })
            .collect(),
        Some(other) => {
            query.order_by = Some(other);
            return false;
        }
    };
    let mut aggregate = call("array_agg", vec![item]);
    if let Expr::Function(ast::Function {
        args: FunctionArguments::List(list),
        ..
    }) = &mut aggregate
    {
        if !order.is_empty() {
            list.clauses.push(FunctionArgumentClause::OrderBy(order));
        }
    }
    set_single_item(query, aggregate);
    true
}

/// A correlated scalar subquery of one plain column becomes `max` of it, which
/// DataFusion can decorrelate; aggregated or grouped ones stay as they are.
/// Conditions on outer columns only are taken out of the subquery and
/// returned, for a `CASE WHEN condition THEN (subquery) END` around it (no row
/// matches when they fail, and max of no rows is NULL).
fn aggregate_scalar(query: &mut Query) -> Option<Expr> {
    let item = single_item(query)?;
    if query.limit_clause.is_some() || contains_aggregate(&item) {
        return None;
    }
    let outer_only = substitute_outer_columns(query);
    let alias = match &item {
        Expr::Identifier(ident) => Some(ident.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().cloned(),
        Expr::Function(f) => names(&f.name).pop().map(Ident::new),
        _ => None,
    };
    set_single_item(query, call("max", vec![item]));
    if let (Some(alias), SetExpr::Select(select)) = (alias, query.body.as_mut()) {
        if let SelectItem::UnnamedExpr(expr) = &select.projection[0] {
            select.projection[0] = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias,
            };
        }
    }
    outer_only
}

/// In a subquery whose WHERE says `inner.x = outer.y`, other conditions on
/// `outer.y` are rewritten to use `inner.x`: the same rows match, and
/// DataFusion can decorrelate a subquery whose only correlated conditions
/// are equalities (psql's `a.attcollation <> t.typcollation`). Conditions
/// on outer columns only are removed and returned, joined by AND.
fn substitute_outer_columns(query: &mut Query) -> Option<Expr> {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let mut inner = Vec::new();
    for from in &select.from {
        for factor in std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation))
        {
            if let ast::TableFactor::Table { name, alias, .. } = factor {
                match alias {
                    Some(alias) => inner.push(super::ident(&alias.name)),
                    None => inner.extend(names(name).pop()),
                }
            }
        }
    }
    let selection = select.selection.take()?;
    let mut conjuncts = Vec::new();
    split_and(selection, &mut conjuncts);
    let qualifier = |e: &Expr| match e {
        Expr::CompoundIdentifier(parts) if parts.len() == 2 => Some(super::ident(&parts[0])),
        _ => None,
    };
    let mut equal = Vec::new();
    for c in &conjuncts {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = c
        {
            let (l, r) = (qualifier(left), qualifier(right));
            if let (Some(l), Some(r)) = (l, r) {
                match (inner.contains(&l), inner.contains(&r)) {
                    (true, false) => equal.push((right.to_string(), left.as_ref().clone())),
                    (false, true) => equal.push((left.to_string(), right.as_ref().clone())),
                    _ => {}
                }
            }
        }
    }
    for c in &mut conjuncts {
        if matches!(
            c,
            Expr::BinaryOp {
                op: BinaryOperator::Eq,
                ..
            }
        ) {
            continue;
        }
        let _ = ast::visit_expressions_mut(c, |e| {
            if let Some((_, with)) = equal.iter().find(|(outer, _)| *outer == e.to_string()) {
                *e = with.clone();
            }
            ControlFlow::<()>::Continue(())
        });
    }
    let (outer, local): (Vec<Expr>, Vec<Expr>) = conjuncts.into_iter().partition(|c| {
        let mut qualifiers = Vec::new();
        let _ = ast::visit_expressions(c, |e| {
            match e {
                Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                    qualifiers.push(Some(super::ident(&parts[0])))
                }
                Expr::Identifier(_) | Expr::Subquery(_) | Expr::Exists { .. } => {
                    qualifiers.push(None)
                }
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
        !qualifiers.is_empty()
            && qualifiers
                .iter()
                .all(|q| q.as_ref().is_some_and(|q| !inner.contains(q)))
    });
    select.selection = and_all(local);
    and_all(outer)
}

fn and_all(conjuncts: Vec<Expr>) -> Option<Expr> {
    conjuncts.into_iter().reduce(|a, b| Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    })
}

fn split_and(expr: Expr, out: &mut Vec<Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(*left, out);
            split_and(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and(*inner, out)
        }
        other => out.push(other),
    }
}

/// The one expression a plain, ungrouped SELECT returns.
fn single_item(query: &Query) -> Option<Expr> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if select.projection.len() != 1
        || select.distinct.is_some()
        || !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty())
        || select.having.is_some()
    {
        return None;
    }
    match &select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e.clone()),
        _ => None,
    }
}

fn set_single_item(query: &mut Query, expr: Expr) {
    if let SetExpr::Select(select) = query.body.as_mut() {
        select.projection[0] = match &select.projection[0] {
            SelectItem::ExprWithAlias { alias, .. } => SelectItem::ExprWithAlias {
                expr,
                alias: alias.clone(),
            },
            _ => SelectItem::UnnamedExpr(expr),
        };
    }
}

/// Whether `expr` calls an aggregate function.
fn contains_aggregate(expr: &Expr) -> bool {
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = expr {
                let name = names(&f.name).pop().unwrap_or_default();
                if matches!(
                    name.as_str(),
                    "count"
                        | "sum"
                        | "min"
                        | "max"
                        | "avg"
                        | "array_agg"
                        | "string_agg"
                        | "bool_and"
                        | "bool_or"
                        | "every"
                ) {
                    self.0 = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder(false);
    let _ = expr.visit(&mut finder);
    finder.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statement = super::super::parse(sql).unwrap().remove(0);
        rewrite(&mut statement, &Catalog::default());
        statement.to_string()
    }

    #[test]
    fn psql_syntax_becomes_plain() {
        assert_eq!(
            rewritten(
                "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname \
                 OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default"
            ),
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname ~ '^(t)$'"
        );
        assert_eq!(
            rewritten("SELECT pg_catalog.format_type(23, -1), x::pg_catalog.text, 't'::regclass"),
            "SELECT format_type(23, -1) AS \"format_type\", x::TEXT AS \"x\", omen_regclass('t') AS \"regclass\""
        );
        assert_eq!(
            rewritten("SELECT oid FROM pg_type WHERE oid = $1::regtype"),
            "SELECT oid FROM pg_catalog.pg_type WHERE oid = omen_regtype($1)"
        );
    }

    #[test]
    fn result_columns_take_postgresql_names() {
        assert_eq!(
            rewritten("SELECT count(*), a, t.b, c::int, 'x'::bytea, 1 + 1, true, CAST(2 AS BIGINT), (SELECT max(v) FROM u) FROM t"),
            "SELECT count(*) AS \"count\", a, t.b, c::INT AS \"c\", 'x'::BYTEA AS \"bytea\", \
             1 + 1 AS \"?column?\", true AS \"bool\", CAST(2 AS BIGINT) AS \"int8\", \
             (SELECT max(v) AS \"max\" FROM u) AS \"max\" FROM t"
        );
        assert_eq!(
            rewritten("SELECT 1, 2"),
            "SELECT 1 AS \"?column?\", 2 AS \"?column?_1\""
        );
    }

    #[test]
    fn array_subqueries_and_lookups_become_aggregates() {
        assert_eq!(
            rewritten(
                "SELECT ARRAY(SELECT b.rolname FROM pg_roles b WHERE b.oid = r.oid ORDER BY 1) \
                 FROM pg_roles r"
            ),
            "SELECT (SELECT array_agg(b.rolname ORDER BY b.rolname) FROM pg_catalog.pg_roles b \
             WHERE b.oid = r.oid) AS \"array\" FROM pg_catalog.pg_roles r"
        );
        assert_eq!(
            rewritten("SELECT (SELECT d.adbin FROM pg_attrdef d WHERE d.adnum = a.attnum) FROM pg_attribute a"),
            "SELECT (SELECT max(d.adbin) AS adbin FROM pg_catalog.pg_attrdef d \
             WHERE d.adnum = a.attnum) AS \"adbin\" FROM pg_catalog.pg_attribute a"
        );
        assert_eq!(
            rewritten(
                "SELECT (SELECT d.adbin FROM pg_attrdef d WHERE d.adnum = a.attnum AND a.atthasdef) \
                 FROM pg_attribute a"
            ),
            "SELECT CASE WHEN a.atthasdef THEN (SELECT max(d.adbin) AS adbin FROM \
             pg_catalog.pg_attrdef d WHERE d.adnum = a.attnum) END AS \"adbin\" \
             FROM pg_catalog.pg_attribute a"
        );
        assert_eq!(
            rewritten(
                "SELECT (SELECT c.collname FROM pg_collation c, pg_type t WHERE c.oid = a.attcollation \
                 AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) FROM pg_attribute a"
            ),
            "SELECT (SELECT max(c.collname) AS collname FROM pg_catalog.pg_collation c, \
             pg_catalog.pg_type t WHERE c.oid = a.attcollation AND t.oid = a.atttypid \
             AND c.oid <> t.typcollation) AS \"collname\" FROM pg_catalog.pg_attribute a"
        );
        // Outside catalog queries, scalar subqueries keep PostgreSQL's meaning
        // (not aggregated); they are named as PostgreSQL names them.
        assert_eq!(
            rewritten("SELECT (SELECT b FROM t2 WHERE t2.a = t1.a) FROM t1"),
            "SELECT (SELECT b FROM t2 WHERE t2.a = t1.a) AS \"b\" FROM t1"
        );
    }
}

//! CREATE TABLE and ALTER TABLE statements as the catalog's column definitions.
//!
//! A column default made of literals is evaluated once, when the table is
//! defined (by the caller's `constant` function), and stored as a value. One
//! that calls a function (`now()`, `random()`) is stored as SQL text and
//! evaluated for each row written, as PostgreSQL does; it is evaluated once
//! here too, so that a default of the wrong type or one that does not plan
//! fails the definition.

use datafusion::sql::sqlparser::ast::{
    self, AlterTableOperation, CharacterLength, ColumnOption, CreateTable, ExactNumberInfo,
    TableConstraint, TimezoneInfo,
};

use super::execute::{ident, table_name};
use crate::engine::catalog::{ColumnDef, TableChange};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::types::{DataType, Value};

/// A table definition: name, columns, primary key column names.
pub type TableDef = (String, Vec<ColumnDef>, Vec<String>);

/// The definition a CREATE TABLE statement gives.
pub fn create_table(
    create: &CreateTable,
    mut constant: impl FnMut(&ast::Expr, DataType) -> Result<Value>,
) -> Result<TableDef> {
    if create.temporary || create.external || create.or_replace {
        return Err(Error::Unsupported(
            "CREATE TEMPORARY, EXTERNAL or OR REPLACE TABLE".into(),
        ));
    }
    if create.query.is_some() || create.like.is_some() || create.inherits.is_some() {
        return Err(Error::Unsupported(
            "CREATE TABLE AS, LIKE or INHERITS".into(),
        ));
    }
    let name = table_name(&create.name)?;
    let mut columns = Vec::with_capacity(create.columns.len());
    let mut key = Vec::new();
    for def in &create.columns {
        let (column, primary) = column_definition(def, &mut constant)?;
        if primary {
            key.push(column.name.clone());
        }
        columns.push(column);
    }
    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                if !key.is_empty() {
                    return Err(multiple_keys(&name));
                }
                for column in &pk.columns {
                    let ast::Expr::Identifier(id) = &column.column.expr else {
                        return Err(Error::Unsupported(format!(
                            "a primary key on the expression {}",
                            column.column.expr
                        )));
                    };
                    key.push(ident(id));
                }
            }
            other => return Err(Error::Unsupported(format!("the constraint {other}"))),
        }
    }
    if key.len() > 1 && create.columns.iter().filter(|c| is_primary(c)).count() > 1 {
        return Err(multiple_keys(&name));
    }
    Ok((name, columns, key))
}

/// The change an ALTER TABLE operation makes.
pub fn alter(
    operation: &AlterTableOperation,
    mut constant: impl FnMut(&ast::Expr, DataType) -> Result<Value>,
) -> Result<TableChange> {
    match operation {
        AlterTableOperation::AddColumn { column_def, .. } => {
            let (column, primary) = column_definition(column_def, &mut constant)?;
            if primary {
                return Err(Error::Unsupported("adding a primary key column".into()));
            }
            Ok(TableChange::AddColumn(column))
        }
        AlterTableOperation::DropColumn { column_names, .. } if column_names.len() == 1 => {
            Ok(TableChange::DropColumn(ident(&column_names[0])))
        }
        other => Err(Error::Unsupported(format!("ALTER TABLE {other}"))),
    }
}

/// Whether `expr` is built of literals alone (no function call, column or
/// subquery), so that evaluating it once gives every row's value.
pub fn is_constant(expr: &ast::Expr) -> bool {
    struct Calls;
    impl ast::Visitor for Calls {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &ast::Expr) -> std::ops::ControlFlow<()> {
            match expr {
                ast::Expr::Function(_)
                | ast::Expr::Subquery(_)
                | ast::Expr::Exists { .. }
                | ast::Expr::InSubquery { .. }
                | ast::Expr::Identifier(_)
                | ast::Expr::CompoundIdentifier(_) => std::ops::ControlFlow::Break(()),
                _ => std::ops::ControlFlow::Continue(()),
            }
        }
    }
    ast::Visit::visit(expr, &mut Calls).is_continue()
}

/// Whether evaluating `expr` may give a different value each time (it calls
/// random(), gen_random_uuid(), clock_timestamp(), ...), as opposed to once
/// per statement (now()).
pub fn is_volatile(expr: &ast::Expr) -> bool {
    struct Volatile;
    impl ast::Visitor for Volatile {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &ast::Expr) -> std::ops::ControlFlow<()> {
            if let ast::Expr::Function(f) = expr {
                let name = f.name.to_string().to_lowercase();
                let name = name.rsplit('.').next().unwrap_or_default();
                if matches!(
                    name,
                    "random"
                        | "gen_random_uuid"
                        | "uuid"
                        | "clock_timestamp"
                        | "timeofday"
                        | "nextval"
                        | "setseed"
                ) {
                    return std::ops::ControlFlow::Break(());
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    ast::Visit::visit(expr, &mut Volatile).is_break()
}

/// Whether a stored default expression (SQL text) is volatile.
pub fn is_volatile_default(expr: &str) -> bool {
    match super::execute::parse(&format!("SELECT {expr}")) {
        Ok(statements) => statements.iter().any(|statement| {
            let mut volatile = false;
            let _ = ast::visit_expressions(statement, |e| {
                volatile |= is_volatile(e);
                std::ops::ControlFlow::<()>::Continue(())
            });
            volatile
        }),
        // A default that no longer parses is treated as the worst case.
        Err(_) => true,
    }
}

fn is_primary(def: &ast::ColumnDef) -> bool {
    def.options
        .iter()
        .any(|o| matches!(o.option, ColumnOption::PrimaryKey(_)))
}

fn multiple_keys(table: &str) -> Error {
    Error::invalid(
        SqlState::INVALID_TABLE_DEFINITION,
        format!("multiple primary keys for table \"{table}\" are not allowed"),
    )
}

/// A column definition and whether it declares itself the primary key.
fn column_definition(
    def: &ast::ColumnDef,
    constant: &mut impl FnMut(&ast::Expr, DataType) -> Result<Value>,
) -> Result<(ColumnDef, bool)> {
    let data_type = data_type(&def.data_type)?;
    let mut column = ColumnDef::new(ident(&def.name), data_type);
    let mut primary = false;
    for option in &def.options {
        match &option.option {
            ColumnOption::Null => column.nullable = true,
            ColumnOption::NotNull => column.nullable = false,
            ColumnOption::Default(expr) => {
                // For an expression, the value now is what rows already in
                // the table read (ALTER TABLE ADD COLUMN); new rows evaluate it.
                let value = constant(expr, data_type)?;
                column.default = (!value.is_null()).then_some(value);
                if !is_constant(expr) {
                    column.default_expr = Some(expr.to_string());
                }
            }
            ColumnOption::PrimaryKey(_) => {
                primary = true;
                column.nullable = false;
            }
            other => return Err(Error::Unsupported(format!("the column option {other}"))),
        }
    }
    Ok((column, primary))
}

/// The longest CHAR(n) or VARCHAR(n), as in PostgreSQL.
pub const MAX_CHAR_LENGTH: u32 = 10_485_760;

/// The engine type of a SQL type name.
pub fn data_type(t: &ast::DataType) -> Result<DataType> {
    use ast::DataType as S;
    // PostgreSQL's bounds on CHAR(n) and VARCHAR(n): 1 to 10485760 characters.
    let length = |l: &Option<CharacterLength>, name: &str| -> Result<Option<u32>> {
        match l {
            Some(CharacterLength::IntegerLength { length, .. }) => match *length {
                0 => Err(Error::invalid(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("length for type {name} must be at least 1"),
                )),
                n if n > MAX_CHAR_LENGTH as u64 => Err(Error::invalid(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("length for type {name} cannot exceed {MAX_CHAR_LENGTH}"),
                )),
                n => Ok(Some(n as u32)),
            },
            Some(CharacterLength::Max) => Err(Error::Unsupported(format!("{name}(MAX)"))),
            None => Ok(None),
        }
    };
    Ok(match t {
        S::SmallInt(_) | S::Int2(_) => DataType::Int16,
        S::Int(_) | S::Integer(_) | S::Int4(_) => DataType::Int32,
        S::BigInt(_) | S::Int8(_) => DataType::Int64,
        S::Real | S::Float4 => DataType::Float32,
        S::Float(ExactNumberInfo::Precision(p)) if *p <= 24 => DataType::Float32,
        S::Float(_) | S::Float8 | S::Double(_) | S::DoublePrecision => DataType::Float64,
        S::Numeric(info) | S::Decimal(info) => {
            let (precision, scale) = match info {
                ExactNumberInfo::None => (38, 10),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, (*s).max(0) as u64),
            };
            if !(1..=38).contains(&precision) || scale > precision {
                return Err(Error::invalid(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("NUMERIC precision {precision} must be between 1 and 38, and the scale at most the precision"),
                ));
            }
            DataType::Decimal {
                precision: precision as u8,
                scale: scale as u8,
            }
        }
        S::Bool | S::Boolean => DataType::Bool,
        S::Text | S::String(None) => DataType::Text,
        S::Varchar(l) | S::CharacterVarying(l) => match length(l, "varchar")? {
            Some(n) => DataType::Varchar(n),
            None => DataType::Text,
        },
        S::Char(l) | S::Character(l) => DataType::Char(length(l, "character")?.unwrap_or(1)),
        S::Bytea => DataType::Bytes,
        S::Date => DataType::Date,
        S::Time(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => DataType::Time,
        S::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => DataType::Timestamp,
        S::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => DataType::TimestampTz,
        S::Interval { .. } => DataType::Interval,
        other => return Err(Error::Unsupported(format!("the type {other}"))),
    })
}

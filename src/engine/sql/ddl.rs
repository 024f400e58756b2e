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

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use super::execute::{ident, table_name};
use crate::engine::catalog::{
    Action, CheckDef, ColumnDef, ForeignKeyDef, Identity, IndexDef, Table, TableChange,
};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::types::{DataType, Value};

/// What a CREATE TABLE statement defines.
pub struct TableDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Primary key column names.
    pub primary_key: Vec<String>,
    /// The sequences its SERIAL and identity columns own: sequence name,
    /// column, type.
    pub serials: Vec<(String, String, DataType)>,
    pub checks: Vec<CheckDef>,
    /// Its UNIQUE constraints.
    pub uniques: Vec<IndexDef>,
    /// Its FOREIGN KEY constraints.
    pub foreign_keys: Vec<ForeignKeyDef>,
    /// The primary key constraint's name, when the statement gives one.
    pub key_name: Option<String>,
}

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
    if create.partition_by.is_some() || create.partition_of.is_some() {
        return Err(Error::Unsupported("partitioned tables".into()));
    }
    if !matches!(create.table_options, ast::CreateTableOptions::None) || create.on_commit.is_some()
    {
        return Err(Error::Unsupported(
            "table storage parameters, TABLESPACE and ON COMMIT".into(),
        ));
    }
    let name = table_name(&create.name)?;
    let mut columns = Vec::with_capacity(create.columns.len());
    let mut key = Vec::new();
    let mut serials = Vec::new();
    let mut checks = Vec::new();
    let mut uniques = Vec::new();
    let mut foreign_keys = Vec::new();
    let mut key_name = None;
    for def in &create.columns {
        let (mut column, primary, column_checks) = column_definition(def, &mut constant)?;
        checks.extend(column_checks);
        uniques.extend(column_uniques(def)?);
        foreign_keys.extend(column_foreign_keys(def)?);
        if let Some(data_type) = owns_sequence(def)? {
            // PostgreSQL's name for it, cut to the identifier limit.
            let mut sequence = format!("{name}_{}_seq", column.name);
            if sequence.len() > super::execute::MAX_IDENTIFIER {
                let mut end = super::execute::MAX_IDENTIFIER;
                while !sequence.is_char_boundary(end) {
                    end -= 1;
                }
                sequence.truncate(end);
            }
            column.default_expr = Some(format!(
                "nextval('{}'::regclass)",
                sequence.replace('\'', "''")
            ));
            column.nullable = false;
            serials.push((sequence, column.name.clone(), data_type));
        }
        if primary {
            key.push(column.name.clone());
            let named = def.options.iter().find_map(|o| match &o.option {
                ColumnOption::PrimaryKey(_) => o.name.as_ref(),
                _ => None,
            });
            key_name = key_name.or(named.map(ident));
        }
        columns.push(column);
    }
    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                if !key.is_empty() {
                    return Err(multiple_keys(&name));
                }
                refuse_key_options(pk)?;
                key_name = pk.name.as_ref().map(ident);
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
            TableConstraint::Check(check) => checks.push(check_definition(check, None)),
            TableConstraint::Unique(unique) => uniques.push(unique_definition(unique, None)?),
            TableConstraint::ForeignKey(fk) => foreign_keys.push(foreign_key_definition(fk, None)?),
            other => return Err(Error::Unsupported(format!("the constraint {other}"))),
        }
    }
    if key.len() > 1 && create.columns.iter().filter(|c| is_primary(c)).count() > 1 {
        return Err(multiple_keys(&name));
    }
    Ok(TableDef {
        name,
        columns,
        primary_key: key,
        serials,
        checks,
        uniques,
        foreign_keys,
        key_name,
    })
}

/// 0A000 for what omen cannot keep of a primary key: DEFERRABLE, index
/// options.
fn refuse_key_options(pk: &ast::PrimaryKeyConstraint) -> Result<()> {
    if pk.index_name.is_some()
        || pk.index_type.is_some()
        || !pk.index_options.is_empty()
        || pk.characteristics.is_some()
    {
        return Err(Error::Unsupported(format!("the constraint {pk}")));
    }
    Ok(())
}

/// The FOREIGN KEY constraints a column definition declares (`REFERENCES`).
fn column_foreign_keys(def: &ast::ColumnDef) -> Result<Vec<ForeignKeyDef>> {
    let mut keys = Vec::new();
    for option in &def.options {
        if let ColumnOption::ForeignKey(fk) = &option.option {
            let mut fk = foreign_key_definition(fk, option.name.as_ref())?;
            fk.columns = vec![ident(&def.name)];
            keys.push(fk);
        }
    }
    Ok(keys)
}

/// The constraint a FOREIGN KEY clause declares, named by the statement or
/// by `name` (`CONSTRAINT name` before a column constraint). MATCH FULL and
/// PARTIAL are refused: omen checks MATCH SIMPLE, PostgreSQL's default.
fn foreign_key_definition(
    fk: &ast::ForeignKeyConstraint,
    name: Option<&ast::Ident>,
) -> Result<ForeignKeyDef> {
    if matches!(
        fk.match_kind,
        Some(ast::ConstraintReferenceMatchKind::Full | ast::ConstraintReferenceMatchKind::Partial)
    ) {
        return Err(Error::Unsupported(
            "MATCH FULL and MATCH PARTIAL foreign keys".into(),
        ));
    }
    if fk.index_name.is_some() || fk.characteristics.is_some_and(|c| c.enforced.is_some()) {
        return Err(Error::Unsupported(format!("the constraint {fk}")));
    }
    let action = |a: Option<ast::ReferentialAction>| match a {
        None | Some(ast::ReferentialAction::NoAction) => Action::NoAction,
        Some(ast::ReferentialAction::Restrict) => Action::Restrict,
        Some(ast::ReferentialAction::Cascade) => Action::Cascade,
        Some(ast::ReferentialAction::SetNull) => Action::SetNull,
        Some(ast::ReferentialAction::SetDefault) => Action::SetDefault,
    };
    let characteristics = fk.characteristics.unwrap_or_default();
    let initially_deferred = characteristics.initially == Some(ast::DeferrableInitial::Deferred);
    if initially_deferred && characteristics.deferrable == Some(false) {
        return Err(Error::invalid(
            SqlState::SYNTAX_ERROR,
            "constraint declared INITIALLY DEFERRED must be DEFERRABLE",
        ));
    }
    Ok(ForeignKeyDef {
        name: fk.name.as_ref().or(name).map(ident),
        columns: fk.columns.iter().map(ident).collect(),
        parent: table_name(&fk.foreign_table)?,
        parent_columns: fk.referred_columns.iter().map(ident).collect(),
        on_delete: action(fk.on_delete),
        on_update: action(fk.on_update),
        deferrable: characteristics.deferrable == Some(true) || initially_deferred,
        initially_deferred,
    })
}

/// The UNIQUE constraints a column definition declares (`CONSTRAINT name UNIQUE`).
fn column_uniques(def: &ast::ColumnDef) -> Result<Vec<IndexDef>> {
    let mut uniques = Vec::new();
    for option in &def.options {
        if let ColumnOption::Unique(unique) = &option.option {
            let mut unique = unique_definition(unique, option.name.as_ref())?;
            unique.columns = vec![ident(&def.name)];
            uniques.push(unique);
        }
    }
    Ok(uniques)
}

/// The index a UNIQUE constraint declares, named by the statement or by
/// `name` (`CONSTRAINT name` before a column constraint).
fn unique_definition(
    unique: &ast::UniqueConstraint,
    name: Option<&ast::Ident>,
) -> Result<IndexDef> {
    if unique
        .characteristics
        .is_some_and(|c| c.deferrable == Some(true) || c.initially.is_some())
    {
        return Err(Error::Unsupported("DEFERRABLE unique constraints".into()));
    }
    if unique.index_type.is_some() || !unique.index_options.is_empty() {
        return Err(Error::Unsupported(format!("the constraint {unique}")));
    }
    Ok(IndexDef {
        name: unique.name.as_ref().or(name).map(ident),
        columns: index_columns(&unique.columns)?,
        unique: true,
        nulls_not_distinct: unique.nulls_distinct == ast::NullsDistinctOption::NotDistinct,
        constraint: true,
    })
}

/// The column names of an index's column list; 0A000 for an expression,
/// a descending column, NULLS FIRST or an operator class.
/// The btree operator classes that order as omen's indexes do: the default
/// ones, and the text pattern ones (omen's text order is the C collation's).
const DEFAULT_OPERATOR_CLASSES: &[&str] = &[
    "text_pattern_ops",
    "varchar_pattern_ops",
    "bpchar_pattern_ops",
    "text_ops",
    "varchar_ops",
    "bpchar_ops",
    "int2_ops",
    "int4_ops",
    "int8_ops",
    "float4_ops",
    "float8_ops",
    "numeric_ops",
    "bool_ops",
    "bytea_ops",
    "date_ops",
    "time_ops",
    "timestamp_ops",
    "timestamptz_ops",
];

fn index_columns(columns: &[ast::IndexColumn]) -> Result<Vec<String>> {
    columns
        .iter()
        .map(|c| {
            let ast::Expr::Identifier(id) = &c.column.expr else {
                return Err(Error::Unsupported(format!(
                    "an index on the expression {}",
                    c.column.expr
                )));
            };
            let options = &c.column.options;
            if options.asc == Some(false) || options.nulls_first == Some(true) {
                return Err(Error::Unsupported(
                    "DESC or NULLS FIRST index columns (omen's indexes are ascending, NULLS LAST)"
                        .into(),
                ));
            }
            if let Some(class) = &c.operator_class {
                // omen compares text byte by byte (the C collation), which is
                // what the pattern classes ask for: Django makes such indexes
                // for LIKE on every indexed text column.
                let name = class.to_string().to_lowercase();
                let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
                if !DEFAULT_OPERATOR_CLASSES.contains(&name) {
                    return Err(Error::Unsupported(format!("the operator class {class}")));
                }
            }
            Ok(ident(id))
        })
        .collect()
}

/// The index a CREATE INDEX statement defines: table name and definition.
pub fn create_index(create: &ast::CreateIndex) -> Result<(String, IndexDef)> {
    if create.predicate.is_some() {
        return Err(Error::Unsupported(
            "partial indexes (CREATE INDEX ... WHERE)".into(),
        ));
    }
    if !create.include.is_empty()
        || !create.with.is_empty()
        || !create.index_options.is_empty()
        || !create.alter_options.is_empty()
    {
        return Err(Error::Unsupported(format!("the index {create}")));
    }
    if let Some(using) = &create.using {
        let method = using.to_string().to_lowercase();
        if method != "btree" {
            return Err(Error::Unsupported(format!(
                "index access method \"{method}\""
            )));
        }
    }
    let name = create
        .name
        .as_ref()
        // As in PostgreSQL, an index lives in its table's schema: its name
        // takes none.
        .map(|n| match n.0.as_slice() {
            [part] => part
                .as_ident()
                .map(ident)
                .ok_or_else(|| Error::Unsupported(format!("the index name {n}"))),
            _ => Err(Error::Unsupported(format!("the index name {n}"))),
        })
        .transpose()?;
    let def = IndexDef {
        name,
        columns: index_columns(&create.columns)?,
        unique: create.unique,
        nulls_not_distinct: create.nulls_distinct == Some(false),
        constraint: false,
    };
    Ok((table_name(&create.table_name)?, def))
}

/// The definition of a CHECK constraint, named by the statement or by `name`
/// (`CONSTRAINT name` before a column constraint).
fn check_definition(check: &ast::CheckConstraint, name: Option<&ast::Ident>) -> CheckDef {
    CheckDef {
        name: check.name.as_ref().or(name).map(ident),
        expr: check.expr.to_string(),
    }
}

/// The integer type of a column that owns a sequence: SERIAL, BIGSERIAL,
/// SMALLSERIAL, or GENERATED BY DEFAULT AS IDENTITY.
fn owns_sequence(def: &ast::ColumnDef) -> Result<Option<DataType>> {
    if let Some(t) = serial_type(&def.data_type) {
        if def
            .options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::Default(_)))
        {
            return Err(Error::invalid(
                SqlState::SYNTAX_ERROR,
                format!(
                    "multiple default values specified for column \"{}\"",
                    ident(&def.name)
                ),
            ));
        }
        return Ok(Some(t));
    }
    if identity_of(def).is_none() {
        return Ok(None);
    }
    match data_type(&def.data_type)? {
        t @ (DataType::Int16 | DataType::Int32 | DataType::Int64) => Ok(Some(t)),
        _ => Err(Error::invalid(
            SqlState::INVALID_PARAMETER_VALUE,
            format!(
                "identity column type must be smallint, integer, or bigint (column \"{}\")",
                ident(&def.name)
            ),
        )),
    }
}

/// The kind of identity column `def` declares, if it declares one.
fn identity_of(def: &ast::ColumnDef) -> Option<Identity> {
    def.options.iter().find_map(|o| match o.option {
        ColumnOption::Generated {
            generated_as: ast::GeneratedAs::ByDefault,
            generation_expr: None,
            ..
        } => Some(Identity::ByDefault),
        ColumnOption::Generated {
            generated_as: ast::GeneratedAs::Always,
            generation_expr: None,
            ..
        } => Some(Identity::Always),
        _ => None,
    })
}

/// The integer type a SERIAL pseudo-type stands for.
fn serial_type(t: &ast::DataType) -> Option<DataType> {
    let ast::DataType::Custom(name, modifiers) = t else {
        return None;
    };
    if !modifiers.is_empty() {
        return None;
    }
    match name.to_string().to_lowercase().as_str() {
        "serial" | "serial4" => Some(DataType::Int32),
        "bigserial" | "serial8" => Some(DataType::Int64),
        "smallserial" | "serial2" => Some(DataType::Int16),
        _ => None,
    }
}

/// The changes an ALTER TABLE operation on `table` makes.
pub fn alter(
    operation: &AlterTableOperation,
    table: &Table,
    mut constant: impl FnMut(&ast::Expr, DataType) -> Result<Value>,
) -> Result<Vec<TableChange>> {
    match operation {
        AlterTableOperation::RenameTable {
            table_name: ast::RenameTableNameKind::To(name) | ast::RenameTableNameKind::As(name),
        } => Ok(vec![TableChange::RenameTable(table_name(name)?)]),
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => Ok(vec![TableChange::RenameColumn {
            from: ident(old_column_name),
            to: ident(new_column_name),
        }]),
        AlterTableOperation::AlterColumn { column_name, op } => {
            let column = ident(column_name);
            let change = match op {
                ast::AlterColumnOperation::SetNotNull => TableChange::SetNotNull {
                    column,
                    not_null: true,
                },
                ast::AlterColumnOperation::DropNotNull => TableChange::SetNotNull {
                    column,
                    not_null: false,
                },
                ast::AlterColumnOperation::DropDefault => TableChange::SetDefault {
                    column,
                    default: None,
                    default_expr: None,
                },
                ast::AlterColumnOperation::SetDefault { value } => {
                    let data_type = table.columns[table.column_index(&column)?].data_type;
                    let (default, default_expr) = if calls_nextval(value) {
                        (None, Some(value.to_string()))
                    } else {
                        let now = constant(value, data_type)?;
                        let expr = (!is_constant(value)).then(|| value.to_string());
                        ((!now.is_null()).then_some(now), expr)
                    };
                    TableChange::SetDefault {
                        column,
                        default,
                        default_expr,
                    }
                }
                other => return Err(Error::Unsupported(format!("ALTER COLUMN {other}"))),
            };
            Ok(vec![change])
        }
        AlterTableOperation::AddColumn { column_def, .. } => {
            if owns_sequence(column_def)?.is_some() {
                // PostgreSQL gives each row a value of a new sequence.
                return Err(Error::Unsupported(
                    "adding a SERIAL or identity column to a table".into(),
                ));
            }
            let (column, primary, checks) = column_definition(column_def, &mut constant)?;
            if primary {
                return Err(Error::Unsupported("adding a primary key column".into()));
            }
            let checks = checks.into_iter().map(|check| TableChange::AddCheck {
                check,
                validate: true,
            });
            let uniques = column_uniques(column_def)?
                .into_iter()
                .map(TableChange::AddUnique);
            let foreign_keys = column_foreign_keys(column_def)?.into_iter().map(|def| {
                TableChange::AddForeignKey {
                    def,
                    validate: true,
                }
            });
            Ok(std::iter::once(TableChange::AddColumn(column))
                .chain(checks)
                .chain(uniques)
                .chain(foreign_keys)
                .collect())
        }
        AlterTableOperation::DropColumn { column_names, .. } if column_names.len() == 1 => {
            Ok(vec![TableChange::DropColumn(ident(&column_names[0]))])
        }
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::Check(check),
            not_valid,
        } => Ok(vec![TableChange::AddCheck {
            check: check_definition(check, None),
            validate: !not_valid,
        }]),
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::Unique(unique),
            not_valid: false,
        } => Ok(vec![TableChange::AddUnique(unique_definition(
            unique, None,
        )?)]),
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::ForeignKey(fk),
            not_valid,
        } => Ok(vec![TableChange::AddForeignKey {
            def: foreign_key_definition(fk, None)?,
            validate: !not_valid,
        }]),
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::PrimaryKey(pk),
            not_valid: false,
        } => {
            refuse_key_options(pk)?;
            Ok(vec![TableChange::AddPrimaryKey {
                name: pk.name.as_ref().map(ident),
                columns: index_columns(&pk.columns)?,
            }])
        }
        AlterTableOperation::ValidateConstraint { name } => {
            Ok(vec![TableChange::ValidateConstraint(ident(name))])
        }
        AlterTableOperation::DropConstraint {
            if_exists, name, ..
        } => Ok(vec![TableChange::DropConstraint {
            name: ident(name),
            if_exists: *if_exists,
        }]),
        other => Err(Error::Unsupported(format!("ALTER TABLE {other}"))),
    }
}

/// Whether an identity column gives no sequence options of its own (omen
/// refuses those rather than ignore them).
fn sequence_options_empty(option: &ColumnOption) -> bool {
    matches!(option, ColumnOption::Generated { sequence_options, .. }
        if sequence_options.as_ref().is_none_or(Vec::is_empty))
}

/// Whether `expr` calls nextval.
fn calls_nextval(expr: &ast::Expr) -> bool {
    struct Find;
    impl ast::Visitor for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &ast::Expr) -> std::ops::ControlFlow<()> {
            match expr {
                ast::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("nextval") => {
                    std::ops::ControlFlow::Break(())
                }
                _ => std::ops::ControlFlow::Continue(()),
            }
        }
    }
    ast::Visit::visit(expr, &mut Find).is_break()
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
) -> Result<(ColumnDef, bool, Vec<CheckDef>)> {
    let mut checks = Vec::new();
    let data_type = serial_type(&def.data_type).map_or_else(|| data_type(&def.data_type), Ok)?;
    let mut column = ColumnDef::new(ident(&def.name), data_type);
    let mut primary = false;
    for option in &def.options {
        match &option.option {
            ColumnOption::Null => column.nullable = true,
            ColumnOption::NotNull => column.nullable = false,
            ColumnOption::Default(expr) if calls_nextval(expr) => {
                // Evaluating it now would use up a value of the sequence.
                column.default_expr = Some(expr.to_string());
            }
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
            ColumnOption::Generated {
                generated_as: ast::GeneratedAs::ByDefault | ast::GeneratedAs::Always,
                generation_expr: None,
                sequence_options: None | Some(_),
                ..
            } if sequence_options_empty(&option.option) => {
                column.identity = identity_of(def);
            }
            ColumnOption::Check(check) => {
                checks.push(check_definition(check, option.name.as_ref()))
            }
            // Read by `column_uniques` and `column_foreign_keys`.
            ColumnOption::Unique(_) | ColumnOption::ForeignKey(_) => {}
            other => return Err(Error::Unsupported(format!("the column option {other}"))),
        }
    }
    Ok((column, primary, checks))
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

/// The setting name SET CONSTRAINTS is rewritten to (see [`set_constraints`]).
pub const SET_CONSTRAINTS: &str = "omen.set_constraints";

/// Rewrites `SET CONSTRAINTS {ALL | name, ...} {DEFERRED | IMMEDIATE}`,
/// which the parser does not know, as `SET "omen.set_constraints" TO
/// 'DEFERRED' [, 'name' ...]` (no names: ALL), which the session turns back
/// into the statement.
pub(super) fn set_constraints(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let word = |t: &TokenWithSpan, k: Keyword| matches!(&t.token, Token::Word(w) if w.keyword == k);
    let solid = |t: &&TokenWithSpan| !matches!(t.token, Token::Whitespace(_));
    let mut out = Vec::with_capacity(tokens.len());
    let mut rest = tokens.as_slice();
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|t| t.token == Token::SemiColon)
            .map_or(rest.len(), |p| p + 1);
        let (statement, after) = rest.split_at(end);
        rest = after;
        let words: Vec<&TokenWithSpan> = statement
            .iter()
            .filter(solid)
            .filter(|t| t.token != Token::SemiColon)
            .collect();
        let rewrite = match words.as_slice() {
            [set, constraints, targets @ .., mode]
                if word(set, Keyword::SET)
                    && matches!(&constraints.token, Token::Word(w)
                        if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("constraints"))
                    && (word(mode, Keyword::DEFERRED) || word(mode, Keyword::IMMEDIATE)) =>
            {
                let mut values = vec![Token::SingleQuotedString(
                    mode.token.to_string().to_uppercase(),
                )];
                if !matches!(targets, [all] if word(all, Keyword::ALL)) {
                    let mut names = Vec::new();
                    for target in targets.iter() {
                        match &target.token {
                            Token::Word(w) => names.push(match w.quote_style {
                                Some(_) => w.value.clone(),
                                None => w.value.to_lowercase(),
                            }),
                            // schema.name: the schema is always public.
                            Token::Period => {
                                names.pop();
                            }
                            Token::Comma => {}
                            _ => {
                                names.clear();
                                break;
                            }
                        }
                    }
                    if names.is_empty() {
                        None
                    } else {
                        values.extend(names.into_iter().map(Token::SingleQuotedString));
                        Some(values)
                    }
                } else {
                    Some(values)
                }
            }
            _ => None,
        };
        let Some(values) = rewrite else {
            out.extend_from_slice(statement);
            continue;
        };
        let space = || TokenWithSpan::wrap(Token::Whitespace(Whitespace::Space));
        out.push(TokenWithSpan::wrap(Token::make_keyword("SET")));
        out.push(space());
        out.push(TokenWithSpan::wrap(Token::make_word(
            SET_CONSTRAINTS,
            Some('"'),
        )));
        out.push(space());
        out.push(TokenWithSpan::wrap(Token::make_keyword("TO")));
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                out.push(TokenWithSpan::wrap(Token::Comma));
            }
            out.push(space());
            out.push(TokenWithSpan::wrap(value));
        }
        if statement
            .last()
            .is_some_and(|t| t.token == Token::SemiColon)
        {
            out.push(TokenWithSpan::wrap(Token::SemiColon));
        }
    }
    out
}

//! The session's settings and state from SQL: `current_setting`, and RESET
//! and DISCARD, which put a session back as it started, as connection pools
//! ask for between clients (`DISCARD ALL`).
//!
//! ```text
//!   current_setting('name' [, missing_ok])   the value SHOW name gives
//!   RESET name | ALL        settings back to their values at session start
//!   DISCARD SEQUENCES       currval and lastval forget their values
//!   DISCARD PLANS | TEMP    nothing to drop: omen caches no plans and has
//!                           no temporary tables
//!   DISCARD ALL             CLOSE ALL, RESET ALL, DEALLOCATE ALL, the
//!                           session's advisory locks released, DISCARD
//!                           SEQUENCES; outside a transaction block only
//! ```

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, DiscardObject, Expr, Statement, VisitMut, VisitorMut};

use super::execute::{table_name, Output};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::Session;

impl Session {
    /// Puts each `current_setting('name')` of `statement` in place as the
    /// setting's value (NULL for an unknown one with `missing_ok` true).
    pub(super) fn bind_settings(&self, statement: &mut Statement) -> Result<()> {
        match statement.visit(&mut Settings(self)) {
            ControlFlow::Break(e) => Err(e),
            ControlFlow::Continue(()) => Ok(()),
        }
    }

    pub(super) fn reset_sql(&mut self, reset: &ast::Reset) -> Result<Output> {
        match reset {
            ast::Reset::ALL => self.reset_all()?,
            ast::Reset::ConfigurationParameter(name) => {
                let name = table_name(name)
                    .unwrap_or_else(|_| name.to_string())
                    .to_lowercase();
                self.reset_setting(&name)?;
            }
        }
        Ok(Output::command("RESET"))
    }

    /// One setting back to its value at session start.
    pub(super) fn reset_setting(&mut self, name: &str) -> Result<()> {
        if matches!(
            name,
            "transaction_isolation" | "default_transaction_isolation"
        ) {
            self.set_default_isolation(Default::default());
            return Ok(());
        }
        match self.initial_settings.get(name).cloned() {
            Some(value) => self.set_setting(name, &value),
            None if name.contains('.') => {
                self.settings.remove(name);
                Ok(())
            }
            None => self.setting(name).map(|_| ()),
        }
    }

    fn reset_all(&mut self) -> Result<()> {
        let initial = self.initial_settings.clone();
        self.settings.retain(|name, _| initial.contains_key(name));
        for (name, value) in &initial {
            if self.settings.get(name) != Some(value) {
                self.set_setting(name, value)?;
            }
        }
        self.set_default_isolation(Default::default());
        Ok(())
    }

    pub(super) fn discard_sql(&mut self, object: DiscardObject) -> Result<Output> {
        Ok(Output::command(match object {
            DiscardObject::ALL => {
                if self.in_transaction() {
                    return Err(Error::TransactionState {
                        code: SqlState::ACTIVE_SQL_TRANSACTION,
                        message: "DISCARD ALL cannot run inside a transaction block".into(),
                    });
                }
                self.held_cursors.clear();
                self.reset_all()?;
                self.prepared = Default::default();
                self.shared.locks.release(self.id, None);
                *self.sequences_seen.lock() = Default::default();
                "DISCARD ALL"
            }
            DiscardObject::SEQUENCES => {
                *self.sequences_seen.lock() = Default::default();
                "DISCARD SEQUENCES"
            }
            DiscardObject::PLANS => "DISCARD PLANS",
            DiscardObject::TEMP => "DISCARD TEMP",
        }))
    }
}

/// Replaces `current_setting` calls with a literal argument.
struct Settings<'a>(&'a Session);

impl VisitorMut for Settings<'_> {
    type Break = Error;

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Error> {
        let Expr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        let name = function.name.to_string().to_lowercase();
        if !matches!(
            name.as_str(),
            "current_setting" | "pg_catalog.current_setting"
        ) {
            return ControlFlow::Continue(());
        }
        let ast::FunctionArguments::List(list) = &function.args else {
            return ControlFlow::Continue(());
        };
        let literal = |arg: &ast::FunctionArg| match arg {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Value(v))) => {
                Some(v.value.clone())
            }
            _ => None,
        };
        let args: Vec<Option<ast::Value>> = list.args.iter().map(literal).collect();
        let (setting, missing_ok) = match args.as_slice() {
            [Some(ast::Value::SingleQuotedString(s))] => (s.clone(), false),
            [Some(ast::Value::SingleQuotedString(s)), Some(ast::Value::Boolean(ok))] => {
                (s.clone(), *ok)
            }
            _ => {
                return ControlFlow::Break(Error::Unsupported(
                    "current_setting with an argument that is not a literal".into(),
                ))
            }
        };
        let value = match self.0.setting(&setting) {
            Ok(value) => ast::Value::SingleQuotedString(value),
            Err(_) if missing_ok => ast::Value::Null,
            Err(e) => return ControlFlow::Break(e),
        };
        *expr = Expr::Cast {
            kind: ast::CastKind::DoubleColon,
            expr: Box::new(Expr::Value(value.into())),
            data_type: ast::DataType::Text,
            array: false,
            format: None,
        };
        ControlFlow::Continue(())
    }
}

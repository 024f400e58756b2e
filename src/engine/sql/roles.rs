//! CREATE ROLE / USER, ALTER ROLE / USER and DROP ROLE / USER.
//!
//! Roles live in the catalog; a password is stored only as its SCRAM-SHA-256
//! verifier. A session with a user (a server connection) may change roles only
//! when that user is a superuser; the local shell has no user and may.

use datafusion::sql::sqlparser::ast::{self, AlterRoleOperation, CreateRole, Password, RoleOption};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use super::execute::{ident, Output};
use crate::engine::catalog::{Catalog, Role};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::scram::Verifier;
use crate::engine::Session;

/// PostgreSQL's CREATE USER / ALTER USER / DROP USER in the ROLE forms that
/// the parser reads (`CREATE USER` is `CREATE ROLE ... LOGIN`). Other text is
/// returned unchanged.
pub fn user_as_role(sql: &str) -> String {
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let Ok(mut tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return sql.to_string();
    };
    let significant = |t: &Token| !matches!(t, Token::Whitespace(_));
    let mut changed = false;
    let mut start = 0;
    while start < tokens.len() {
        let end = tokens[start..]
            .iter()
            .position(|t| *t == Token::SemiColon)
            .map_or(tokens.len(), |p| start + p);
        let words: Vec<usize> = (start..end).filter(|&i| significant(&tokens[i])).collect();
        let word = |tokens: &[Token], i: usize| match &tokens[i] {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_lowercase(),
            _ => String::new(),
        };
        if words.len() >= 2 && word(&tokens, words[1]) == "user" {
            let verb = word(&tokens, words[0]);
            if matches!(verb.as_str(), "create" | "alter" | "drop") {
                let says_login = words
                    .iter()
                    .any(|&i| matches!(word(&tokens, i).as_str(), "login" | "nologin"));
                tokens[words[1]] = Token::make_keyword("ROLE");
                if verb == "create" && !says_login {
                    tokens.insert(end, Token::make_keyword("LOGIN"));
                    tokens.insert(end, Token::Whitespace(Whitespace::Space));
                }
                changed = true;
            }
        }
        start = tokens[start..]
            .iter()
            .position(|t| *t == Token::SemiColon)
            .map_or(tokens.len(), |p| start + p + 1);
    }
    if !changed {
        return sql.to_string();
    }
    tokens.iter().map(|t| t.to_string()).collect()
}

/// Whether `user` may do what only superusers may (see [`Session::is_superuser`]).
pub(in crate::engine) fn is_superuser(catalog: &Catalog, user: Option<&str>) -> bool {
    let Some(user) = user else {
        return true;
    };
    let roles = catalog.roles();
    roles.is_empty() || roles.iter().any(|r| r.name == user && r.superuser)
}

impl Session {
    /// The user this session acts as (the role a server connection logged
    /// in as); None for the local shell, which owns the database.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Makes the session act as `user`.
    pub fn set_user(&mut self, user: Option<String>) {
        self.user = user;
        // The planner's current_user() names the user it was made for.
        self.sql = None;
    }

    /// Creates a role directly (the server's first superuser).
    pub fn create_role(&mut self, role: Role) -> Result<()> {
        self.refuse_in_transaction("CREATE ROLE")?;
        self.require_superuser("create roles")?;
        let shared = self.shared.clone();
        let _ddl = shared.ddl.lock();
        if self.shared.catalog.role(&role.name).is_some() {
            return Err(Error::AlreadyExists {
                code: SqlState::DUPLICATE_OBJECT,
                message: format!("role \"{}\" already exists", role.name),
            });
        }
        self.save_role(role)
    }

    pub(super) fn create_role_sql(&mut self, create: CreateRole) -> Result<Output> {
        let names = create
            .names
            .iter()
            .map(super::execute::column_name)
            .collect::<Result<Vec<_>>>()?;
        let mut options = Vec::new();
        options.extend(create.superuser.map(RoleOption::SuperUser));
        options.extend(create.login.map(RoleOption::Login));
        options.extend(create.password.map(RoleOption::Password));
        for name in names {
            let mut role = Role {
                name,
                superuser: false,
                login: false,
                verifier: None,
            };
            apply_options(&mut role, &options)?;
            self.create_role(role)?;
        }
        Ok(Output::command("CREATE ROLE"))
    }

    pub(super) fn alter_role_sql(
        &mut self,
        name: &ast::Ident,
        operation: AlterRoleOperation,
    ) -> Result<Output> {
        self.refuse_in_transaction("ALTER ROLE")?;
        let name = ident(name);
        let AlterRoleOperation::WithOptions { options } = operation else {
            return Err(Error::Unsupported(format!("ALTER ROLE {operation}")));
        };
        // A role may change its own password; anything else needs a superuser.
        let own_password = self.user() == Some(name.as_str())
            && options.iter().all(|o| matches!(o, RoleOption::Password(_)));
        if !own_password {
            self.require_superuser("alter roles")?;
        }
        let shared = self.shared.clone();
        let _ddl = shared.ddl.lock();
        let mut role = (*self.role(&name)?).clone();
        apply_options(&mut role, &options)?;
        self.save_role(role)?;
        Ok(Output::command("ALTER ROLE"))
    }

    pub(super) fn drop_role_sql(
        &mut self,
        names: &[ast::ObjectName],
        if_exists: bool,
    ) -> Result<Output> {
        self.refuse_in_transaction("DROP ROLE")?;
        self.require_superuser("drop roles")?;
        let names = names
            .iter()
            .map(super::execute::column_name)
            .collect::<Result<Vec<_>>>()?;
        let shared = self.shared.clone();
        let _ddl = shared.ddl.lock();
        for name in &names {
            if self.user() == Some(name.as_str()) {
                return Err(Error::TransactionState {
                    code: SqlState::OBJECT_IN_USE,
                    message: "current user cannot be dropped".into(),
                });
            }
            if !if_exists {
                self.role(name)?;
            }
        }
        for name in names {
            if self.shared.catalog.role(&name).is_none() {
                self.notice(format!("role \"{name}\" does not exist, skipping"));
                continue;
            }
            let mut batch = crate::engine::storage::WriteBatch::new();
            batch.delete(
                crate::engine::storage::Cf::Catalog,
                Catalog::role_key(&name),
            );
            let catalog = self.shared.catalog.clone();
            let apply = move |_| catalog.uninstall_role(&name);
            self.shared
                .mvcc
                .commit_unversioned(batch, None, Some(Box::new(apply)))?;
        }
        Ok(Output::command("DROP ROLE"))
    }

    fn role(&self, name: &str) -> Result<std::sync::Arc<Role>> {
        self.shared
            .catalog
            .role(name)
            .ok_or_else(|| Error::NotFound {
                code: SqlState::UNDEFINED_OBJECT,
                message: format!("role \"{name}\" does not exist"),
            })
    }

    /// Whether the session may do what only superusers may: the local shell
    /// (no user), a database without roles (trust authentication, where
    /// every user is shown as its superuser), or a superuser role.
    pub fn is_superuser(&self) -> bool {
        is_superuser(&self.shared.catalog, self.user())
    }

    fn require_superuser(&self, what: &str) -> Result<()> {
        let Some(user) = self.user() else {
            return Ok(());
        };
        match self.shared.catalog.role(user) {
            Some(role) if role.superuser => Ok(()),
            _ => Err(Error::InvalidInput {
                code: SqlState::INSUFFICIENT_PRIVILEGE,
                message: format!("permission denied to {what}"),
            }),
        }
    }

    fn save_role(&self, role: Role) -> Result<()> {
        let batch = Catalog::put_role(&role)?;
        let catalog = self.shared.catalog.clone();
        let apply = move |_| catalog.install_role(role);
        self.shared
            .mvcc
            .commit_unversioned(batch, None, Some(Box::new(apply)))?;
        Ok(())
    }
}

/// Applies CREATE/ALTER ROLE options; a password becomes its verifier (one
/// given already as a verifier is kept as it is).
fn apply_options(role: &mut Role, options: &[RoleOption]) -> Result<()> {
    for option in options {
        match option {
            RoleOption::SuperUser(on) => role.superuser = *on,
            RoleOption::Login(on) => role.login = *on,
            RoleOption::Password(Password::NullPassword) => role.verifier = None,
            RoleOption::Password(Password::Password(expr)) => {
                let password = match expr {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) => s.clone(),
                        ast::Value::Null => {
                            role.verifier = None;
                            continue;
                        }
                        _ => return Err(password_literal()),
                    },
                    _ => return Err(password_literal()),
                };
                if password.is_empty() {
                    return Err(Error::invalid(
                        SqlState::INVALID_PARAMETER_VALUE,
                        "empty password",
                    ));
                }
                role.verifier = Some(match Verifier::parse(&password) {
                    Some(verifier) => verifier.to_string(),
                    None => Verifier::new(&password).to_string(),
                });
            }
            // Privileges omen does not have: accepted, as they change nothing.
            RoleOption::CreateDB(_)
            | RoleOption::CreateRole(_)
            | RoleOption::Inherit(_)
            | RoleOption::Replication(_)
            | RoleOption::BypassRLS(_) => {}
            other => return Err(Error::Unsupported(format!("the role option {other}"))),
        }
    }
    Ok(())
}

fn password_literal() -> Error {
    Error::invalid(
        SqlState::SYNTAX_ERROR,
        "a password must be a string literal",
    )
}

#[cfg(test)]
mod tests {
    use super::user_as_role;

    #[test]
    fn user_statements_become_role_statements() {
        assert_eq!(
            user_as_role("CREATE USER bob WITH PASSWORD 'x;y'"),
            "CREATE ROLE bob WITH PASSWORD 'x;y' LOGIN"
        );
        assert_eq!(
            user_as_role("create user bob nologin; alter user bob password 'p'"),
            "create ROLE bob nologin; alter ROLE bob password 'p'"
        );
        assert_eq!(
            user_as_role("drop user if exists bob"),
            "drop ROLE if exists bob"
        );
        assert_eq!(user_as_role("select user"), "select user");
        assert_eq!(user_as_role("SELECT 'create user'"), "SELECT 'create user'");
    }
}

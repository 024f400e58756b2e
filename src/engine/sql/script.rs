//! SQL text as a sequence of statements, cut where the SQL tokenizer finds
//! semicolons, so a semicolon inside a string, a quoted name or a comment
//! never ends a statement.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use crate::engine::error::{Error, Result, SqlState};

/// The statements of `sql`, each with its text; empty statements are dropped.
/// Fails only when the text does not tokenize (an unterminated string or
/// comment).
pub fn split_statements(sql: &str) -> Result<Vec<String>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| Error::invalid(SqlState::SYNTAX_ERROR, format!("syntax error: {e}")))?;
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut substantive = false;
    for token in tokens {
        match token {
            Token::SemiColon => {
                if substantive {
                    statements.push(std::mem::take(&mut current).trim().to_string());
                }
                current.clear();
                substantive = false;
            }
            Token::Whitespace(
                Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_),
            ) => {}
            other => {
                substantive |= !matches!(other, Token::Whitespace(_));
                current.push_str(&other.to_string());
            }
        }
    }
    if substantive {
        statements.push(current.trim().to_string());
    }
    Ok(statements)
}

/// Whether `sql` is ready to run: it ends with a semicolon outside any string,
/// quoted name or comment (or holds nothing but whitespace and comments).
pub fn is_complete(sql: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return false;
    };
    let mut last = None;
    for token in &tokens {
        if !matches!(token, Token::Whitespace(_)) {
            last = Some(token);
        }
    }
    matches!(last, None | Some(Token::SemiColon))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semicolons_in_strings_and_comments_do_not_split() {
        let sql = "SELECT ';' AS a; -- a comment; still a comment\nSELECT \"x;y\" FROM t;;";
        let statements = split_statements(sql).expect("tokenizes");
        assert_eq!(statements, vec!["SELECT ';' AS a", "SELECT \"x;y\" FROM t"]);
        assert!(is_complete(sql));
        assert!(!is_complete("SELECT 'abc;"));
        assert!(!is_complete("SELECT 1"));
        assert!(is_complete("SELECT 1; -- done"));
        assert!(is_complete("  "));
    }
}

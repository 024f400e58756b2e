//! The SQL shell: statements from the terminal, from `-c`, from a file or from
//! standard input, run through one engine session.
//!
//! Rows go to standard output; errors, notices and timings to standard error.
//! On a terminal, input is edited with rustyline and a statement may span
//! lines until a semicolon ends it (the SQL tokenizer decides, so semicolons
//! in strings and comments do not count). Lines starting with a backslash are
//! shell commands (`\q`, `\dt`, `\d NAME`, `\timing`, `\?`).

mod output;

use std::borrow::Cow;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use omen::engine::sql::{is_complete, split_statements};
use omen::{Database, Output, Session};
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Editor, Helper};

pub use output::Format;

use crate::commands::transfer::copy_file;
use crate::server::copy;

/// What the shell does after a failed statement.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop reading input.
    Stop,
    /// Report it and go on with the next statement.
    Continue,
}

/// One shell over one database.
pub struct Shell {
    db: Database,
    session: Session,
    format: Format,
    timing: bool,
    on_error: OnError,
    /// Whether any statement failed.
    pub failed: bool,
}

impl Shell {
    /// A shell with a fresh session on `db`.
    pub fn new(db: Database, format: Format, timing: bool, on_error: OnError) -> Shell {
        let session = db.session();
        Shell {
            db,
            session,
            format,
            timing,
            on_error,
            failed: false,
        }
    }

    /// Runs every statement and backslash command of `text` (a command is a
    /// line of its own between statements); false when it stopped at an error.
    pub fn run_script(&mut self, text: &str) -> Result<bool> {
        let mut sql = String::new();
        for line in text.split_inclusive('\n') {
            let command = line.trim().strip_prefix('\\');
            match command {
                Some(command) if sql.trim().is_empty() || is_complete(sql.trim()) => {
                    if !self.run_sql(&std::mem::take(&mut sql))? {
                        return Ok(false);
                    }
                    let failed = self.failed;
                    self.failed = false;
                    let go_on = self.shell_command(command)?;
                    let ok = !self.failed;
                    self.failed |= failed;
                    if !go_on || !ok && self.on_error == OnError::Stop {
                        return Ok(ok && go_on);
                    }
                }
                _ => sql.push_str(line),
            }
        }
        self.run_sql(&sql)
    }

    /// Runs every statement of `text`; false when it stopped at an error.
    fn run_sql(&mut self, text: &str) -> Result<bool> {
        if text.trim().is_empty() {
            return Ok(true);
        }
        let statements = match split_statements(text) {
            Ok(statements) => statements,
            Err(e) => {
                self.report(&e);
                return Ok(self.on_error == OnError::Continue);
            }
        };
        for statement in statements {
            if !self.run_one(&statement)? && self.on_error == OnError::Stop {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Runs one statement or shell command; false when it failed.
    fn run_one(&mut self, text: &str) -> Result<bool> {
        // COPY to or from a file: the shell reads or writes it, as \copy.
        if let Some(rest) = copy_with_file(text) {
            let failed = std::mem::replace(&mut self.failed, false);
            self.shell_command(&format!("copy {rest}"))?;
            let ok = !self.failed;
            self.failed |= failed;
            return Ok(ok);
        }
        let started = Instant::now();
        let outcome = self.session.streaming(|session| session.execute(text));
        for notice in self.session.take_notices() {
            eprintln!("WARNING:  {notice}");
        }
        let ok = match outcome.map(|outputs| self.print(outputs)) {
            Ok(Ok(())) => true,
            Ok(Err(e)) => match e.downcast::<omen::Error>() {
                // Reading the rows failed.
                Ok(e) => {
                    self.report(&e);
                    false
                }
                Err(e) => return Err(e),
            },
            Err(e) => {
                self.report(&e);
                false
            }
        };
        let elapsed = started.elapsed();
        if self.timing {
            eprintln!("Time: {:.3} ms", elapsed.as_secs_f64() * 1000.0);
        }
        Ok(ok)
    }

    /// Prints statements' outputs, reading streamed rows as they are printed.
    fn print(&mut self, outputs: Vec<Output>) -> Result<()> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for output in outputs {
            match output {
                Output::Rows(rows) => {
                    let batches = rows.batches.into_iter().map(Ok);
                    output::write_rows(&mut out, &rows.schema, batches, self.format)?
                }
                Output::Stream(stream) => {
                    let session = &mut self.session;
                    let batches = std::iter::from_fn(|| session.next_batch(&stream).transpose());
                    output::write_rows(&mut out, stream.schema(), batches, self.format)?
                }
                command if self.format == Format::Table => writeln!(out, "{command}")?,
                _ => {}
            }
        }
        out.flush()?;
        Ok(())
    }

    fn report(&mut self, e: &omen::Error) {
        self.failed = true;
        eprintln!("ERROR:  {e}\nSQLSTATE: {}", e.sqlstate());
    }

    /// Reads statements from the terminal until `\q` or end of input.
    pub fn interactive(&mut self, history: Option<PathBuf>) -> Result<()> {
        let mut editor: Editor<SqlInput, DefaultHistory> = Editor::new()?;
        editor.set_helper(Some(SqlInput));
        if let Some(path) = &history {
            // A missing history file is the normal first run.
            let _ = editor.load_history(path);
        }
        eprintln!(
            "omen {} shell. End statements with ';'. \\? for help, \\q or Ctrl-D to quit.",
            env!("CARGO_PKG_VERSION")
        );
        loop {
            let prompt = if self.session.is_aborted() {
                "omen!> "
            } else if self.session.in_transaction() {
                "omen*> "
            } else {
                "omen> "
            };
            match editor.readline(prompt) {
                Ok(input) => {
                    let input = input.trim();
                    if input.is_empty() {
                        continue;
                    }
                    editor.add_history_entry(input)?;
                    if let Some(command) = input.strip_prefix('\\') {
                        if !self.shell_command(command)? {
                            break;
                        }
                        continue;
                    }
                    let on_error = std::mem::replace(&mut self.on_error, OnError::Continue);
                    self.run_script(input)?;
                    self.on_error = on_error;
                }
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(path) = &history {
            if let Err(e) = editor.save_history(path) {
                eprintln!("omen: could not save history to {}: {e}", path.display());
            }
        }
        Ok(())
    }

    /// Runs a backslash command; false for `\q`.
    fn shell_command(&mut self, command: &str) -> Result<bool> {
        let mut words = command.split_whitespace();
        match (words.next().unwrap_or(""), words.next()) {
            ("q", _) => return Ok(false),
            ("timing", _) => {
                self.timing = !self.timing;
                eprintln!("Timing is {}.", if self.timing { "on" } else { "off" });
            }
            ("dt", _) => {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                for table in self.db.catalog().tables() {
                    writeln!(out, "{}", table.name)?;
                }
            }
            ("d", Some(name)) => match self.db.catalog().table(&name.to_lowercase()) {
                Ok(table) => {
                    let key = table.primary_key_indices();
                    let stdout = std::io::stdout();
                    let mut out = stdout.lock();
                    writeln!(out, "Table \"{}\"", table.name)?;
                    for (i, column) in table.columns.iter().enumerate() {
                        let mut notes = Vec::new();
                        if let Some(p) = key.iter().position(|k| *k == i) {
                            notes.push(format!("primary key ({})", p + 1));
                        }
                        if !column.nullable {
                            notes.push("not null".into());
                        }
                        if let Some(default) = column.default_text() {
                            notes.push(format!("default {default}"));
                        }
                        writeln!(out, "  {} {} {}", column.name, column.data_type, notes.join(", "))?;
                    }
                }
                Err(e) => self.report(&e),
            },
            ("copy", Some(_)) => {
                let rest = command.trim_start().strip_prefix("copy").unwrap_or_default();
                match self.copy(rest) {
                    Ok(rows) => println!("COPY {rows}"),
                    Err(e) => {
                        self.failed = true;
                        match e.downcast_ref::<omen::Error>() {
                            Some(e) => eprintln!("ERROR:  {e}\nSQLSTATE: {}", e.sqlstate()),
                            None => eprintln!("ERROR:  {e:#}"),
                        }
                    }
                }
            }
            ("?", _) | ("help", _) => eprintln!(
                "\\q            quit\n\\dt           list tables\n\\d NAME       describe a table\n\\timing       show how long each statement takes\n\\copy ...     COPY between a table or query and a file, as psql's"
            ),
            (other, _) => eprintln!("invalid command \\{other}; try \\? for help"),
        }
        Ok(true)
    }
}

impl Shell {
    /// `\copy`: COPY between a table (or a query, for TO) and a file the
    /// shell reads or writes, with COPY's options. Returns the rows copied.
    fn copy(&mut self, rest: &str) -> Result<u64> {
        let mut statements = omen::engine::sql::parse(&format!("COPY {}", quote_file(rest)))?;
        let statement = match statements.len() {
            1 => statements.remove(0),
            _ => anyhow::bail!("\\copy takes one COPY: \\copy table FROM 'file' [WITH (...)]"),
        };
        let copy = copy::Copy::from_statement(&statement).expect("parsed from COPY text")?;
        if copy.file.is_none() {
            anyhow::bail!("\\copy names a file: \\copy table FROM 'file' or TO 'file'");
        }
        copy_file(&mut self.session, &copy)
    }
}

/// The arguments of a COPY statement that names a file, if `text` is one.
fn copy_with_file(text: &str) -> Option<&str> {
    let rest = text.trim_start();
    if !rest.get(..4)?.eq_ignore_ascii_case("copy") {
        return None;
    }
    let statements = omen::engine::sql::parse(text).ok()?;
    let [statement] = statements.as_slice() else {
        return None;
    };
    let copy = copy::Copy::from_statement(statement)?.ok()?;
    copy.file.as_ref()?;
    Some(rest[4..].trim().trim_end_matches(';'))
}

/// `\copy`'s arguments with the file name quoted, as psql lets it be
/// written bare: the word after the last FROM or TO.
fn quote_file(rest: &str) -> String {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let Some(at) = words
        .iter()
        .rposition(|w| w.eq_ignore_ascii_case("from") || w.eq_ignore_ascii_case("to"))
    else {
        return rest.to_string();
    };
    match words.get(at + 1) {
        Some(file)
            if !file.starts_with('\'')
                && !["stdin", "stdout", "program"].contains(&file.to_lowercase().as_str()) =>
        {
            let mut words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            words[at + 1] = format!("'{}'", file.replace('\'', "''"));
            words.join(" ")
        }
        _ => rest.to_string(),
    }
}

/// Line editing for SQL: input is complete at a closing semicolon, or at once
/// for a backslash command.
struct SqlInput;

impl Validator for SqlInput {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let input = ctx.input().trim();
        if input.starts_with('\\') || is_complete(input) {
            Ok(ValidationResult::Valid(None))
        } else {
            Ok(ValidationResult::Incomplete)
        }
    }
}

impl Completer for SqlInput {
    type Candidate = String;
}

impl Hinter for SqlInput {
    type Hint = String;
}

impl Highlighter for SqlInput {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}

impl Helper for SqlInput {}

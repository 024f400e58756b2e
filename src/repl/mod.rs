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

    /// Runs every statement of `text`; false when it stopped at an error.
    pub fn run_script(&mut self, text: &str) -> Result<bool> {
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
        let started = Instant::now();
        let outcome = self.session.execute(text);
        let elapsed = started.elapsed();
        for notice in self.session.take_notices() {
            eprintln!("WARNING:  {notice}");
        }
        let ok = match outcome {
            Ok(outputs) => {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                for output in outputs {
                    match output {
                        Output::Rows(rows) => output::write_rows(&mut out, &rows, self.format)?,
                        command if self.format == Format::Table => writeln!(out, "{command}")?,
                        _ => {}
                    }
                }
                out.flush()?;
                true
            }
            Err(e) => {
                self.report(&e);
                false
            }
        };
        if self.timing {
            eprintln!("Time: {:.3} ms", elapsed.as_secs_f64() * 1000.0);
        }
        Ok(ok)
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
            ("?", _) | ("help", _) => eprintln!(
                "\\q            quit\n\\dt           list tables\n\\d NAME       describe a table\n\\timing       show how long each statement takes"
            ),
            (other, _) => eprintln!("invalid command \\{other}; try \\? for help"),
        }
        Ok(true)
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

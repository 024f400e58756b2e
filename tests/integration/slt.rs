//! The SQL corpus: every `tests/slt/**/*.slt` file runs in-process against a
//! fresh database, one test per file. Expected results come from PostgreSQL
//! (`scripts/slt-record` writes them from a real server).

use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::DataType as ArrowType;
use libtest_mimic::{Failed, Trial};
use omen::engine::sql::format;
use omen::{Database, Options, Output, Session};
use sqllogictest::{DBOutput, DefaultColumnType};

/// One session on an in-memory database, as sqllogictest drives it.
pub struct OmenDb {
    session: Session,
}

impl OmenDb {
    pub fn new() -> OmenDb {
        let db = Database::open_in_memory(Options::default()).expect("in-memory database");
        OmenDb {
            session: db.session(),
        }
    }
}

impl sqllogictest::DB for OmenDb {
    type Error = omen::Error;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, omen::Error> {
        // Queries stream, as they do over the wire.
        let outputs = self.session.streaming(|s| s.execute(sql))?;
        let rows = match outputs.into_iter().last() {
            Some(Output::Stream(stream)) => {
                let mut batches = Vec::new();
                while let Some(batch) = self.session.next_batch(&stream)? {
                    batches.push(batch);
                }
                let schema = stream.schema().clone();
                Some(Output::Rows(omen::Rows {
                    schema,
                    batches,
                    command: None,
                }))
            }
            other => other,
        };
        Ok(match rows {
            Some(Output::Rows(rows)) => {
                let types = rows
                    .schema
                    .fields()
                    .iter()
                    .map(|f| column_type(f.data_type()))
                    .collect();
                let mut out = Vec::with_capacity(rows.len());
                for batch in &rows.batches {
                    for r in 0..batch.num_rows() {
                        out.push(
                            batch
                                .columns()
                                .iter()
                                .map(|c| match format::text(c.as_ref(), r) {
                                    None => "NULL".to_string(),
                                    Some(s) if s.is_empty() => "(empty)".to_string(),
                                    Some(s) => s,
                                })
                                .collect(),
                        );
                    }
                }
                DBOutput::Rows { types, rows: out }
            }
            Some(Output::Command { rows, .. }) => DBOutput::StatementComplete(rows.unwrap_or(0)),
            Some(Output::Stream(_)) | None => DBOutput::StatementComplete(0),
        })
    }

    fn engine_name(&self) -> &str {
        "omen"
    }

    fn error_sql_state(err: &omen::Error) -> Option<String> {
        Some(err.sqlstate().code().to_string())
    }
}

fn column_type(t: &ArrowType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() || matches!(t, ArrowType::Decimal128(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

/// One trial per .slt file.
pub fn trials() -> Vec<Trial> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .flat_map(|path| {
            let name = path
                .strip_prefix(&root)
                .expect("under the corpus root")
                .display()
                .to_string();
            let wire = path.clone();
            [
                Trial::test(format!("slt::{name}"), move || run_file(&path)),
                Trial::test(format!("slt_wire::{name}"), move || {
                    super::server::run_slt_over_wire(&wire)
                }),
            ]
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "slt") {
            files.push(path);
        }
    }
}

fn run_file(path: &Path) -> Result<(), Failed> {
    let mut runner = sqllogictest::Runner::new(|| async { Ok(OmenDb::new()) });
    runner
        .run_file(path)
        .map_err(|e| Failed::from(e.display(true).to_string()))
}

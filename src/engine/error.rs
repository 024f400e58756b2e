//! The engine's one error type.
//!
//! Every failure a user can see is an [`Error`] named by what went wrong in the
//! user's terms. Each knows its PostgreSQL SQLSTATE code (so the shell and the
//! server report the same code for the same mistake) and whether retrying the
//! transaction can help. Foreign errors are kept as sources, never flattened
//! into strings.

use std::fmt;

/// A five-character SQLSTATE code, as PostgreSQL defines them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState(&'static str);

impl SqlState {
    /// 22023: a value or argument is not acceptable.
    pub const INVALID_PARAMETER_VALUE: SqlState = SqlState("22023");
    /// 22P02: text that does not parse as the expected type.
    pub const INVALID_TEXT_REPRESENTATION: SqlState = SqlState("22P02");
    /// 22001: a string longer than its column allows.
    pub const STRING_DATA_RIGHT_TRUNCATION: SqlState = SqlState("22001");
    /// 22003: a number outside its type's range.
    pub const NUMERIC_VALUE_OUT_OF_RANGE: SqlState = SqlState("22003");
    /// 42804: a value of the wrong type.
    pub const DATATYPE_MISMATCH: SqlState = SqlState("42804");
    /// 42P01: no table by that name.
    pub const UNDEFINED_TABLE: SqlState = SqlState("42P01");
    /// 42703: no column by that name.
    pub const UNDEFINED_COLUMN: SqlState = SqlState("42703");
    /// 42P07: a table by that name exists already.
    pub const DUPLICATE_TABLE: SqlState = SqlState("42P07");
    /// 42701: a column by that name exists already.
    pub const DUPLICATE_COLUMN: SqlState = SqlState("42701");
    /// 42P16: a table definition that cannot be built (no primary key, ...).
    pub const INVALID_TABLE_DEFINITION: SqlState = SqlState("42P16");
    /// 0A000: a feature omen does not support.
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState("0A000");
    /// 23505: a second row with the same primary key.
    pub const UNIQUE_VIOLATION: SqlState = SqlState("23505");
    /// 23503: a row whose parent is missing, or a parent row still referenced.
    pub const FOREIGN_KEY_VIOLATION: SqlState = SqlState("23503");
    /// 42809: an object of the wrong kind for the statement.
    pub const WRONG_OBJECT_TYPE: SqlState = SqlState("42809");
    /// 42830: a foreign key whose referenced columns are no key of the parent.
    pub const INVALID_FOREIGN_KEY: SqlState = SqlState("42830");
    /// 23514: a row that fails a CHECK constraint.
    pub const CHECK_VIOLATION: SqlState = SqlState("23514");
    /// 23502: NULL in a NOT NULL column.
    pub const NOT_NULL_VIOLATION: SqlState = SqlState("23502");
    /// 40001: a concurrent transaction conflicted; retrying can succeed.
    pub const SERIALIZATION_FAILURE: SqlState = SqlState("40001");
    /// 25001: the statement is not allowed inside a transaction block.
    pub const ACTIVE_SQL_TRANSACTION: SqlState = SqlState("25001");
    /// 25P01: the statement needs a transaction block and there is none.
    pub const NO_ACTIVE_SQL_TRANSACTION: SqlState = SqlState("25P01");
    /// 25P02: an earlier statement failed; only ROLLBACK is accepted.
    pub const IN_FAILED_SQL_TRANSACTION: SqlState = SqlState("25P02");
    /// 3B001: ROLLBACK TO or RELEASE names no savepoint of the transaction.
    pub const INVALID_SAVEPOINT: SqlState = SqlState("3B001");
    /// 25006: a write where only reads are allowed.
    pub const READ_ONLY_SQL_TRANSACTION: SqlState = SqlState("25006");
    /// 42601: SQL that does not parse.
    pub const SYNTAX_ERROR: SqlState = SqlState("42601");
    /// 42000: SQL that parses but cannot be planned.
    pub const SYNTAX_ERROR_OR_ACCESS_RULE: SqlState = SqlState("42000");
    /// 42702: a column name that more than one table in scope has.
    pub const AMBIGUOUS_COLUMN: SqlState = SqlState("42702");
    /// 42883: no function or operator for these argument types.
    pub const UNDEFINED_FUNCTION: SqlState = SqlState("42883");
    /// 42803: a column outside GROUP BY used without an aggregate.
    pub const GROUPING_ERROR: SqlState = SqlState("42803");
    /// 42704: an unknown object such as a configuration parameter.
    pub const UNDEFINED_OBJECT: SqlState = SqlState("42704");
    pub const UNDEFINED_SCHEMA: SqlState = SqlState("3F000");
    /// 22012: division by zero.
    pub const DIVISION_BY_ZERO: SqlState = SqlState("22012");
    /// 22000: a value that an operation cannot accept.
    pub const DATA_EXCEPTION: SqlState = SqlState("22000");
    /// XX001: stored data that cannot be decoded.
    pub const DATA_CORRUPTED: SqlState = SqlState("XX001");
    /// 58030: the operating system or storage failed an I/O.
    pub const IO_ERROR: SqlState = SqlState("58030");
    /// 42501: the role lacks the privilege the statement needs.
    pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState("42501");
    /// 42710: an object (a role) by that name exists already.
    pub const DUPLICATE_OBJECT: SqlState = SqlState("42710");
    /// 28P01: wrong password, or no such role (the two are not told apart).
    pub const INVALID_PASSWORD: SqlState = SqlState("28P01");
    /// 22P04: COPY data that does not fit the table.
    pub const BAD_COPY_FILE_FORMAT: SqlState = SqlState("22P04");
    /// 08P01: a message the protocol does not allow here.
    pub const PROTOCOL_VIOLATION: SqlState = SqlState("08P01");
    /// 42P02: a `$n` without a parameter n.
    pub const UNDEFINED_PARAMETER: SqlState = SqlState("42P02");
    /// 22P03: a binary parameter that is not a value of its type.
    pub const INVALID_BINARY_REPRESENTATION: SqlState = SqlState("22P03");
    /// 22021: bytes that are not UTF-8.
    pub const CHARACTER_NOT_IN_REPERTOIRE: SqlState = SqlState("22021");
    /// 3D000: no database by that name.
    pub const INVALID_CATALOG_NAME: SqlState = SqlState("3D000");
    /// 55006: the object is in use (the current user cannot be dropped).
    pub const OBJECT_IN_USE: SqlState = SqlState("55006");
    /// 57014: the statement was cancelled.
    pub const QUERY_CANCELED: SqlState = SqlState("57014");
    /// 54000: a size or count over one of omen's limits.
    pub const PROGRAM_LIMIT_EXCEEDED: SqlState = SqlState("54000");
    /// 54001: a statement nested too deeply to plan.
    pub const STATEMENT_TOO_COMPLEX: SqlState = SqlState("54001");
    /// 53200: a statement needs more memory than it may use.
    pub const OUT_OF_MEMORY: SqlState = SqlState("53200");
    /// 22008: a date or time outside its type's range.
    pub const DATETIME_FIELD_OVERFLOW: SqlState = SqlState("22008");
    /// 22015: an interval outside its type's range.
    pub const INTERVAL_FIELD_OVERFLOW: SqlState = SqlState("22015");
    /// 55P03: a lock could not be taken in time.
    pub const LOCK_NOT_AVAILABLE: SqlState = SqlState("55P03");
    pub const INVALID_ROW_COUNT_IN_LIMIT: SqlState = SqlState("2201W");
    pub const DEPENDENT_OBJECTS_STILL_EXIST: SqlState = SqlState("2BP01");
    /// 54011: more columns than an index may have.
    pub const TOO_MANY_COLUMNS: SqlState = SqlState("54011");
    pub const SEQUENCE_GENERATOR_LIMIT_EXCEEDED: SqlState = SqlState("2200H");
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = SqlState("55000");
    /// 40P01: sessions waited on each other's locks.
    pub const DEADLOCK_DETECTED: SqlState = SqlState("40P01");
    /// 428C9: a value for a GENERATED ALWAYS column.
    pub const GENERATED_ALWAYS: SqlState = SqlState("428C9");
    /// 34000: no cursor by that name.
    pub const INVALID_CURSOR_NAME: SqlState = SqlState("34000");
    /// 42P03: a cursor by that name exists already.
    pub const DUPLICATE_CURSOR: SqlState = SqlState("42P03");
    /// 26000: no prepared statement by that name.
    pub const INVALID_SQL_STATEMENT_NAME: SqlState = SqlState("26000");
    /// 42P05: a prepared statement by that name exists already.
    pub const DUPLICATE_PREPARED_STATEMENT: SqlState = SqlState("42P05");
    /// 42P10: an ON CONFLICT target that names no unique constraint.
    pub const INVALID_COLUMN_REFERENCE: SqlState = SqlState("42P10");
    /// 21000: one statement would change a row twice.
    pub const CARDINALITY_VIOLATION: SqlState = SqlState("21000");
    /// XX000: a bug in omen.
    pub const INTERNAL_ERROR: SqlState = SqlState("XX000");

    /// The five-character code.
    pub fn code(&self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// An engine failure, named by its meaning to the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong: a bad value, a bad definition, a wrong type.
    #[error("{message}")]
    InvalidInput {
        /// The precise SQLSTATE (22023, 42804, 42P16, ...).
        code: SqlState,
        /// What is wrong, in the user's terms.
        message: String,
    },
    /// A named object (table, column, role) does not exist.
    #[error("{message}")]
    NotFound {
        /// 42P01 for tables, 42703 for columns, ...
        code: SqlState,
        /// Which object, and a close name when there is one.
        message: String,
    },
    /// A named object exists already.
    #[error("{message}")]
    AlreadyExists {
        /// 42P07 for tables, 42701 for columns, ...
        code: SqlState,
        /// Which object.
        message: String,
    },
    /// A write would break a constraint (primary key, NOT NULL).
    #[error("{message}")]
    ConstraintViolation {
        /// 23505, 23502, ...
        code: SqlState,
        /// Which constraint and which value.
        message: String,
    },
    /// A concurrent transaction committed first; running the transaction again can succeed.
    #[error("could not serialize access due to {reason}; retry the transaction")]
    SerializationConflict {
        /// What conflicted (a concurrent update, a read/write dependency, ...).
        reason: String,
    },
    /// The statement is not valid in the session's transaction state.
    #[error("{message}")]
    TransactionState {
        /// 25001, 25P01, 25P02, ...
        code: SqlState,
        /// Why the statement was refused.
        message: String,
    },
    /// A feature omen does not have.
    #[error("{0} is not supported")]
    Unsupported(String),
    /// A size or count a client asked for is past a limit (54000, 54001, 53200).
    #[error("{message}")]
    LimitExceeded {
        /// 54000 for sizes and counts, 54001 for nesting, 53200 for memory.
        code: SqlState,
        /// Which limit, and the setting that raises it where there is one.
        message: String,
    },
    /// The database or transaction accepts only reads.
    #[error("cannot write: {0}")]
    ReadOnly(String),
    /// Stored bytes that do not decode: a bug or damaged files.
    #[error("data corruption: {0}")]
    Corruption(String),
    /// The operating system or storage engine failed.
    #[error("I/O error: {context}: {source}")]
    Io {
        /// What omen was doing.
        context: String,
        /// The failure underneath.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A broken invariant inside omen.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The SQLSTATE code a client sees for this error.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            Error::InvalidInput { code, .. }
            | Error::NotFound { code, .. }
            | Error::AlreadyExists { code, .. }
            | Error::ConstraintViolation { code, .. }
            | Error::TransactionState { code, .. }
            | Error::LimitExceeded { code, .. } => *code,
            Error::SerializationConflict { .. } => SqlState::SERIALIZATION_FAILURE,
            Error::Unsupported(_) => SqlState::FEATURE_NOT_SUPPORTED,
            Error::ReadOnly(_) => SqlState::READ_ONLY_SQL_TRANSACTION,
            Error::Corruption(_) => SqlState::DATA_CORRUPTED,
            Error::Io { .. } => SqlState::IO_ERROR,
            Error::Internal(_) => SqlState::INTERNAL_ERROR,
        }
    }

    /// Whether running the same transaction again may succeed: a
    /// serialization failure (40001) or a deadlock (40P01).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::SerializationConflict { .. })
            || matches!(self, Error::TransactionState { code, .. } if *code == SqlState::DEADLOCK_DETECTED)
    }

    /// An [`Error::InvalidInput`] with the given code.
    pub fn invalid(code: SqlState, message: impl Into<String>) -> Error {
        Error::InvalidInput {
            code,
            message: message.into(),
        }
    }

    /// An [`Error::LimitExceeded`] with code 54000.
    pub fn limit(message: impl Into<String>) -> Error {
        Error::LimitExceeded {
            code: SqlState::PROGRAM_LIMIT_EXCEEDED,
            message: message.into(),
        }
    }

    /// An [`Error::Io`] that keeps `source` and says what omen was doing.
    pub fn io(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Io {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

impl From<rocksdb::Error> for Error {
    fn from(source: rocksdb::Error) -> Error {
        Error::io("RocksDB operation failed", source)
    }
}

/// What a panic said, for the log and the client.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

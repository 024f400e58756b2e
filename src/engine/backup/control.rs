//! The control socket: how `omen backup` reaches a database that another
//! process (a server, a shell) holds open.
//!
//! The process that opens a data directory listens on `DIR/omen.sock`, a Unix
//! socket only the directory's owner may use (mode 0600), for one JSON
//! request per connection; the answer is one JSON line. Only backups are
//! asked for this way.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BackupRequest, BackupSummary, Failure, FailureKind, Retention};
use crate::engine::Database;

/// The socket's name in the data directory.
pub const SOCKET: &str = "omen.sock";
/// The longest request read: a bound on what a client can make the holder buffer.
const MAX_REQUEST: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct Request {
    command: String,
    repository: PathBuf,
    keep: Option<usize>,
    keep_within_ms: Option<u64>,
    verify: bool,
}

#[derive(Serialize, Deserialize)]
enum Reply {
    #[serde(rename = "ok")]
    Ok(BackupSummary),
    #[serde(rename = "error")]
    Error { kind: String, message: String },
}

/// Listens on the socket while the database is open; dropping it stops.
pub struct Listener {
    path: PathBuf,
}

impl Listener {
    /// Listens on `dir/omen.sock` for `db`, or returns None when the socket
    /// cannot be made (a path too long for a Unix socket, a read-only
    /// directory): the database works on, unreachable from `omen backup`.
    pub fn start(db: &Database, dir: &Path) -> Option<Listener> {
        let path = dir.join(SOCKET);
        // Made under a private name, restricted, then renamed into place, so
        // no other user can connect in between.
        let fresh = dir.join(format!(".{SOCKET}.{}", std::process::id()));
        let _ = std::fs::remove_file(&fresh);
        let listener = UnixListener::bind(&fresh).ok()?;
        let placed = std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&fresh, &path));
        if placed.is_err() {
            let _ = std::fs::remove_file(&fresh);
            return None;
        }
        let weak = db.downgrade();
        std::thread::Builder::new()
            .name("omen-control".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    // The database closed (its last handle is gone): stop.
                    let Some(db) = weak.upgrade() else {
                        return;
                    };
                    let Ok(stream) = stream else {
                        continue;
                    };
                    let _ = std::thread::Builder::new()
                        .name("omen-control-request".into())
                        .spawn(move || serve(&db, stream));
                }
            })
            .ok()?;
        Some(Listener { path })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Wakes the accepting thread, which then finds the database gone.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(db: &Database, stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let read = BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line);
    let reply = match read
        .ok()
        .and_then(|_| serde_json::from_str::<Request>(&line).ok())
    {
        Some(request) if request.command == "backup" => {
            let backup = BackupRequest {
                repository: request.repository,
                retention: Retention {
                    keep: request.keep,
                    keep_within: request.keep_within_ms.map(Duration::from_millis),
                },
                verify: request.verify,
            };
            match db.backup(&backup, &|_, _| {}) {
                Ok(summary) => Reply::Ok(summary),
                Err(e) => Reply::Error {
                    kind: e.kind.name().into(),
                    message: e.message,
                },
            }
        }
        _ => Reply::Error {
            kind: FailureKind::Failed.name().into(),
            message: "the control socket received a request it does not know".into(),
        },
    };
    let mut text = serde_json::to_string(&reply).expect("a reply serialises");
    text.push('\n');
    let _ = (&stream).write_all(text.as_bytes());
}

/// Asks the process holding `dir` to take the backup `request`.
pub fn request_backup(dir: &Path, request: &BackupRequest) -> Result<BackupSummary, Failure> {
    let path = dir.join(SOCKET);
    let unreachable = |why: String| {
        Failure::new(
            FailureKind::Unreachable,
            format!(
                "the data directory {} is in use by another process, which does not answer on {} ({why})",
                dir.display(),
                path.display()
            ),
        )
    };
    let mut stream = UnixStream::connect(&path).map_err(|e| unreachable(e.to_string()))?;
    let wire = Request {
        command: "backup".into(),
        repository: request.repository.clone(),
        keep: request.retention.keep,
        keep_within_ms: request.retention.keep_within.map(|d| d.as_millis() as u64),
        verify: request.verify,
    };
    let mut text = serde_json::to_string(&wire).expect("a request serialises");
    text.push('\n');
    stream
        .write_all(text.as_bytes())
        .map_err(|e| unreachable(e.to_string()))?;
    let mut answer = String::new();
    BufReader::new(stream.take(1 << 20))
        .read_line(&mut answer)
        .map_err(|e| unreachable(e.to_string()))?;
    match serde_json::from_str::<Reply>(&answer) {
        Ok(Reply::Ok(summary)) => Ok(summary),
        Ok(Reply::Error { kind, message }) => {
            Err(Failure::new(FailureKind::from_name(&kind), message))
        }
        Err(_) => Err(unreachable(
            "it closed the connection without an answer".into(),
        )),
    }
}

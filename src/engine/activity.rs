//! What each session is doing, for `pg_stat_activity`, `pg_locks` and the
//! messages that name another session (a deadlock's, a lock timeout's).
//!
//! Each session owns one [`Backend`] record behind its own mutex, so
//! updating it at each statement contends with nothing but a reader of
//! `pg_stat_activity`; the registry's mutex is taken only when a session
//! begins or ends, and by those readers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::locks::SessionId;

/// One session, as `pg_stat_activity` shows it.
#[derive(Clone, Debug)]
pub struct Backend {
    /// The process id clients know the session by: the server's, or the
    /// session id in the shell.
    pub pid: i32,
    pub user: String,
    pub application_name: String,
    pub backend_start: SystemTime,
    /// When the open transaction began.
    pub xact_start: Option<SystemTime>,
    /// When the running (or last) statement began.
    pub query_start: Option<SystemTime>,
    /// When `state` last changed.
    pub state_change: SystemTime,
    /// active, idle, idle in transaction, idle in transaction (aborted).
    pub state: &'static str,
    /// The running (or last) statement's text.
    pub query: String,
}

/// Every session of a database.
#[derive(Default)]
pub struct Activity {
    sessions: Mutex<BTreeMap<SessionId, Arc<Mutex<Backend>>>>,
}

impl Activity {
    /// Registers session `id`; its record is the caller's to update.
    pub fn register(&self, id: SessionId) -> Arc<Mutex<Backend>> {
        let now = SystemTime::now();
        let backend = Arc::new(Mutex::new(Backend {
            pid: i32::try_from(id).unwrap_or(i32::MAX),
            user: "omen".into(),
            application_name: String::new(),
            backend_start: now,
            xact_start: None,
            query_start: None,
            state_change: now,
            state: "idle",
            query: String::new(),
        }));
        self.sessions.lock().insert(id, backend.clone());
        backend
    }

    /// Forgets session `id` (it ended).
    pub fn remove(&self, id: SessionId) {
        self.sessions.lock().remove(&id);
    }

    /// Every session, by id.
    pub fn all(&self) -> Vec<(SessionId, Backend)> {
        let sessions: Vec<_> = self
            .sessions
            .lock()
            .iter()
            .map(|(id, b)| (*id, b.clone()))
            .collect();
        sessions
            .into_iter()
            .map(|(id, b)| (id, b.lock().clone()))
            .collect()
    }

    /// The process id of session `id`, if it is still there.
    pub fn pid(&self, id: SessionId) -> Option<i32> {
        let backend = self.sessions.lock().get(&id).cloned();
        backend.map(|b| b.lock().pid)
    }

    /// The session whose process id is `pid`.
    pub fn session_of(&self, pid: i32) -> Option<SessionId> {
        self.all()
            .into_iter()
            .find(|(_, b)| b.pid == pid)
            .map(|(id, _)| id)
    }

    /// How messages name session `id`: "process 1234", as PostgreSQL's do.
    pub fn describe(&self, id: SessionId) -> String {
        match self.pid(id) {
            Some(pid) => format!("process {pid}"),
            None => format!("session {id}"),
        }
    }
}

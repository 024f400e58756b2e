//! Cancelling a running statement from another thread (PostgreSQL's cancel
//! request) or after statement_timeout. A statement checks for it while DataFusion runs its query:
//! the query's future is dropped, which stops its execution, and the
//! statement fails with 57014.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::error::{Error, SqlState};

/// A session's cancel switch; clones share it.
#[derive(Clone, Default)]
pub struct Canceller {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    requested: AtomicBool,
    notify: Notify,
    /// statement_timeout in milliseconds; 0 for none.
    timeout_ms: AtomicU64,
    /// When the running statement started, in milliseconds since the epoch.
    started_ms: AtomicU64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Canceller {
    /// Cancels the statement the session is running, if any.
    pub fn cancel(&self) {
        self.inner.requested.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Sets the session's statement_timeout (0 for none).
    pub(super) fn set_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.inner.timeout_ms.store(ms, Ordering::SeqCst);
    }

    /// Forgets a cancel that arrived before the statement started, and
    /// starts the statement's clock.
    pub(super) fn reset(&self) {
        self.inner.requested.store(false, Ordering::SeqCst);
        self.inner.started_ms.store(now_ms(), Ordering::SeqCst);
    }

    /// For work that blocks a thread (a lock wait) and so cannot be dropped
    /// by [`guard`](Canceller::guard): the error to stop with once the
    /// statement is cancelled or past its timeout.
    pub(super) fn interrupted(&self) -> Option<Error> {
        if self.inner.requested.load(Ordering::SeqCst) {
            return Some(Error::invalid(
                SqlState::QUERY_CANCELED,
                "canceling statement due to user request",
            ));
        }
        let timeout = self.inner.timeout_ms.load(Ordering::SeqCst);
        let started = self.inner.started_ms.load(Ordering::SeqCst);
        (timeout > 0 && now_ms().saturating_sub(started) >= timeout).then(|| {
            Error::invalid(
                SqlState::QUERY_CANCELED,
                "canceling statement due to statement timeout",
            )
        })
    }

    /// Completes when the statement is cancelled.
    pub(super) async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.inner.requested.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Runs `work` unless and until the statement is cancelled or runs
    /// past the statement timeout.
    pub(super) async fn guard<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let timeout_ms = self.inner.timeout_ms.load(Ordering::SeqCst);
        let timeout = async {
            if timeout_ms == 0 {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(timeout_ms)).await;
        };
        tokio::select! {
            result = work => result,
            () = self.cancelled() => Err(Error::invalid(
                SqlState::QUERY_CANCELED,
                "canceling statement due to user request",
            )),
            () = timeout => Err(Error::invalid(
                SqlState::QUERY_CANCELED,
                "canceling statement due to statement timeout",
            )),
        }
    }
}

/// The other sessions of a server, as `pg_backend_pid()` and
/// `pg_cancel_backend(pid)` reach them. The shell has none.
pub trait Backends: Send + Sync {
    /// This session's process id.
    fn pid(&self) -> i32;

    /// Cancels the statement session `pid` is running, on behalf of role
    /// `user`: false if there is no such session, 42501 if `user` may not
    /// (only superusers may cancel another role's statements).
    fn cancel(&self, pid: i32, user: &str) -> Result<bool, Error>;
}

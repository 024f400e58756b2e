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

    /// Forgets a cancel that arrived before the statement started.
    pub(super) fn reset(&self) {
        self.inner.requested.store(false, Ordering::SeqCst);
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

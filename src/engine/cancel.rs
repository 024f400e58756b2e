//! Cancelling a running statement from another thread (PostgreSQL's cancel
//! request). A statement checks for it while DataFusion runs its query:
//! the query's future is dropped, which stops its execution, and the
//! statement fails with 57014.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
}

impl Canceller {
    /// Cancels the statement the session is running, if any.
    pub fn cancel(&self) {
        self.inner.requested.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
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

    /// Runs `work` unless and until the statement is cancelled.
    pub(super) async fn guard<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::select! {
            result = work => result,
            () = self.cancelled() => Err(Error::invalid(
                SqlState::QUERY_CANCELED,
                "canceling statement due to user request",
            )),
        }
    }
}

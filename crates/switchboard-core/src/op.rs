//! [`Op`]: what a membership operation returns. The in-memory service answers at once
//! ([`Op::Ready`], no allocation, no task switch); a service that crosses the network
//! answers later ([`Op::Pending`]). Either way the caller just `.await`s it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The result of a membership operation, now or later.
pub enum Op<'a, T> {
    /// Already done (taken by the first poll).
    Ready(Option<T>),
    /// Still running.
    Pending(Pin<Box<dyn Future<Output = T> + Send + 'a>>),
}

impl<'a, T> Op<'a, T> {
    /// An operation that is already done.
    pub fn ready(value: T) -> Self {
        Self::Ready(Some(value))
    }

    /// An operation still running.
    pub fn pending(fut: impl Future<Output = T> + Send + 'a) -> Self {
        Self::Pending(Box::pin(fut))
    }

    /// The value, if the operation is already done (and not yet taken).
    pub fn now(self) -> Result<T, Self> {
        match self {
            Self::Ready(Some(v)) => Ok(v),
            other => Err(other),
        }
    }
}

// `Op` never pins `T` in place: it moves it out whole.
impl<T> Unpin for Op<'_, T> {}

impl<T> Future for Op<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Self::Ready(v) => {
                Poll::Ready(v.take().expect("an Op is not polled after it completed"))
            }
            Self::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

impl<T> std::fmt::Debug for Op<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ready(_) => "Op::Ready",
            Self::Pending(_) => "Op::Pending",
        })
    }
}

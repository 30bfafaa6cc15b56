//! One way to call Redis: every request under [`OP_TIMEOUT`], its failure a [`StoreError`].
//! What a client is told of a failure is one of a few stable texts; the Redis error itself
//! (which may name scripts, keys or commands) is logged, never sent.

use std::fmt;
use std::future::Future;

use switchboard_core::{CodeError, JoinError, RelayError};

use super::OP_TIMEOUT;

/// Why a request to Redis failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// Not connected (Redis down, or the link reconnecting).
    NotConnected,
    /// The node is shutting down.
    Stopped,
    /// No answer within [`OP_TIMEOUT`].
    Timeout,
    /// Redis answered with an error (logged where it happened).
    Failed,
}

impl fmt::Display for StoreError {
    /// The text a client sees (after its dialect's `unavailable` prefix).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotConnected => "cluster store unreachable",
            Self::Stopped => "cluster store unreachable: this node is stopping",
            Self::Timeout => "cluster store did not answer in time",
            Self::Failed => "cluster store error",
        })
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for JoinError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<StoreError> for RelayError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<StoreError> for CodeError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// Runs one Redis request (a command, a script, a pipeline) under [`OP_TIMEOUT`]. `what`
/// names it in the log when Redis answers with an error.
pub(crate) async fn call<T>(
    what: &'static str,
    request: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OP_TIMEOUT, request).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(what, &e)),
        Err(_) => Err(StoreError::Timeout),
    }
}

/// Logs a Redis error and types it.
pub(crate) fn failed(what: &'static str, e: &dyn fmt::Display) -> StoreError {
    tracing::warn!(request = what, error = %e, "cluster: Redis request failed");
    StoreError::Failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_answers_times_out() {
        let never = std::future::pending::<redis::RedisResult<()>>();
        assert!(matches!(
            call("PING", never).await,
            Err(StoreError::Timeout)
        ));
    }

    #[tokio::test]
    async fn a_redis_error_reaches_clients_as_a_stable_text_only() {
        let refused = async {
            Err::<(), _>(redis::RedisError::from((
                redis::ErrorKind::Extension,
                "command not allowed",
                "script: a13714c5..., on @user_script:9".to_owned(),
            )))
        };
        let e = call("EVALSHA join", refused).await.unwrap_err();
        let told = JoinError::from(e).to_string();
        assert!(told.ends_with("cluster store error"), "{told}");
        assert!(
            !told.contains("script") && !told.contains("allowed"),
            "{told}"
        );
    }

    #[tokio::test]
    async fn an_answer_passes_through() {
        assert_eq!(call("GET", async { Ok(7) }).await.unwrap(), 7);
    }
}

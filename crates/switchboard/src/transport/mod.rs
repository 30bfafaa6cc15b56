//! Transports: the only code that touches sockets. [`ws`] drives a WebSocket connection for
//! any dialect codec; [`socketio`] wires socketioxide's sockets to the same command layer.

pub mod socketio;
pub mod ws;

/// A message that makes its connection's task panic, in debug builds only: the test that
/// proves a panic ends one connection and nothing else sends it. Release builds do not
/// know it.
#[cfg(debug_assertions)]
pub const TEST_PANIC: &[u8] = b"__switchboard_test_panic__";

/// Keeps a gauge of open connections right however a connection's task ends (a panic
/// included): incremented when made, decremented when dropped.
pub struct Open(prometheus_client::metrics::gauge::Gauge);

impl Open {
    /// Counts one more open connection in `gauge`.
    pub fn new(gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

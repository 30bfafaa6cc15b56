//! Transports: the only code that touches sockets. [`ws`] drives a WebSocket connection for
//! any dialect codec; [`socketio`] wires socketioxide's sockets to the same command layer.

pub mod socketio;
pub mod ws;

//! Transports: the only code that touches sockets. [`ws`] drives a WebSocket connection for
//! any [`Session`](crate::protocol::Session); Socket.io brings its own transport through
//! socketioxide.

pub mod ws;

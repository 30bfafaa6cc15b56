//! Identifier newtypes. Peer and room ids are client-chosen strings (cheap to clone, shared
//! by every event that names them); connection ids are server-assigned and never reused.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A peer's public id within a room, as its dialect names it (OctateCode `userId`,
/// Socket.io `userId`, rendezvous `peerId`, nt side `A`/`B`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(Arc<str>);

/// A room's id (OctateCode `roomId`, rendezvous `room`, nt `appID`, y-webrtc topic).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Arc<str>);

macro_rules! string_id {
    ($ty:ident) => {
        impl $ty {
            /// Wraps a string as an id.
            pub fn new(s: &str) -> Self {
                Self(Arc::from(s))
            }
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), &*self.0)
            }
        }
        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl From<&str> for $ty {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }
        impl From<String> for $ty {
            fn from(s: String) -> Self {
                Self(Arc::from(s))
            }
        }
    };
}
string_id!(PeerId);
string_id!(RoomId);

/// A server-assigned connection id, unique for the life of the process.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// Allocates the next connection id.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
    /// The raw number, for logs.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Which wire dialect a peer speaks. The core never interprets it: it only uses it to key
/// an [`Envelope`](crate::Envelope)'s encoding cache and hands it back to adapters so they
/// can translate payloads that another dialect produced.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DialectTag(pub u8);

//! Cluster mode: the [`MembershipService`] and [`CodeBook`] on Redis (`REDIS_URL`), so that
//! any number of nodes behind a plain load balancer serve the same rooms.
//!
//! # Design
//!
//! Each node is the truth for its own sockets; Redis is the truth for who is in which room.
//! A node keeps, for each room where it holds members, its local members in the in-memory
//! [`Registry`] (as on one node) and a *view* of the room's members held by other nodes.
//! Joins and leaves are Lua scripts ([`scripts`]) that check (capacity, peer-id
//! uniqueness, nt sides), write and announce in one step. Signals travel in one hop: to
//! the recipient's node inbox (targeted) or the room's channel (room-wide); a room with no
//! member elsewhere never touches Redis for a relay.
//!
//! Each process is an *instance* `<NODE_ID>#<random>`: a restarted node is a new instance.
//!
//! # Keys and channels (prefix `sb:`; `{room}` is the Redis Cluster hash tag)
//!
//! | Key / channel | Type | What |
//! |---|---|---|
//! | `sb:{room}:meta` | hash | `name`, `host`, `host_name`, `attrs` (JSON), `cap`, `grace` (ms, -1 default), `idle`, `created`, `act`, `paired`, `flowed`; expires after the empty grace once the room is empty |
//! | `sb:{room}:m` | hash | peer id → member record `{"u":uid,"o":instance,"n":name,"h":host,"t":joined ms,"d":dialect}`; `uid` = `<instance>/<connection>` |
//! | `sb:{room}:seq` | counter | the room's event sequence (every join and leave), kept a day |
//! | `sb:{room}:mbseq`, `sb:{room}:mb:<peer>` | hash, list | nt mailboxes: next sequence per recipient, items `"<seq>\n<payload>"`, bounded as on one node (256 items per recipient, `MAILBOX_MAX_BYTES` per room: `sb:{room}:mbbytes` counts them) |
//! | `sb:{room}:ev` | channel | the room's events, subscribed by every node holding members there (and for `LINGER` after its last one left) |
//! | `sb:inbox:<instance>` | channel | targeted signals for members of that instance |
//! | `sb:lease:<instance>` | string | the instance's lease (`CLUSTER_LEASE`, renewed every third of it) |
//! | `sb:nodes` | set | instances that have registered |
//! | `sb:node:<instance>:peers` | set | `[room, peer, uid]` of each member the instance holds (for reaping) |
//! | `sb:reap:<instance>` | string | the lock a survivor holds while reaping a dead instance |
//! | `sb:rooms` | sorted set | room ids by creation time (the listings' index; pruned every 30 s by one node holding `sb:prune`) |
//! | `sb:{codes}:NNNN` | string | a rendezvous code: `"<appID>\n<expires ms>"`, expiring with it |
//!
//! # Messages
//!
//! One JSON header line, `\n`, then the payload bytes as the sender's dialect produced them
//! (see [`wire`]): `{"t":"s","o":instance,"r":room,"f":from,"to"?:peer,"k":kind,"s"?:mailbox
//! seq,"d":dialect,"a":audience}` for a signal; `{"t":"j","o","r","q":seq,"p":peer,"m":record}`
//! for a join; `{"t":"l","o","r","q","p","u":uid}` for a leave; `{"t":"c","r"}` for a room
//! deleted; `{"t":"u","o","r","p":sender,"u":sender uid,"x":[peers]}` for a signal some
//! recipients' node could not deliver (to the sender's inbox). Kinds: `o` offer, `a` answer, `c` candidate, `p` presence, `u` cursor, `g`
//! generic, `b` publish, `m` mailbox, anything else a named kind.
//!
//! # Order and delivery
//!
//! Every node publishes on one connection, from one queue (one task batches what waits:
//! a run of messages for one channel goes out as one publish, in order) and reads every
//! channel on one subscriber connection; Redis delivers one subscriber's messages in publish
//! order, and a connection's commands enter the queue one at a time, so a sender's signals
//! reach each recipient in order across nodes. A relay does not wait for its publish (that
//! would cost every sender a Redis round trip per signal): a publish that fails, or reaches
//! fewer nodes than the view says hold recipients, is reported to the sender afterwards as
//! the same `Unavailable` error its dialect gives a refused relay, never a silent drop. A
//! sender whose signals wait unpublished past a bound waits for its own publish (see
//! [`Inner::publish_signal`]). A recipient that cannot take a signal from another node is
//! reported back to the sender's node (`u` messages), so the sender hears `undelivered` as on
//! one node. A join closes its room's *gate* ([`gate`]) from its script to its local seat, so
//! the room's remote events are applied either before the joiner is in (and reflected in its
//! `Joined`) or after (and delivered to it), while other rooms' events go on; membership
//! events carry the room sequence, and events already reflected in a snapshot are skipped.
//!
//! # Failures
//!
//! - A node whose lease lapses (killed) is reaped by a survivor: each of its members leaves
//!   (the rooms hear `peer-left`), and every node drops them from its views.
//! - Redis restarts (empty): every node resubscribes, re-registers its members (idempotent:
//!   a member already known is not announced again) and, a lease later, drops from its views
//!   the remote members nobody re-registered.
//! - A node cut off for longer than its lease closes its peers when Redis answers again and
//!   its lease is gone (`ClusterLost`, close 1001), or after `CLUSTER_FENCE_TIMEOUT` of
//!   silence; a node that learns one of its members was reaped closes that member.
//! - While Redis is unreachable: local rooms work, joins and cross-node signals are refused
//!   with errors, `/readyz` is 503.

pub mod codes;
mod gate;
mod join;
mod link;
mod publisher;
mod reaper;
mod relay;
mod scripts;
mod service;
mod store;
mod subscriber;
#[cfg(test)]
mod tests;
mod view;
pub mod wire;
mod writer;

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use switchboard_core::{
    Backplane, CloseReason, CreateOptions, CreationGate, Delivery, DialectTag, Envelope, Event,
    FirstFlow, JoinError, JoinMode, JoinRequest, MemberSummary, MembershipService, Mirror, Op,
    PeerId, Registry, RegistryStats, RelayError, RoomId, RoomSnapshot, Seat, SeatKey, SeatOwner,
    Signal, SignalKind, SweepPolicy, SweepReport, Target, unix_millis,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::gate::RoomGate;
use self::join::{Joined, json_str, push_create_args};
use self::publisher::{Publish, Then};
use self::relay::{Unreached, reached};
use self::scripts::Scripts;
use self::service::RoomData;
use self::store::StoreError;
use self::view::{View, remote_of};
use self::wire::{Record, RoomKeys};

/// How long one Redis request may take before it counts as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a room's channel stays subscribed after its last local member left.
const LINGER: Duration = Duration::from_secs(2);
/// Bytes of relayed signals that may wait for the publisher with nobody waiting on them
/// (see [`Inner::publish_signal`]); past it, a sender waits for its own publish.
const UNAWAITED_MAX: usize = 8 << 20;

/// What the cluster needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `REDIS_URL`.
    pub url: String,
    /// `NODE_ID`.
    pub node_id: String,
    /// `CLUSTER_LEASE`.
    pub lease: Duration,
    /// `CLUSTER_FENCE_TIMEOUT`.
    pub fence_timeout: Duration,
    /// `EMPTY_ROOM_GRACE`.
    pub empty_grace: Duration,
    /// `UNJOINED_ROOM_TTL`.
    pub unjoined_ttl: Duration,
    /// `MAX_ROOMS` (checked before a room is created: cluster-wide, best effort).
    pub max_rooms: usize,
    /// `MAX_PEERS_PER_ROOM` (atomic, in the join script).
    pub max_peers_per_room: usize,
    /// Token holders join secured rooms only (production; see `Limits::separate_secured`).
    pub separate_secured: bool,
}

/// The Redis membership service. Clone-cheap.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("instance", &self.inner.inst)
            .finish_non_exhaustive()
    }
}

/// A member this node holds, as Redis knows it (for re-registration).
#[derive(Debug, Clone)]
struct Local {
    uid: String,
    record: String,
    create: CreateOptions,
    /// Its seat here (to tell it of signals another node could not deliver).
    key: SeatKey,
}

#[derive(Debug, Default)]
struct State {
    views: HashMap<RoomId, View>,
    locals: HashMap<RoomId, HashMap<PeerId, Local>>,
    /// Local members (and joins in progress) per room: the room's channel is subscribed
    /// while this is above zero.
    subs: HashMap<RoomId, usize>,
    /// Rooms whose last local member left, and since when: their channel stays subscribed
    /// for [`LINGER`], so that a peer that comes back (a reconnect, a page reload) does not
    /// cost two more round trips. Emptied whenever the subscriber connection is replaced.
    linger: HashMap<RoomId, std::time::Instant>,
}

/// What the link task is asked to do with the subscriber connection.
#[derive(Debug)]
enum LinkCmd {
    Subscribe(String, oneshot::Sender<bool>),
    /// A room's channel, unless the room is held again by then.
    Unsubscribe(RoomId),
}

/// Writes that may wait (leaves), done in order by the writer task.
#[derive(Debug)]
enum Job {
    Leave {
        room: RoomId,
        peer: PeerId,
        uid: String,
    },
    Barrier(oneshot::Sender<()>),
}

pub(crate) struct Inner {
    settings: Settings,
    inst: Arc<str>,
    local: Backplane,
    gate: Arc<dyn CreationGate>,
    client: redis::Client,
    conn: RwLock<Option<MultiplexedConnection>>,
    up: AtomicBool,
    state: Mutex<State>,
    /// Shared by the subscriber while it applies messages and by joins; taken exclusively
    /// while the views are rebuilt from Redis (a resync), which nothing may interleave with.
    apply: tokio::sync::RwLock<()>,
    /// The rooms with a join between its script and its local seat ([`gate`]); the
    /// subscriber holds this lock while it applies one message.
    gates: Mutex<gate::RoomGates>,
    /// What this instance's own signals start with ([`wire::own_signal_prefix`]).
    own_signal: Vec<u8>,
    link_tx: mpsc::UnboundedSender<LinkCmd>,
    writer_tx: mpsc::UnboundedSender<Job>,
    pub_tx: mpsc::UnboundedSender<Publish>,
    /// Bytes of [`Then::Check`] messages not yet published.
    unawaited: AtomicUsize,
    scripts: Scripts,
    stop: CancellationToken,
}

impl Cluster {
    /// Starts cluster mode: the link to Redis (connected in the background; `is_ready` is
    /// false until it is), the lease, the reaper and the writer.
    ///
    /// # Errors
    /// When `REDIS_URL` cannot be parsed.
    pub fn start(
        settings: Settings,
        local: Registry,
        gate: Arc<dyn CreationGate>,
    ) -> Result<Self, redis::RedisError> {
        let (inner, queues) = Inner::new(settings, local, gate)?;
        tokio::spawn(link::run(inner.clone(), queues.link));
        tokio::spawn(writer::writer(inner.clone(), queues.writer));
        tokio::spawn(publisher::publisher(inner.clone(), queues.publisher));
        tracing::info!(instance = %inner.inst, "cluster mode: connecting to Redis");
        Ok(Self { inner })
    }

    /// This process's instance id (`<NODE_ID>#<random>`).
    pub fn instance(&self) -> &str {
        &self.inner.inst
    }

    /// The rendezvous codes, kept in Redis.
    pub fn codes(&self) -> codes::RedisCodes {
        codes::RedisCodes::new(self.inner.clone())
    }
}

/// The receiving ends of the queues the node's tasks serve.
struct Queues {
    link: mpsc::UnboundedReceiver<LinkCmd>,
    writer: mpsc::UnboundedReceiver<Job>,
    publisher: mpsc::UnboundedReceiver<Publish>,
}

impl Inner {
    /// The node's state, not yet connected, and the queues its tasks will serve (the unit
    /// tests serve them themselves).
    fn new(
        settings: Settings,
        local: Registry,
        gate: Arc<dyn CreationGate>,
    ) -> Result<(Arc<Self>, Queues), redis::RedisError> {
        let client = redis::Client::open(settings.url.as_str())?;
        let inst: Arc<str> = Arc::from(format!(
            "{}#{:08x}",
            settings.node_id,
            rand::random::<u32>()
        ));
        let (link_tx, link_rx) = mpsc::unbounded_channel();
        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let (pub_tx, pub_rx) = mpsc::unbounded_channel();
        let own_signal = wire::own_signal_prefix(&inst);
        let inner = Arc::new(Inner {
            settings,
            inst,
            local: Backplane::new(local),
            gate,
            client,
            conn: RwLock::new(None),
            up: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            apply: tokio::sync::RwLock::new(()),
            gates: Mutex::new(gate::RoomGates::default()),
            own_signal,
            link_tx,
            writer_tx,
            pub_tx,
            unawaited: AtomicUsize::new(0),
            scripts: Scripts::default(),
            stop: CancellationToken::new(),
        });
        let queues = Queues {
            link: link_rx,
            writer: writer_rx,
            publisher: pub_rx,
        };
        Ok((inner, queues))
    }
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The room gates; held while a message is applied. Lock order: gates, then state.
    pub(crate) fn gates(&self) -> MutexGuard<'_, gate::RoomGates> {
        self.gates.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The command connection, when Redis is reachable.
    pub(crate) fn conn(&self) -> Result<MultiplexedConnection, StoreError> {
        if !self.is_up() {
            return Err(StoreError::NotConnected);
        }
        self.conn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::NotConnected)
    }

    pub(crate) fn uid(&self, conn: switchboard_core::ConnId) -> String {
        format!("{}/{}", self.inst, conn.get())
    }

    pub(crate) fn local_count(&self, room: &RoomId) -> usize {
        self.local.member_count(room)
    }
}

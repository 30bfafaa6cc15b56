//! One benchmark peer's life on the wire: connect and join with a timeout, read frames,
//! leave and close. Shared by all scenarios, for every dialect.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::dialect::{Dialect, JoinStep, PeerSpec};
use crate::net::{Target, Ws};

/// Frames the server may send before it acknowledges a join (bounds the join loop).
const MAX_FRAMES_BEFORE_ACK: usize = 1_000;

/// Frames read while closing, at most (bounds the close loop).
const MAX_FRAMES_WHILE_CLOSING: usize = 10_000;

/// Everything a scenario's tasks share.
pub struct Ctx {
    pub target: Target,
    /// Where the second peer of each pair connects (`--peer-url`); `target` when unset.
    pub peer_target: Option<Target>,
    pub dialect: Arc<dyn Dialect>,
    pub join_timeout: Duration,
    /// Fired at the duration limit or on Ctrl-C: every task stops what it is doing.
    pub cancel: CancellationToken,
    /// Prefix of room and peer ids, unique per run, so runs never collide on a server.
    pub prefix: String,
    pub counters: Counters,
    /// The server's name of each room made over HTTP, by the scenario's room name (only for
    /// a dialect that [needs rooms created](Dialect::needs_room_created)).
    pub rooms: Mutex<HashMap<String, String>>,
}

/// Live counts for the progress line.
#[derive(Debug, Default)]
pub struct Counters {
    pub joined: AtomicU64,
    pub failed: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub done: AtomicU64,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A peer that the server has acknowledged.
pub struct Joined {
    pub ws: Ws,
    pub spec: PeerSpec,
    /// Our id as the server knows it (differs from `spec.id` where the server assigns ids).
    pub self_id: String,
    /// From the start of the TCP connect to the acknowledgement.
    pub latency: Duration,
}

/// The text of a data frame, if it is one.
pub fn text_of(msg: &Message) -> Option<&str> {
    match msg {
        Message::Text(t) => Some(t.as_str()),
        Message::Binary(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

impl Ctx {
    /// Connects and joins `spec`'s room, within the join timeout.
    ///
    /// # Errors
    /// Connect or handshake failure, a refusal by the server, a close before the
    /// acknowledgement, the join timeout, or cancellation.
    pub async fn join(&self, spec: PeerSpec) -> Result<Joined> {
        self.join_at(&self.target, spec).await
    }

    /// [`join`](Self::join) through `--peer-url` when given (the second peer of a pair).
    pub async fn join_second(&self, spec: PeerSpec) -> Result<Joined> {
        self.join_at(self.peer_target.as_ref().unwrap_or(&self.target), spec)
            .await
    }

    async fn join_at(&self, target: &Target, mut spec: PeerSpec) -> Result<Joined> {
        if self.dialect.needs_room_created() {
            spec.room = self.server_room(target, &spec).await?;
        }
        let start = Instant::now();
        let work = async {
            let url = self.dialect.url(target.url(), &spec.room);
            let mut ws = target.connect(&url).await?;
            for frame in self.dialect.hello(&spec) {
                ws.send(Message::text(frame))
                    .await
                    .context("sending hello")?;
            }
            for _ in 0..MAX_FRAMES_BEFORE_ACK {
                let msg = match ws.next().await {
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => return Err(anyhow!("{e}").context("reading join reply")),
                    None => bail!("connection closed before the join was acknowledged"),
                };
                if let Message::Close(frame) = &msg {
                    bail!("server closed the connection while joining: {frame:?}");
                }
                let Some(text) = text_of(&msg) else { continue };
                match self.dialect.on_join_frame(&spec, text)? {
                    JoinStep::Continue(frames) => {
                        for frame in frames {
                            ws.send(Message::text(frame))
                                .await
                                .context("sending join")?;
                        }
                    }
                    JoinStep::Joined { self_id } => return Ok((ws, self_id)),
                }
            }
            bail!("no join acknowledgement within {MAX_FRAMES_BEFORE_ACK} frames")
        };
        let (ws, self_id) = tokio::select! {
            () = self.cancel.cancelled() => bail!("cancelled"),
            r = tokio::time::timeout(self.join_timeout, work) => r
                .map_err(|_| anyhow!("join timed out after {:?}", self.join_timeout))??,
        };
        Ok(Joined {
            ws,
            spec,
            self_id,
            latency: start.elapsed(),
        })
    }

    /// The server's name for `spec`'s room: made with `POST /api/rooms` on `target` when
    /// `spec` creates the room (within the join timeout; not part of the join latency),
    /// else the one made earlier.
    async fn server_room(&self, target: &Target, spec: &PeerSpec) -> Result<String> {
        if !spec.creates_room {
            let rooms = self.rooms.lock().expect("room map never poisoned");
            return rooms.get(&spec.room).cloned().with_context(|| {
                format!("room {} was not created before its peers joined", spec.room)
            });
        }
        let post = async {
            let (status, body) = target.http_post("/api/rooms").await?;
            anyhow::ensure!(status == 200, "POST /api/rooms: HTTP {status}: {body}");
            #[derive(serde::Deserialize)]
            struct Created {
                #[serde(rename = "roomId")]
                room: String,
            }
            let created: Created = serde_json::from_str(&body)
                .with_context(|| format!("POST /api/rooms answered {body:?}"))?;
            Ok(created.room)
        };
        let id = tokio::select! {
            () = self.cancel.cancelled() => bail!("cancelled"),
            r = tokio::time::timeout(self.join_timeout, post) => r
                .map_err(|_| anyhow!("POST /api/rooms timed out after {:?}", self.join_timeout))??,
        };
        self.rooms
            .lock()
            .expect("room map never poisoned")
            .insert(spec.room.clone(), id.clone());
        Ok(id)
    }
}

/// Reads a held connection until `stop` fires, answering the frames the dialect answers
/// ([`Dialect::reply`]) and passing the other text frames to `on_text` (reading also keeps
/// WebSocket pings answered). Returns why the connection ended if the server ended it
/// first, or `None` when stopped.
pub async fn read_until<S>(
    ws: &mut S,
    stop: &CancellationToken,
    dialect: &dyn Dialect,
    mut on_text: impl FnMut(&str),
) -> Option<String>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    // Bounded by `stop`, which the run's cancellation (duration limit) always fires.
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => return None,
            msg = ws.next() => msg,
        };
        match msg {
            Some(Ok(Message::Close(frame))) => return Some(format!("closed by server: {frame:?}")),
            Some(Ok(msg)) => {
                let Some(text) = text_of(&msg) else { continue };
                if let Some(reply) = dialect.reply(text) {
                    if let Err(e) = ws.send(Message::text(reply)).await {
                        return Some(format!("answering the server: {e}"));
                    }
                } else {
                    on_text(text);
                }
            }
            Some(Err(e)) => return Some(e.to_string()),
            None => return Some("connection ended".to_owned()),
        }
    }
}

/// Sends the dialect's leave frames, then closes the WebSocket and waits (up to `timeout`)
/// for the server's side of the close.
///
/// # Errors
/// When the leave or close could not be sent or the server did not finish the close in
/// time. The socket is dropped either way.
pub async fn leave_and_close(
    mut ws: Ws,
    dialect: &dyn Dialect,
    room: &str,
    me: &str,
    timeout: Duration,
) -> Result<()> {
    let work = async {
        for frame in dialect.leave(room, me) {
            ws.send(Message::text(frame))
                .await
                .context("sending leave")?;
        }
        ws.close(None).await.context("sending close")?;
        for _ in 0..MAX_FRAMES_WHILE_CLOSING {
            match ws.next().await {
                None => return Ok(()),
                Some(Err(e)) => return Err(anyhow!("{e}").context("closing")),
                Some(Ok(_)) => {}
            }
        }
        bail!("server kept sending while we closed")
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow!("close not finished within {timeout:?}"))?
}

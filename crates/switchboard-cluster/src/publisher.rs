//! The publisher: every node publishes from one queue on one connection, in order; messages
//! waiting together go out as one pipeline, a run of messages for one channel as one
//! publish (a batch). What happens once a message is out ([`Then`]): answer a waiting task,
//! check a relay's reach, or nothing.

use super::*;

/// A message to publish, batched by the publisher task with whatever else is waiting.
#[derive(Debug)]
pub(crate) struct Publish {
    pub(crate) channel: Arc<str>,
    pub(crate) msg: Vec<u8>,
    pub(crate) then: Then,
}

/// What the publisher does once a message is out.
#[derive(Debug)]
pub(crate) enum Then {
    /// Answers the task waiting on it: how many subscribers got it, or why it could not be
    /// published.
    Answer(oneshot::Sender<Result<usize, StoreError>>),
    /// Nobody waits and nothing is checked (a notice to another node).
    Forget,
    /// Nobody waits (a relayed signal, already answered): when the publish fails or reaches
    /// fewer than `min` subscribers, the sender is told `unreached`
    /// ([`Registry::notify_undelivered`]). `bytes` is what it counts against
    /// [`UNAWAITED_MAX`].
    Check {
        sender: SeatKey,
        min: usize,
        unreached: Unreached,
        bytes: usize,
    },
}

impl Inner {
    /// Publishes `msg` on `channel`; the number of subscribers that got it.
    pub(crate) async fn publish(
        &self,
        channel: Arc<str>,
        msg: Vec<u8>,
    ) -> Result<usize, StoreError> {
        if !self.is_up() {
            return Err(StoreError::NotConnected);
        }
        let (done, answer) = oneshot::channel();
        self.pub_tx
            .send(Publish {
                channel,
                msg,
                then: Then::Answer(done),
            })
            .map_err(|_| StoreError::Stopped)?;
        match tokio::time::timeout(OP_TIMEOUT * 2, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(StoreError::Stopped),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// What the publisher does with a message's result.
    pub(crate) fn published(&self, then: Then, result: &Result<usize, StoreError>) {
        match then {
            Then::Forget => {}
            Then::Answer(tx) => {
                let _ = tx.send(*result);
            }
            Then::Check {
                sender,
                min,
                unreached,
                bytes,
            } => {
                self.unawaited.fetch_sub(bytes, Ordering::Relaxed);
                if let Err(why) = reached(result, min, &unreached) {
                    self.local
                        .notify_undelivered(&sender, RelayError::Unavailable(why));
                }
            }
        }
    }
}

/// Messages waiting together are published together: one pipeline per round, one publish
/// per run of messages for one channel (a run goes as one batch, in order). While a round is
/// in flight the next one gathers, so batches grow with the load and a lone message goes
/// out at once.
pub(crate) async fn publisher(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Publish>) {
    const MOST: usize = 256;
    // A round's bytes at most (one message of any size always goes): Redis pushes a batch to
    // each subscriber whole, and drops a subscriber whose unread output passes its pub/sub
    // limit (32 MB by default), so batches stay far below it.
    const MOST_BYTES: usize = 1 << 20;
    let mut round: Vec<Publish> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut bytes = first.msg.len();
        round.push(first);
        while round.len() < MOST && bytes < MOST_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.msg.len();
                    round.push(p);
                }
                Err(_) => break,
            }
        }
        // Runs of messages for one channel, in order: a sender's signals may go to two
        // channels (a peer's node inbox, the room's channel), and the receiving node reads
        // both on one connection in publish order, so runs must not be merged across others.
        let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
        for (i, p) in round.iter().enumerate() {
            match runs.last_mut() {
                Some(run) if round[run.start].channel == p.channel => run.end = i + 1,
                _ => runs.push(i..i + 1),
            }
        }
        let mut pipe = redis::pipe();
        for run in &runs {
            let channel = round[run.start].channel.clone();
            let body = if run.len() == 1 {
                std::mem::take(&mut round[run.start].msg)
            } else {
                let msgs: Vec<Vec<u8>> = round[run.clone()]
                    .iter_mut()
                    .map(|p| std::mem::take(&mut p.msg))
                    .collect();
                wire::encode_batch(&msgs)
            };
            pipe.cmd("PUBLISH").arg(&*channel).arg(body);
        }
        let counts: Result<Vec<usize>, StoreError> = match inner.conn() {
            Ok(mut c) => store::call("PUBLISH", pipe.query_async(&mut c)).await,
            Err(e) => Err(e),
        };
        let mut then: Vec<Option<Then>> = round.drain(..).map(|p| Some(p.then)).collect();
        for (g, run) in runs.iter().enumerate() {
            let r = match &counts {
                Ok(v) => Ok(v.get(g).copied().unwrap_or(0)),
                Err(e) => Err(*e),
            };
            for i in run.clone() {
                if let Some(t) = then[i].take() {
                    inner.published(t, &r);
                }
            }
        }
    }
}

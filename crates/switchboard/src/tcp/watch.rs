//! The byte stream under every connection, watched: after the HTTP upgrade it follows the
//! WebSocket frame headers the client sends (no payload is parsed or copied) so that a
//! message begun but not finished within `MESSAGE_TIMEOUT` ends the connection, in every
//! dialect (the Socket.io transport's WebSocket included, whose reader is not ours).
//!
//! WebSocket libraries buffer a fragmented message, or a large frame arriving slowly, until
//! its last byte, and none of them bounds that in time: a client could hold
//! `hard frame cap` bytes per connection for as long as it likes by never sending the final
//! fragment. [`FrameWatch`] knows, from the headers alone, whether a message is in flight;
//! [`Watched`] arms a timer when one is still unfinished after a read, and fails the next
//! read with [`unfinished_message`] once it fires.
//!
//! The switch from HTTP to WebSocket is seen on the way out: the first write that begins
//! with `HTTP/1.1 101` is the handshake's answer, and every byte read after it is a frame
//! (RFC 6455 forbids a client to send frames before it has that answer).
//!
//! Reads are also coalesced here. The WebSocket reader asks for small reads
//! (`WS_READ_BUFFER`, 512 bytes, so that an idle connection keeps a small buffer), which
//! would cost a `recv` per half-kilobyte under load. [`Watched`] instead takes up to
//! [`COALESCE`] bytes per `recv` into a buffer on the stack, hands the reader what it asked
//! for, and keeps the rest ([`Spill`]) for the next reads, freeing it as soon as it is used
//! up: a busy connection makes one system call per batch of frames, an idle one holds no
//! extra buffer.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

pub use super::unfinished::Charge;

/// The error a read fails with once a message has been unfinished for too long.
pub fn unfinished_message() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, UnfinishedMessage)
}

/// The error a read fails with when the unfinished messages of the connection's address
/// hold more than its budget ([`super::unfinished`]).
pub fn over_budget() -> io::Error {
    io::Error::new(io::ErrorKind::OutOfMemory, OverBudget)
}

/// Marks [`over_budget`] errors.
#[derive(Debug)]
pub struct OverBudget;

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("too much unfinished data from this address")
    }
}

impl std::error::Error for OverBudget {}

/// Marks [`unfinished_message`] errors.
#[derive(Debug)]
pub struct UnfinishedMessage;

impl std::fmt::Display for UnfinishedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("message not finished in time")
    }
}

impl std::error::Error for UnfinishedMessage {}

/// Whether `e` (or what it wraps) is [`unfinished_message`].
pub fn is_unfinished_message(e: &(dyn std::error::Error + 'static)) -> bool {
    wraps::<UnfinishedMessage>(e)
}

/// Whether `e` (or what it wraps) is [`over_budget`].
pub fn is_over_budget(e: &(dyn std::error::Error + 'static)) -> bool {
    wraps::<OverBudget>(e)
}

fn wraps<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && io.get_ref().is_some_and(|i| i.is::<T>())
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Follows client-to-server WebSocket frames from their headers.
#[derive(Debug, Default, Clone)]
pub struct FrameWatch {
    /// Header bytes of the frame being read, while its header is incomplete.
    header: [u8; 14],
    have: u8,
    /// Payload bytes of the current frame still to come (after its header).
    remaining: u64,
    /// The current frame's FIN bit and opcode, once its header is complete.
    fin: bool,
    opcode: u8,
    /// A data frame without FIN was seen: its message continues in later frames.
    fragmented: bool,
    /// Payload bytes of the message in flight received so far (what the WebSocket reader
    /// holds for it until its end).
    message: u64,
    /// The stream could not be followed (a reserved opcode, an unmasked frame): stop.
    lost: bool,
}

impl FrameWatch {
    /// Follows `bytes`, the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.lost {
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.remaining -= n as u64;
                if self.opcode < 8 {
                    self.message += n as u64;
                }
                bytes = &bytes[n..];
                if self.remaining == 0 {
                    self.frame_done();
                }
                continue;
            }
            // In a header.
            self.header[self.have as usize] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if let Some(len) = self.header_complete() {
                self.have = 0;
                self.remaining = len;
                if len == 0 {
                    self.frame_done();
                }
            }
        }
    }

    /// The payload length once the header in `self.header[..self.have]` is complete.
    fn header_complete(&mut self) -> Option<u64> {
        let h = &self.header;
        if self.have < 2 {
            return None;
        }
        let masked = h[1] & 0x80 != 0;
        let opcode = h[0] & 0x0f;
        // Clients must mask; opcodes 3-7 and 11-15 are reserved. Either way the stream is
        // not one we can follow (the WebSocket library will refuse it in its own words).
        if !masked || matches!(opcode, 3..=7 | 11..=15) {
            self.lost = true;
            return None;
        }
        let len7 = h[1] & 0x7f;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if self.have < 2 + ext + 4 {
            return None;
        }
        self.fin = h[0] & 0x80 != 0;
        self.opcode = opcode;
        Some(match ext {
            0 => u64::from(len7),
            2 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            _ => u64::from_be_bytes(h[2..10].try_into().expect("8 bytes")),
        })
    }

    fn frame_done(&mut self) {
        match (self.opcode, self.fin) {
            // Control frames may come between fragments and change nothing.
            (8..=10, _) => {}
            // A text or binary frame without FIN begins a fragmented message; a final
            // continuation ends it.
            (1 | 2, false) => self.fragmented = true,
            (0, true) | (1 | 2, true) => {
                self.fragmented = false;
                self.message = 0;
            }
            _ => {}
        }
    }

    /// Whether a message (or a frame) has begun and not finished.
    pub fn in_message(&self) -> bool {
        !self.lost && (self.have > 0 || self.remaining > 0 || self.fragmented)
    }

    /// Payload bytes of the unfinished message received so far (0 between messages).
    pub fn unfinished_bytes(&self) -> u64 {
        if self.in_message() { self.message } else { 0 }
    }
}

/// Ends a connection from outside its reader and writer: the next read or write fails.
/// Every request carries its connection's ([`ConnectionKill`]), so that a transport the
/// server does not drive itself (Socket.io's, inside socketioxide) can still be closed when
/// the server has dismissed its client.
#[derive(Debug, Default)]
pub struct Kill {
    killed: AtomicBool,
    reader: AtomicWaker,
}

impl Kill {
    /// Ends the connection: its pending read wakes and fails, and so does any write.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.reader.wake();
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }
}

/// The request extension that gives a handler its connection's [`Kill`].
#[derive(Debug, Clone)]
pub struct ConnectionKill(pub Arc<Kill>);

fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dismissed by the server",
    )
}

/// The most read from the socket per `recv` when the reader asks for less.
pub const COALESCE: usize = 16 << 10;

/// Bytes read from the socket and not yet handed to the reader.
#[derive(Debug)]
struct Spill {
    data: Box<[u8]>,
    pos: usize,
}

/// Where a connection is.
#[derive(Debug)]
enum Phase {
    /// HTTP requests and responses.
    Http,
    /// Upgraded to WebSocket: frames are followed.
    WebSocket(FrameWatch),
}

/// A TCP stream whose upgraded WebSocket messages must finish within a deadline.
#[derive(Debug)]
pub struct Watched {
    io: TcpStream,
    kill: Arc<Kill>,
    phase: Phase,
    timeout: Duration,
    /// Armed while a message is unfinished; boxed so an idle connection carries 8 bytes.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Read ahead, while the reader takes it; `None` (8 bytes) once used up.
    spill: Option<Box<Spill>>,
    /// What this connection's unfinished message holds against its address's budget.
    charge: Charge,
}

impl Watched {
    /// Watches `io`; a message unfinished for `timeout` fails the stream (zero: never);
    /// `kill` ends it.
    pub fn new(io: TcpStream, timeout: Duration, kill: Arc<Kill>, charge: Charge) -> Self {
        Self {
            io,
            kill,
            phase: Phase::Http,
            timeout,
            deadline: None,
            spill: None,
            charge,
        }
    }

    /// Follows the bytes just handed to the reader and arms or clears the deadline.
    fn delivered(&mut self, bytes: &[u8]) {
        if let Phase::WebSocket(watch) = &mut self.phase {
            watch.feed(bytes);
            self.charge.hold(watch.unfinished_bytes());
            if !watch.in_message() {
                self.deadline = None;
            } else if self.deadline.is_none() {
                let at = Instant::now() + self.timeout;
                self.deadline = Some(Box::pin(tokio::time::sleep_until(at)));
            }
        }
    }

    /// Reads from the socket into `buf`, up to [`COALESCE`] bytes at once, keeping what
    /// does not fit.
    fn poll_socket(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() >= COALESCE {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let mut stack = [MaybeUninit::<u8>::uninit(); COALESCE];
        let mut ahead = ReadBuf::uninit(&mut stack);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut ahead))?;
        let got = ahead.filled();
        let n = got.len().min(buf.remaining());
        buf.put_slice(&got[..n]);
        if got.len() > n {
            self.spill = Some(Box::new(Spill {
                data: got[n..].into(),
                pos: 0,
            }));
        }
        Poll::Ready(Ok(()))
    }

    fn saw_write(&mut self, first: &[u8]) {
        if matches!(self.phase, Phase::Http)
            && !self.timeout.is_zero()
            && first.starts_with(b"HTTP/1.1 101 ")
        {
            self.phase = Phase::WebSocket(FrameWatch::default());
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.kill.is_killed() {
            return Poll::Ready(Err(killed()));
        }
        if this.charge.is_over() {
            return Poll::Ready(Err(over_budget()));
        }
        let before = buf.filled().len();
        if let Some(spill) = &mut this.spill {
            let n = (spill.data.len() - spill.pos).min(buf.remaining());
            buf.put_slice(&spill.data[spill.pos..spill.pos + n]);
            spill.pos += n;
            if spill.pos == spill.data.len() {
                this.spill = None;
            }
            this.delivered(&buf.filled()[before..]);
            return Poll::Ready(Ok(()));
        }
        match this.poll_socket(cx, buf) {
            Poll::Ready(Ok(())) => {
                let end = buf.filled().len();
                // `delivered` borrows self mutably: look at the bytes through the buffer.
                let bytes = &buf.filled()[before..end];
                this.delivered(bytes);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                this.kill.reader.register(cx.waker());
                if this.kill.is_killed() {
                    return Poll::Ready(Err(killed()));
                }
                match &mut this.deadline {
                    Some(d) => {
                        ready!(d.as_mut().poll(cx));
                        Poll::Ready(Err(unfinished_message()))
                    }
                    None => Poll::Pending,
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.is_killed() {
            return Poll::Ready(Err(killed()));
        }
        self.saw_write(buf);
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.kill.is_killed() {
            return Poll::Ready(Err(killed()));
        }
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            self.saw_write(first);
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::FrameWatch;

    /// A masked client frame: FIN, opcode, payload (mask of zeros).
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[0; 4]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn whole_messages_leave_nothing_in_flight_however_they_are_split() {
        let mut stream = frame(true, 1, b"hello");
        stream.extend(frame(true, 2, &[7; 300]));
        stream.extend(frame(true, 1, &vec![b'x'; 70_000]));
        stream.extend(frame(true, 9, b"ping"));
        for chunk in [1, 2, 3, 7, 64, 1000, stream.len()] {
            let mut w = FrameWatch::default();
            let mut mid = false;
            for piece in stream.chunks(chunk) {
                w.feed(piece);
                mid |= w.in_message();
            }
            assert!(!w.in_message(), "chunk {chunk}");
            assert_eq!(mid, chunk < stream.len(), "chunk {chunk}");
        }
    }

    #[test]
    fn a_fragmented_message_is_in_flight_until_its_final_fragment_pings_or_not() {
        let mut w = FrameWatch::default();
        w.feed(&frame(false, 1, b"part one"));
        assert!(w.in_message());
        w.feed(&frame(true, 10, b"pong"));
        assert!(w.in_message(), "a control frame between fragments");
        w.feed(&frame(false, 0, b"part two"));
        assert!(w.in_message());
        w.feed(&frame(true, 0, b"end"));
        assert!(!w.in_message());
    }

    #[test]
    fn a_stream_it_cannot_follow_is_let_go() {
        let mut w = FrameWatch::default();
        w.feed(&[0x81, 0x05, b'h']); // unmasked
        assert!(!w.in_message());
        let mut w = FrameWatch::default();
        w.feed(&[0x83, 0x85, 0, 0]); // reserved opcode
        assert!(!w.in_message());
    }
}

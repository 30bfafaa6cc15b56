//! The nt-backend-wrtc codec over a connection's frames: `[flags][frame]\0[frame]\0…`.
//!
//! Bit 0 of `flags` picks side B (else A); bit 1 leaves the connection unjoined (its join
//! on open refused: the refusals before a join are rendered), else the join on open
//! succeeds; bits 2–7 make frames 0–5 binary. Mailbox items a frame sends are also
//! rendered as their recipient gets them, live and replayed after a `hello`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::command::{Command, CommandError, Reply};
use switchboard::dialect::Codec;
use switchboard::dialect::nt::{Nt, Side};
use switchboard_core::{Envelope, Event, PeerId, RoomId, Signal, SignalKind};
use switchboard_fuzz::{check_out, connection, frames, respond};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let side = if flags & 1 == 0 { Side::A } else { Side::B };
    let mut codec = Nt::new(&uuid::Uuid::nil(), side);
    let Ok(Some(Command::Join(join))) = codec.open() else {
        panic!("nt joins on open")
    };
    if flags & 2 == 0 {
        respond(&mut codec, &Ok(Command::Join(join)));
    } else {
        for e in [
            CommandError::PeerIdTaken(PeerId::new(side.as_str())),
            CommandError::RoomFull { capacity: 2 },
            CommandError::Overloaded,
        ] {
            check_out("nt refused join", &codec.encode_error(&e), true);
        }
    }
    let binary = |i: usize| i < 6 && (flags >> (i + 2)) & 1 == 1;
    // A real connection of this side (it joins its room on open), through the same frames.
    connection(
        Nt::new(&uuid::Uuid::nil(), side),
        frames(rest, 8).enumerate().map(|(i, f)| (f, binary(i))),
    );
    let mut mailbox = Vec::new();
    for (i, frame) in frames(rest, 8).enumerate() {
        let decoded = codec.decode(&frame, binary(i));
        respond(&mut codec, &decoded.command);
        if let Ok(Command::MailboxSend { payload, .. }) = &decoded.command {
            let seq = mailbox.len() as u64;
            let live = Envelope::new(Event::Signal(Signal {
                room: RoomId::new("room"),
                from: PeerId::new("A"),
                to: Some(PeerId::new("B")),
                kind: SignalKind::Mailbox(seq),
                payload: payload.clone(),
                origin: switchboard::dialect::tags::NT,
                audience: 1,
            }));
            check_out(
                "nt mailbox delivery",
                &Nt::new(&uuid::Uuid::nil(), Side::B).encode_event(&live),
                false,
            );
            mailbox.push((seq, payload.clone()));
        }
    }
    if !mailbox.is_empty() {
        check_out(
            "nt mailbox replay",
            &codec.encode_reply(&Reply::Mailbox(mailbox)),
            false,
        );
    }
});

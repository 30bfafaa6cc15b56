//! The OctateCode codec over a connection's frames: `[flags][frame]\0[frame]\0…`, bit i of
//! `flags` making frame i a binary one. Each decoded command gets the replies and refusals
//! the command layer could give it, rendered by the codec; each relay is rendered for every
//! dialect; and the frames run through a real connection on an in-memory server (see the
//! crate docs for what is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::dialect::Codec;
use switchboard::dialect::octate::Octate;
use switchboard_fuzz::{connection, frames, respond};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let binary = |i: usize| (flags >> i) & 1 == 1;
    let mut codec = Octate::new();
    for (i, frame) in frames(rest, 8).enumerate() {
        let decoded = codec.decode(&frame, binary(i));
        respond(&mut codec, &decoded.command);
    }
    // The same frames through a real connection: the command layer's own answers.
    connection(
        Octate::new(),
        frames(rest, 8).enumerate().map(|(i, f)| (f, binary(i))),
    );
});

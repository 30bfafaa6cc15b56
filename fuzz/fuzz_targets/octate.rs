//! The OctateCode codec over a connection's frames: `[flags][frame]\0[frame]\0…`, bit i of
//! `flags` making frame i a binary one. Each decoded command gets the replies and refusals
//! the command layer could give it, rendered by the codec; each relay is rendered for every
//! dialect (see the crate docs for what is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::dialect::Codec;
use switchboard::dialect::octate::Octate;
use switchboard_fuzz::{frames, respond};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut codec = Octate::new();
    for (i, frame) in frames(rest, 8).enumerate() {
        let decoded = codec.decode(&frame, (flags >> i) & 1 == 1);
        respond(&mut codec, &decoded.command);
    }
});

//! The y-webrtc codec over a connection's frames: `[flags][frame]\0[frame]\0…` (bit i of
//! `flags`: frame i is binary). Subscriptions, publishes and refusals are rendered as the
//! connection would see them; publishes are rendered for every dialect; the frames also run
//! through a real connection on an in-memory server.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::dialect::Codec;
use switchboard::dialect::ywebrtc::YWebrtc;
use switchboard_fuzz::{connection, frames, respond};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let binary = |i: usize| (flags >> i) & 1 == 1;
    let mut codec = YWebrtc::default();
    for (i, frame) in frames(rest, 8).enumerate() {
        let decoded = codec.decode(&frame, binary(i));
        respond(&mut codec, &decoded.command);
    }
    connection(
        YWebrtc::default(),
        frames(rest, 8).enumerate().map(|(i, f)| (f, binary(i))),
    );
});

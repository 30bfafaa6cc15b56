//! The y-webrtc codec over a connection's frames: `[flags][frame]\0[frame]\0…` (bit i of
//! `flags`: frame i is binary). Subscriptions, publishes and refusals are rendered as the
//! connection would see them; publishes are rendered for every dialect.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::dialect::Codec;
use switchboard::dialect::ywebrtc::YWebrtc;
use switchboard_fuzz::{frames, respond};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut codec = YWebrtc::default();
    for (i, frame) in frames(rest, 8).enumerate() {
        let decoded = codec.decode(&frame, (flags >> i) & 1 == 1);
        respond(&mut codec, &decoded.command);
    }
});

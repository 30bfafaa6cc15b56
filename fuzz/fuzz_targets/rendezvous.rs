//! The rendezvous codec over a connection's frames: `[flags][frame]\0[frame]\0…`.
//!
//! Bits 0–5 of `flags` make frames 0–5 binary; bit 6 joins the connection before the first
//! frame (through `encode_reply(&Reply::Joined{..})`, as the transport does after a
//! successful join), so both the unjoined and the joined decoder are reached from any
//! frame; bit 7 opens the connection with a wrong `?key=` on a server that requires one.
//! A `join` the codec decodes is answered with `Joined` too, so later frames meet the
//! joined decoder as on a real connection.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use switchboard::Config;
use switchboard::command::Reply;
use switchboard::dialect::Codec;
use switchboard::dialect::rendezvous::Rendezvous;
use switchboard_fuzz::{check_out, config, connection, frames, respond};

fn keyed() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::parse_without_env(["switchboard", "--rendezvous-ws-key", "secret"])
            .expect("a valid configuration")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut codec = if flags & 0x80 != 0 {
        let mut c = Rendezvous::new(keyed(), "room", Some("wrong"));
        let refused = c.open().expect_err("a wrong key is refused");
        check_out("rendezvous open", &c.encode_error(&refused), true);
        c
    } else {
        Rendezvous::new(config(), "room", None)
    };
    if flags & 0x40 != 0 {
        let out = codec.encode_reply(&Reply::Joined {
            room: "room".into(),
            peer: "peer".into(),
        });
        check_out("rendezvous joined", &out, false);
        assert!(codec.established());
    }
    let binary = |i: usize| i < 6 && (flags >> i) & 1 == 1;
    for (i, frame) in frames(rest, 8).enumerate() {
        let decoded = codec.decode(&frame, binary(i));
        respond(&mut codec, &decoded.command);
    }
    // The same frames through a real connection (its own room per input's first byte, so
    // that inputs rarely meet in a room of two).
    let room = format!("fuzz-{flags}");
    connection(
        Rendezvous::new(config(), &room, None),
        frames(rest, 8).enumerate().map(|(i, f)| (f, binary(i))),
    );
});

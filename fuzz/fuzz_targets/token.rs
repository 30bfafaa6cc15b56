//! The token verifier (`Authenticator::verify` and `verify_for`, HS256 only).
//!
//! Input: `[sel][part]\0[part]\0…`. An even `sel` takes the first part as a whole token
//! (mutated from real ones); an odd `sel` builds a token from a header JSON (part 0) and a
//! claims JSON (part 1), signed as bits 1–3 of `sel` choose (the right key, the empty key,
//! another key, no signature, the bytes of part 4) and base64-encoded as bits 4–5 choose
//! (the JWT alphabet, with padding, the standard alphabet). The next two parts are the user
//! and room `verify_for` is asked about.
//!
//! Whatever comes in, a token is accepted only if an independent check accepts it too:
//! three base64url parts, a header whose `alg` is exactly `HS256`, an HMAC-SHA256 under the
//! server's secret equal to the signature, an `exp` not past, an `nbf` (if any) not to come,
//! claims as the token says; and
//! `verify_for` only for the token's own user and room. A token the server issues for any
//! user and room verifies for exactly those.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use std::net::{IpAddr, Ipv4Addr};

use switchboard::auth::{Authenticator, CLOCK_LEEWAY, Claims, TokenError};

const SECRET: &str = "fuzz-secret-0123456789";
/// The client every token comes from (the authenticator's failure budget is off: 0).
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn auth() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| Authenticator::new(SECRET, Duration::from_secs(3600), None, 0))
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The claims the server reads, and `nbf`.
#[derive(Debug, serde::Deserialize)]
struct Seen {
    sub: Option<String>,
    room: Option<String>,
    exp: Option<u64>,
    nbf: Option<serde_json::Value>,
}

/// Whether `token` is one the server should accept, judged without `jsonwebtoken`.
fn independently_valid(token: &str, claims: &Claims, checked_at: u64) -> Result<(), String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [head, body, sig] = parts[..] else {
        return Err(format!("{} parts", parts.len()));
    };
    let decode = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|e| format!("not base64url: {e}"))
    };
    let header: serde_json::Value =
        serde_json::from_slice(&decode(head)?).map_err(|e| format!("header: {e}"))?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(format!("alg {:?}", header.get("alg")));
    }
    let expected = hmac(SECRET.as_bytes(), format!("{head}.{body}").as_bytes());
    if decode(sig)? != expected {
        return Err("signature is not HMAC-SHA256 under the secret".into());
    }
    // Only the claims the server reads: what else a signed token carries (bytes that are
    // not UTF-8, numbers out of any range) is the signer's business.
    let payload: Seen =
        serde_json::from_slice(&decode(body)?).map_err(|e| format!("claims: {e}"))?;
    if payload.sub.as_deref() != Some(claims.sub.as_str())
        || payload.room.as_deref() != Some(claims.room.as_str())
        || payload.exp != Some(claims.exp)
    {
        return Err(format!("claims {payload:?} returned as {claims:?}"));
    }
    // One second of slack for the clock moving on between the two reads.
    if claims.exp + 1 < checked_at {
        return Err(format!("expired: exp {} at {checked_at}", claims.exp));
    }
    // Not before (RFC 7519 §4.1.5), when the token says, and not issued in the future, both
    // with the server's leeway for clocks a little ahead.
    let horizon = checked_at + CLOCK_LEEWAY.as_secs() + 1;
    if let Some(nbf) = payload.nbf.as_ref().and_then(serde_json::Value::as_f64)
        && nbf > horizon as f64
    {
        return Err(format!("not valid before {nbf}, at {checked_at}"));
    }
    if claims.iat > horizon {
        return Err(format!(
            "issued in the future ({}), at {checked_at}",
            claims.iat
        ));
    }
    Ok(())
}

fn build(sel: u8, parts: &[&[u8]]) -> String {
    let part = |i: usize| parts.get(i).copied().unwrap_or_default();
    let enc = |b: &[u8]| match (sel >> 4) % 3 {
        0 => URL_SAFE_NO_PAD.encode(b),
        1 => URL_SAFE.encode(b),
        _ => STANDARD.encode(b),
    };
    let signed = format!("{}.{}", enc(part(0)), enc(part(1)));
    let sig = match (sel >> 1) % 5 {
        0 => hmac(SECRET.as_bytes(), signed.as_bytes()),
        1 => hmac(b"", signed.as_bytes()),
        2 => hmac(b"another-secret-0123456789", signed.as_bytes()),
        3 => Vec::new(),
        _ => part(4).to_vec(),
    };
    format!("{signed}.{}", enc(&sig))
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let parts: Vec<&[u8]> = rest.split(|b| *b == 0).take(5).collect();
    let part = |i: usize| String::from_utf8_lossy(parts.get(i).copied().unwrap_or_default());
    let (token, user, room) = if sel & 1 == 0 {
        (part(0).into_owned(), part(1), part(2))
    } else {
        (build(sel, &parts), part(2), part(3))
    };
    let a = auth();
    let at = now();
    let verified = a.verify(CLIENT, &token);
    if let Ok(claims) = &verified
        && let Err(why) = independently_valid(&token, claims, at)
    {
        panic!("accepted a token that is not valid ({why}): {token:?}");
    }
    match a.verify_for(CLIENT, &token, &user, &room) {
        Ok(claims) => {
            assert_eq!(
                Ok(&claims),
                verified.as_ref(),
                "verify_for and verify disagree"
            );
            assert!(
                claims.sub == user && claims.room == room,
                "{claims:?} for {user:?}/{room:?}"
            );
        }
        Err(TokenError::UserMismatch | TokenError::RoomMismatch(_)) => {
            assert!(verified.is_ok(), "a mismatch for a token verify refuses");
        }
        Err(e) => assert_eq!(Err(e), verified, "verify_for and verify disagree"),
    }
    // What the server issues for any user and room verifies, for those only.
    let issued = a.issue(&user, &room);
    let claims = a
        .verify_for(CLIENT, &issued.token, &user, &room)
        .unwrap_or_else(|e| panic!("an issued token is refused ({e}): {user:?}/{room:?}"));
    assert_eq!(claims, issued.claims);
});

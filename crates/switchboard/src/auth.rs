//! Authentication: stateless HS256 JWT tokens and the admin bearer key.
//!
//! A token's claims are `sub` (the user id), `room` (the room it admits to), `iat`, `exp`
//! and optionally `nbf` (Unix seconds): `exp` is exact, while `nbf` and `iat` may be up to
//! [`CLOCK_LEEWAY`] ahead of this server's clock (another node's clock may run ahead), no
//! more. Any node that knows `AUTH_SECRET` verifies them, a restart does not
//! invalidate them, and an application's own backend may mint them with any JWT library.
//!
//! `jsonwebtoken` does the JWT work; its cryptography comes from [`hs256`], a provider that
//! knows HS256 and nothing else (any other `alg`, `none` included, is refused), so that
//! none of the crate's RSA and ECDSA back ends is compiled in.
//!
//! Guessing is throttled per client address ([`FailureThrottle`]): after
//! `AUTH_FAILURES_PER_MINUTE` wrong admin keys or unreadable/forged tokens, that address's
//! attempts are refused (`auth_throttled`, HTTP 429) whatever they carry, until the minute
//! is over. Only guesses count: an expired token, or a valid one for another room, is not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

/// The claims Switchboard signs and checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Room id.
    pub room: String,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// How far ahead of this server's clock a token's `nbf` or `iat` may be.
pub const CLOCK_LEEWAY: Duration = Duration::from_secs(60);

/// Why a token was refused. Each has its own message, as the OctateCode server had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or not one of ours.
    #[error("Invalid or expired token")]
    Malformed,
    /// Signed with another secret.
    #[error("Invalid token signature")]
    BadSignature,
    /// Past its `exp`.
    #[error("Token expired")]
    Expired,
    /// Issued for another user.
    #[error("User ID mismatch")]
    UserMismatch,
    /// Issued for another room.
    #[error("Not authorized for this room. Token is for room {0}")]
    RoomMismatch(String),
    /// Its `nbf` or `iat` is in the future.
    #[error("Token not yet valid")]
    NotYetValid,
    /// Too many failed attempts from this address.
    #[error("Too many failed authentication attempts; try again in a minute")]
    Throttled,
}

impl TokenError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "invalid_token",
            Self::BadSignature => "bad_signature",
            Self::Expired => "token_expired",
            Self::UserMismatch => "user_mismatch",
            Self::RoomMismatch(_) => "room_mismatch",
            Self::NotYetValid => "token_not_yet_valid",
            Self::Throttled => "auth_throttled",
        }
    }

    /// Whether this failure is a guess (counted by the throttle).
    fn is_guess(&self) -> bool {
        matches!(self, Self::Malformed | Self::BadSignature)
    }
}

/// Why an `Authorization` header did not grant admin rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No `Authorization` header (or no admin key configured).
    #[error("Missing admin key: send Authorization: Bearer <ADMIN_API_KEY>")]
    Missing,
    /// A key that is not the admin key.
    #[error("Invalid admin key")]
    Wrong,
    /// Too many failed attempts from this address.
    #[error("Too many failed authentication attempts; try again in a minute")]
    Throttled,
}

/// Failed authentication attempts per client address, in fixed one-minute windows.
///
/// Hand-rolled rather than a `governor` limiter: only *failures* spend the budget, yet a
/// spent budget must refuse every attempt (a correct guess included), and governor cannot
/// look at a bucket without spending from it.
#[derive(Debug)]
pub struct FailureThrottle {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

const WINDOW: Duration = Duration::from_secs(60);

impl FailureThrottle {
    /// `per_minute` failures per address and minute; 0 = unlimited.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` may try now.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows
            .get(&ip)
            .is_none_or(|w| w.start.elapsed() >= WINDOW || w.failures < self.per_minute)
    }

    /// Records a failed attempt by `ip`.
    pub fn failed(&self, ip: IpAddr) {
        if self.per_minute == 0 {
            return;
        }
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let w = windows.entry(ip).or_insert(Window {
            start: Instant::now(),
            failures: 0,
        });
        if w.start.elapsed() >= WINDOW {
            *w = Window {
                start: Instant::now(),
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// Forgets addresses whose window is over.
    pub fn prune(&self) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.retain(|_, w| w.start.elapsed() < WINDOW);
        windows.shrink_to_fit();
    }
}

/// Signs and verifies tokens; checks the admin key.
#[derive(Clone)]
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    admin_key: Option<String>,
    throttle: Arc<FailureThrottle>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A freshly minted token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator {
    /// Builds an authenticator for `secret`; tokens live `ttl`; `failures_per_minute`
    /// failed attempts per client address are allowed (0 = unlimited).
    pub fn new(
        secret: &str,
        ttl: Duration,
        admin_key: Option<String>,
        failures_per_minute: u32,
    ) -> Self {
        hs256::install();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl,
            admin_key,
            throttle: Arc::new(FailureThrottle::new(failures_per_minute)),
        }
    }

    /// The failed-attempt throttle (pruned by the room sweep).
    pub fn throttle(&self) -> &FailureThrottle {
        &self.throttle
    }

    /// The token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Mints a token for `user` in `room`.
    pub fn issue(&self, user: &str, room: &str) -> IssuedToken {
        let iat = now_secs();
        let claims = Claims {
            sub: user.to_owned(),
            room: room.to_owned(),
            iat,
            exp: iat + self.ttl.as_secs().max(1),
            nbf: None,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an HMAC key cannot fail");
        IssuedToken { token, claims }
    }

    /// Verifies a token from `client`: throttle, signature, expiry, `nbf` and `iat`.
    ///
    /// # Errors
    /// [`TokenError::Throttled`], [`TokenError::Malformed`], [`TokenError::BadSignature`],
    /// [`TokenError::Expired`] or [`TokenError::NotYetValid`].
    pub fn verify(&self, client: IpAddr, token: &str) -> Result<Claims, TokenError> {
        if !self.throttle.allows(client) {
            return Err(TokenError::Throttled);
        }
        let result = self.verify_token(token);
        if let Err(e) = &result
            && e.is_guess()
        {
            self.throttle.failed(client);
        }
        result
    }

    fn verify_token(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed,
            })?;
        let horizon = now_secs() + CLOCK_LEEWAY.as_secs();
        if claims.iat > horizon || claims.nbf.is_some_and(|nbf| nbf > horizon) {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    /// Verifies a token from `client` and that it admits `user` to `room`.
    ///
    /// # Errors
    /// Any [`TokenError`].
    pub fn verify_for(
        &self,
        client: IpAddr,
        token: &str,
        user: &str,
        room: &str,
    ) -> Result<Claims, TokenError> {
        let claims = self.verify(client, token)?;
        if claims.sub != user {
            return Err(TokenError::UserMismatch);
        }
        if claims.room != room {
            return Err(TokenError::RoomMismatch(claims.room));
        }
        Ok(claims)
    }

    /// Whether an `Authorization` header value from `client` carries the admin key,
    /// exactly (`Bearer <key>`, nothing trimmed). Compared in constant time so the key
    /// cannot be guessed byte by byte from response timing; wrong keys spend the client's
    /// failure budget.
    ///
    /// # Errors
    /// [`AdminError::Missing`] without a header (or without a configured key),
    /// [`AdminError::Wrong`] for another key, [`AdminError::Throttled`] once the client's
    /// failures are spent.
    pub fn admin(&self, client: IpAddr, authorization: Option<&str>) -> Result<(), AdminError> {
        let (Some(key), Some(header)) = (&self.admin_key, authorization) else {
            return Err(AdminError::Missing);
        };
        if !self.throttle.allows(client) {
            return Err(AdminError::Throttled);
        }
        let given = header.strip_prefix("Bearer ").unwrap_or_default();
        if constant_time_eq(given.as_bytes(), key.as_bytes()) {
            Ok(())
        } else {
            self.throttle.failed(client);
            Err(AdminError::Wrong)
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// `jsonwebtoken`'s crypto provider for HS256 only, on RustCrypto's `hmac` and `sha2`.
pub mod hs256 {
    use hmac::{Hmac, Mac};
    use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
    use jsonwebtoken::errors::{Error, ErrorKind};
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
    use sha2::Sha256;
    use signature::{Signer, Verifier};

    type HmacSha256 = Hmac<Sha256>;

    struct Hs256(HmacSha256);

    impl Hs256 {
        fn new(secret: &[u8], alg: Algorithm) -> Result<Self, Error> {
            if alg != Algorithm::HS256 {
                return Err(ErrorKind::InvalidAlgorithm.into());
            }
            HmacSha256::new_from_slice(secret)
                .map(Self)
                .map_err(|_| ErrorKind::InvalidKeyFormat.into())
        }
    }

    impl Signer<Vec<u8>> for Hs256 {
        fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
            let mut mac = self.0.clone();
            mac.update(msg);
            Ok(mac.finalize().into_bytes().to_vec())
        }
    }

    impl JwtSigner for Hs256 {
        fn algorithm(&self) -> Algorithm {
            Algorithm::HS256
        }
    }

    impl Verifier<Vec<u8>> for Hs256 {
        fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
            let mut mac = self.0.clone();
            mac.update(msg);
            // `verify_slice` compares in constant time.
            mac.verify_slice(signature)
                .map_err(signature::Error::from_source)
        }
    }

    impl JwtVerifier for Hs256 {
        fn algorithm(&self) -> Algorithm {
            Algorithm::HS256
        }
    }

    static PROVIDER: CryptoProvider = CryptoProvider {
        signer_factory: |alg, key: &EncodingKey| {
            Ok(Box::new(Hs256::new(key.try_get_hmac_secret()?, *alg)?))
        },
        verifier_factory: |alg, key: &DecodingKey| {
            Ok(Box::new(Hs256::new(key.try_get_hmac_secret()?, *alg)?))
        },
        jwk_utils: JwkUtils::new_unimplemented(),
    };

    /// Makes this provider the process's (once; later calls do nothing).
    pub fn install() {
        let _ = PROVIDER.install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn auth() -> Authenticator {
        Authenticator::new(
            "test-secret",
            Duration::from_secs(60),
            Some("admin".into()),
            0,
        )
    }

    fn sign(claims: &Claims) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(b"test-secret"),
        )
        .unwrap()
    }

    fn claims(iat: u64, nbf: Option<u64>) -> Claims {
        Claims {
            sub: "alice".into(),
            room: "r1".into(),
            iat,
            exp: now_secs() + 3600,
            nbf,
        }
    }

    #[test]
    fn an_issued_token_verifies_for_its_user_and_room_only() {
        let a = auth();
        let t = a.issue("alice", "r1");
        assert_eq!(
            a.verify_for(ME, &t.token, "alice", "r1").unwrap().sub,
            "alice"
        );
        assert_eq!(
            a.verify_for(ME, &t.token, "bob", "r1"),
            Err(TokenError::UserMismatch)
        );
        assert_eq!(
            a.verify_for(ME, &t.token, "alice", "r2"),
            Err(TokenError::RoomMismatch("r1".into()))
        );
    }

    #[test]
    fn forged_expired_and_garbage_tokens_fail_differently() {
        let a = auth();
        let other = Authenticator::new("another-secret", Duration::from_secs(60), None, 0);
        assert_eq!(
            a.verify(ME, &other.issue("alice", "r1").token),
            Err(TokenError::BadSignature)
        );
        assert_eq!(a.verify(ME, "not-a-jwt"), Err(TokenError::Malformed));
        let expired = Claims {
            exp: 2,
            ..claims(1, None)
        };
        assert_eq!(a.verify(ME, &sign(&expired)), Err(TokenError::Expired));
    }

    #[test]
    fn only_hs256_is_accepted() {
        let a = auth();
        let claims = claims(now_secs(), None);
        // alg none: a header naming it, and no signature.
        let b64 = |v: &[u8]| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
        };
        let body = b64(&serde_json::to_vec(&claims).unwrap());
        for alg in ["none", "HS384", "RS256", "ES256"] {
            let head = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            let forged = format!("{head}.{body}.");
            assert!(a.verify(ME, &forged).is_err(), "{alg} accepted");
        }
        assert!(a.verify(ME, &a.issue("alice", "r1").token).is_ok());
    }

    #[test]
    fn the_admin_key_must_match_exactly() {
        let a = auth();
        assert_eq!(a.admin(ME, Some("Bearer admin")), Ok(()));
        for wrong in [
            "Bearer admin2",
            "admin",
            "Bearer admin ",
            "Bearer  admin",
            "bearer admin",
        ] {
            assert_eq!(
                a.admin(ME, Some(wrong)),
                Err(AdminError::Wrong),
                "{wrong:?}"
            );
        }
        assert_eq!(a.admin(ME, None), Err(AdminError::Missing));
        let keyless = Authenticator::new("s", Duration::from_secs(60), None, 0);
        assert_eq!(keyless.admin(ME, Some("Bearer ")), Err(AdminError::Missing));
    }

    /// `nbf` is also what the token fuzz target (fuzz/fuzz_targets/token.rs) checks against an
    /// independent verifier.
    #[test]
    fn tokens_from_the_future_are_refused_beyond_the_leeway() {
        let a = auth();
        let now = now_secs();
        let day = 86_400;
        assert!(a.verify(ME, &sign(&claims(now, None))).is_ok());
        assert!(
            a.verify(ME, &sign(&claims(now + 30, Some(now + 30))))
                .is_ok(),
            "within the leeway"
        );
        assert_eq!(
            a.verify(ME, &sign(&claims(now, Some(now + day)))),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            a.verify(ME, &sign(&claims(now + 365 * day, None))),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn guesses_spend_a_budget_that_then_refuses_even_a_right_answer() {
        let a = Authenticator::new(
            "test-secret",
            Duration::from_secs(60),
            Some("admin".into()),
            3,
        );
        let other: IpAddr = "127.0.0.9".parse().unwrap();
        let good = a.issue("alice", "r1").token;
        // Expired or mismatched tokens are not guesses.
        let expired = sign(&Claims {
            exp: 2,
            ..claims(1, None)
        });
        for _ in 0..5 {
            assert_eq!(a.verify(ME, &expired), Err(TokenError::Expired));
        }
        assert_eq!(a.verify(ME, "garbage"), Err(TokenError::Malformed));
        assert_eq!(a.admin(ME, Some("Bearer guess")), Err(AdminError::Wrong));
        assert!(a.verify(ME, &good).is_ok(), "two failures: still allowed");
        assert_eq!(a.admin(ME, Some("Bearer guess2")), Err(AdminError::Wrong));
        assert_eq!(a.verify(ME, &good), Err(TokenError::Throttled));
        assert_eq!(
            a.admin(ME, Some("Bearer admin")),
            Err(AdminError::Throttled)
        );
        // Another address is not affected.
        assert!(a.verify(other, &good).is_ok());
        assert_eq!(a.admin(other, Some("Bearer admin")), Ok(()));
    }
}

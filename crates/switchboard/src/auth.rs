//! Authentication: stateless HS256 JWT tokens and the admin bearer key.
//!
//! A token's claims are `sub` (the user id), `room` (the room it admits to), `iat` and
//! `exp` (Unix seconds). Any node that knows `AUTH_SECRET` verifies them, a restart does not
//! invalidate them, and an application's own backend may mint them with any JWT library.
//!
//! `jsonwebtoken` does the JWT work; its cryptography comes from [`hs256`], a provider that
//! knows HS256 and nothing else (any other `alg`, `none` included, is refused), so that
//! none of the crate's RSA and ECDSA back ends is compiled in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
}

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
        }
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
    /// Builds an authenticator for `secret`; tokens live `ttl`.
    pub fn new(secret: &str, ttl: Duration, admin_key: Option<String>) -> Self {
        hs256::install();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        // A token minted elsewhere may say when it becomes valid (RFC 7519 §4.1.5);
        // jsonwebtoken ignores `nbf` unless asked. Found by fuzzing (fuzz/fuzz_targets/token.rs).
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl,
            admin_key,
        }
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
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an HMAC key cannot fail");
        IssuedToken { token, claims }
    }

    /// Verifies a token's signature and expiry.
    ///
    /// # Errors
    /// [`TokenError::Malformed`], [`TokenError::BadSignature`] or [`TokenError::Expired`].
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed,
            })
    }

    /// Verifies a token and that it admits `user` to `room`.
    ///
    /// # Errors
    /// Any [`TokenError`].
    pub fn verify_for(&self, token: &str, user: &str, room: &str) -> Result<Claims, TokenError> {
        let claims = self.verify(token)?;
        if claims.sub != user {
            return Err(TokenError::UserMismatch);
        }
        if claims.room != room {
            return Err(TokenError::RoomMismatch(claims.room));
        }
        Ok(claims)
    }

    /// Whether an `Authorization` header value carries the admin key. Compared in constant
    /// time so the key cannot be guessed byte by byte from response timing.
    pub fn is_admin(&self, authorization: Option<&str>) -> bool {
        let (Some(key), Some(header)) = (&self.admin_key, authorization) else {
            return false;
        };
        let Some(given) = header.strip_prefix("Bearer ") else {
            return false;
        };
        constant_time_eq(given.trim().as_bytes(), key.as_bytes())
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

    fn auth() -> Authenticator {
        Authenticator::new("test-secret", Duration::from_secs(60), Some("admin".into()))
    }

    #[test]
    fn an_issued_token_verifies_for_its_user_and_room_only() {
        let a = auth();
        let t = a.issue("alice", "r1");
        assert_eq!(a.verify_for(&t.token, "alice", "r1").unwrap().sub, "alice");
        assert_eq!(
            a.verify_for(&t.token, "bob", "r1"),
            Err(TokenError::UserMismatch)
        );
        assert_eq!(
            a.verify_for(&t.token, "alice", "r2"),
            Err(TokenError::RoomMismatch("r1".into()))
        );
    }

    #[test]
    fn forged_expired_and_garbage_tokens_fail_differently() {
        let a = auth();
        let other = Authenticator::new("another-secret", Duration::from_secs(60), None);
        assert_eq!(
            a.verify(&other.issue("alice", "r1").token),
            Err(TokenError::BadSignature)
        );
        assert_eq!(a.verify("not-a-jwt"), Err(TokenError::Malformed));
        let expired = Claims {
            sub: "alice".into(),
            room: "r1".into(),
            iat: 1,
            exp: 2,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &expired,
            &EncodingKey::from_secret(b"test-secret"),
        )
        .unwrap();
        assert_eq!(a.verify(&t), Err(TokenError::Expired));
    }

    /// Found by fuzzing (fuzz/fuzz_targets/token.rs): `nbf` was not checked.
    #[test]
    fn a_token_not_yet_valid_is_refused() {
        #[derive(Serialize)]
        struct WithNbf<'a> {
            sub: &'a str,
            room: &'a str,
            exp: u64,
            nbf: u64,
        }
        let a = auth();
        let sign = |nbf| {
            let claims = WithNbf {
                sub: "alice",
                room: "r1",
                exp: now_secs() + 3600,
                nbf,
            };
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"test-secret"),
            )
            .unwrap()
        };
        assert_eq!(
            a.verify(&sign(now_secs() + 600)),
            Err(TokenError::Malformed)
        );
        assert!(a.verify(&sign(now_secs())).is_ok());
    }

    #[test]
    fn only_hs256_is_accepted() {
        let a = auth();
        let claims = Claims {
            sub: "alice".into(),
            room: "r1".into(),
            iat: now_secs(),
            exp: now_secs() + 60,
        };
        // alg none: a header naming it, and no signature.
        let b64 = |v: &[u8]| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
        };
        let body = b64(&serde_json::to_vec(&claims).unwrap());
        for alg in ["none", "HS384", "RS256", "ES256"] {
            let head = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            let forged = format!("{head}.{body}.");
            assert!(a.verify(&forged).is_err(), "{alg} accepted");
        }
        assert!(a.verify(&a.issue("alice", "r1").token).is_ok());
    }

    #[test]
    fn the_admin_key_must_match_exactly() {
        let a = auth();
        assert!(a.is_admin(Some("Bearer admin")));
        assert!(!a.is_admin(Some("Bearer admin2")));
        assert!(!a.is_admin(Some("admin")));
        assert!(!a.is_admin(None));
    }
}

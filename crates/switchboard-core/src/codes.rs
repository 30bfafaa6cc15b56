//! Rendezvous codes (nt-backend-wrtc's `/rendezvous/code` and `/redeem`): short numeric
//! codes that stand for an app id for a while, redeemable once. [`CodeBook`] is the seam;
//! [`LocalCodes`] keeps them in memory, a cluster backend keeps them where every node sees
//! them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::Op;

/// Live codes at most: every 4-digit code.
pub const CODE_SPACE: u32 = 10_000;

/// An issued code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCode {
    /// The code, 0–9999 (shown as 4 digits).
    pub code: u32,
    /// What it stands for.
    pub app_id: String,
    /// When it stops being redeemable.
    pub expires: SystemTime,
}

/// Why a code could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Every code is live.
    #[error("code-space exhausted")]
    Exhausted,
    /// The backend could not be reached.
    #[error("code store unavailable: {0}")]
    Unavailable(String),
}

/// Where rendezvous codes live.
pub trait CodeBook: Send + Sync + std::fmt::Debug + 'static {
    /// Issues a fresh code for `app_id`, live for `ttl`, unique among live codes.
    fn issue(&self, app_id: String, ttl: Duration) -> Op<'_, Result<IssuedCode, CodeError>>;
    /// Redeems `code` once: what it stood for, or `None` when unknown, expired or used.
    fn redeem(&self, code: u32) -> Op<'_, Result<Option<IssuedCode>, CodeError>>;
}

/// Codes in this process's memory.
#[derive(Debug, Default)]
pub struct LocalCodes {
    /// Invariant: never held across an `.await`.
    live: Mutex<HashMap<u32, IssuedCode>>,
}

impl LocalCodes {
    /// Live codes now.
    #[cfg(test)]
    fn live(&self) -> usize {
        let now = SystemTime::now();
        self.lock().values().filter(|c| c.expires > now).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, IssuedCode>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Issues a code, starting the search for a free one at `start`.
    ///
    /// # Errors
    /// [`CodeError::Exhausted`] when every code is live.
    pub fn issue_from(
        &self,
        start: u32,
        app_id: String,
        ttl: Duration,
    ) -> Result<IssuedCode, CodeError> {
        let now = SystemTime::now();
        let mut live = self.lock();
        live.retain(|_, c| c.expires > now);
        if live.len() >= CODE_SPACE as usize {
            return Err(CodeError::Exhausted);
        }
        let mut n = start % CODE_SPACE;
        while live.contains_key(&n) {
            n = (n + 1) % CODE_SPACE;
        }
        let issued = IssuedCode {
            code: n,
            app_id,
            expires: now + ttl,
        };
        live.insert(n, issued.clone());
        Ok(issued)
    }
}

impl CodeBook for LocalCodes {
    fn issue(&self, app_id: String, ttl: Duration) -> Op<'_, Result<IssuedCode, CodeError>> {
        let start = random_below(CODE_SPACE);
        Op::ready(self.issue_from(start, app_id, ttl))
    }

    fn redeem(&self, code: u32) -> Op<'_, Result<Option<IssuedCode>, CodeError>> {
        let now = SystemTime::now();
        let found = self.lock().remove(&code).filter(|c| c.expires > now);
        Op::ready(Ok(found))
    }
}

/// A number below `n`, from the standard library's randomly seeded hasher (the core has no
/// random-number dependency; codes need spread, not secrecy: they are single use and live
/// minutes).
fn random_below(n: u32) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() % u64::from(n)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn codes_are_unique_while_live_and_redeemable_once() {
        let codes = LocalCodes::default();
        let a = codes
            .issue_from(7, "a".into(), Duration::from_secs(60))
            .unwrap();
        let b = codes
            .issue_from(7, "b".into(), Duration::from_secs(60))
            .unwrap();
        assert_eq!((a.code, b.code), (7, 8));
        assert_eq!(codes.live(), 2);
        assert_eq!(
            codes.redeem(7).await.unwrap().map(|c| c.app_id),
            Some("a".into())
        );
        assert_eq!(codes.redeem(7).await.unwrap(), None);
        let gone = codes.issue_from(1, "x".into(), Duration::ZERO).unwrap();
        assert_eq!(codes.redeem(gone.code).await.unwrap(), None, "expired");
    }
}

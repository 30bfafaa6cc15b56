//! Rendezvous codes in Redis, so that a code issued by one node is redeemed on any: one
//! key per code (`sb:{codes}:NNNN`, value `"<appID>\n<expires ms>"`, expiring with it),
//! issued by a script that takes the first free code from a random start, redeemed once
//! with `GETDEL`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchboard_core::{CODE_SPACE, CodeBook, CodeError, IssuedCode, Op};

use super::{Inner, store, wire};

/// The cluster's [`CodeBook`].
pub struct RedisCodes {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCodes").finish_non_exhaustive()
    }
}

impl RedisCodes {
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

impl CodeBook for RedisCodes {
    fn issue(&self, app_id: String, ttl: Duration) -> Op<'_, Result<IssuedCode, CodeError>> {
        Op::pending(async move {
            let mut c = self.inner.conn()?;
            let expires = SystemTime::now() + ttl;
            let expires_ms = expires
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let prefix = wire::code(0);
            let prefix = &prefix[..prefix.len() - 4];
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let n: i64 = store::call(
                "script issue_code",
                self.inner
                    .scripts
                    .issue_code
                    .arg(prefix)
                    .arg(rand::random::<u32>() % CODE_SPACE)
                    .arg(format!("{app_id}\n{expires_ms}"))
                    .arg(ttl_ms)
                    .invoke_async(&mut c),
            )
            .await?;
            let code = u32::try_from(n).map_err(|_| CodeError::Exhausted)?;
            Ok(IssuedCode {
                code,
                app_id,
                expires: UNIX_EPOCH + Duration::from_millis(expires_ms),
            })
        })
    }

    fn redeem(&self, code: u32) -> Op<'_, Result<Option<IssuedCode>, CodeError>> {
        Op::pending(async move {
            if code >= CODE_SPACE {
                return Ok(None);
            }
            let mut c = self.inner.conn()?;
            let v: Option<String> = store::call(
                "GETDEL",
                redis::cmd("GETDEL")
                    .arg(wire::code(code))
                    .query_async(&mut c),
            )
            .await?;
            Ok(v.and_then(|v| {
                let (app_id, ms) = v.split_once('\n')?;
                let expires = UNIX_EPOCH + Duration::from_millis(ms.parse().ok()?);
                (expires > SystemTime::now()).then(|| IssuedCode {
                    code,
                    app_id: app_id.to_owned(),
                    expires,
                })
            }))
        })
    }
}

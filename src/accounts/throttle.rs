//! Slowing down and then locking repeated failures per key (an account's email, a client address), so that
//! passwords, dates of birth and links cannot be guessed. Keys for unknown emails count the same as real
//! ones, so a lock reveals nothing about who has an account.

use std::time::Duration;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::store::SharedStore;
use crate::store::accounts::ThrottleRow;

const MINUTE: i64 = 60_000;

/// How many failures a key may have within `window` before answers slow down and then stop.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub window: i64,
    /// From this many failures on, each failed answer waits a little longer.
    pub slow_after: i64,
    pub lock_after: i64,
    pub lock_for: i64,
}

/// Sign-in failures for one email address.
pub const SIGN_IN_ACCOUNT: Policy = Policy {
    window: 15 * MINUTE,
    slow_after: 3,
    lock_after: 5,
    lock_for: 15 * MINUTE,
};

/// Sign-in failures from one client address (many accounts).
pub const SIGN_IN_ADDRESS: Policy = Policy {
    window: 15 * MINUTE,
    slow_after: 10,
    lock_after: 30,
    lock_for: 15 * MINUTE,
};

/// Wrong answers on an invitation or reset link page (date of birth), per address.
pub const LINK: Policy = Policy {
    window: 15 * MINUTE,
    slow_after: 3,
    lock_after: 10,
    lock_for: 15 * MINUTE,
};

/// Password reset requests (every request counts), per email and per address.
pub const RESET_REQUEST: Policy = Policy {
    window: 60 * MINUTE,
    slow_after: i64::MAX,
    lock_after: 5,
    lock_for: 60 * MINUTE,
};

/// Invitations a staff member sends (every one counts).
pub const INVITE: Policy = Policy {
    window: 60 * MINUTE,
    slow_after: i64::MAX,
    lock_after: 200,
    lock_for: 60 * MINUTE,
};

#[derive(Clone)]
pub struct Throttle {
    store: SharedStore,
    clock: Clock,
}

/// What one more failure led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// This failure locked the key.
    pub locked_now: bool,
    /// How long to hold the answer back.
    pub delay: Duration,
}

fn locked(until: i64, now: i64) -> Error {
    let minutes = ((until - now) + MINUTE - 1) / MINUTE;
    Error::TooManyRequests(format!(
        "Too many unsuccessful attempts. For your security this is locked for {minutes} minute{}; please try again later.",
        if minutes == 1 { "" } else { "s" }
    ))
}

impl Throttle {
    pub fn new(store: SharedStore, clock: Clock) -> Self {
        Throttle { store, clock }
    }

    /// Refuses while any of `keys` is locked.
    pub async fn check(&self, keys: &[&str]) -> Result<()> {
        let now = self.clock.now_millis();
        for key in keys {
            if let Some(row) = self.store.throttle(key).await?
                && row.locked_until > now
            {
                return Err(locked(row.locked_until, now));
            }
        }
        Ok(())
    }

    /// Counts one failure (or request) under `key`.
    pub async fn count(&self, key: &str, policy: Policy) -> Result<Counted> {
        let now = self.clock.now_millis();
        let mut row = match self.store.throttle(key).await? {
            Some(row) if row.first_failure + policy.window > now => row,
            _ => ThrottleRow {
                key: key.to_owned(),
                failures: 0,
                first_failure: now,
                locked_until: 0,
            },
        };
        row.failures += 1;
        let locked_now = row.failures >= policy.lock_after && row.locked_until <= now;
        if locked_now {
            row.locked_until = now + policy.lock_for;
        }
        self.store.save_throttle(&row).await?;
        let over = row.failures.saturating_sub(policy.slow_after - 1).clamp(0, 4);
        Ok(Counted {
            locked_now,
            delay: Duration::from_millis(250 * over as u64),
        })
    }

    /// Whether `key` is locked now, as the error to show.
    pub async fn lock_error(&self, key: &str) -> Result<Option<Error>> {
        let now = self.clock.now_millis();
        Ok(self
            .store
            .throttle(key)
            .await?
            .filter(|r| r.locked_until > now)
            .map(|r| locked(r.locked_until, now)))
    }

    pub async fn clear(&self, key: &str) -> Result<()> {
        self.store.clear_throttle(key).await
    }
}

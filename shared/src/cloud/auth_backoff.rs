//! Backing off after failed Keystone authentication, per provider.
//!
//! A wrong password (or an `auth_url` nobody answers on) makes every API call of a
//! provider fail at the token request. Without a pause, every caller — node deletes,
//! launches, leak cleanup, quota and lookups — would ask Keystone for a token again at
//! once, thousands of times a minute, and a Keystone with lockout would lock the
//! account. So a failed token request opens a window (1 s, doubling up to 60 s) in which
//! no token is requested at all: callers get [`CloudError::AuthBackoff`] at once, with
//! the last real error in it. The first token request after the window is the only
//! one; it closes the backoff on success and doubles the window on failure. A new driver
//! (the provider restarted after its config or clouds.yaml changed) starts without one.
//!
//! Pure state; [`super::transport`] consults it under its authentication lock.

use std::time::Duration;

use tokio::time::Instant;

use super::error::CloudError;

/// The first window after a failed token request.
pub const AUTH_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The longest window.
pub const AUTH_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The authentication backoff of one driver.
#[derive(Debug, Default)]
pub struct AuthBackoff {
    /// Token requests failed in a row.
    failures: u32,
    /// No token request before this.
    until: Option<Instant>,
    /// The last failure, for the errors given out during the window.
    last_error: String,
}

impl AuthBackoff {
    /// `Err` (without any request) while the window after a failure is open.
    pub fn check(&self, now: Instant) -> Result<(), CloudError> {
        match self.until {
            Some(until) if until > now => Err(CloudError::AuthBackoff {
                failures: self.failures,
                retry_in: until - now,
                last_error: self.last_error.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Records a failed token request at `now`; returns the new window.
    pub fn failed(&mut self, now: Instant, error: &CloudError) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let window = window_after(self.failures);
        self.until = Some(now + window);
        self.last_error = error.to_string();
        window
    }

    /// Records a successful token request; returns how many had failed before it.
    pub fn succeeded(&mut self) -> u32 {
        let failed = self.failures;
        *self = AuthBackoff::default();
        failed
    }
}

/// The window after `failures` failed token requests in a row (1 s, 2 s, 4 s … 60 s).
pub fn window_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (AUTH_BACKOFF_INITIAL * 2u32.pow(doublings)).min(AUTH_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_error() -> CloudError {
        CloudError::from_status("identity.POST.auth.tokens", 401, b"bad credentials")
    }

    #[test]
    fn windows_double_up_to_the_cap() {
        let got: Vec<u64> = (1..=9).map(|n| window_after(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(window_after(u32::MAX), AUTH_BACKOFF_MAX);
    }

    #[test]
    fn open_window_fails_fast_with_the_last_error_then_closes() {
        let mut b = AuthBackoff::default();
        let t0 = Instant::now();
        assert!(b.check(t0).is_ok());
        assert_eq!(b.failed(t0, &auth_error()), Duration::from_secs(1));
        let e = b.check(t0 + Duration::from_millis(500)).unwrap_err();
        assert!(e.is_auth() && e.is_retryable(), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("bad credentials"), "{text}");
        assert!(text.contains("1 failed"), "{text}");
        assert!(b.check(t0 + Duration::from_secs(1)).is_ok());
        assert_eq!(
            b.failed(t0 + Duration::from_secs(1), &auth_error()),
            Duration::from_secs(2)
        );
        assert!(b.check(t0 + Duration::from_secs(2)).is_err());
        assert_eq!(b.succeeded(), 2);
        assert!(b.check(t0 + Duration::from_secs(2)).is_ok());
        assert_eq!(b.succeeded(), 0);
    }
}

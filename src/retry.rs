//! "Retry until it works": the one place that owns how long to wait between tries
//! ([`Backoff`]: exponential with jitter, capped), that a failure repeating itself is reported
//! once, not once per try, and that a stopping daemon is never kept waiting ([`Retry`] honours
//! the cancel token during every wait).
//!
//! What a failure *means* stays with the caller: it decides what to log (and at which level)
//! when the error is new, and what to do when the daemon stops. Used by the journal's
//! `until_stored`, by finish (placing a file, completing an interrupted finish), and by
//! submit for its waits between API tries.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long to wait before the next try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: bool,
}

impl Backoff {
    /// `base`, doubling with each failed try, capped at `max`, with jitter in [½, 1] (many
    /// files failing together do not retry in step).
    pub const fn exponential(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            jitter: true,
        }
    }

    /// Always `every`, no jitter.
    pub const fn every(every: Duration) -> Backoff {
        Backoff {
            base: every,
            max: every,
            jitter: false,
        }
    }

    /// The wait after the `attempt`-th failed try (counted from 1).
    pub fn wait(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        if self.jitter {
            capped.mul_f64(0.5 + fastrand::f64() * 0.5)
        } else {
            capped
        }
    }
}

/// The state of one "retry until it works" loop: how many tries failed, and the last error
/// reported (so a repeat is not reported again).
pub struct Retry<'a> {
    stop: &'a CancellationToken,
    backoff: Backoff,
    failures: u32,
    last_error: Option<String>,
}

impl<'a> Retry<'a> {
    pub fn new(stop: &'a CancellationToken, backoff: Backoff) -> Retry<'a> {
        Retry {
            stop,
            backoff,
            failures: 0,
            last_error: None,
        }
    }

    /// A try failed with `error`: `report` gets its text (`{error:#}`) if it differs from the
    /// previous failure's, then this waits the backoff. False if the daemon stopped meanwhile
    /// (then the caller gives up at once).
    pub async fn failed(&mut self, error: &anyhow::Error, report: impl FnOnce(&str)) -> bool {
        self.failures += 1;
        let text = format!("{error:#}");
        if self.last_error.as_deref() != Some(text.as_str()) {
            report(&text);
            self.last_error = Some(text);
        }
        let wait = self.backoff.wait(self.failures);
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    /// Whether any try has failed so far (e.g. to say "working again" after a success).
    pub fn has_failed(&self) -> bool {
        self.failures > 0
    }
}

/// Runs `attempt` until it succeeds (`Some`) or the daemon stops (`None`). `report` is called
/// once per distinct error; `recovered` once, on a success after failures.
pub async fn until_ok<T, F, Fut>(
    stop: &CancellationToken,
    backoff: Backoff,
    mut attempt: F,
    mut report: impl FnMut(&str),
    recovered: impl FnOnce(),
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut retry = Retry::new(stop, backoff);
    loop {
        match attempt().await {
            Ok(v) => {
                if retry.has_failed() {
                    recovered();
                }
                return Some(v);
            }
            Err(e) => {
                if !retry.failed(&e, &mut report).await {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let backoff = Backoff::exponential(base, max);
        for attempt in 1..30 {
            let d = backoff.wait(attempt);
            let full = base.saturating_mul(1 << (attempt - 1).min(20)).min(max);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert_eq!(Backoff::every(max).wait(1), max);
        assert_eq!(Backoff::every(max).wait(7), max);
    }

    #[tokio::test]
    async fn a_repeated_error_is_reported_once_and_a_new_one_again() {
        let stop = CancellationToken::new();
        let results = [
            "disk full",
            "disk full",
            "disk full",
            "read-only",
            "read-only",
        ];
        let mut tries = 0;
        let mut reported = Vec::new();
        let mut recovered = false;
        let got = until_ok(
            &stop,
            Backoff::exponential(Duration::from_millis(1), Duration::from_millis(2)),
            || {
                tries += 1;
                let outcome = results
                    .get(tries - 1)
                    .map_or(Ok(tries), |e| Err(anyhow::anyhow!(*e)));
                async move { outcome }
            },
            |text| reported.push(text.to_string()),
            || recovered = true,
        )
        .await;
        assert_eq!(got, Some(6));
        assert_eq!(reported, ["disk full", "read-only"]);
        assert!(recovered);
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait_at_once() {
        let stop = CancellationToken::new();
        let mut retry = Retry::new(&stop, Backoff::every(Duration::from_secs(3600)));
        let canceller = stop.clone();
        tokio::spawn(async move { canceller.cancel() });
        let error = anyhow::anyhow!("no");
        let failed = retry.failed(&error, |_| {});
        let waited = tokio::time::timeout(Duration::from_secs(60), failed).await;
        assert_eq!(waited.ok(), Some(false), "a stop must end an hour's wait");
    }
}

//! When to ask for a result: learned from how long the service took for the last files sent
//! the same way (same request: document type, stages, project, tariff).
//!
//! Each result found ready leaves two times in the journal (`ready_ms`: the ask that got the
//! 200, `pending_ms`: the last ask before it that got a 425, both counted from the submit),
//! so the window of the last [`WINDOW`] files survives restarts. From it a [`Schedule`] is
//! made per document: the first *sure* ask (one that competes for the request budget) comes
//! when nine in ten of those files were ready, then the asks back off by half again each time.
//! Before that, *spare* asks may go from when the quickest of them was ready, only on request
//! slots nothing else wants (no submit waiting or being prepared), so a spare budget buys a
//! shorter wait and a scarce one is spent only on asks likely to be answered. `first_poll`
//! and `max_poll_interval` stay the bounds: no ask before `first_poll`, the first sure ask no
//! later than `first_poll + max_poll_interval`, no gap between asks over `max_poll_interval`.
//! Until [`MIN_SAMPLES`] files are known, asks follow `first_poll` and the growing interval.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::pipeline::Recorder;

/// How many recent files per request the schedule learns from.
pub const WINDOW: usize = 50;

/// Below this many known files, the schedule is the configured one.
pub const MIN_SAMPLES: usize = 5;

/// The share of recent files ready by the first sure ask.
const SURE_SHARE: f64 = 0.9;

/// Spare asks between the quickest file's time and the first sure ask, at most.
const SPARE_ASKS: u32 = 4;

/// Shortest gap between two asks of one document.
const MIN_GAP: Duration = Duration::from_millis(100);

/// One file's ready time, as its asks bracketed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The last ask that was still pending, if any.
    pub pending: Option<Duration>,
    /// The ask that found it ready.
    pub ready: Duration,
}

impl Sample {
    /// The best guess of when it was ready: between the two asks, or (no pending ask) the
    /// ready ask itself, which errs late, never early.
    fn estimate(&self) -> Duration {
        match self.pending {
            Some(pending) if pending < self.ready => pending + (self.ready - pending) / 2,
            _ => self.ready,
        }
    }
}

/// The learned windows, per request; loaded from the journal the first time a request is
/// polled in this session, then kept up to date in memory and in the journal.
#[derive(Default)]
pub struct ReadyTimes {
    windows: tokio::sync::Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl ReadyTimes {
    /// The asks for a document just sent as `request`.
    pub async fn schedule(
        &self,
        recorder: &Recorder,
        request: &str,
        first_poll: Duration,
        max_interval: Duration,
    ) -> Schedule {
        let mut windows = self.windows.lock().await;
        if !windows.contains_key(request) {
            let known = recorder.ready_times(request, WINDOW).await;
            let samples = known
                .into_iter()
                .map(|(pending, ready)| Sample { pending, ready })
                .collect();
            windows.insert(request.to_string(), samples);
        }
        let window = windows.get(request).expect("inserted above");
        Schedule::learned(window.iter(), first_poll, max_interval)
            .unwrap_or_else(|| Schedule::configured(first_poll, max_interval))
    }

    /// A result of `request` was found ready: remember when (the poll stage records it
    /// with the file, for the next session).
    pub async fn observe(&self, request: &str, sample: Sample) {
        let mut windows = self.windows.lock().await;
        let window = windows.entry(request.to_string()).or_default();
        window.push_front(sample);
        window.truncate(WINDOW);
    }
}

/// One ask: when (after the submit), and whether it is spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub at: Duration,
    pub spare: bool,
}

/// The asks for one document, in order.
#[derive(Debug, Clone)]
pub struct Schedule {
    next_at: Duration,
    /// From here on the asks are sure ones.
    sure_at: Duration,
    /// The spare asks' spacing; after `sure_at`, the gap to the next ask (grows).
    step: Duration,
    max_interval: Duration,
}

impl Schedule {
    /// As configured: `first_poll`, then intervals half as long again each time, up to
    /// `max_interval`. All sure.
    pub fn configured(first_poll: Duration, max_interval: Duration) -> Schedule {
        Schedule {
            next_at: first_poll,
            sure_at: first_poll,
            step: first_poll,
            max_interval,
        }
    }

    /// From the learned samples, or `None` while there are too few.
    fn learned<'a>(
        samples: impl Iterator<Item = &'a Sample>,
        first_poll: Duration,
        max_interval: Duration,
    ) -> Option<Schedule> {
        let mut estimates: Vec<Duration> = samples.map(Sample::estimate).collect();
        if estimates.len() < MIN_SAMPLES {
            return None;
        }
        estimates.sort();
        let index = ((estimates.len() - 1) as f64 * SURE_SHARE).ceil() as usize;
        let sure_at = estimates[index]
            .max(first_poll)
            .min(first_poll + max_interval);
        let spare_from = estimates[0].max(first_poll).min(sure_at);
        let step = ((sure_at - spare_from) / SPARE_ASKS).clamp(MIN_GAP, max_interval.max(MIN_GAP));
        Some(Schedule {
            next_at: spare_from,
            sure_at,
            step,
            max_interval,
        })
    }

    /// The first ask of a document whose result has already been asked for `asked_before`
    /// (a restart): the rest of the configured first wait, then as configured.
    pub fn resumed(
        first_poll: Duration,
        max_interval: Duration,
        asked_before: Duration,
    ) -> Schedule {
        let mut schedule = Schedule::configured(first_poll, max_interval);
        schedule.next_at = first_poll.saturating_sub(asked_before);
        schedule.sure_at = schedule.next_at;
        schedule
    }

    /// When the next ask is.
    pub fn next_at(&self) -> Duration {
        self.next_at
    }

    /// When the ask after the next one would be (a spare ask not granted by then is skipped).
    pub fn peek_after_next(&self) -> Duration {
        self.clone().advanced().next_at
    }

    /// The next ask.
    pub fn next_ask(&mut self) -> Ask {
        let ask = Ask {
            at: self.next_at,
            spare: self.next_at < self.sure_at,
        };
        *self = self.clone().advanced();
        ask
    }

    fn advanced(mut self) -> Schedule {
        if self.next_at < self.sure_at {
            self.next_at = (self.next_at + self.step).min(self.sure_at);
        } else {
            self.step = grow(self.step, self.max_interval);
            self.next_at += self.step;
        }
        self
    }
}

/// Half as long again, up to the ceiling.
fn grow(interval: Duration, max: Duration) -> Duration {
    interval.mul_f64(1.5).min(max).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn intervals_grow_to_the_ceiling() {
        let max = Duration::from_secs(30);
        let mut i = Duration::from_secs(3);
        for _ in 0..20 {
            i = grow(i, max);
        }
        assert_eq!(i, max);
    }

    #[test]
    fn the_configured_schedule_grows_to_the_ceiling() {
        let mut schedule = Schedule::configured(s(1000), s(2000));
        let asks: Vec<Ask> = (0..4).map(|_| schedule.next_ask()).collect();
        let at: Vec<Duration> = asks.iter().map(|a| a.at).collect();
        assert_eq!(at, vec![s(1000), s(2500), s(4500), s(6500)]);
        assert!(asks.iter().all(|a| !a.spare));
    }

    /// Issue 12: with enough samples the first sure ask comes when nine in ten were ready,
    /// spare asks before it from the quickest one's time; then the asks back off.
    #[test]
    fn the_learned_schedule_asks_when_nine_in_ten_were_ready() {
        let samples: Vec<Sample> = (0..10)
            .map(|n| Sample {
                pending: None,
                ready: s(1000 + 200 * n),
            })
            .collect();
        let mut schedule = Schedule::learned(samples.iter(), s(500), s(5000)).unwrap();
        let asks: Vec<Ask> = (0..7).map(|_| schedule.next_ask()).collect();
        let spare: Vec<Duration> = asks.iter().filter(|a| a.spare).map(|a| a.at).collect();
        assert_eq!(spare, vec![s(1000), s(1450), s(1900), s(2350)]);
        let sure: Vec<Duration> = asks.iter().filter(|a| !a.spare).map(|a| a.at).collect();
        assert_eq!(sure[0], s(2800));
        assert!(sure[1] - sure[0] < sure[2] - sure[1], "backs off: {sure:?}");
    }

    #[test]
    fn first_poll_and_max_poll_interval_stay_the_bounds() {
        let slow: Vec<Sample> = (0..10)
            .map(|_| Sample {
                pending: Some(s(90_000)),
                ready: s(100_000),
            })
            .collect();
        let mut schedule = Schedule::learned(slow.iter(), s(3000), s(30_000)).unwrap();
        let first = schedule.next_ask();
        assert_eq!(
            first.at,
            s(33_000),
            "no later than first_poll + max_poll_interval"
        );
        let quick: Vec<Sample> = (0..10)
            .map(|_| Sample {
                pending: None,
                ready: s(100),
            })
            .collect();
        let mut schedule = Schedule::learned(quick.iter(), s(3000), s(30_000)).unwrap();
        assert_eq!(
            schedule.next_ask(),
            Ask {
                at: s(3000),
                spare: false
            },
            "never before first_poll"
        );
        let few = &quick[..MIN_SAMPLES - 1];
        assert!(Schedule::learned(few.iter(), s(3000), s(30_000)).is_none());
    }

    #[test]
    fn a_sample_between_two_asks_counts_halfway() {
        let bracketed = Sample {
            pending: Some(s(1000)),
            ready: s(2000),
        };
        assert_eq!(bracketed.estimate(), s(1500));
        let first_ask = Sample {
            pending: None,
            ready: s(2000),
        };
        assert_eq!(first_ask.estimate(), s(2000));
    }
}

//! The one owner of the account's request budget.
//!
//! Every request to the API waits here for a turn. A single dispatcher task holds two governor
//! limiters with burst 1: one for all requests (`requests_per_second`) and one for submits
//! (`documents_per_minute`). It hands out turns itself, so waiters are served in order and by
//! priority rather than by whichever task wakes first: a submit goes when both budgets allow,
//! polls fill the other slots, and when both compete they alternate so neither starves.
//!
//! It also owns the account pause: after a 401/402 no submit turn (and, for 401, no poll turn)
//! is given until `account_retry` has passed.
//!
//! With `[budget] redis` the budget is shared with other daemons on the same account: the
//! dispatcher of [`shared`] takes this one's place, behind the same interface, and every turn
//! is granted by Redis ([`crate::budget`]) instead of the governor limiters.

mod shared;

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

use crate::budget::SharedBudget;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Periods are stretched by this factor plus [`PACING_SLACK`]: the server measures arrival
/// times, and network or scheduling jitter can squeeze two requests closer together than we
/// sent them. At 1 request a second the two cost 2.5 % of the budget.
pub const PACING_MARGIN: f64 = 1.02;

/// Added to every period, for jitter that does not scale with the period.
pub const PACING_SLACK: Duration = Duration::from_millis(5);

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    DefaultClock,
    governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;

/// The two ceilings, from `[api]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub requests_per_second: f64,
    pub documents_per_minute: f64,
}

/// Longest period the scheduler works with, whatever the limits say (config allows far less):
/// keeps every `Instant` sum and the limiter's nanosecond count far from overflowing.
pub const MAX_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

impl Limits {
    /// Smallest spacing between any two requests we send.
    pub fn request_period(&self) -> Duration {
        period(PACING_MARGIN / self.requests_per_second)
    }
    /// Smallest spacing between two submits we send.
    pub fn submit_period(&self) -> Duration {
        period(PACING_MARGIN * 60.0 / self.documents_per_minute)
    }
}

/// `seconds` (plus the slack) as a period within [1 ms, `MAX_PERIOD`]; a rate of zero, a
/// negative one or NaN means the longest period rather than a panic.
fn period(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds)
        .unwrap_or(MAX_PERIOD)
        .saturating_add(PACING_SLACK)
        .clamp(Duration::from_millis(1), MAX_PERIOD)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Submit,
    Poll,
}

struct Waiter {
    kind: Kind,
    /// Submits: lower goes first (the journal id, so files go in claim order, oldest first,
    /// whichever finished preparing its body first).
    priority: i64,
    grant: oneshot::Sender<()>,
}

/// The account's standing with the API, as the last requests showed it.
#[derive(Debug, Clone, Default)]
pub struct AccountState {
    /// Submits (and for 401, polls) wait until then.
    pub paused_until: Option<Instant>,
    /// The last refusal (401/402) not yet followed by a success.
    pub problem: Option<AccountProblem>,
}

/// A 401 or 402 from the API.
#[derive(Debug, Clone)]
pub struct AccountProblem {
    pub status: u16,
    pub message: String,
    /// When the account first refused, in this episode.
    pub since: SystemTime,
}

impl AccountState {
    fn blocks(&self, kind: Kind, now: Instant) -> bool {
        let paused = self.paused_until.is_some_and(|t| t > now);
        match kind {
            Kind::Submit => paused,
            // A 402 is about money for new documents; results of paid ones can still be read.
            Kind::Poll => paused && self.problem.as_ref().is_some_and(|p| p.status == 401),
        }
    }
}

/// What the dispatcher is told.
enum Message {
    Turn(Waiter),
    /// New ceilings (a config reload).
    Limits(Limits),
}

/// A cheap handle; clones talk to the same dispatcher.
#[derive(Clone)]
pub struct Scheduler {
    waiters: mpsc::UnboundedSender<Message>,
    account: Arc<Mutex<AccountState>>,
    /// Wakes the dispatcher when the account state changes.
    account_changed: Arc<Notify>,
    /// The budget shared with other daemons through Redis, when configured.
    shared: Option<SharedBudget>,
}

impl Scheduler {
    /// Starts the dispatcher task; it stops when `cancel` fires.
    pub fn start(limits: Limits, cancel: CancellationToken) -> Scheduler {
        let (tx, rx) = mpsc::unbounded_channel();
        let account = Arc::new(Mutex::new(AccountState::default()));
        let account_changed = Arc::new(Notify::new());
        let dispatcher = Dispatcher {
            requests: limiter(limits.request_period()),
            submits: limiter(limits.submit_period()),
            clock: DefaultClock::default(),
            incoming: rx,
            submit_queue: BTreeMap::new(),
            arrivals: 0,
            poll_queue: VecDeque::new(),
            next_submit_at: Instant::now(),
            last_was_submit: false,
            account: account.clone(),
            account_changed: account_changed.clone(),
        };
        tokio::spawn(dispatcher.run(cancel));
        Scheduler {
            waiters: tx,
            account,
            account_changed,
            shared: None,
        }
    }

    /// Like [`Scheduler::start`], with the budget shared through Redis: turns come from there,
    /// and this daemon's 401/402 pauses every daemon on the budget.
    pub fn start_shared(
        limits: Limits,
        budget: SharedBudget,
        cancel: CancellationToken,
    ) -> Scheduler {
        let (tx, rx) = mpsc::unbounded_channel();
        let account = Arc::new(Mutex::new(AccountState::default()));
        let account_changed = Arc::new(Notify::new());
        let dispatcher = shared::SharedDispatcher::new(
            limits,
            budget.clone(),
            rx,
            account.clone(),
            account_changed.clone(),
        );
        tokio::spawn(dispatcher.run(cancel));
        Scheduler {
            waiters: tx,
            account,
            account_changed,
            shared: Some(budget),
        }
    }

    /// The shared budget, when there is one (for `status` and `/metrics`).
    pub fn shared_budget(&self) -> Option<&SharedBudget> {
        self.shared.as_ref()
    }

    /// Resolves when a submit may be sent, right now. `None` once the scheduler has stopped.
    /// Send the request immediately after this returns: the turn is a time slot. Among
    /// waiting submits the lowest `priority` goes first.
    pub async fn submit_turn(&self, priority: i64) -> Option<()> {
        self.turn(Kind::Submit, priority).await
    }

    /// Resolves when a result request may be sent, right now. Polls go in arrival order.
    pub async fn poll_turn(&self) -> Option<()> {
        self.turn(Kind::Poll, 0).await
    }

    async fn turn(&self, kind: Kind, priority: i64) -> Option<()> {
        let (grant, granted) = oneshot::channel();
        self.waiters
            .send(Message::Turn(Waiter {
                kind,
                priority,
                grant,
            }))
            .ok()?;
        granted.await.ok()
    }

    /// Applies new ceilings (config reload). The next request and the next submit each wait a
    /// full new period, so the change never lets two requests through closer than either
    /// the old or the new limits allow.
    pub fn set_limits(&self, limits: Limits) {
        let _ = self.waiters.send(Message::Limits(limits));
    }

    /// A 401/402: pause for `retry`. Logs one ERROR when the account first refuses; while
    /// already paused, later refusals (requests that were in flight) only extend the pause.
    pub fn account_refused(&self, status: u16, message: &str, retry: Duration) {
        let now = Instant::now();
        let mut state = self.account.lock().unwrap_or_else(|p| p.into_inner());
        let already_paused = state.paused_until.is_some_and(|t| t > now);
        let first_refusal = state.problem.is_none();
        let since = state
            .problem
            .as_ref()
            .map_or_else(SystemTime::now, |p| p.since);
        state.problem = Some(AccountProblem {
            status,
            message: message.to_string(),
            since,
        });
        state.paused_until = Some(now + retry.min(MAX_PERIOD));
        drop(state);
        if let Some(shared) = &self.shared {
            shared.account_refused(status, message, retry.min(MAX_PERIOD));
        }
        let what = account_problem_text(status);
        let retry_text = humantime::format_duration(retry);
        if first_refusal {
            tracing::error!(
                http_status = status,
                "the Beorg account refused the request ({what}; the service said: {message}); submits are paused for {retry_text} and no file is failed for this; fix the account and the daemon resumes on its own"
            );
        } else if !already_paused {
            tracing::warn!(
                http_status = status,
                "the Beorg account still refuses ({what}); next try in {retry_text}"
            );
        }
        self.account_changed.notify_one();
    }

    /// A request succeeded. A submit clears any account problem; a result clears a 401 (the
    /// token works), but not a 402 (only a paid submit proves there is money again).
    pub fn account_ok(&self, was_submit: bool) {
        let mut state = self.account.lock().unwrap_or_else(|p| p.into_inner());
        let clears = state
            .problem
            .as_ref()
            .is_some_and(|p| was_submit || p.status == 401);
        if clears {
            state.problem = None;
            state.paused_until = None;
            drop(state);
            if let Some(shared) = &self.shared {
                shared.account_ok(was_submit);
            }
            tracing::info!("the Beorg account works again; submits resumed");
            self.account_changed.notify_one();
        }
    }

    /// A snapshot of the account's standing.
    pub fn account(&self) -> AccountState {
        self.account
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn account_problem_text(status: u16) -> &'static str {
    match status {
        401 => "HTTP 401, token or machine_uid not accepted",
        402 => "HTTP 402, not enough money on the account",
        _ => "account problem",
    }
}

fn limiter(period: Duration) -> Limiter {
    let quota = Quota::with_period(period.clamp(Duration::from_millis(1), MAX_PERIOD))
        .expect("period is not zero")
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct(quota)
}

/// The task that owns the limiters and the queues of waiters.
struct Dispatcher {
    /// Every request, submits and polls together.
    requests: Limiter,
    /// Submits only.
    submits: Limiter,
    clock: DefaultClock,
    incoming: mpsc::UnboundedReceiver<Message>,
    /// Waiting submits by (priority, arrival).
    submit_queue: BTreeMap<(i64, u64), oneshot::Sender<()>>,
    arrivals: u64,
    poll_queue: VecDeque<oneshot::Sender<()>>,
    /// Before this the submit limiter is known to refuse; no request slot is spent on a
    /// submit-only queue until then.
    next_submit_at: Instant,
    /// Alternation when submits and polls both wait.
    last_was_submit: bool,
    account: Arc<Mutex<AccountState>>,
    account_changed: Arc<Notify>,
}

impl Dispatcher {
    async fn run(mut self, cancel: CancellationToken) {
        loop {
            self.take_incoming();
            let (want_submit, want_poll) = self.wants(Instant::now());
            if !want_submit && !want_poll {
                // Nothing can be served now: sleep until something could change that.
                let wake_at = self.next_wake();
                tokio::select! {
                    // Shutdown: dropping the queues tells every waiter "no more turns".
                    _ = cancel.cancelled() => return,
                    // A new waiter or new limits arrived (or every handle is gone: then stop).
                    message = self.incoming.recv() => match message {
                        Some(m) => self.receive(m),
                        None => return,
                    },
                    // The account was paused or resumed.
                    _ = self.account_changed.notified() => {}
                    // A pause ends or the submit budget refills.
                    _ = sleep_until_opt(wake_at) => {}
                }
                continue;
            }
            // Take one request slot; it is used at once below, never held.
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.requests.until_ready() => {}
            }
            self.take_incoming();
            self.use_slot(Instant::now());
        }
    }

    /// Hands the request slot just taken to a submit or a poll (or lets it go unused when the
    /// waiters left meanwhile).
    fn use_slot(&mut self, now: Instant) {
        let (want_submit, want_poll) = self.wants(now);
        let prefer_submit = want_submit && !(self.last_was_submit && want_poll);
        if prefer_submit {
            match self.submits.check() {
                Ok(()) => {
                    if grant_first(&mut self.submit_queue) {
                        self.last_was_submit = true;
                        return;
                    }
                }
                Err(not_until) => {
                    self.next_submit_at = now + not_until.wait_time_from(self.clock.now());
                }
            }
        }
        if want_poll && grant(&mut self.poll_queue) {
            self.last_was_submit = false;
        }
    }

    fn take_incoming(&mut self) {
        while let Ok(m) = self.incoming.try_recv() {
            self.receive(m);
        }
        self.submit_queue.retain(|_, w| !w.is_closed());
        self.poll_queue.retain(|w| !w.is_closed());
    }

    fn receive(&mut self, message: Message) {
        match message {
            Message::Turn(w) => self.enqueue(w),
            Message::Limits(limits) => {
                self.requests = limiter(limits.request_period());
                self.submits = limiter(limits.submit_period());
                // Spend the fresh limiters' first slot now: the next request and submit wait a
                // full period from the change, as they would have under the old limiters.
                let _ = self.requests.check();
                let _ = self.submits.check();
                self.next_submit_at = Instant::now() + limits.submit_period();
            }
        }
    }

    fn enqueue(&mut self, w: Waiter) {
        match w.kind {
            Kind::Submit => {
                self.arrivals += 1;
                self.submit_queue
                    .insert((w.priority, self.arrivals), w.grant);
            }
            Kind::Poll => self.poll_queue.push_back(w.grant),
        }
    }

    fn wants(&self, now: Instant) -> (bool, bool) {
        let account = self.account.lock().unwrap_or_else(|p| p.into_inner());
        let want_submit = !self.submit_queue.is_empty()
            && !account.blocks(Kind::Submit, now)
            && self.next_submit_at <= now;
        let want_poll = !self.poll_queue.is_empty() && !account.blocks(Kind::Poll, now);
        (want_submit, want_poll)
    }

    fn next_wake(&self) -> Option<Instant> {
        let account = self.account.lock().unwrap_or_else(|p| p.into_inner());
        let pause_end = account
            .paused_until
            .filter(|_| !self.submit_queue.is_empty() || !self.poll_queue.is_empty());
        let submit_ready = (!self.submit_queue.is_empty()).then_some(self.next_submit_at);
        [pause_end, submit_ready].into_iter().flatten().min()
    }
}

/// Gives the turn to the lowest-priority waiter still listening.
fn grant_first(queue: &mut BTreeMap<(i64, u64), oneshot::Sender<()>>) -> bool {
    while let Some((_, w)) = queue.pop_first() {
        if w.send(()).is_ok() {
            return true;
        }
    }
    false
}

/// Gives the turn to the first waiter still listening.
fn grant(queue: &mut VecDeque<oneshot::Sender<()>>) -> bool {
    while let Some(w) = queue.pop_front() {
        if w.send(()).is_ok() {
            return true;
        }
    }
    false
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects grant times of `n` submits and `m` polls all queued at once.
    async fn grant_times(limits: Limits, submits: usize, polls: usize) -> Vec<(Kind, Instant)> {
        let cancel = CancellationToken::new();
        let s = Scheduler::start(limits, cancel.clone());
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for kind in
            std::iter::repeat_n(Kind::Submit, submits).chain(std::iter::repeat_n(Kind::Poll, polls))
        {
            let (s, log) = (s.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                s.turn(kind, 0).await.unwrap();
                log.lock().unwrap().push((kind, Instant::now()));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        cancel.cancel();
        let mut v = log.lock().unwrap().clone();
        v.sort_by_key(|(_, t)| *t);
        v
    }

    #[tokio::test]
    async fn spacing_respects_both_limits_under_a_burst() {
        let limits = Limits {
            requests_per_second: 50.0,
            documents_per_minute: 600.0,
        };
        let v = grant_times(limits, 4, 12).await;
        let all: Vec<_> = v.iter().map(|(_, t)| *t).collect();
        for w in all.windows(2) {
            assert!(w[1] - w[0] >= limits.request_period() - Duration::from_millis(2));
        }
        let subs: Vec<_> = v
            .iter()
            .filter(|(k, _)| *k == Kind::Submit)
            .map(|(_, t)| *t)
            .collect();
        for w in subs.windows(2) {
            assert!(w[1] - w[0] >= limits.submit_period() - Duration::from_millis(2));
        }
    }

    #[tokio::test]
    async fn polls_are_not_starved_by_submits() {
        // Submit budget as large as the request budget: they must alternate.
        let limits = Limits {
            requests_per_second: 100.0,
            documents_per_minute: 6000.0,
        };
        let v = grant_times(limits, 6, 6).await;
        let first_half: Vec<_> = v.iter().take(6).map(|(k, _)| *k).collect();
        assert!(first_half.contains(&Kind::Poll), "{first_half:?}");
    }

    #[tokio::test]
    async fn new_limits_apply_and_never_squeeze_two_requests_together() {
        let fast = Limits {
            requests_per_second: 100.0,
            documents_per_minute: 6000.0,
        };
        let slow = Limits {
            requests_per_second: 5.0,
            documents_per_minute: 6000.0,
        };
        let cancel = CancellationToken::new();
        let s = Scheduler::start(fast, cancel.clone());
        s.poll_turn().await.unwrap();
        s.set_limits(slow);
        let changed = Instant::now();
        s.poll_turn().await.unwrap();
        let first = Instant::now();
        s.poll_turn().await.unwrap();
        assert!(first - changed >= slow.request_period() - Duration::from_millis(5));
        assert!(first.elapsed() >= slow.request_period() - Duration::from_millis(5));
        cancel.cancel();
    }

    #[tokio::test]
    async fn waiting_submits_go_lowest_priority_first() {
        let limits = Limits {
            requests_per_second: 20.0,
            documents_per_minute: 1200.0,
        };
        let cancel = CancellationToken::new();
        let s = Scheduler::start(limits, cancel.clone());
        // Occupy the first slot so the others queue up, then ask in reverse order.
        s.submit_turn(0).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for priority in [5, 4, 3, 2, 1] {
            let (s, order) = (s.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                s.submit_turn(priority).await.unwrap();
                order.lock().unwrap().push(priority);
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![1, 2, 3, 4, 5]);
        cancel.cancel();
    }

    /// Finding 11 (issue 8): `requests_per_second = 1e-20` panicked in `from_secs_f64` at
    /// start (and would have killed the dispatcher on a reload). No value of the limits, not
    /// even one the config refuses, may panic here.
    #[tokio::test]
    async fn finding_11_the_scheduler_cannot_panic_on_any_limits() {
        let odd = [
            1e-20,
            f64::MIN_POSITIVE,
            0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::MAX,
        ];
        let sane = Limits {
            requests_per_second: 100.0,
            documents_per_minute: 6000.0,
        };
        for value in odd {
            for limits in [
                Limits {
                    requests_per_second: value,
                    ..sane
                },
                Limits {
                    documents_per_minute: value,
                    ..sane
                },
            ] {
                assert!(limits.request_period() <= MAX_PERIOD);
                assert!(limits.submit_period() <= MAX_PERIOD);
                let cancel = CancellationToken::new();
                let s = Scheduler::start(limits, cancel.clone());
                // A turn may take long under such limits; the dispatcher must only not die.
                let _ = tokio::time::timeout(Duration::from_millis(20), s.poll_turn()).await;
                s.set_limits(sane);
                s.set_limits(limits);
                s.account_refused(402, "no money", Duration::MAX);
                s.set_limits(sane);
                s.account_ok(true);
                let turn = tokio::time::timeout(Duration::from_secs(2), s.poll_turn()).await;
                assert_eq!(turn, Ok(Some(())), "dispatcher alive after {value}");
                cancel.cancel();
            }
        }
    }

    #[tokio::test]
    async fn account_pause_holds_submits_but_not_polls_on_402() {
        let limits = Limits {
            requests_per_second: 100.0,
            documents_per_minute: 6000.0,
        };
        let cancel = CancellationToken::new();
        let s = Scheduler::start(limits, cancel.clone());
        s.account_refused(402, "no money", Duration::from_millis(300));
        let start = Instant::now();
        s.poll_turn().await.unwrap();
        assert!(start.elapsed() < Duration::from_millis(200));
        s.submit_turn(1).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(290));
        s.account_ok(true);
        assert!(s.account().problem.is_none());
        cancel.cancel();
    }
}

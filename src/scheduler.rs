//! The one owner of the account's request budget.
//!
//! Every request to the API waits here for a turn. A single dispatcher task holds two governor
//! limiters with burst 1: one for all requests (`requests_per_second`) and one for submits
//! (`documents_per_minute`). It hands out turns itself, so waiters are served in order and by
//! priority rather than by whichever task wakes first. When documents are the scarce budget
//! (`documents_per_minute` below half the request rate), a submit goes the moment the
//! documents budget allows, every time, and polls use only the slots a submit cannot use:
//! a poll is not given a slot that would push back the next submit. (Before issue 12 a poll
//! could take the slot just before a due submit, and a ready submit yielded to a waiting poll
//! to alternate; burst 1 gives no credit for a late submit, so each such delay, up to one
//! request period, was lost for good: 22 % of the ceiling at 4 requests a second and 60
//! documents a minute.) When requests are the scarce budget they alternate when both wait,
//! so neither starves. Submits go strictly in priority order (oldest claim first), also while
//! an older file's body is still being prepared ([`Scheduler::expect_submit`]). Spare polls
//! (asked before a result is likely ready) get only slots that nothing else wants.
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

/// Periods are stretched by this factor: the server measures arrival times, and network
/// jitter can squeeze two requests closer together than we sent them. This process's own
/// dispatcher spaces each request from the moment the one before was actually handed to the
/// HTTP client ([`Turn`]), so a task slow to wake after its grant cannot squeeze the next
/// request against it; what is left is the jitter after that moment, which 1 % covers (10 ms
/// at the vendor's 1 request a second; issue 12: every per cent of margin is a per cent of
/// the account's ceiling never used; 2 % + 5 ms before).
pub const PACING_MARGIN: f64 = 1.01;

/// Added to every period of the shared budget ([`crate::budget`]): there Redis grants each
/// turn at its own clock's time, and the time from that grant to the request leaving (a round
/// trip to Redis, the task waking) is jitter the spacing does not see.
pub const PACING_SLACK: Duration = Duration::from_millis(5);

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    DefaultClock,
    governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;

/// When requests are the scarce budget, submits go first until the polls waiting would fill
/// this long; then submits and polls alternate. A burst then ends with a queue of results
/// ready to ask for, and the last documents' processing is spent asking for them instead of
/// waiting idle (at the end of a burst nothing else is left to send).
pub const POLL_RESERVE: Duration = Duration::from_secs(1);

/// The two ceilings, from `[api]` (what the scheduler paces by is in the `impl` below).
pub use crate::config::Limits;

/// Longest period the scheduler works with, whatever the limits say (config allows far less):
/// keeps every `Instant` sum and the limiter's nanosecond count far from overflowing.
pub const MAX_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

impl Limits {
    /// Smallest spacing between any two requests we send (from one leaving to the next).
    pub fn request_period(&self) -> Duration {
        period(PACING_MARGIN / self.requests_per_second)
    }
    /// Smallest spacing between two submits we send.
    pub fn submit_period(&self) -> Duration {
        period(PACING_MARGIN * 60.0 / self.documents_per_minute)
    }
    /// Requests are the scarcer budget: a document's submit and its poll need more request
    /// time than the documents budget allows a submit.
    pub fn requests_scarce(&self) -> bool {
        self.submit_period() <= self.request_period() * 2
    }
    /// How many polls may wait while submits go first ([`POLL_RESERVE`]), at least one.
    fn poll_reserve(&self) -> usize {
        (POLL_RESERVE.as_secs_f64() / self.request_period().as_secs_f64()).max(1.0) as usize
    }
    /// What a shared budget's turns are asked with: these limits, and the periods they give
    /// plus [`PACING_SLACK`].
    pub fn for_shared_budget(&self) -> crate::budget::TurnLimits {
        let with_slack = |p: Duration| p.saturating_add(PACING_SLACK).min(MAX_PERIOD);
        crate::budget::TurnLimits {
            limits: *self,
            periods: crate::budget::Periods {
                request: with_slack(self.request_period()),
                submit: with_slack(self.submit_period()),
            },
        }
    }
}

/// `seconds` as a period within [1 ms, `MAX_PERIOD`]; a rate of zero, a negative one or NaN
/// means the longest period rather than a panic.
fn period(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds)
        .unwrap_or(MAX_PERIOD)
        .clamp(Duration::from_millis(1), MAX_PERIOD)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Submit,
    Poll,
    /// A poll asked before the result is likely ready: only on a slot nothing else wants.
    SparePoll,
}

struct Waiter {
    kind: Kind,
    /// Submits: lower goes first (the journal id, so files go in claim order, oldest first,
    /// whichever finished preparing its body first).
    priority: i64,
    grant: oneshot::Sender<Turn>,
}

/// A granted turn: send the request now. Spend it (or drop it) the moment the request is
/// handed to the HTTP client: the next request is spaced from then, not from the grant, so a
/// task that was slow to wake after its grant (a busy thread) does not squeeze the next
/// request against its own.
#[must_use = "a turn is a time slot: send the request, then spend the turn"]
pub struct Turn {
    spent: Option<oneshot::Sender<Instant>>,
}

impl Turn {
    /// The request goes now.
    pub fn spend(self) {}

    /// Offers a turn to `waiter`; the receiver hears when it is spent, `None` if the waiter
    /// had left.
    fn offer(waiter: oneshot::Sender<Turn>) -> Option<oneshot::Receiver<Instant>> {
        let (spent, report) = oneshot::channel();
        match waiter.send(Turn { spent: Some(spent) }) {
            Ok(()) => Some(report),
            Err(mut unused) => {
                unused.spent = None;
                None
            }
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(spent) = self.spent.take() {
            let _ = spent.send(Instant::now());
        }
    }
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
            Kind::Poll | Kind::SparePoll => {
                paused && self.problem.as_ref().is_some_and(|p| p.status == 401)
            }
        }
    }
}

/// What the dispatcher is told.
enum Message {
    Turn(Waiter),
    /// New ceilings (a config reload).
    Limits(Limits),
    /// A file with this priority will ask for a submit turn (see [`SubmitExpected`]).
    Expect(i64),
    /// ... or no longer will, for now.
    Unexpect(i64),
}

/// While held, no submit with a higher priority than this file's is granted: its body is
/// being prepared, and it goes first (oldest first, whichever file finishes preparing first).
/// Dropped when the file is sent or refused, and during its long waits (a retry backoff, a
/// same-request wait), so a file never holds the others back for long.
pub struct SubmitExpected {
    waiters: mpsc::UnboundedSender<Message>,
    priority: i64,
}

impl Drop for SubmitExpected {
    fn drop(&mut self) {
        let _ = self.waiters.send(Message::Unexpect(self.priority));
    }
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
        let dispatcher = Dispatcher::new(limits, rx, account.clone(), account_changed.clone());
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
    /// Send the request immediately after this returns and spend the [`Turn`] as it goes.
    /// Among waiting submits the lowest `priority` goes first.
    pub async fn submit_turn(&self, priority: i64) -> Option<Turn> {
        self.turn(Kind::Submit, priority).await
    }

    /// Resolves when a result request may be sent, right now. Polls go in arrival order.
    pub async fn poll_turn(&self) -> Option<Turn> {
        self.turn(Kind::Poll, 0).await
    }

    /// Resolves when a result request may be sent on a slot that nothing else wants: no
    /// submit waiting or being prepared, no other poll waiting. For asking early, before the
    /// result is likely ready; drop the future to give up.
    pub async fn spare_poll_turn(&self) -> Option<Turn> {
        self.turn(Kind::SparePoll, 0).await
    }

    /// Says that the file with `priority` will ask for a submit turn: later files wait for it
    /// (see [`SubmitExpected`]).
    pub fn expect_submit(&self, priority: i64) -> SubmitExpected {
        let _ = self.waiters.send(Message::Expect(priority));
        SubmitExpected {
            waiters: self.waiters.clone(),
            priority,
        }
    }

    async fn turn(&self, kind: Kind, priority: i64) -> Option<Turn> {
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
///
/// It plans with its own copy of the two budgets (`next_request_at`, `next_submit_at`: burst
/// 1, so each is "the last grant plus one period"), which lets it look ahead: a poll is not
/// given a slot that would push back a submit the documents budget is about to allow. The
/// governor limiters stay the guard: every grant also waits for them (a wait of microseconds
/// when the plan is right), so no plan can ever let two requests through too close.
struct Dispatcher {
    /// Every request, submits and polls together.
    requests: Limiter,
    /// Submits only.
    submits: Limiter,
    limits: Limits,
    incoming: mpsc::UnboundedReceiver<Message>,
    /// Waiting submits by (priority, arrival).
    waiting: Waiting,
    /// The request budget allows the next request from then on.
    next_request_at: Instant,
    /// The documents budget allows the next submit from then on.
    next_submit_at: Instant,
    /// Alternation when submits and polls both wait and requests are the scarce budget.
    last_was_submit: bool,
    /// The turn granted last, until its request has gone (then the next is spaced from then).
    in_hand: Option<(Kind, oneshot::Receiver<Instant>)>,
    account: Arc<Mutex<AccountState>>,
    account_changed: Arc<Notify>,
}

/// What the dispatcher does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Grant(Kind),
    /// Nothing can go now: sleep until then (or forever), or until a message arrives.
    Wait(Option<Instant>),
}

impl Dispatcher {
    fn new(
        limits: Limits,
        incoming: mpsc::UnboundedReceiver<Message>,
        account: Arc<Mutex<AccountState>>,
        account_changed: Arc<Notify>,
    ) -> Dispatcher {
        let now = Instant::now();
        Dispatcher {
            requests: limiter(limits.request_period()),
            submits: limiter(limits.submit_period()),
            limits,
            incoming,
            waiting: Waiting::default(),
            next_request_at: now,
            next_submit_at: now,
            last_was_submit: false,
            in_hand: None,
            account,
            account_changed,
        }
    }

    async fn run(mut self, cancel: CancellationToken) {
        loop {
            if let Some((kind, report)) = self.in_hand.take() {
                // A granted task sends at once; this waits for microseconds, unless its
                // thread was busy: then the next request waits with it.
                let spent = tokio::select! {
                    _ = cancel.cancelled() => return,
                    spent = report => spent.unwrap_or_else(|_| Instant::now()),
                };
                self.spent(kind, spent);
            }
            self.take_incoming();
            match self.decide(Instant::now()) {
                Decision::Grant(kind) => {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = self.grant(kind) => {}
                    }
                }
                Decision::Wait(wake_at) => {
                    let news =
                        next_news(&mut self.incoming, &self.account_changed, wake_at, &cancel);
                    match news.await {
                        News::Stop => return,
                        News::Message(m) => self.receive(m),
                        News::Tick => {}
                    }
                }
            }
        }
    }

    /// Who gets the next request, or how long nobody can. Submits go the moment both budgets
    /// allow; a poll takes a free slot unless it would push back a submit due before the next
    /// slot (when documents are the scarce budget) or a submit is due now (when requests are:
    /// then they alternate). Spare polls go only when no submit waits or is being prepared.
    fn decide(&self, now: Instant) -> Decision {
        let account = self
            .account
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let poll_ok = !self.waiting.polls.is_empty() && !account.blocks(Kind::Poll, now);
        let spare_ok = self.waiting.spare_may_go() && !account.blocks(Kind::Poll, now);
        let slot_at = self.next_request_at.max(now);
        let submit_at = self
            .waiting
            .submit_is_next()
            .filter(|_| !account.blocks(Kind::Submit, now))
            .map(|_| slot_at.max(self.next_submit_at));
        let requests_scarce = self.limits.requests_scarce();
        if submit_at.is_some_and(|at| at <= now) {
            let reserve = self.limits.poll_reserve();
            if requests_scarce && poll_ok && self.waiting.poll_first(self.last_was_submit, reserve)
            {
                return Decision::Grant(Kind::Poll);
            }
            return Decision::Grant(Kind::Submit);
        }
        if (poll_ok || spare_ok) && slot_at <= now {
            let delays_a_submit =
                submit_at.is_some_and(|at| now + self.limits.request_period() > at);
            if requests_scarce || !delays_a_submit {
                return Decision::Grant(if poll_ok { Kind::Poll } else { Kind::SparePoll });
            }
        }
        let anyone_waits = self.waiting.anyone();
        let pause_end = account
            .paused_until
            .filter(|end| anyone_waits && *end > now);
        // A poll held back for a submit is looked at again when that submit has gone.
        let poll_at = ((poll_ok || spare_ok) && slot_at > now).then_some(slot_at);
        Decision::Wait([submit_at, poll_at, pause_end].into_iter().flatten().min())
    }

    /// Waits for the governor limiters (the guard) and hands the turn over. A waiter that left
    /// meanwhile is skipped; its slot is then spent unused.
    async fn grant(&mut self, kind: Kind) {
        if kind == Kind::Submit {
            self.submits.until_ready().await;
        }
        self.requests.until_ready().await;
        // The slot is spent from here even if its waiter has left; a granted request's own
        // send time pushes the next ones further (see `spent`).
        self.spent(kind, Instant::now());
        if let Some(report) = self.waiting.grant(kind) {
            self.last_was_submit = kind == Kind::Submit;
            self.in_hand = Some((kind, report));
        }
    }

    /// A request of `kind` went (or its slot was given) at `at`: the next waits a period.
    fn spent(&mut self, kind: Kind, at: Instant) {
        self.next_request_at = self.next_request_at.max(at + self.limits.request_period());
        if kind == Kind::Submit {
            self.next_submit_at = self.next_submit_at.max(at + self.limits.submit_period());
        }
    }

    fn take_incoming(&mut self) {
        while let Ok(m) = self.incoming.try_recv() {
            self.receive(m);
        }
        self.waiting.drop_closed();
    }

    fn receive(&mut self, message: Message) {
        let Some(limits) = self.waiting.take(message) else {
            return;
        };
        self.limits = limits;
        self.requests = limiter(limits.request_period());
        self.submits = limiter(limits.submit_period());
        // Spend the fresh limiters' first slot now: the next request and submit wait a full
        // period from the change, as they would have under the old limiters.
        let _ = self.requests.check();
        let _ = self.submits.check();
        let now = Instant::now();
        self.next_request_at = now + limits.request_period();
        self.next_submit_at = now + limits.submit_period();
    }
}

/// What woke a dispatcher that had nothing to grant.
enum News {
    /// A new waiter, an expected submit, or new limits.
    Message(Message),
    /// The daemon stops (or every handle is gone): dropping the queues tells every waiter
    /// "no more turns".
    Stop,
    /// The account was paused or resumed, or `wake_at` came (a budget refills, a pause ends,
    /// a refusal's wait is over): look again.
    Tick,
}

/// Waits, for both dispatchers, for whatever can change what they would grant.
async fn next_news(
    incoming: &mut mpsc::UnboundedReceiver<Message>,
    account_changed: &Notify,
    wake_at: Option<Instant>,
    cancel: &CancellationToken,
) -> News {
    tokio::select! {
        _ = cancel.cancelled() => News::Stop,
        message = incoming.recv() => message.map_or(News::Stop, News::Message),
        _ = account_changed.notified() => News::Tick,
        _ = sleep_until_opt(wake_at) => News::Tick,
    }
}

/// Who waits for a turn, for both dispatchers (this process's own and the Redis one): submits
/// by (priority, arrival), polls in arrival order, spare polls, and the files that will ask
/// for a submit turn (claimed, preparing their body): no later file's submit goes before them.
#[derive(Default)]
struct Waiting {
    submits: BTreeMap<(i64, u64), oneshot::Sender<Turn>>,
    arrivals: u64,
    polls: VecDeque<oneshot::Sender<Turn>>,
    /// Polls that go only on a slot nothing else wants (see [`Scheduler::spare_poll_turn`]).
    spare: VecDeque<oneshot::Sender<Turn>>,
    expected: BTreeMap<i64, usize>,
}

impl Waiting {
    fn add(&mut self, w: Waiter) {
        match w.kind {
            Kind::Submit => {
                self.arrivals += 1;
                self.submits.insert((w.priority, self.arrivals), w.grant);
            }
            Kind::Poll => self.polls.push_back(w.grant),
            Kind::SparePoll => self.spare.push_back(w.grant),
        }
    }

    /// Takes a message about waiters; new limits are handed back to the dispatcher.
    fn take(&mut self, message: Message) -> Option<Limits> {
        match message {
            Message::Turn(w) => self.add(w),
            Message::Expect(priority) => self.expect(priority),
            Message::Unexpect(priority) => self.unexpect(priority),
            Message::Limits(limits) => return Some(limits),
        }
        None
    }

    fn expect(&mut self, priority: i64) {
        *self.expected.entry(priority).or_default() += 1;
    }

    fn unexpect(&mut self, priority: i64) {
        if let Some(count) = self.expected.get_mut(&priority) {
            *count -= 1;
            if *count == 0 {
                self.expected.remove(&priority);
            }
        }
    }

    /// Forgets waiters that left (their task ended).
    fn drop_closed(&mut self) {
        self.submits.retain(|_, w| !w.is_closed());
        self.polls.retain(|w| !w.is_closed());
        self.spare.retain(|w| !w.is_closed());
    }

    /// The submit whose turn it is, if it has asked: the lowest priority waiting, unless a
    /// file with a lower one is still preparing its body.
    fn submit_is_next(&self) -> Option<i64> {
        let (&(priority, _), _) = self.submits.first_key_value()?;
        let earliest_expected = self.expected.first_key_value().map(|(p, _)| *p);
        earliest_expected
            .is_none_or(|earliest| earliest >= priority)
            .then_some(priority)
    }

    /// A spare poll waits and no submit waits or is coming.
    fn spare_may_go(&self) -> bool {
        !self.spare.is_empty() && self.submits.is_empty() && self.expected.is_empty()
    }

    /// When requests are the scarce budget and a submit and a poll may both go: the poll
    /// goes if the last turn was a submit and `reserve` polls wait (see [`POLL_RESERVE`]).
    fn poll_first(&self, last_was_submit: bool, reserve: usize) -> bool {
        last_was_submit && self.polls.len() >= reserve
    }

    fn submits_wait(&self) -> bool {
        !self.submits.is_empty()
    }

    fn anyone(&self) -> bool {
        !self.submits.is_empty() || !self.polls.is_empty() || !self.spare.is_empty()
    }

    /// Hands a turn of `kind` to the first waiter of that kind still listening (a waiter that
    /// left is skipped); `None` if none was, else where it reports the turn spent.
    fn grant(&mut self, kind: Kind) -> Option<oneshot::Receiver<Instant>> {
        match kind {
            Kind::Submit => grant_first(&mut self.submits),
            Kind::Poll => grant(&mut self.polls),
            Kind::SparePoll => grant(&mut self.spare),
        }
    }
}

/// Gives the turn to the lowest-priority waiter still listening.
fn grant_first(
    queue: &mut BTreeMap<(i64, u64), oneshot::Sender<Turn>>,
) -> Option<oneshot::Receiver<Instant>> {
    std::iter::from_fn(|| queue.pop_first()).find_map(|(_, w)| Turn::offer(w))
}

/// Gives the turn to the first waiter still listening.
fn grant(queue: &mut VecDeque<oneshot::Sender<Turn>>) -> Option<oneshot::Receiver<Instant>> {
    std::iter::from_fn(|| queue.pop_front()).find_map(Turn::offer)
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until_exactly(at).await,
        None => std::future::pending().await,
    }
}

/// The runtime's timer wakes on whole milliseconds, late: it is asked to wake us this much
/// before a slot, and the rest is waited by yielding.
const TIMER_GRANULARITY: Duration = Duration::from_millis(1);

/// Sleeps until `at`, to a few microseconds rather than tokio's timer's whole (late)
/// milliseconds: a slot starts when the budget allows, not 1-2 ms after. Each late wake would
/// add to the spacing of every request (2 % of the budget at 10 requests a second). The last
/// stretch (under a millisecond, only while a request is due) yields to the runtime until the
/// time has come; other tasks run meanwhile.
async fn sleep_until_exactly(at: Instant) {
    if let Some(coarse) = at.checked_sub(TIMER_GRANULARITY) {
        tokio::time::sleep_until(coarse.into()).await;
    }
    while Instant::now() < at {
        tokio::task::yield_now().await;
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
                s.turn(kind, 0).await.unwrap().spend();
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

    /// A dispatcher with waiters but no task: for asking [`Dispatcher::decide`] directly.
    fn dispatcher(limits: Limits, submits: &[i64], polls: usize, spare: usize) -> Dispatcher {
        let (_tx, rx) = mpsc::unbounded_channel();
        let mut d = Dispatcher::new(limits, rx, Default::default(), Default::default());
        // Both budgets free from the past on, whatever `now` a test takes after this.
        let past = Instant::now() - Duration::from_secs(1);
        (d.next_request_at, d.next_submit_at) = (past, past);
        for &priority in submits {
            let (grant, _) = oneshot::channel();
            d.waiting.add(Waiter {
                kind: Kind::Submit,
                priority,
                grant,
            });
        }
        for (kind, n) in [(Kind::Poll, polls), (Kind::SparePoll, spare)] {
            for _ in 0..n {
                let (grant, _) = oneshot::channel();
                d.waiting.add(Waiter {
                    kind,
                    priority: 0,
                    grant,
                });
            }
        }
        d
    }

    const DOCUMENT_BOUND: Limits = Limits {
        requests_per_second: 4.0,
        documents_per_minute: 60.0,
    };

    /// Issue 12: when documents are the scarce budget, a poll never takes the slot a submit
    /// due before the next slot needs, and a due submit never yields to a poll.
    #[test]
    fn a_poll_never_pushes_back_a_due_submit_when_documents_are_scarce() {
        let now = Instant::now();
        let mut d = dispatcher(DOCUMENT_BOUND, &[7], 3, 0);
        let request = DOCUMENT_BOUND.request_period();
        // The submit is due in half a request period: the free slot stays free for it.
        d.next_submit_at = now + request / 2;
        assert_eq!(d.decide(now), Decision::Wait(Some(now + request / 2)));
        // Due in more than a request period: the poll goes first, the submit is not delayed.
        d.next_submit_at = now + request * 2;
        assert_eq!(d.decide(now), Decision::Grant(Kind::Poll));
        // Due now, right after another submit, polls waiting: the submit goes.
        d.next_submit_at = now;
        d.last_was_submit = true;
        assert_eq!(d.decide(now), Decision::Grant(Kind::Submit));
    }

    /// When requests are the scarce budget, a due submit goes before waiting polls until a
    /// second of polls waits (`POLL_RESERVE`); from then on the two alternate.
    #[test]
    fn when_requests_are_scarce_submits_go_first_until_a_second_of_polls_waits() {
        let limits = Limits {
            requests_per_second: 10.0,
            documents_per_minute: 6000.0,
        };
        let reserve = limits.poll_reserve();
        assert_eq!(
            reserve, 9,
            "a second at 10 requests a second, less the margin"
        );
        let now = Instant::now();
        let mut d = dispatcher(limits, &[1], reserve - 1, 0);
        d.last_was_submit = true;
        assert_eq!(d.decide(now), Decision::Grant(Kind::Submit));
        let mut d = dispatcher(limits, &[1], reserve, 0);
        d.last_was_submit = true;
        assert_eq!(d.decide(now), Decision::Grant(Kind::Poll));
        d.last_was_submit = false;
        assert_eq!(d.decide(now), Decision::Grant(Kind::Submit));
    }

    /// Issue 12: the next request is spaced from when the one before actually went, not from
    /// its grant: a task whose thread was busy for a while after its turn does not send its
    /// request squeezed against the next one.
    #[tokio::test]
    async fn the_next_turn_waits_a_period_from_when_the_last_request_went() {
        let limits = Limits {
            requests_per_second: 20.0,
            documents_per_minute: 6000.0,
        };
        let cancel = CancellationToken::new();
        let s = Scheduler::start(limits, cancel.clone());
        let turn = s.poll_turn().await.unwrap();
        let next = tokio::spawn({
            let s = s.clone();
            async move {
                let turn = s.poll_turn().await.unwrap();
                let at = Instant::now();
                turn.spend();
                at
            }
        });
        // The busy thread: the request goes 30 ms after its turn (of a 50 ms period).
        std::thread::sleep(Duration::from_millis(30));
        let went = Instant::now();
        turn.spend();
        let next_at = next.await.unwrap();
        assert!(
            next_at - went >= limits.request_period(),
            "{:?} after the late request",
            next_at - went
        );
        cancel.cancel();
    }

    /// Issue 12: a later file's submit waits while an earlier claimed file is still preparing
    /// its body; spare polls wait for that too (a submit is coming).
    #[test]
    fn a_submit_waits_for_an_earlier_file_still_preparing() {
        let now = Instant::now();
        let mut d = dispatcher(DOCUMENT_BOUND, &[5], 0, 1);
        d.receive(Message::Expect(4));
        d.receive(Message::Expect(5));
        assert_eq!(d.decide(now), Decision::Wait(None));
        d.receive(Message::Unexpect(4));
        assert_eq!(d.decide(now), Decision::Grant(Kind::Submit));
        let mut idle = dispatcher(DOCUMENT_BOUND, &[], 0, 1);
        assert_eq!(idle.decide(now), Decision::Grant(Kind::SparePoll));
        idle.receive(Message::Expect(9));
        assert_eq!(idle.decide(now), Decision::Wait(None));
    }

    /// A turn dropped without being spent (its task gave up, or ended between the grant and
    /// the send) frees the dispatcher as a spent one does: it never waits for it forever.
    #[tokio::test]
    async fn a_turn_dropped_unspent_or_abandoned_does_not_stall_the_dispatcher() {
        let limits = Limits {
            requests_per_second: 100.0,
            documents_per_minute: 6000.0,
        };
        let cancel = CancellationToken::new();
        let s = Scheduler::start(limits, cancel.clone());
        drop(s.poll_turn().await.unwrap());
        for _ in 0..20 {
            let waiter = tokio::spawn({
                let s = s.clone();
                async move { s.poll_turn().await.map(Turn::spend) }
            });
            tokio::time::sleep(Duration::from_millis(3)).await;
            waiter.abort();
        }
        let turn = tokio::time::timeout(Duration::from_secs(2), s.submit_turn(1)).await;
        assert!(matches!(turn, Ok(Some(_))), "the dispatcher stalled");
        cancel.cancel();
    }

    #[tokio::test]
    async fn polls_are_not_starved_by_submits() {
        // Submit budget as large as the request budget, more polls waiting than the reserve:
        // they must alternate.
        let limits = Limits {
            requests_per_second: 100.0,
            documents_per_minute: 6000.0,
        };
        let polls = limits.poll_reserve() + 6;
        let v = grant_times(limits, 6, polls).await;
        let first: Vec<_> = v.iter().take(6).map(|(k, _)| *k).collect();
        assert!(first.contains(&Kind::Poll), "{first:?}");
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
        s.poll_turn().await.unwrap().spend();
        s.set_limits(slow);
        let changed = Instant::now();
        s.poll_turn().await.unwrap().spend();
        let first = Instant::now();
        s.poll_turn().await.unwrap().spend();
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
        s.submit_turn(0).await.unwrap().spend();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for priority in [5, 4, 3, 2, 1] {
            let (s, order) = (s.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                s.submit_turn(priority).await.unwrap().spend();
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
    async fn the_scheduler_cannot_panic_on_any_limits() {
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
                assert!(
                    matches!(turn, Ok(Some(_))),
                    "dispatcher alive after {value}"
                );
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
        s.poll_turn().await.unwrap().spend();
        assert!(start.elapsed() < Duration::from_millis(200));
        s.submit_turn(1).await.unwrap().spend();
        assert!(start.elapsed() >= Duration::from_millis(290));
        s.account_ok(true);
        assert!(s.account().problem.is_none());
        cancel.cancel();
    }
}

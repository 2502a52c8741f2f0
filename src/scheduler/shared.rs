//! The dispatcher for a budget shared through Redis (`[budget] redis`): the same queues and
//! the same order as the local dispatcher (submits by priority, oldest claim first; polls in
//! arrival order; a due submit first when documents are the scarcer budget, alternation when
//! requests are), but each turn is granted by Redis ([`crate::budget`]), where every daemon on
//! the account asks. Redis's answers also carry the account pause, which this dispatcher
//! mirrors into the local [`AccountState`] (so `status` shows it) and obeys.
//!
//! Redis's answers also carry the limits stored with the key. Where they are stricter than
//! this daemon's `[api]` ones, this daemon keeps them (asks and plans with the stricter of
//! each) until its own limits change, so even a Redis that lost the key hears the stricter
//! ones again from every daemon; a difference either way is one ERROR naming both.
//!
//! When Redis does not answer, no turn is given; it asks again, with a short backoff, while
//! anything waits.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{AccountProblem, AccountState, Kind, Limits, Message, News, Waiting, next_news};
use crate::budget::{Reply, SharedBudget, SharedPause, StricterLimits, TurnKind};

/// While the shared account pause holds, a daemon with work waiting asks Redis this often
/// whether another daemon's try has ended it.
const PAUSE_RECHECK: Duration = Duration::from_secs(2);

/// After Redis did not answer, the first wait before asking again; doubles up to the max.
const UNAVAILABLE_RETRY: Duration = Duration::from_millis(200);
const UNAVAILABLE_RETRY_MAX: Duration = Duration::from_secs(2);

pub(super) struct SharedDispatcher {
    budget: SharedBudget,
    /// This daemon's `[api]` limits.
    own: Limits,
    /// The limits turns are asked and planned with: the stricter of each of `own` and the
    /// key's, as Redis last answered.
    limits: Limits,
    /// The key's limits last named in an ERROR (each difference is reported once).
    reported: Option<Limits>,
    incoming: mpsc::UnboundedReceiver<Message>,
    waiting: Waiting,
    /// From Redis's last answer: before these the request / submit budget is known to refuse
    /// (other daemons may take slots, so at that time Redis is asked, not trusted blindly).
    request_free_at: Instant,
    submit_free_at: Instant,
    /// A submit / poll was refused (fairness, a slot left to a due submit): not asked again
    /// before this.
    submit_retry_at: Instant,
    poll_retry_at: Instant,
    /// The account pause is taken as Redis last said until then; after it, Redis is asked
    /// again even if the local pause has not ended (another daemon's try may have ended it).
    pause_recheck_at: Instant,
    /// Alternation when submits and polls both wait and requests are the scarcer budget.
    last_was_submit: bool,
    account: Arc<Mutex<AccountState>>,
    account_changed: Arc<Notify>,
}

impl SharedDispatcher {
    pub(super) fn new(
        limits: Limits,
        budget: SharedBudget,
        incoming: mpsc::UnboundedReceiver<Message>,
        account: Arc<Mutex<AccountState>>,
        account_changed: Arc<Notify>,
    ) -> SharedDispatcher {
        let now = Instant::now();
        SharedDispatcher {
            budget,
            own: limits,
            limits,
            reported: None,
            incoming,
            waiting: Waiting::default(),
            request_free_at: now,
            submit_free_at: now,
            submit_retry_at: now,
            poll_retry_at: now,
            pause_recheck_at: now,
            last_was_submit: false,
            account,
            account_changed,
        }
    }

    pub(super) async fn run(mut self, cancel: CancellationToken) {
        let mut retry = UNAVAILABLE_RETRY;
        loop {
            self.take_incoming();
            let now = Instant::now();
            let asking = self.next_kind(now);
            let news = self.budget.has_news();
            if asking.is_none() && !news {
                // An account change here is this daemon's 401/402 or success: Redis must hear
                // of it; a wake is also due when the pause needs a recheck.
                let wake_at = self.next_wake(now);
                let news = next_news(&mut self.incoming, &self.account_changed, wake_at, &cancel);
                match news.await {
                    News::Stop => return,
                    News::Message(m) => self.receive(m),
                    News::Tick => {}
                }
                continue;
            }
            let limits = self.limits.for_shared_budget();
            let submit_waiting = self.waiting.submits_wait();
            let answer = tokio::select! {
                _ = cancel.cancelled() => return,
                answer = async {
                    match asking {
                        Some(kind) => self.budget.turn(kind, limits, submit_waiting).await,
                        None => self.budget.sync(limits, submit_waiting).await,
                    }
                } => answer,
            };
            match answer {
                Ok(reply) => {
                    retry = UNAVAILABLE_RETRY;
                    self.take_incoming();
                    self.follow(asking, reply);
                }
                Err(_) => {
                    // Nothing is sent without a granted turn: wait, then ask again.
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(UNAVAILABLE_RETRY_MAX);
                }
            }
        }
    }

    /// Acts on Redis's answer: hands a granted turn to the waiter, or notes when to ask again.
    fn follow(&mut self, asked: Option<TurnKind>, reply: Reply) {
        let now = Instant::now();
        self.keep_key_limits(&reply);
        self.mirror_pause(reply.pause.as_ref(), now);
        self.request_free_at = now + reply.request_wait;
        self.submit_free_at = now + reply.submit_wait;
        match (asked, reply.granted) {
            (Some(TurnKind::Submit), true) => {
                if reply.probe {
                    tracing::info!("the account pause is over: this daemon sends the one try");
                }
                // A waiter that left meanwhile: its slot goes unused (never given twice).
                if self.waiting.grant(Kind::Submit).is_some() {
                    self.last_was_submit = true;
                }
            }
            (Some(TurnKind::Poll), true) => {
                if self.waiting.grant(Kind::Poll).is_some()
                    || self.waiting.grant(Kind::SparePoll).is_some()
                {
                    self.last_was_submit = false;
                }
            }
            (Some(TurnKind::Submit), false) => self.submit_retry_at = now + reply.wait,
            (Some(TurnKind::Poll), false) => self.poll_retry_at = now + reply.wait,
            (None, _) => {}
        }
    }

    /// Takes the limits the turn was measured with (the stricter of each of the key's and the
    /// ones asked with) for the next turns and the plans; names a difference between the
    /// key's and this daemon's own limits in one ERROR.
    fn keep_key_limits(&mut self, reply: &Reply) {
        let Some(used) = reply.limits else {
            return;
        };
        self.limits = used.stricter_of_each(&self.limits);
        self.budget
            .set_stricter_limits((self.limits != self.own).then_some(StricterLimits {
                own: self.own,
                in_use: self.limits,
            }));
        let key = reply.key_limits.unwrap_or(used);
        if key == self.own || self.reported == Some(key) {
            return;
        }
        self.reported = Some(key);
        tracing::error!(
            "the [api] limits of this daemon ({}) differ from those stored with the shared budget {} ({}); every daemon on it keeps the stricter of each: {}. Give every daemon that shares the budget the same [api] limits (`check --online` says how to raise them for all)",
            self.own,
            self.budget.key(),
            key,
            self.limits
        );
    }

    /// Makes the local account state say what Redis says: a pause another daemon saw holds
    /// here too (one WARN), and one that another daemon's success ended ends here (one INFO).
    fn mirror_pause(&mut self, pause: Option<&SharedPause>, now: Instant) {
        if self.budget.pause_not_written() {
            // This daemon's own refusal is newer than what Redis said.
            return;
        }
        let mut state = self.account.lock().unwrap_or_else(|p| p.into_inner());
        match pause {
            Some(p) => {
                if state.problem.is_none() {
                    tracing::warn!(
                        http_status = p.status,
                        "the Beorg account refused a request of another daemon sharing this budget (the service said: {}); submits are paused here too for {}, and no file is failed for this",
                        p.message,
                        humantime::format_duration(Duration::from_secs(p.left.as_secs()))
                    );
                }
                state.problem = Some(AccountProblem {
                    status: p.status,
                    message: p.message.clone(),
                    since: p.since,
                });
                state.paused_until = Some(now + p.left);
                self.pause_recheck_at = now + PAUSE_RECHECK.min(p.left);
            }
            None => {
                if state.problem.take().is_some() {
                    state.paused_until = None;
                    tracing::info!(
                        "the Beorg account works again (seen by a daemon sharing this budget); submits resumed"
                    );
                }
            }
        }
    }

    /// Whether the account pause holds `kind` back now, as far as this daemon knows.
    fn held(&self, account: &AccountState, kind: Kind, now: Instant) -> bool {
        account.blocks(kind, now) && now < self.pause_recheck_at
    }

    /// Who asks Redis next: a due submit first when documents are the scarcer budget (a poll
    /// on its slot would push it back for good); when requests are, a submit and a poll
    /// alternate so neither starves.
    fn next_kind(&self, now: Instant) -> Option<TurnKind> {
        let account = self.account.lock().unwrap_or_else(|p| p.into_inner());
        let request_free = self.request_free_at <= now;
        let want_submit = self.waiting.submit_is_next().is_some()
            && !self.held(&account, Kind::Submit, now)
            && request_free
            && self.submit_free_at <= now
            && self.submit_retry_at <= now;
        let want_poll = self.poll_waits()
            && !self.held(&account, Kind::Poll, now)
            && request_free
            && self.poll_retry_at <= now;
        let want_poll = want_poll && !self.poll_would_delay_a_submit(&account, now);
        let alternate = !self.documents_scarce()
            && want_poll
            && self
                .waiting
                .poll_first(self.last_was_submit, self.limits.poll_reserve());
        match (want_submit && !alternate, want_poll) {
            (true, _) => Some(TurnKind::Submit),
            (false, true) => Some(TurnKind::Poll),
            (false, false) => None,
        }
    }

    /// A poll waits: an ordinary one, or a spare one while no submit waits or is coming.
    fn poll_waits(&self) -> bool {
        !self.waiting.polls.is_empty() || self.waiting.spare_may_go()
    }

    /// Documents are the scarcer budget (as at the vendor's limits: 6 requests a document).
    fn documents_scarce(&self) -> bool {
        self.limits.submit_period() >= self.limits.request_period() * 2
    }

    /// When documents are scarce, a poll does not take the slot before a waiting submit the
    /// budget allows within one request period: that delay would be lost for good.
    fn poll_would_delay_a_submit(&self, account: &AccountState, now: Instant) -> bool {
        self.documents_scarce()
            && self.waiting.submits_wait()
            && !self.held(account, Kind::Submit, now)
            && self.submit_free_at.max(self.submit_retry_at) < now + self.limits.request_period()
    }

    /// When something could change what [`Self::next_kind`] says (new messages wake it too).
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let account = self.account.lock().unwrap_or_else(|p| p.into_inner());
        let held_until = || {
            let until = account.paused_until.unwrap_or(now);
            until.min(self.pause_recheck_at).max(now)
        };
        let submit = self.waiting.submit_is_next().is_some().then(|| {
            if self.held(&account, Kind::Submit, now) {
                held_until()
            } else {
                self.request_free_at
                    .max(self.submit_free_at)
                    .max(self.submit_retry_at)
            }
        });
        // A poll held back for a submit is looked at again when that submit may go.
        let poll_waits = self.poll_waits() && !self.poll_would_delay_a_submit(&account, now);
        let poll = poll_waits.then(|| {
            if self.held(&account, Kind::Poll, now) {
                held_until()
            } else {
                self.request_free_at.max(self.poll_retry_at)
            }
        });
        [submit, poll].into_iter().flatten().min()
    }

    fn take_incoming(&mut self) {
        while let Ok(m) = self.incoming.try_recv() {
            self.receive(m);
        }
        self.waiting.drop_closed();
    }

    fn receive(&mut self, message: Message) {
        // Redis measures each turn with the stricter of the key's periods and the ones sent
        // with it: the next grant waits the period of the last one, so a change never
        // squeezes two requests together. New own limits are asked with as they are (the
        // key's stricter ones still hold, and come back with the next answer).
        if let Some(limits) = self.waiting.take(message) {
            self.own = limits;
            self.limits = limits;
            self.reported = None;
        }
    }
}

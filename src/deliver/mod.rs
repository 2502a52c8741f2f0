//! Delivery: the stage after finish. Each outcome an inbox delivers is recorded in the
//! journal with the finish itself ([`message::outcome`], `deliveries` table), so only after
//! its sidecar exists; this module's task ([`run`], one per session) makes every due delivery
//! — a webhook POST ([`webhook`]), a command ([`exec`]), a ledger line ([`ledger`]) — records
//! each try, and sleeps until the next one is due or a finish records a new one. A failed try
//! is repeated on the inbox's `delivery_retry` schedule; after the last one the delivery is
//! given up with an ERROR. At least once: a crash between a delivery and its record repeats
//! it, with the same `webhook-id`.
//!
//! Each target has its own [`Lane`]: a webhook receiver (by URL), a command (by its
//! arguments), a ledger (by file). A lane runs at most [`Lane::at_once`] tries and takes its
//! due deliveries from its own queue in the journal, so a receiver that hangs, a command that
//! runs to its timeout or a ledger on a stuck disk holds up only its own lane.

mod exec;
mod ledger;
pub mod message;
pub mod webhook;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DeliveryConfig, InboxConfig};
use crate::metrics::Metrics;
use crate::store::journal::{Delivery, DeliveryKind, DeliveryState, Journal, until_stored};

/// How many tries of one webhook receiver, or of one command, run at the same time.
const AT_ONCE: usize = 4;

/// Longest sleep with nothing due (finished deliveries are pruned this often, too).
const IDLE: Duration = Duration::from_secs(3600);

/// A delivery whose inbox is no longer configured waits this long before it is looked at
/// again (the inbox may come back with a reload).
const UNKNOWN_INBOX_WAIT: Duration = Duration::from_secs(3600);

/// What one try achieved.
#[derive(Debug)]
pub enum Tried {
    /// Delivered; a short note for the log.
    Delivered(String),
    /// Failed; tried again on the schedule.
    Failed(String),
    /// The receiver asked never to be sent this again (410).
    Gone(String),
    /// The inbox no longer delivers this way.
    Dropped,
    /// The inbox is not configured (any more): look again later, no try counted.
    InboxUnknown,
}

impl Tried {
    /// The `result` label of `beorg_deliveries_total`; `None` when no try was made.
    fn label(&self) -> Option<&'static str> {
        match self {
            Tried::Delivered(_) => Some("delivered"),
            Tried::Failed(_) => Some("failed"),
            Tried::Gone(_) => Some("gone"),
            Tried::Dropped => Some("dropped"),
            Tried::InboxUnknown => None,
        }
    }
}

/// What the delivering task needs from its session.
pub struct Deliverer {
    /// The session's config, retired inboxes included: a delivery is made with its inbox's
    /// current settings (the URL and secret are never stored in the journal).
    pub config: Arc<Config>,
    pub journal: Journal,
    pub metrics: Arc<Metrics>,
    /// Stop taking deliveries; tries in flight may finish.
    pub stop: CancellationToken,
    /// Abandon tries in flight (they are due again at the next start).
    pub abort: CancellationToken,
}

/// The shared state of the tries of one session.
struct Context {
    d: Deliverer,
    http: reqwest::Client,
}

/// Where a delivery goes, as the inbox's current settings say: the unit that runs its tries
/// apart from every other. Two inboxes with the same receiver, command or ledger share its
/// lane. Not `Debug`: a webhook URL may carry credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Lane {
    /// One webhook receiver, by its URL.
    Webhook(String),
    /// One command, by its arguments as configured.
    Exec(Vec<String>),
    /// One ledger file.
    Ledger(PathBuf),
    /// Deliveries their inbox no longer makes this way, or whose inbox is gone: settled
    /// without a try.
    Unconfigured,
}

impl Lane {
    /// The lane of `inbox`'s deliveries by `kind`.
    fn of(config: &Config, inbox: &Path, kind: DeliveryKind) -> Lane {
        let Some(settings) = inbox_of(config, inbox).map(|i| &i.delivery) else {
            return Lane::Unconfigured;
        };
        let lane = match kind {
            DeliveryKind::Webhook => settings
                .webhook
                .as_ref()
                .map(|hook| Lane::Webhook(hook.url.expose().to_string())),
            DeliveryKind::Exec => settings.exec.clone().map(Lane::Exec),
            DeliveryKind::Ledger => settings.ledger.clone().map(Lane::Ledger),
        };
        lane.unwrap_or(Lane::Unconfigured)
    }

    /// How many of its tries run at once: one append at a time to a ledger (so a torn-line
    /// check never races another append), [`AT_ONCE`] otherwise.
    fn at_once(&self) -> usize {
        match self {
            Lane::Ledger(_) => 1,
            Lane::Webhook(_) | Lane::Exec(_) | Lane::Unconfigured => AT_ONCE,
        }
    }
}

/// Makes due deliveries until the session stops.
pub async fn run(d: Deliverer) {
    let http = match webhook::client() {
        Ok(http) => http,
        Err(e) => {
            tracing::error!("deliveries are not made: {e:#}");
            return;
        }
    };
    let cx = Arc::new(Context { d, http });
    let mut running = Running::default();
    let mut pruned: Option<std::time::Instant> = None;
    loop {
        if pruned.is_none_or(|at| at.elapsed() >= IDLE) {
            prune(&cx.d).await;
            pruned = Some(std::time::Instant::now());
        }
        let wait = match start_due(&cx, &mut running).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!("cannot read the deliveries from the journal: {e:#}");
                Some(Duration::from_secs(5))
            }
        };
        tokio::select! {
            // Stopping: no new tries; those in flight finish below.
            _ = cx.d.stop.cancelled() => break,
            // A try ended: record it, then look for the next due one.
            Some(joined) = running.tasks.join_next_with_id(), if !running.tasks.is_empty() => {
                running.ended(&cx, joined).await;
            }
            // A finish recorded new deliveries.
            _ = cx.d.journal.deliveries_added() => {}
            // The next delivery is due (or nothing is: look again after a while).
            _ = tokio::time::sleep(wait.unwrap_or(IDLE).min(IDLE)), if wait.is_some() || running.tasks.is_empty() => {}
        }
    }
    loop {
        tokio::select! {
            _ = cx.d.abort.cancelled() => return,
            joined = running.tasks.join_next_with_id() => match joined {
                Some(joined) => running.ended(&cx, joined).await,
                None => return,
            },
        }
    }
}

/// The tries in flight.
#[derive(Default)]
struct Running {
    tasks: JoinSet<(Delivery, Tried)>,
    /// Task → delivery row and its lane, so a try that panicked is still released.
    rows: HashMap<tokio::task::Id, (i64, Lane)>,
    in_flight: HashSet<i64>,
    /// Tries in flight per lane.
    busy: HashMap<Lane, usize>,
}

impl Running {
    fn start(&mut self, cx: &Arc<Context>, delivery: Delivery, lane: Lane) {
        let row = delivery.id;
        let cx = cx.clone();
        let handle = self.tasks.spawn(async move {
            let tried = try_once(&cx, &delivery).await;
            (delivery, tried)
        });
        *self.busy.entry(lane.clone()).or_default() += 1;
        self.rows.insert(handle.id(), (row, lane));
        self.in_flight.insert(row);
    }

    /// How many tries of `lane` are in flight.
    fn busy(&self, lane: &Lane) -> usize {
        self.busy.get(lane).copied().unwrap_or(0)
    }

    async fn ended(
        &mut self,
        cx: &Context,
        joined: Result<(tokio::task::Id, (Delivery, Tried)), tokio::task::JoinError>,
    ) {
        match joined {
            Ok((task, (delivery, tried))) => {
                self.release(task);
                record(&cx.d, &delivery, tried).await;
            }
            Err(e) => {
                // Its row stays waiting and due: tried again.
                self.release(e.id());
                tracing::error!("a delivery try ended abnormally: {e}");
            }
        }
    }

    fn release(&mut self, task: tokio::task::Id) {
        let Some((row, lane)) = self.rows.remove(&task) else {
            return;
        };
        self.in_flight.remove(&row);
        if let Some(busy) = self.busy.get_mut(&lane) {
            *busy -= 1;
            if *busy == 0 {
                self.busy.remove(&lane);
            }
        }
    }
}

/// Starts every due delivery whose lane has room, each lane from its own queue. Returns how
/// long until the next one not started is due, among lanes with room (`None`: nothing is
/// due later, or only in lanes that are full; a try ending in those wakes the loop).
async fn start_due(cx: &Arc<Context>, running: &mut Running) -> anyhow::Result<Option<Duration>> {
    let now = SystemTime::now();
    let mut next: Option<Duration> = None;
    for (inbox, kind) in cx.d.journal.waiting_ways().await? {
        let lane = Lane::of(&cx.d.config, &inbox, kind);
        if running.busy(&lane) >= lane.at_once() {
            continue;
        }
        // Its tries in flight are still waiting rows: ask for enough to see past them.
        let waiting =
            cx.d.journal
                .waiting_deliveries(inbox, kind, lane.at_once())
                .await?;
        for delivery in waiting {
            if running.in_flight.contains(&delivery.id) {
                continue;
            }
            match delivery.next_at.duration_since(now) {
                Ok(wait) if !wait.is_zero() => {
                    next = Some(next.map_or(wait, |next| next.min(wait)));
                    break;
                }
                _ if running.busy(&lane) >= lane.at_once() => break,
                _ => running.start(cx, delivery, lane.clone()),
            }
        }
    }
    Ok(next)
}

/// One try of `delivery` with its inbox's current settings.
async fn try_once(cx: &Context, delivery: &Delivery) -> Tried {
    let Some(inbox) = inbox_of(&cx.d.config, &delivery.inbox) else {
        return Tried::InboxUnknown;
    };
    let settings: &DeliveryConfig = &inbox.delivery;
    match delivery.kind {
        DeliveryKind::Webhook => match &settings.webhook {
            Some(hook) => webhook::send(&cx.http, hook, &delivery.message_id, &delivery.body).await,
            None => Tried::Dropped,
        },
        DeliveryKind::Exec => match &settings.exec {
            Some(argv) => exec::run(argv, settings.exec_timeout, delivery).await,
            None => Tried::Dropped,
        },
        DeliveryKind::Ledger => match &settings.ledger {
            Some(path) => {
                let line = message::ledger_line(&delivery.message_id, &delivery.body);
                ledger::append(path.clone(), line, cx.d.config.daemon.file_mode).await
            }
            None => Tried::Dropped,
        },
    }
}

fn inbox_of<'a>(config: &'a Config, path: &Path) -> Option<&'a InboxConfig> {
    config.inboxes.iter().find(|i| i.path == path)
}

/// Writes a try's result to the journal (retrying until stored), logs it and counts it.
async fn record(d: &Deliverer, delivery: &Delivery, tried: Tried) {
    if let Some(result) = tried.label() {
        d.metrics.delivery(delivery.kind.as_str(), result);
    }
    let attempts = delivery.attempts + 1;
    let schedule = inbox_of(&d.config, &delivery.inbox)
        .map(|i| i.delivery.retry.clone())
        .unwrap_or_default();
    let file = file_name(&delivery.original);
    let (kind, inbox, message_id) = (
        delivery.kind.as_str(),
        delivery.inbox.display().to_string(),
        delivery.message_id.as_str(),
    );
    let closed = |state: DeliveryState, error: Option<String>| {
        until_stored(&d.stop, "delivery", move || {
            d.journal
                .delivery_closed(delivery.id, attempts, state, error.clone())
        })
    };
    match tried {
        Tried::Delivered(note) => {
            tracing::info!(
                kind,
                inbox,
                file,
                message_id,
                attempts,
                "delivered ({note})"
            );
            closed(DeliveryState::Delivered, None).await;
        }
        Tried::Gone(why) => {
            tracing::warn!(
                kind,
                inbox,
                file,
                message_id,
                "not delivered and not tried again: {why}"
            );
            closed(DeliveryState::Gone, Some(why)).await;
        }
        Tried::Dropped => {
            tracing::warn!(
                kind,
                inbox,
                file,
                message_id,
                "not delivered: the inbox no longer has `{kind}` in its config"
            );
            closed(DeliveryState::Dropped, None).await;
        }
        Tried::InboxUnknown => {
            tracing::warn!(
                kind,
                inbox,
                file,
                message_id,
                "not delivered yet: its inbox is no longer in the config; looked at again in an hour"
            );
            let later = SystemTime::now() + UNKNOWN_INBOX_WAIT;
            until_stored(&d.stop, "delivery", || {
                d.journal.delivery_retry_at(
                    delivery.id,
                    delivery.attempts,
                    later,
                    "inbox not configured".into(),
                )
            })
            .await;
        }
        Tried::Failed(why) => match schedule.get(attempts as usize) {
            Some(wait) => {
                tracing::warn!(
                    kind,
                    inbox,
                    file,
                    message_id,
                    attempts,
                    "delivery try failed: {why}; next try in {}",
                    humantime::format_duration(*wait)
                );
                let next_at = SystemTime::now() + *wait;
                until_stored(&d.stop, "delivery", || {
                    d.journal
                        .delivery_retry_at(delivery.id, attempts, next_at, why.clone())
                })
                .await;
            }
            None => {
                tracing::error!(
                    kind,
                    inbox,
                    file,
                    message_id,
                    attempts,
                    "delivery given up after {attempts} tries: {why}"
                );
                d.metrics.delivery(kind, "given_up");
                closed(DeliveryState::GivenUp, Some(why)).await;
            }
        },
    }
}

/// Forgets deliveries that ended longer than `keep_history` ago.
async fn prune(d: &Deliverer) {
    match d
        .journal
        .prune_deliveries(d.config.daemon.keep_history)
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!("forgot {n} deliveries that ended before keep_history"),
        Err(e) => tracing::warn!("cannot prune the deliveries: {e:#}"),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

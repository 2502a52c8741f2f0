//! The request budget shared by several daemons on one Beorg account (`[budget] redis`).
//!
//! The vendor's limits are per account, so daemons on several servers billed to one account
//! must share them. Each turn is one Lua script ([`SCRIPT`], `src/budget.lua`) evaluated
//! atomically in Redis: both limits as GCRA with burst 1 on Redis's own clock, checked
//! together so a refusal spends neither; the account pause every daemon obeys, with one probe
//! when it ends; fairness between daemons waiting for a submit; the limits stored with the
//! key (the stricter of each holds for every daemon on it). This module is the client
//! side: it asks for turns, carries this daemon's account news (a 401/402, a success) to
//! Redis, and knows whether Redis answers. The scheduler's shared dispatcher
//! (`scheduler/shared.rs`) decides which local waiter asks, and passes the turn on.
//!
//! When Redis does not answer, no turn is granted: the safe side is to wait, never to exceed.
//! One WARN when it stops answering, one INFO when it is back; `status` and `/metrics` show
//! since when it is unavailable.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::{Limits, SharedBudgetConfig};

/// The turn script (see its header for keys, arguments and the answer).
pub const SCRIPT: &str = include_str!("budget.lua");

/// How long a daemon that was told to wait keeps its claim to the next submit after that
/// wait: daemons waiting longer than it go first, and polls leave the slot to it.
const WANT_GRACE: Duration = Duration::from_millis(200);

/// How soon a daemon that let another one go first asks again.
const YIELD_WAIT: Duration = Duration::from_millis(20);

/// Redis keys live this long after the last turn (state older than this is only a full
/// period's wait at the next start).
const KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// "Used the budget lately", for `check --online`.
pub const SEEN_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Deadline for connecting to Redis and for each answer: past it the budget counts as
/// unavailable (a turn Redis granted but whose answer was lost is a slot left unused, never
/// a request sent without one).
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Which budget a turn is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnKind {
    Submit,
    Poll,
}

impl TurnKind {
    fn op(self) -> &'static str {
        match self {
            TurnKind::Submit => "submit",
            TurnKind::Poll => "poll",
        }
    }
}

/// The periods a turn is measured with (the scheduler's, margin included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub request: Duration,
    pub submit: Duration,
}

/// What a daemon asks its turns with: its limits (the key stores them, messages name them)
/// and the periods the scheduler measures them with (margin included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnLimits {
    pub limits: Limits,
    pub periods: Periods,
}

/// Redis's answer to one turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Send now.
    pub granted: bool,
    /// Not granted: ask again after this.
    pub wait: Duration,
    /// The request budget allows the next request after this (a hint: other daemons use it).
    pub request_wait: Duration,
    /// The submit budget allows the next submit after this (a hint).
    pub submit_wait: Duration,
    /// The account pause every daemon on this budget obeys, if one is on.
    pub pause: Option<SharedPause>,
    /// This grant is the one try after a pause ended.
    pub probe: bool,
    /// Daemons that asked for a turn within [`SEEN_WINDOW`], this one included.
    pub daemons_seen: u64,
    /// The limits stored with the key before this turn; `None` when it had none (this turn
    /// stored them).
    pub key_limits: Option<Limits>,
    /// The limits this turn was measured with: the stricter of each of the key's and the
    /// ones asked with. A daemon plans with these until its own `[api]` limits change.
    pub limits: Option<Limits>,
}

/// A 401/402 one of the daemons saw, as Redis keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedPause {
    pub status: u16,
    pub message: String,
    /// When the account first refused, in this episode.
    pub since: SystemTime,
    /// Until the pause ends (zero: it ended, and the next request is the probe).
    pub left: Duration,
}

/// Whether Redis answers, for `status` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// Since when Redis has not answered; `None` while it does.
    pub unavailable_since: Option<SystemTime>,
    /// Why, in a few words (never the password: it is not in the URL).
    pub error: Option<String>,
}

/// Limits this daemon keeps that are not its own: the key's are stricter (for `status` and
/// `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StricterLimits {
    /// This daemon's `[api]` limits.
    pub own: Limits,
    /// The stricter of each of those and the key's: what this daemon keeps.
    pub in_use: Limits,
}

/// This daemon's account news not yet written to Redis.
#[derive(Debug, Clone, PartialEq)]
enum News {
    Pause {
        status: u16,
        message: String,
        retry: Duration,
    },
    Clear {
        after_submit: bool,
    },
}

/// A handle on the shared budget; clones share the connection and the state.
#[derive(Clone)]
pub struct SharedBudget {
    inner: Arc<Inner>,
}

struct Inner {
    /// `budget.redis` as it may be shown ([`crate::redact`]), and `budget.key`.
    shown_url: String,
    key: String,
    /// Reconnects by itself; created without connecting, so a daemon starts while Redis is
    /// down.
    connection: ConnectionManager,
    script: redis::Script,
    /// This daemon's name in Redis: host and state folder (stable across restarts).
    member: String,
    /// Account news waiting for Redis (sent with the next call, whichever comes first).
    news: Mutex<Option<News>>,
    health: Mutex<Health>,
    /// Set by the dispatcher from Redis's answers.
    stricter_limits: Mutex<Option<StricterLimits>>,
    /// Rung when Redis stops or starts answering, or the limits kept change: the status
    /// snapshot shows it at once.
    health_changed: tokio::sync::Notify,
}

impl SharedBudget {
    /// A handle on the budget `config` names, for the daemon whose state folder is
    /// `state_dir`. Does not connect yet: the first turn does.
    pub fn new(config: &SharedBudgetConfig, state_dir: &std::path::Path) -> anyhow::Result<Self> {
        let connection = ConnectionManager::new_lazy_with_config(
            client(config)?,
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500)),
        )
        .map_err(|e| anyhow::anyhow!("budget.redis: {e}"))?;
        Ok(SharedBudget {
            inner: Arc::new(Inner {
                shown_url: config.shown_url(),
                key: config.key.clone(),
                connection,
                script: redis::Script::new(SCRIPT),
                member: member_name(state_dir),
                news: Mutex::new(None),
                health: Mutex::new(Health::default()),
                stricter_limits: Mutex::new(None),
                health_changed: tokio::sync::Notify::new(),
            }),
        })
    }

    /// `budget.key`.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// `budget.redis` as it may be shown ([`crate::redact`]).
    pub fn shown_url(&self) -> &str {
        &self.inner.shown_url
    }

    /// Asks for a turn, measured with `limits` or the key's where those are stricter; the
    /// key keeps the stricter of each. `submit_waiting`: this daemon has a submit waiting
    /// (for a poll turn: other daemons' polls then leave the submit's slot to it). `Err` when
    /// Redis does not answer: then nothing may be sent.
    pub async fn turn(
        &self,
        kind: TurnKind,
        limits: TurnLimits,
        submit_waiting: bool,
    ) -> Result<Reply, Unavailable> {
        self.call(kind.op(), limits, submit_waiting, true).await
    }

    /// Like [`SharedBudget::turn`], but `limits` are not stored with the key (for `check`,
    /// whose config may be a draft): the turn is measured with the stricter of each.
    pub async fn turn_without_storing_limits(
        &self,
        kind: TurnKind,
        limits: TurnLimits,
    ) -> Result<Reply, Unavailable> {
        self.call(kind.op(), limits, false, false).await
    }

    /// Writes waiting account news now (a turn would carry it too). For a daemon that has
    /// seen a 401/402 and may have nothing else to ask for a while.
    pub async fn sync(
        &self,
        limits: TurnLimits,
        submit_waiting: bool,
    ) -> Result<Reply, Unavailable> {
        self.call("sync", limits, submit_waiting, true).await
    }

    /// A 401/402 this daemon saw: every daemon on the budget pauses for `retry`.
    pub fn account_refused(&self, status: u16, message: &str, retry: Duration) {
        *self.inner.news.lock().unwrap_or_else(|p| p.into_inner()) = Some(News::Pause {
            status,
            message: message.to_string(),
            retry,
        });
    }

    /// A request that ended the account problem this daemon knew of (a submit clears a 402
    /// and a 401, a result a 401).
    pub fn account_ok(&self, after_submit: bool) {
        *self.inner.news.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(News::Clear { after_submit });
    }

    /// True while this daemon has account news Redis has not heard yet.
    pub fn has_news(&self) -> bool {
        self.inner
            .news
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// True while this daemon's own 401/402 has not reached Redis yet.
    pub fn pause_not_written(&self) -> bool {
        matches!(
            *self.inner.news.lock().unwrap_or_else(|p| p.into_inner()),
            Some(News::Pause { .. })
        )
    }

    /// The limits this daemon keeps when the key's are stricter than its own.
    pub fn stricter_limits(&self) -> Option<StricterLimits> {
        *self
            .inner
            .stricter_limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Records [`SharedBudget::stricter_limits`] (the dispatcher, from Redis's answers).
    pub fn set_stricter_limits(&self, limits: Option<StricterLimits>) {
        let mut kept = self
            .inner
            .stricter_limits
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *kept != limits {
            *kept = limits;
            self.inner.health_changed.notify_one();
        }
    }

    /// Resolves when Redis has stopped or started answering, or the limits kept changed,
    /// since the last call (for one listener: the status snapshot).
    pub async fn health_changed(&self) {
        self.inner.health_changed.notified().await
    }

    /// Whether Redis answers.
    pub fn health(&self) -> Health {
        self.inner
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn call(
        &self,
        op: &str,
        TurnLimits { limits, periods }: TurnLimits,
        submit_waiting: bool,
        store_limits: bool,
    ) -> Result<Reply, Unavailable> {
        let news = self
            .inner
            .news
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut invocation = self.inner.script.prepare_invoke();
        for suffix in ["state", "wants", "served", "seen"] {
            invocation.key(format!("{}:{suffix}", self.inner.key));
        }
        let (news_op, status, message, retry) = match &news {
            None => ("none", 0, "", Duration::ZERO),
            Some(News::Pause {
                status,
                message,
                retry,
            }) => ("pause", *status, message.as_str(), *retry),
            Some(News::Clear { after_submit: true }) => ("clear_submit", 0, "", Duration::ZERO),
            Some(News::Clear {
                after_submit: false,
            }) => ("clear_poll", 0, "", Duration::ZERO),
        };
        invocation
            .arg(op)
            .arg(&self.inner.member)
            .arg(micros(periods.request))
            .arg(micros(periods.submit))
            .arg(micros(WANT_GRACE))
            .arg(micros(YIELD_WAIT))
            .arg(news_op)
            .arg(status)
            .arg(message)
            .arg(micros(retry))
            .arg(KEY_TTL.as_secs())
            .arg(micros(SEEN_WINDOW))
            .arg(u8::from(submit_waiting))
            .arg(limits.requests_per_second.to_string())
            .arg(limits.documents_per_minute.to_string())
            .arg(u8::from(store_limits));
        let mut connection = self.inner.connection.clone();
        let answer: redis::RedisResult<redis::Value> =
            invocation.invoke_async(&mut connection).await;
        match answer.map_err(|e| e.to_string()).and_then(parse_reply) {
            Ok(reply) => {
                self.delivered(news);
                self.available();
                Ok(reply)
            }
            Err(why) => {
                self.unavailable(why);
                Err(Unavailable)
            }
        }
    }

    /// The news sent is in Redis: forget it, unless newer news came meanwhile.
    fn delivered(&self, sent: Option<News>) {
        let mut news = self.inner.news.lock().unwrap_or_else(|p| p.into_inner());
        if *news == sent {
            *news = None;
        }
    }

    fn available(&self) {
        let mut health = self.inner.health.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = health.unavailable_since.take() {
            health.error = None;
            self.inner.health_changed.notify_one();
            let down = SystemTime::now().duration_since(since).unwrap_or_default();
            tracing::info!(
                "the shared request budget at {} answers again (after {}); sending resumes",
                self.inner.shown_url,
                humantime::format_duration(Duration::from_secs(down.as_secs()))
            );
        }
    }

    fn unavailable(&self, why: String) {
        let mut health = self.inner.health.lock().unwrap_or_else(|p| p.into_inner());
        if health.unavailable_since.is_none() {
            tracing::warn!(
                "the shared request budget at {} (key {}) does not answer ({why}); no request is sent until it does, and no file fails for this",
                self.inner.shown_url,
                self.inner.key
            );
            health.unavailable_since = Some(SystemTime::now());
            self.inner.health_changed.notify_one();
        }
        health.error = Some(why);
    }
}

/// A turn could not be asked for: Redis did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// The Redis client for `config`, the password set from the file or credential.
pub fn client(config: &SharedBudgetConfig) -> anyhow::Result<redis::Client> {
    use redis::IntoConnectionInfo;
    let mut info =
        config.url.as_str().into_connection_info().map_err(|e| {
            anyhow::anyhow!("budget.redis is not a valid Redis URL ({:?})", e.kind())
        })?;
    if let Some(password) = &config.password {
        let settings = info
            .redis_settings()
            .clone()
            .set_password(password.expose());
        info = info.set_redis_settings(settings);
    }
    redis::Client::open(info).map_err(|e| anyhow::anyhow!("budget.redis: {:?}", e.kind()))
}

/// `host:state_dir`: two daemons on one host differ by their state folder; a restarted
/// daemon keeps its name.
fn member_name(state_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{host}:{}", state_dir.display())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2)
}

fn parse_reply(value: redis::Value) -> Result<Reply, String> {
    let redis::Value::Array(items) = value else {
        return Err(format!(
            "unexpected answer from the budget script: {value:?}"
        ));
    };
    let int = |i: usize| match items.get(i) {
        Some(redis::Value::Int(n)) => Ok(*n),
        other => Err(format!(
            "unexpected item {i} from the budget script: {other:?}"
        )),
    };
    let text = |i: usize| match items.get(i) {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    };
    let duration = |i: usize| int(i).map(|n| Duration::from_micros(n.max(0) as u64));
    let limits = |i: usize| limits_from(&text(i), &text(i + 1));
    let pause_status = int(4)?;
    let pause = (pause_status > 0).then(|| -> Result<SharedPause, String> {
        Ok(SharedPause {
            status: u16::try_from(pause_status).unwrap_or(0),
            message: text(5),
            since: UNIX_EPOCH + Duration::from_millis(int(6)?.max(0) as u64),
            left: duration(7)?,
        })
    });
    Ok(Reply {
        granted: int(0)? == 1,
        wait: duration(1)?,
        request_wait: duration(2)?,
        submit_wait: duration(3)?,
        pause: pause.transpose()?,
        probe: int(8)? == 1,
        daemons_seen: int(9)?.max(0) as u64,
        key_limits: limits(10),
        limits: limits(12),
    })
}

/// Limits as the script keeps them (the rates' text); `None` when absent or not rates.
fn limits_from(requests_per_second: &str, documents_per_minute: &str) -> Option<Limits> {
    let rate = |text: &str| {
        text.parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r > 0.0)
    };
    Some(Limits {
        requests_per_second: rate(requests_per_second)?,
        documents_per_minute: rate(documents_per_minute)?,
    })
}

/// What `check --online` reports about the shared budget.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The daemons (`host:state_dir`) that asked for a turn within [`SEEN_WINDOW`].
    pub daemons: Vec<String>,
    /// The limits stored with the key; `None` before a daemon used it (or after it expired).
    pub limits: Option<Limits>,
}

/// Asks Redis whether it answers (and runs scripts, and lets this user read the budget's
/// keys), who used the budget lately and the limits stored with it. Changes nothing.
pub async fn probe(config: &SharedBudgetConfig) -> anyhow::Result<Probe> {
    let client = client(config)?;
    let mut connection =
        tokio::time::timeout(REDIS_TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {}s", REDIS_TIMEOUT.as_secs()))?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let seen_key = format!("{}:seen", config.key);
    let (time,): ((u64, u64),) = redis::pipe()
        .cmd("TIME")
        .query_async(&mut connection)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = time.0 * 1_000_000 + time.1;
    let since = now.saturating_sub(micros(SEEN_WINDOW));
    let daemons: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(&seen_key)
        .arg(since)
        .arg("+inf")
        .query_async(&mut connection)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (rps, dpm): (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(format!("{}:state", config.key))
        .arg("limit_rps")
        .arg("limit_dpm")
        .query_async(&mut connection)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let limits = limits_from(&rps.unwrap_or_default(), &dpm.unwrap_or_default());
    // Scripts may be refused (an ACL without +@scripting, or without +info inside them).
    let _: redis::Value = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(redis::Script::new(SCRIPT).get_hash())
        .query_async(&mut connection)
        .await
        .map_err(|e| anyhow::anyhow!("scripts are refused ({e})"))?;
    Ok(Probe { daemons, limits })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_read_with_and_without_a_pause() {
        let int = redis::Value::Int;
        let text = |s: &str| redis::Value::BulkString(s.as_bytes().to_vec());
        let reply = parse_reply(redis::Value::Array(vec![
            int(0),
            int(1_500_000),
            int(0),
            int(1_500_000),
            int(402),
            text("no money"),
            int(1_700_000_000_000),
            int(2_000_000),
            int(0),
            int(3),
            text("1"),
            text("60"),
            text("1"),
            text("10"),
        ]))
        .unwrap();
        assert!(!reply.granted);
        assert_eq!(reply.wait, Duration::from_millis(1500));
        let pause = reply.pause.unwrap();
        assert_eq!((pause.status, pause.message.as_str()), (402, "no money"));
        assert_eq!(pause.left, Duration::from_secs(2));
        assert_eq!(reply.daemons_seen, 3);
        let key = reply.key_limits.unwrap();
        assert_eq!(
            (key.requests_per_second, key.documents_per_minute),
            (1.0, 60.0)
        );
        assert_eq!(reply.limits.unwrap().documents_per_minute, 10.0);
        let none = parse_reply(redis::Value::Array(vec![
            int(1),
            int(0),
            int(1000),
            int(6000),
            int(0),
            text(""),
            int(0),
            int(0),
            int(0),
            int(1),
            text(""),
            text(""),
            text("0.5"),
            text("10"),
        ]))
        .unwrap();
        assert!(none.granted && none.pause.is_none());
        assert!(none.key_limits.is_none(), "a key without limits yet");
        assert_eq!(none.limits.unwrap().requests_per_second, 0.5);
        assert!(parse_reply(redis::Value::Nil).is_err());
    }

    #[test]
    fn the_member_name_is_the_host_and_the_state_folder() {
        let name = member_name(std::path::Path::new("/var/lib/beorg-hotfolder"));
        assert!(name.ends_with(":/var/lib/beorg-hotfolder"), "{name}");
    }
}

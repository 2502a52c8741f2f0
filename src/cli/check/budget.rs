//! `check`'s look at the shared request budget (`[budget] redis`): without `--online` a note
//! that it is shared; with it, whether Redis answers (and runs the budget's script), how many
//! daemons used the key lately, whether the limits stored with the key are this config's
//! (and how to raise them for all), and a turn from the budget for each test request, so the
//! check itself never pushes the daemons on the account over a limit (and never stores its
//! own limits with the key: its config may be a draft). Shows the URL only as
//! [`crate::redact`] lets it (and the password is never in it).

use std::time::{Duration, Instant};

use super::{Finding, Severity};
use crate::budget::{SEEN_WINDOW, SharedBudget, TurnKind};
use crate::config::{Config, Limits, SharedBudgetConfig};

/// The finding for the budget, `None` when it is this process's own.
pub(super) async fn finding(config: &Config, online: bool) -> Option<Finding> {
    let shared = config.budget.redis.as_ref()?;
    let finding = |severity, message: String| Some(Finding::new(severity, "budget", message));
    if !online {
        return finding(
            Severity::Note,
            format!(
                "shared with every daemon using key {} on {} (not contacted; `check --online` asks it)",
                shared.key,
                shared.shown_url()
            ),
        );
    }
    match crate::budget::probe(shared).await {
        Ok(probe) => {
            let minutes = SEEN_WINDOW.as_secs() / 60;
            let who = match probe.daemons.len() {
                0 => format!(
                    "no daemon used key {} in the last {minutes} minutes",
                    shared.key
                ),
                1 => format!(
                    "1 daemon used key {} in the last {minutes} minutes ({})",
                    shared.key, probe.daemons[0]
                ),
                n => format!(
                    "{n} daemons share key {} (used it in the last {minutes} minutes: {})",
                    shared.key,
                    probe.daemons.join(", ")
                ),
            };
            let answers = format!("Redis at {} answers; {who}", shared.shown_url());
            match probe.limits.filter(|stored| *stored != config.api.limits()) {
                None => finding(Severity::Ok, answers),
                Some(stored) => finding(
                    Severity::Warning,
                    format!("{answers}; {}", limits_differ(config, shared, &stored)),
                ),
            }
        }
        Err(e) => finding(
            Severity::Error,
            format!(
                "Redis at {} does not answer ({e:#}); the daemon would start but send nothing until it does: check budget.redis, the firewall, and the password (budget.redis_password_file or the credential redis_password)",
                shared.shown_url()
            ),
        ),
    }
}

/// The key's limits are not this config's: what holds, and how to raise them for all.
fn limits_differ(config: &Config, shared: &SharedBudgetConfig, stored: &Limits) -> String {
    let own = config.api.limits();
    format!(
        "but the limits stored with the key ({stored}) differ from this config's [api] ({own}): every daemon on the key keeps the stricter of each ({}). Give every daemon on the key the same [api] limits; to raise them for all, set them in every daemon's config, reload every daemon, then delete the stored ones: redis-cli -u {} DEL {}:state (the next request then waits one period)",
        own.stricter_of_each(stored),
        shared.shown_url(),
        shared.key
    )
}

/// Waits for a request turn from the shared budget (as a poll: the test request creates no
/// document). `Err` when the budget does not grant one within `limit`.
pub(super) async fn request_turn(
    config: &Config,
    shared: &SharedBudgetConfig,
    limit: Duration,
) -> Result<(), String> {
    let budget =
        SharedBudget::new(shared, &config.daemon.state_dir).map_err(|e| format!("{e:#}"))?;
    let limits = config.api.limits().for_shared_budget();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match budget
            .turn_without_storing_limits(TurnKind::Poll, limits)
            .await
        {
            Ok(reply) if reply.granted => return Ok(()),
            Ok(reply) => tokio::time::sleep(reply.wait.max(Duration::from_millis(5))).await,
            Err(_) => {
                return Err(format!(
                    "the shared budget at {} does not answer",
                    shared.shown_url()
                ));
            }
        }
    }
    Err(format!(
        "the shared budget at {} granted no turn within {}s (the daemons on this account keep it busy)",
        shared.shown_url(),
        limit.as_secs()
    ))
}

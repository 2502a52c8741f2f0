//! `check`'s look at the shared request budget (`[budget] redis`): without `--online` a note
//! that it is shared; with it, whether Redis answers (and runs the budget's script), how many
//! daemons used the key lately, and a turn from the budget for each test request, so the
//! check itself never pushes the daemons on the account over a limit. Shows the URL only as
//! [`crate::redact`] lets it (and the password is never in it).

use std::time::{Duration, Instant};

use super::{Finding, Severity};
use crate::budget::{SEEN_WINDOW, SharedBudget, TurnKind};
use crate::config::{Config, SharedBudgetConfig};

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
            finding(
                Severity::Ok,
                format!("Redis at {} answers; {who}", shared.shown_url()),
            )
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

/// Waits for a request turn from the shared budget (as a poll: the test request creates no
/// document). `Err` when the budget does not grant one within `limit`.
pub(super) async fn request_turn(
    config: &Config,
    shared: &SharedBudgetConfig,
    limit: Duration,
) -> Result<(), String> {
    let budget =
        SharedBudget::new(shared, &config.daemon.state_dir).map_err(|e| format!("{e:#}"))?;
    let limits = crate::scheduler::Limits {
        requests_per_second: config.api.requests_per_second,
        documents_per_minute: config.api.documents_per_minute,
    };
    let periods = limits.shared_periods();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match budget.turn(TurnKind::Poll, periods, false).await {
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

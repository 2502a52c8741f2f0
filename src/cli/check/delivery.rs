//! `check`'s look at an inbox's deliveries: the ledger's folder exists and takes new files,
//! an existing ledger is no looser than `file_mode`, the `exec` program exists and may be
//! run, a webhook is signed. Never shows the webhook URL
//! or its secret.

use std::path::Path;

use rustix::fs::Access;

use super::{Finding, Severity, shell_quote, writable};
use crate::config::InboxConfig;

/// The findings for inbox `i`'s delivery settings (none when it delivers nowhere).
pub(super) fn findings(i: usize, inbox: &InboxConfig, user: &str, file_mode: u32) -> Vec<Finding> {
    let d = &inbox.delivery;
    let mut out = Vec::new();
    if let Some(ledger) = &d.ledger {
        let key = format!("inbox[{i}].ledger");
        out.extend(ledger_finding(&key, ledger, user));
        out.extend(ledger_mode_finding(&key, ledger, file_mode));
    }
    if let Some(program) = d.exec.as_ref().and_then(|argv| argv.first()) {
        out.extend(program_finding(&format!("inbox[{i}].exec"), program));
    }
    if d.webhook.as_ref().is_some_and(|w| w.key.is_none()) {
        out.push(Finding::new(
            Severity::Note,
            format!("inbox[{i}].webhook"),
            "is not signed (no webhook_secret_file): the receiver cannot tell its messages from forged ones",
        ));
    }
    out
}

fn ledger_finding(key: &str, ledger: &Path, user: &str) -> Option<Finding> {
    let dir = ledger.parent().unwrap_or(Path::new("/"));
    let problem = if !dir.is_dir() {
        format!(
            "its folder {} does not exist: every line would fail and be given up after the last try; create it: mkdir -p {q} && chown {user} {q}",
            dir.display(),
            q = shell_quote(dir)
        )
    } else if let Err(problem) = writable(dir) {
        format!(
            "its folder {} {problem}; fix: chown {user} {}",
            dir.display(),
            shell_quote(dir)
        )
    } else if ledger.exists() && rustix::fs::access(ledger, Access::WRITE_OK).is_err() {
        format!(
            "{} is not writable by this user; fix: chown {user} {}",
            ledger.display(),
            shell_quote(ledger)
        )
    } else {
        return None;
    };
    Some(Finding::new(Severity::Error, key, problem))
}

/// An existing ledger with permissions `file_mode` does not give: the daemon takes them away
/// before it appends the next line (or, if it cannot, appends nothing).
fn ledger_mode_finding(key: &str, ledger: &Path, file_mode: u32) -> Option<Finding> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ledger).ok()?.permissions().mode() & 0o7777;
    let wanted = mode & file_mode & 0o777;
    (mode != wanted).then(|| {
        Finding::new(
            Severity::Warning,
            key,
            format!(
                "{} has mode {mode:04o}, looser than [daemon] file_mode {file_mode:04o}; the daemon makes it {wanted:04o} before it appends the next line, and appends nothing if it cannot (another user's file); fix now: chmod {wanted:04o} {}",
                ledger.display(),
                shell_quote(ledger)
            ),
        )
    })
}

/// A program named with a `/` must exist and be executable; a bare name is looked up in
/// `PATH` (a warning only: the service's `PATH` may differ from this shell's).
fn program_finding(key: &str, program: &str) -> Option<Finding> {
    if program.contains('/') {
        let missing = rustix::fs::access(program, Access::EXEC_OK).err()?;
        return Some(Finding::new(
            Severity::Error,
            key,
            format!(
                "{program} cannot be run by this user ({}): every delivery would fail and be given up after the last try",
                std::io::Error::from(missing)
            ),
        ));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .any(|dir| rustix::fs::access(dir.join(program), Access::EXEC_OK).is_ok());
    (!found).then(|| {
        Finding::new(
            Severity::Warning,
            key,
            format!(
                "{program} is not found in PATH; give its full path, e.g. /usr/local/bin/{program}"
            ),
        )
    })
}

//! `beorg-hotfolder check`: is this config ready for `run`, and will files get through?
//!
//! One [`Finding`] per thing looked at, printed one per line, then a summary. What counts as
//! what (the exit status is 1 when there is any error, else 0):
//!
//! | severity | findings |
//! |---|---|
//! | error | anything `Config::load` refuses (syntax with line and column, unknown key with the nearest known one, missing token, shared or nested folders, ...): `run` would refuse to start |
//! | error | an inbox, done or failed folder that is missing, not a folder, not writable (permissions or a read-only filesystem), or an inbox that cannot be listed: files would pile up unprocessed |
//! | error | a state folder that can be neither used nor created; a journal the user cannot open |
//! | error | a folder the service's systemd sandbox hides or keeps read-only (`ProtectSystem=strict` without `ReadWritePaths=`, `PrivateTmp=`, `ProtectHome=`), when the unit runs this config |
//! | error | a `ledger` whose folder is missing or not writable, an `exec` program (named by its path) that cannot be run: every delivery would fail |
//! | error | `--online`: token or machine_uid rejected (401), API unreachable (connection error, 5xx), any other unexpected answer; the shared budget's Redis does not answer |
//! | warning | (tolerated by `run`) the state folder is missing and only systemd's `StateDirectory=` can create it; a token readable by every user; an inbox with the sticky bit set that this user does not own (other users' files cannot be moved out); `--online`: the account has no money (402, submits pause until it is topped up); the limits stored with the shared budget's key differ from this config's `[api]` (the stricter of each holds; the finding says how to raise them for all) |
//! | warning | an `exec` program named without a path that is not in `PATH`; an existing `ledger` with permissions `[daemon] file_mode` does not give (the daemon takes them away before its next line) |
//! | note | facts worth knowing: checked as root, token taken from `BEORG_TOKEN`, a webhook without a signing secret, the budget shared through Redis (`--online` says whether Redis answers and how many daemons used the key lately) |
//!
//! Permissions are asked with `access(2)`, which answers for the real user running `check`:
//! run it as the service user (`sudo -u beorg-hotfolder ...`) to see what the service sees.
//! Every folder that must be writable also gets a dot-named temp file created and removed
//! (prefix `.beorg-tmp-check-`; intake ignores dot-names and the daemon removes leftovers of
//! its temp prefix at start), which catches read-only mounts and full inode tables that mode
//! bits do not show.

mod budget;
mod delivery;
mod review_station;

use std::fmt;
use std::path::{Path, PathBuf};

use rustix::fs::Access;

use crate::api::{ApiClient, ApiFailure, SubmitBody};
use crate::config::{Config, ConfigError, TOKEN_ENV, Token, TokenSource};

/// The service user of the shipped unit, used in fix hints when no unit says otherwise.
pub const SERVICE_USER: &str = "beorg-hotfolder";

/// The state folder systemd creates for the shipped unit (`StateDirectory=beorg-hotfolder`).
pub const SERVICE_STATE_DIR: &str = "/var/lib/beorg-hotfolder";

/// Where an installed unit and its drop-ins may live, lowest priority first.
const UNIT_DIRS: [&str; 4] = [
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/run/systemd/system",
    "/etc/systemd/system",
];

/// The unit's file name.
const UNIT_NAME: &str = "beorg-hotfolder.service";

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Checked and fine.
    Ok,
    /// Worth knowing; changes nothing.
    Note,
    /// `run` tolerates it; something may not work as expected.
    Warning,
    /// `run` would refuse the config, or files would not get through.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Severity::Ok => "ok",
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One thing looked at: which key (or `config`, `api`), and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The config key (`inbox[0].done`), or `config`, `api`, `unit`.
    pub subject: String,
    /// What was found and, for problems, how to fix it.
    pub message: String,
}

impl Finding {
    fn new(severity: Severity, subject: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            severity,
            subject: subject.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<8} {}: {}", self.severity, self.subject, self.message)
    }
}

/// What to check besides the config and its folders.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Ask the API whether the credentials work (one request, no document created).
    pub online: bool,
    /// Check folders against this unit's sandbox; by default the installed unit's, when its
    /// `ExecStart=` runs the config being checked.
    pub unit: Option<PathBuf>,
}

/// Everything found, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// False when `Config::load` refused the config (nothing else was checked).
    pub config_loaded: bool,
}

impl Report {
    fn push(&mut self, severity: Severity, subject: impl Into<String>, message: impl Into<String>) {
        self.findings.push(Finding::new(severity, subject, message));
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    /// Exit 0: `run` accepts the config and nothing would keep files from getting through.
    pub fn passed(&self) -> bool {
        self.errors() == 0
    }

    /// One line per finding, then the summary.
    pub fn render(&self) -> String {
        let mut out: String = self.findings.iter().map(|f| format!("{f}\n")).collect();
        let (errors, warnings) = (self.errors(), self.warnings());
        let counts = format!(
            "{errors} error{}, {warnings} warning{}",
            plural(errors),
            plural(warnings)
        );
        out.push_str(&if !self.config_loaded {
            format!("FAILED ({counts}): `run` would refuse this config\n")
        } else if errors > 0 {
            format!(
                "FAILED ({counts}): `run` accepts the config, but files would not get through until the errors above are fixed\n"
            )
        } else if warnings > 0 {
            format!("OK ({counts}): `run` accepts this config; the warnings above are tolerated\n")
        } else {
            format!("OK ({counts}): `run` accepts this config and every folder is usable\n")
        });
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Checks the config at `path`: what `run` checks, then the folders, the service's sandbox
/// and (with `online`) the credentials.
pub async fn check(path: &Path, options: &Options) -> Report {
    let mut report = Report::default();
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            report.push(Severity::Error, "config", load_error_message(&e, path));
            return report;
        }
    };
    report.config_loaded = true;
    report.push(
        Severity::Ok,
        "config",
        format!(
            "{} is valid: {} inbox{}, state in {}",
            path.display(),
            config.inboxes.len(),
            if config.inboxes.len() == 1 { "" } else { "es" },
            config.daemon.state_dir.display()
        ),
    );
    report
        .findings
        .extend(token_findings(config.api.token.as_ref()));
    if current_uid() == Some(0) {
        report.push(
            Severity::Note,
            "user",
            format!(
                "checking as root, who may write where the service user cannot; for the service's view run: sudo -u {SERVICE_USER} beorg-hotfolder check --config {}",
                shell_quote(path)
            ),
        );
    }
    let sandbox = match &options.unit {
        Some(unit) => match std::fs::read_to_string(unit) {
            Ok(text) => Some(Sandbox::parse(unit, [text.as_str()])),
            Err(e) => {
                report.push(
                    Severity::Error,
                    "unit",
                    format!("cannot read {}: {e}", unit.display()),
                );
                None
            }
        },
        None => installed_sandbox_for(path, &mut report),
    };
    let user = sandbox
        .as_ref()
        .and_then(|s| s.user.clone())
        .unwrap_or_else(|| SERVICE_USER.to_string());
    report
        .findings
        .extend(folder_findings(&config, &user, sandbox.as_ref()));
    report
        .findings
        .extend(review_station::findings(&config, &user));
    report
        .findings
        .extend(budget::finding(&config, options.online).await);
    if options.online {
        report.findings.push(online_finding(&config).await);
    }
    report
}

/// `Config::load`'s message, plus a hint when the token lives where only the service sees it.
fn load_error_message(e: &ConfigError, path: &Path) -> String {
    let mut message = e.to_string();
    if let ConfigError::Key { key, .. } = e
        && key == "api.token"
        && message.contains("no API token")
    {
        message.push_str(&format!(
            "; if the service gets it as a systemd credential (LoadCredential=token:...), check with the same credential: sudo systemd-run --pipe --wait --quiet -p User={SERVICE_USER} -p LoadCredential=token:/etc/beorg-hotfolder/token /usr/bin/beorg-hotfolder check --config {}",
            shell_quote(path)
        ));
    }
    message
}

// ---------------------------------------------------------------------------------------
// The token's whereabouts.

/// Where the token comes from (as the loader recorded it), and whether every user can read it.
fn token_findings(token: Option<&Token>) -> Vec<Finding> {
    let mut out = Vec::new();
    let (holder, key) = match token.map(|t| &t.source) {
        Some(TokenSource::Env) => {
            out.push(Finding::new(
                Severity::Note,
                "api.token",
                format!(
                    "taken from {TOKEN_ENV} in this environment, not from the config; the service only has it if its unit sets it"
                ),
            ));
            return out;
        }
        Some(TokenSource::Inline(config_file)) => (config_file, "api.token"),
        Some(TokenSource::File(file)) => (file, "api.token_file"),
        Some(TokenSource::Credential(_)) | None => return out,
    };
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(holder)
        && meta.permissions().mode() & 0o004 != 0
    {
        out.push(Finding::new(
            Severity::Warning,
            key,
            format!(
                "{} holds the API token and every user on this machine can read it (mode {:04o}); fix: chgrp {SERVICE_USER} {} && chmod 0640 {}",
                holder.display(),
                meta.permissions().mode() & 0o7777,
                shell_quote(holder),
                shell_quote(holder)
            ),
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Folders.

/// What the daemon needs from a folder.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// List it, move files out of it, create `.beorg-work/` in it.
    Inbox,
    /// Move files into it and write sidecars.
    Output,
    /// Hold the journal and the status snapshot.
    State,
}

/// Every folder of the config: exists, is a folder, and the daemon can do its work there.
fn folder_findings(config: &Config, user: &str, sandbox: Option<&Sandbox>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, inbox) in config.inboxes.iter().enumerate() {
        let folders = [
            ("path", &inbox.path, Role::Inbox),
            ("done", &inbox.done, Role::Output),
            ("failed", &inbox.failed, Role::Output),
        ];
        let review = inbox.review.iter().map(|r| ("review", r, Role::Output));
        for (name, dir, role) in folders.into_iter().chain(review) {
            let key = format!("inbox[{i}].{name}");
            out.push(folder_finding(&key, dir, role, user, sandbox));
            if role == Role::Inbox
                && let Some(warning) = sticky_warning(&key, dir)
            {
                out.push(warning);
            }
        }
        out.extend(delivery::findings(i, inbox, user, config.daemon.file_mode));
        let work = crate::store::layout::work_dir(&inbox.path);
        if work.is_dir()
            && let Err(problem) = writable(&work)
        {
            out.push(Finding::new(
                Severity::Error,
                format!("inbox[{i}].path"),
                format!(
                    "its work folder {} {problem}; claimed files wait there: fix: chown -R {user} {}",
                    work.display(),
                    shell_quote(&work)
                ),
            ));
        }
    }
    out.push(folder_finding(
        "daemon.state_dir",
        &config.daemon.state_dir,
        Role::State,
        user,
        sandbox,
    ));
    out
}

fn folder_finding(
    key: &str,
    dir: &Path,
    role: Role,
    user: &str,
    sandbox: Option<&Sandbox>,
) -> Finding {
    let create_fix = format!(
        "create it: mkdir -p {q} && chown {user} {q}",
        q = shell_quote(dir)
    );
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && role == Role::State => {
            return missing_state_dir(key, dir, &create_fix, sandbox);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The daemon never creates these: on an unmounted share that would put scans on
            // the server's own disk.
            let consequence = match role {
                Role::Inbox => "no scan can be taken from it",
                _ => "finished files would wait in the work folder until it exists",
            };
            return Finding::new(
                Severity::Error,
                key,
                format!(
                    "{} does not exist: {consequence}; {create_fix}",
                    dir.display()
                ),
            );
        }
        Err(e) => {
            return Finding::new(
                Severity::Error,
                key,
                format!("cannot look at {}: {e}", dir.display()),
            );
        }
    };
    if !meta.is_dir() {
        return Finding::new(
            Severity::Error,
            key,
            format!(
                "{} is not a folder; point the key at a folder",
                dir.display()
            ),
        );
    }
    if role == Role::Inbox
        && let Err(e) = rustix::fs::access(dir, Access::READ_OK | Access::EXEC_OK)
    {
        return Finding::new(
            Severity::Error,
            key,
            format!(
                "{} cannot be listed by this user ({}); fix: chown {user} {} (or give the user's group r-x on it)",
                dir.display(),
                std::io::Error::from(e),
                shell_quote(dir)
            ),
        );
    }
    if let Err(problem) = writable(dir) {
        let fix = match problem {
            Problem::ReadOnlyFs => "remount it read-write or choose a writable folder".to_string(),
            _ => format!(
                "fix: chown {user} {} (or give the user's group write access: chmod g+rwx)",
                shell_quote(dir)
            ),
        };
        return Finding::new(
            Severity::Error,
            key,
            format!("{} {problem}; {}; {fix}", dir.display(), role.needs()),
        );
    }
    if let Some(sandbox) = sandbox
        && let Err(why) = sandbox.writable(dir)
    {
        return Finding::new(
            Severity::Error,
            key,
            format!("{}: the service cannot write here: {why}", dir.display()),
        );
    }
    if role == Role::State {
        for file in crate::store::layout::journal_files(dir) {
            if file.exists()
                && let Err(e) = rustix::fs::access(&file, Access::READ_OK | Access::WRITE_OK)
            {
                return Finding::new(
                    Severity::Error,
                    key,
                    format!(
                        "{} cannot be opened for writing by this user ({}); was the daemon run as another user? fix: chown -R {user} {}",
                        file.display(),
                        std::io::Error::from(e),
                        shell_quote(dir)
                    ),
                );
            }
        }
    }
    Finding::new(
        Severity::Ok,
        key,
        format!("{}: {}", dir.display(), role.granted()),
    )
}

impl Role {
    /// What the daemon needs there, for an error message.
    fn needs(self) -> &'static str {
        match self {
            Role::Inbox => "the daemon must move scans out of it into its .beorg-work folder",
            Role::Output => {
                "the daemon must move finished files and write their sidecars into it (until then they wait in the work folder)"
            }
            Role::State => "the daemon keeps its journal there and cannot start without it",
        }
    }

    /// What was confirmed, for an ok line.
    fn granted(self) -> &'static str {
        match self {
            Role::Inbox => "can be listed, and files can be moved out of it",
            Role::Output => "files and sidecars can be written into it",
            Role::State => "the journal can be kept there",
        }
    }
}

/// A state folder that does not exist yet: fine if it can be created (the daemon creates it
/// with mode 0700); tolerated if it is the shipped unit's `StateDirectory=`.
fn missing_state_dir(key: &str, dir: &Path, fix: &str, sandbox: Option<&Sandbox>) -> Finding {
    let ancestor = dir
        .ancestors()
        .skip(1)
        .find(|a| a.is_dir())
        .unwrap_or(Path::new("/"));
    let made_by_systemd = sandbox.is_some_and(|s| s.state_directories.iter().any(|d| d == dir))
        || dir == Path::new(SERVICE_STATE_DIR);
    match writable(ancestor) {
        Ok(()) if sandbox.is_none_or(|s| s.writable(dir).is_ok()) => Finding::new(
            Severity::Ok,
            key,
            format!(
                "{} does not exist yet; the daemon creates it at start (mode 0700)",
                dir.display()
            ),
        ),
        _ if made_by_systemd => Finding::new(
            Severity::Warning,
            key,
            format!(
                "{} does not exist yet, and this user cannot create it; the unit's StateDirectory=beorg-hotfolder creates it when the service starts; to run the daemon outside systemd, {fix}",
                dir.display()
            ),
        ),
        Err(problem) => Finding::new(
            Severity::Error,
            key,
            format!(
                "{} does not exist and cannot be created ({} {problem}); {fix}",
                dir.display(),
                ancestor.display()
            ),
        ),
        Ok(()) => Finding::new(
            Severity::Error,
            key,
            format!(
                "{} does not exist, and the service could not create it: {}",
                dir.display(),
                sandbox
                    .and_then(|s| s.writable(dir).err())
                    .unwrap_or_default()
            ),
        ),
    }
}

/// An inbox with the sticky bit (like /tmp) lets only a file's owner (or the folder's) rename
/// it: scans written by the share's user would stay.
fn sticky_warning(key: &str, dir: &Path) -> Option<Finding> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    let uid = current_uid()?;
    if meta.mode() & 0o1000 == 0 || uid == 0 || meta.uid() == uid {
        return None;
    }
    Some(Finding::new(
        Severity::Warning,
        key,
        format!(
            "{} has the sticky bit set and is not owned by this user: only files this user owns can be moved out; fix: chmod -t {} (or chown the folder to the service user)",
            dir.display(),
            shell_quote(dir)
        ),
    ))
}

/// Why a folder cannot be written.
#[derive(Debug)]
enum Problem {
    /// `access(W_OK|X_OK)` says no.
    Denied(std::io::Error),
    /// On a read-only filesystem (EROFS).
    ReadOnlyFs,
    /// Creating a file failed for another reason (full, quota, ...).
    Create(std::io::Error),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Denied(e) => write!(f, "is not writable by this user ({e})"),
            Problem::ReadOnlyFs => write!(f, "is on a read-only filesystem"),
            Problem::Create(e) => write!(f, "refuses new files ({e})"),
        }
    }
}

/// Can this user create, rename and remove files in `dir`? `access(2)` for permissions
/// (answers for the real uid, so root passes), then a probe file for what modes don't show.
fn writable(dir: &Path) -> Result<(), Problem> {
    if let Err(e) = rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK) {
        return Err(if e == rustix::io::Errno::ROFS {
            Problem::ReadOnlyFs
        } else {
            Problem::Denied(e.into())
        });
    }
    match tempfile::Builder::new()
        .prefix(crate::store::layout::CHECK_PROBE_PREFIX)
        .tempfile_in(dir)
    {
        Ok(probe) => {
            // Removed on close; a failure to remove is not the folder's fault.
            let _ = probe.close();
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error()) => {
            Err(Problem::ReadOnlyFs)
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(Problem::Denied(e)),
        Err(e) => Err(Problem::Create(e)),
    }
}

/// The uid this process runs as (the owner of its /proc entry), without a libc call.
fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// A path as a shell word: bare when safe, else in single quotes.
fn shell_quote(path: &Path) -> String {
    let s = path.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

// ---------------------------------------------------------------------------------------
// The service's sandbox.

/// What a systemd unit lets its service see and write, as far as folders are concerned.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    /// The unit file, for messages.
    pub unit: PathBuf,
    /// `User=`.
    pub user: Option<String>,
    /// The `--config` of `ExecStart=`.
    pub config: Option<PathBuf>,
    /// `ProtectSystem=`: "", "yes", "full" or "strict".
    pub protect_system: String,
    /// `ProtectHome=`: "", "yes", "read-only" or "tmpfs".
    pub protect_home: String,
    /// `PrivateTmp=`: the service has its own /tmp and /var/tmp.
    pub private_tmp: bool,
    /// `ReadWritePaths=`.
    pub read_write_paths: Vec<PathBuf>,
    /// `StateDirectory=`, as full paths under /var/lib.
    pub state_directories: Vec<PathBuf>,
}

impl Sandbox {
    /// Reads the `[Service]` settings of a unit file followed by its drop-ins (later files
    /// win; an empty assignment resets a list, as systemd does). Quoting and specifiers are
    /// not interpreted: enough for the settings the shipped unit uses.
    pub fn parse<'a>(unit: &Path, texts: impl IntoIterator<Item = &'a str>) -> Sandbox {
        let mut s = Sandbox {
            unit: unit.to_path_buf(),
            ..Sandbox::default()
        };
        for text in texts {
            let mut in_service = false;
            for line in text.lines().map(str::trim) {
                if line.starts_with('[') {
                    in_service = line == "[Service]";
                    continue;
                }
                if !in_service || line.starts_with('#') || line.starts_with(';') {
                    continue;
                }
                if let Some((key, value)) = line.split_once('=') {
                    s.apply(key.trim(), value.trim());
                }
            }
        }
        s
    }

    fn apply(&mut self, key: &str, value: &str) {
        let paths = |value: &str| -> Vec<PathBuf> {
            value
                .split_whitespace()
                .map(|p| p.trim_matches('"').trim_start_matches(['-', '+']))
                .map(PathBuf::from)
                .collect()
        };
        match key {
            "User" => self.user = Some(value.to_string()).filter(|v| !v.is_empty()),
            "ExecStart" if value.is_empty() => self.config = None,
            "ExecStart" => {
                let words: Vec<&str> = value.split_whitespace().collect();
                for (i, w) in words.iter().enumerate() {
                    if let Some(c) = w.strip_prefix("--config=") {
                        self.config = Some(PathBuf::from(c));
                    } else if (*w == "--config" || *w == "-c")
                        && let Some(c) = words.get(i + 1)
                    {
                        self.config = Some(PathBuf::from(c));
                    }
                }
            }
            "ProtectSystem" => self.protect_system = normalize_bool(value, "yes"),
            "ProtectHome" => self.protect_home = normalize_bool(value, "yes"),
            "PrivateTmp" => self.private_tmp = normalize_bool(value, "yes") == "yes",
            "ReadWritePaths" if value.is_empty() => self.read_write_paths.clear(),
            "ReadWritePaths" => self.read_write_paths.extend(paths(value)),
            "StateDirectory" if value.is_empty() => self.state_directories.clear(),
            "StateDirectory" => self.state_directories.extend(
                value
                    .split_whitespace()
                    .map(|d| Path::new("/var/lib").join(d.split(':').next().unwrap_or(d))),
            ),
            _ => {}
        }
    }

    /// Ok when the service could write in `dir`; else why not and the fix.
    pub fn writable(&self, dir: &Path) -> Result<(), String> {
        let dir = canonical(dir);
        let under = |prefixes: &[&str]| prefixes.iter().any(|p| dir.starts_with(p));
        let unit = self.unit.display();
        if self.private_tmp && under(&["/tmp", "/var/tmp"]) {
            return Err(format!(
                "{unit} sets PrivateTmp=yes, so the service has its own empty /tmp and /var/tmp; move the folder elsewhere (e.g. under /srv/scans)"
            ));
        }
        if !self.protect_home.is_empty()
            && self.protect_home != "no"
            && under(&["/home", "/root", "/run/user"])
        {
            return Err(format!(
                "{unit} sets ProtectHome={}, so /home, /root and /run/user are {} for the service; move the folder elsewhere (e.g. under /srv/scans)",
                self.protect_home,
                if self.protect_home == "read-only" {
                    "read-only"
                } else {
                    "hidden"
                }
            ));
        }
        let allowed = self
            .read_write_paths
            .iter()
            .chain(&self.state_directories)
            .any(|p| dir.starts_with(canonical(p)));
        if allowed {
            return Ok(());
        }
        let read_only = match self.protect_system.as_str() {
            "strict" => true,
            "full" => under(&["/usr", "/boot", "/efi", "/etc"]),
            "yes" => under(&["/usr", "/boot", "/efi"]),
            _ => false,
        };
        if read_only {
            let listed: Vec<String> = self
                .read_write_paths
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            return Err(format!(
                "{unit} sets ProtectSystem={} and its ReadWritePaths= ({}) does not cover it; add it: systemctl edit beorg-hotfolder, then under [Service] ReadWritePaths={} (and restart)",
                self.protect_system,
                if listed.is_empty() {
                    "empty".to_string()
                } else {
                    listed.join(" ")
                },
                shell_quote(&dir)
            ));
        }
        Ok(())
    }
}

/// systemd booleans to "yes"/"no"; other words (strict, read-only, ...) kept as written.
fn normalize_bool(value: &str, yes: &str) -> String {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => yes.to_string(),
        "0" | "no" | "false" | "off" | "" => "no".to_string(),
        other => other.to_string(),
    }
}

/// The path with symlinks resolved where it exists (its nearest existing ancestor otherwise).
fn canonical(path: &Path) -> PathBuf {
    for ancestor in path.ancestors() {
        if let Ok(real) = std::fs::canonicalize(ancestor) {
            let rest = path.strip_prefix(ancestor).unwrap_or(Path::new(""));
            return if rest.as_os_str().is_empty() {
                real
            } else {
                real.join(rest)
            };
        }
    }
    path.to_path_buf()
}

/// The installed unit (with drop-ins), if its `ExecStart=` runs the config at `config_path`.
fn installed_sandbox_for(config_path: &Path, report: &mut Report) -> Option<Sandbox> {
    let main = UNIT_DIRS
        .iter()
        .rev()
        .map(|d| Path::new(d).join(UNIT_NAME))
        .find(|p| p.is_file())?;
    let mut texts = vec![std::fs::read_to_string(&main).ok()?];
    // Drop-ins: by file name across all folders, a higher-priority folder's file replacing a
    // lower one's of the same name.
    let mut drop_ins = std::collections::BTreeMap::new();
    for dir in UNIT_DIRS {
        let folder = Path::new(dir).join(format!("{UNIT_NAME}.d"));
        for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(".conf") {
                drop_ins.insert(name, entry.path());
            }
        }
    }
    texts.extend(
        drop_ins
            .values()
            .filter_map(|p| std::fs::read_to_string(p).ok()),
    );
    let sandbox = Sandbox::parse(&main, texts.iter().map(String::as_str));
    let runs_this = sandbox
        .config
        .as_deref()
        .is_some_and(|c| canonical(c) == canonical(config_path));
    if runs_this {
        report.push(
            Severity::Note,
            "unit",
            format!(
                "{} runs this config: folders are also checked against its sandbox",
                main.display()
            ),
        );
        Some(sandbox)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------
// --online

/// How long `check --online` waits for a turn from a shared budget.
const SHARED_TURN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// One submit with the real credentials and an empty `images` list: it tells whether the
/// credentials work without creating a document.
///
/// A 400 for it means "credentials accepted" only if the API checks the token and
/// machine_uid before the body's content; the vendor's pages do not state the order. So a
/// 400 is confirmed by a second empty request with no credentials at all: a 401 to that shows
/// the credentials are checked first (the emulator's order), and the 400 stands; a 400 to it
/// shows the body is checked first, and the check says it cannot tell (warning) instead of
/// calling unknown credentials good.
async fn online_finding(config: &Config) -> Finding {
    let finding = |severity, message: String| Finding::new(severity, "api", message);
    let client = match ApiClient::new(&config.api) {
        Ok(client) => client,
        Err(e) => return finding(Severity::Error, format!("{e:#}")),
    };
    let empty_request = |token: &str, machine_uid: &str| {
        SubmitBody::from_json(
            serde_json::to_vec(&serde_json::json!({
                "project_id": config.api.project_id,
                "token": token,
                "machine_uid": machine_uid,
                "images": [],
            }))
            .expect("a JSON object serializes"),
        )
    };
    let Some(token) = &config.api.token else {
        return finding(Severity::Error, "no API token to check".to_string());
    };
    let body = empty_request(token.secret.expose(), &config.api.machine_uid);
    let url = &crate::redact::url(&config.api.base_url, crate::redact::Show::Whole);
    // With a shared budget, each test request takes a turn from it like the daemons' own.
    let turn = || async {
        match &config.budget.redis {
            Some(shared) => budget::request_turn(config, shared, SHARED_TURN_LIMIT).await,
            None => Ok(()),
        }
    };
    if let Err(why) = turn().await {
        return finding(
            Severity::Error,
            format!("the credentials were not checked: {why}"),
        );
    }
    let answer = client.submit(body).await;
    if let Err(ApiFailure::Rejected { status: 400, .. }) = answer {
        // Within the account's request pace (no document is created, so the submit pace
        // does not apply), then the same request without credentials.
        let limits = crate::scheduler::Limits {
            requests_per_second: config.api.requests_per_second,
            documents_per_minute: config.api.documents_per_minute,
        };
        tokio::time::sleep(limits.request_period()).await;
        if let Err(why) = turn().await {
            return finding(
                Severity::Error,
                format!("the credentials were not confirmed: {why}"),
            );
        }
        match client.submit(empty_request("", "")).await {
            Err(ApiFailure::Account { status: 401, .. }) => {}
            Err(ApiFailure::Rejected { status: 400, .. }) => {
                return finding(
                    Severity::Warning,
                    format!(
                        "{url} cannot confirm the token and machine_uid without creating a document: it answers an empty request with HTTP 400 even without credentials (it checks the request before the credentials). The first submit will tell: a wrong token pauses submits with an ERROR in the log, and no file is failed for it"
                    ),
                );
            }
            other => return online_answer(url, other),
        }
    }
    online_answer(url, answer)
}

/// What an answer to the empty test request says about the credentials (a 400 here is one
/// that passed the credentials check, see [`online_finding`]).
fn online_answer(url: &str, answer: Result<String, ApiFailure>) -> Finding {
    let finding = |severity, message: String| Finding::new(severity, "api", message);
    match answer {
        Err(ApiFailure::Rejected { status: 400, .. }) => finding(
            Severity::Ok,
            format!(
                "{url} accepts the token and machine_uid (it refused the empty test request with HTTP 400, as expected, and the same request without credentials with HTTP 401; project_id is not checked by this request)"
            ),
        ),
        Err(ApiFailure::Account {
            status: 401,
            message,
        }) => finding(
            Severity::Error,
            format!(
                "token or machine_uid rejected by {url} (HTTP 401: {message}); compare api.token and api.machine_uid with the Beorg account page"
            ),
        ),
        Err(ApiFailure::Account {
            status: 402,
            message,
        }) => finding(
            Severity::Warning,
            format!(
                "credentials accepted, but the account has no money (HTTP 402: {message}); submits pause until it is topped up"
            ),
        ),
        Err(ApiFailure::Transient {
            status: None,
            message,
        }) => finding(
            Severity::Error,
            format!(
                "API unreachable at {url}: {message}; check api.base_url, DNS, the firewall and HTTPS_PROXY"
            ),
        ),
        Err(ApiFailure::Transient {
            status: Some(status),
            message,
        }) if status >= 500 => finding(
            Severity::Error,
            format!(
                "API unreachable at {url}: it answers HTTP {status} ({message}); try again later"
            ),
        ),
        Err(other) => finding(
            Severity::Error,
            format!(
                "unexpected answer from {url} ({other}); the credentials could not be confirmed: is api.base_url the API's address?"
            ),
        ),
        Ok(document_id) => finding(
            Severity::Warning,
            format!(
                "credentials accepted, but {url} created document {document_id} from an empty request; this check assumes it would refuse it"
            ),
        ),
    }
}

/// Exit status for a report.
pub fn exit_code(report: &Report) -> std::process::ExitCode {
    if report.passed() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "[Unit]\nDescription=x\n[Service]\nUser=scans\nExecStart=/usr/bin/beorg-hotfolder run --config /etc/beorg-hotfolder/config.toml\nProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\nStateDirectory=beorg-hotfolder\nReadWritePaths=/srv/scans\n# ReadWritePaths=/mnt\n[Install]\nReadWritePaths=/ignored\n";

    #[test]
    fn unit_settings_are_read_from_the_service_section() {
        let s = Sandbox::parse(Path::new("u.service"), [UNIT]);
        assert_eq!(s.user.as_deref(), Some("scans"));
        assert_eq!(
            s.config.as_deref(),
            Some(Path::new("/etc/beorg-hotfolder/config.toml"))
        );
        assert_eq!(s.protect_system, "strict");
        assert_eq!(s.protect_home, "yes");
        assert!(s.private_tmp);
        assert_eq!(s.read_write_paths, vec![PathBuf::from("/srv/scans")]);
        assert_eq!(
            s.state_directories,
            vec![PathBuf::from("/var/lib/beorg-hotfolder")]
        );
    }

    #[test]
    fn drop_ins_add_to_and_reset_lists() {
        let s = Sandbox::parse(
            Path::new("u.service"),
            [UNIT, "[Service]\nReadWritePaths=-/mnt/a \"/mnt/b\"\n"],
        );
        assert_eq!(
            s.read_write_paths,
            ["/srv/scans", "/mnt/a", "/mnt/b"].map(PathBuf::from)
        );
        let s = Sandbox::parse(
            Path::new("u.service"),
            [
                UNIT,
                "[Service]\nReadWritePaths=\nReadWritePaths=/mnt/c\nExecStart=\nExecStart=/x run --config=/y.toml\n",
            ],
        );
        assert_eq!(s.read_write_paths, vec![PathBuf::from("/mnt/c")]);
        assert_eq!(s.config.as_deref(), Some(Path::new("/y.toml")));
    }

    #[test]
    fn sandbox_says_which_folders_the_service_can_write() {
        let s = Sandbox::parse(Path::new("u.service"), [UNIT]);
        assert!(s.writable(Path::new("/srv/scans/in/passport")).is_ok());
        assert!(s.writable(Path::new("/var/lib/beorg-hotfolder")).is_ok());
        let e = s.writable(Path::new("/srv/other/done")).unwrap_err();
        assert!(e.contains("ReadWritePaths=/srv/other/done"), "{e}");
        assert!(
            s.writable(Path::new("/tmp/x"))
                .unwrap_err()
                .contains("PrivateTmp")
        );
        assert!(
            s.writable(Path::new("/home/scans"))
                .unwrap_err()
                .contains("ProtectHome")
        );
        let open = Sandbox::parse(Path::new("u.service"), ["[Service]\nUser=x\n"]);
        assert!(open.writable(Path::new("/tmp/x")).is_ok());
    }

    #[test]
    fn paths_are_quoted_for_the_shell_only_when_needed() {
        assert_eq!(shell_quote(Path::new("/srv/scans/in")), "/srv/scans/in");
        assert_eq!(shell_quote(Path::new("/srv/my scans")), "'/srv/my scans'");
        assert_eq!(shell_quote(Path::new("/srv/it's")), r"'/srv/it'\''s'");
    }

    #[test]
    fn summary_says_whether_run_would_start() {
        let mut r = Report {
            config_loaded: true,
            ..Report::default()
        };
        r.push(Severity::Warning, "x", "y");
        assert!(r.passed());
        assert!(r.render().ends_with("OK (0 errors, 1 warning): `run` accepts this config; the warnings above are tolerated\n"));
        r.push(Severity::Error, "inbox[0].done", "missing");
        assert!(!r.passed());
        assert!(r.render().contains("error    inbox[0].done: missing\n"));
        assert!(r.render().contains("FAILED (1 error, 1 warning)"));
    }
}

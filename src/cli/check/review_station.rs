//! `check`'s look at `[review_station]`: the users file exists and names at least one
//! reviewer, the TLS files load, the audit log's folder takes new lines.

use super::{Finding, Severity, shell_quote, writable};
use crate::config::Config;

/// The findings for the review station (none when it is off).
pub(super) fn findings(config: &Config, user: &str) -> Vec<Finding> {
    let Some(station) = &config.review_station else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let users = &station.users_file;
    out.push(match crate::review_station::auth::read_users(users) {
        Ok(list) if !list.is_empty() => Finding::new(
            Severity::Ok,
            "review_station.users_file",
            format!("{} names {} reviewer(s)", users.display(), list.len()),
        ),
        Ok(_) => Finding::new(
            Severity::Warning,
            "review_station.users_file",
            format!(
                "{} names no reviewer: nobody can log in; add one: beorg-hotfolder reviewer add NAME --users-file {}",
                users.display(),
                shell_quote(users)
            ),
        ),
        Err(e) => Finding::new(
            Severity::Error,
            "review_station.users_file",
            format!(
                "cannot read {} ({e}): the daemon would not start; create it: beorg-hotfolder reviewer add NAME --users-file {} && chgrp {user} {} && chmod 0640 {}",
                users.display(),
                shell_quote(users),
                shell_quote(users),
                shell_quote(users)
            ),
        ),
    });
    if let Some(tls) = &station.tls {
        out.push(match crate::review_station::tls::acceptor(tls) {
            Ok(_) => Finding::new(
                Severity::Ok,
                "review_station.tls_cert",
                format!("{} and its key load", tls.cert.display()),
            ),
            Err(e) => Finding::new(Severity::Error, "review_station.tls_cert", format!("{e:#}")),
        });
    }
    let audit = &station.audit_log;
    let dir = audit.parent().unwrap_or(std::path::Path::new("/"));
    out.push(match writable(dir) {
        Ok(()) => Finding::new(
            Severity::Ok,
            "review_station.audit_log",
            format!("{} can be appended to", audit.display()),
        ),
        Err(problem) => Finding::new(
            Severity::Error,
            "review_station.audit_log",
            format!(
                "its folder {} {problem}: the daemon would not start; fix: mkdir -p {q} && chown {user} {q}",
                dir.display(),
                q = shell_quote(dir)
            ),
        ),
    });
    out
}

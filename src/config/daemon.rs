//! `[daemon]`: settings of the process itself (the state folder, the rescan, how long
//! history is kept, the mode of the files it writes, the hold limit).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::folders::{check_absolute_or_relative, normalize};
use super::{ConfigError, DAY, HOUR, MS_100, check_range, key_error};

/// Settings of the process itself.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Where the journal lives (`journal.sqlite`).
    pub state_dir: PathBuf,
    /// How often every inbox is listed again as a safety net for missed events.
    pub rescan_interval: Duration,
    /// Finished files' journal rows (and so their content hashes, for the duplicate rule)
    /// are kept this long.
    pub keep_history: Duration,
    /// Mode of originals moved to done/failed and of sidecars (never world-readable).
    pub file_mode: u32,
    /// How long intake holds a settled file that looks unfinished (open for writing, end
    /// missing or still zeros) without a change before it takes it anyway, with a WARN.
    pub hold_limit: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default = "default_rescan_interval", with = "humantime_serde")]
    rescan_interval: Duration,
    #[serde(default = "default_keep_history", with = "humantime_serde")]
    keep_history: Duration,
    #[serde(default = "default_file_mode")]
    file_mode: String,
    #[serde(default = "default_hold_limit", with = "humantime_serde")]
    hold_limit: Duration,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            state_dir: default_state_dir(),
            rescan_interval: default_rescan_interval(),
            keep_history: default_keep_history(),
            file_mode: default_file_mode(),
            hold_limit: default_hold_limit(),
        }
    }
}

fn default_file_mode() -> String {
    "0640".into()
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/beorg-hotfolder")
}
fn default_rescan_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_keep_history() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_hold_limit() -> Duration {
    Duration::from_secs(5 * 60)
}

pub(super) fn resolve_daemon(raw: RawDaemon) -> Result<DaemonConfig, ConfigError> {
    check_absolute_or_relative(&raw.state_dir, "daemon.state_dir")?;
    check_range(
        raw.rescan_interval,
        "daemon.rescan_interval",
        (MS_100, DAY),
        "60s",
    )?;
    check_range(
        raw.keep_history,
        "daemon.keep_history",
        (HOUR, 3650 * DAY),
        "30d",
    )?;
    check_range(raw.hold_limit, "daemon.hold_limit", (MS_100, DAY), "5m")?;
    let file_mode = parse_file_mode(&raw.file_mode)?;
    Ok(DaemonConfig {
        state_dir: normalize(&raw.state_dir),
        rescan_interval: raw.rescan_interval,
        keep_history: raw.keep_history,
        file_mode,
        hold_limit: raw.hold_limit,
    })
}

/// An octal mode like "0640"; anything readable or writable by others is refused.
fn parse_file_mode(text: &str) -> Result<u32, ConfigError> {
    let mode = u32::from_str_radix(text.trim().trim_start_matches("0o"), 8).map_err(|_| {
        key_error(
            "daemon.file_mode",
            format!("\"{text}\" is not an octal mode; write it like \"0640\""),
        )
    })?;
    if mode > 0o777 || mode & 0o007 != 0 || mode & 0o600 != 0o600 {
        return Err(key_error(
            "daemon.file_mode",
            format!(
                "\"{text}\" must let the owner read and write and give others nothing (scans are personal data); e.g. \"0640\" or \"0600\""
            ),
        ));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{GOOD, err_text, parse};

    #[test]
    fn file_mode_must_keep_others_out() {
        let with =
            |mode: &str| GOOD.replace("[daemon]\n", &format!("[daemon]\nfile_mode = \"{mode}\"\n"));
        assert_eq!(parse(&with("0600")).unwrap().daemon.file_mode, 0o600);
        assert_eq!(parse(GOOD).unwrap().daemon.file_mode, 0o640);
        assert!(err_text(&with("0644")).contains("daemon.file_mode"));
        assert!(err_text(&with("rw-r")).contains("daemon.file_mode"));
    }
}

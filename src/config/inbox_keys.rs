//! The per-inbox keys as the file writes them. Each key allowed both in `[defaults]` and in
//! an `[[inbox]]` is declared once, in the list given to `per_inbox_keys!` below: its name,
//! the type of its value, and how an inbox's own value combines with `[defaults]`'. From that
//! one list come [`InboxKeys`] (the `[defaults]` table, and the shared part of an inbox),
//! [`RawInbox`] (an `[[inbox]]` table: its own keys, then the shared ones) and
//! [`RawInbox::keys_over`] (the merge, key by key). The values' defaults and checks are
//! [`super::inbox`]'s, one statement per key.
//!
//! A macro and not `#[serde(flatten)]`: serde ignores `deny_unknown_fields` on a struct with
//! a flattened part, and a misspelt key must be refused in both tables with toml's line,
//! column and list of known keys (from which the nearest is suggested).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::sets::RuleText;

/// The per-inbox preflight policy, from the config key `preflight = "strict" | "warn" | "off"`.
///
/// - `strict` (default): a refused file goes to failed/ with the message, no request is made;
/// - `warn`: the refusal is logged and the file is sent anyway (the service has the last word);
/// - `off`: no preflight at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    #[default]
    Strict,
    Warn,
    Off,
}

/// The name the project travels under in a submit, from the config key
/// `project_field = "project_id" | "campaign_id"`: the vendor's pages call the same field
/// `project_id` (passport pages) and `campaign_id` (the OTPR page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectField {
    #[default]
    ProjectId,
    CampaignId,
}

impl ProjectField {
    /// The JSON field name, as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectField::ProjectId => "project_id",
            ProjectField::CampaignId => "campaign_id",
        }
    }
}

/// The account's tariff an inbox's files are sent under, from the config key
/// `tariff = "universal" | "passport_auto"`.
///
/// - `universal` (default): each image goes with its `process_info`; the result lists
///   `documents`;
/// - `passport_auto`: no `process_info` at all (passport pages 2-3 only); the result is one
///   flat document (`data`, `metadata`, `verifications` at the top).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tariff {
    #[default]
    Universal,
    PassportAuto,
}

impl Tariff {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Tariff::Universal => "universal",
            Tariff::PassportAuto => "passport_auto",
        }
    }
}

/// How an inbox notices new files, from the config key `watch = "auto" | "events" | "poll"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    /// Events on local filesystems, polling on network ones (NFS, SMB/CIFS, FUSE, ...).
    #[default]
    Auto,
    /// inotify events (plus the periodic rescan).
    Events,
    /// List the folder every `poll_interval`.
    Poll,
}

/// Declares the keys an `[[inbox]]` has alone (`first`, `last`: written before and after the
/// shared keys, the order toml lists known keys in when it refuses an unknown one) and the
/// keys it shares with `[defaults]` (`shared`: each `name: Type => merge`, where `merge`
/// combines the inbox's value with `[defaults]`', both `Option<Type>`).
macro_rules! per_inbox_keys {
    (
        first { $( $(#[$first_meta:meta])* $first:ident: $first_ty:ty, )* }
        shared { $( $(#[$meta:meta])* $name:ident: $ty:ty => $merge:ident, )* }
        last { $( $(#[$last_meta:meta])* $last:ident: $last_ty:ty, )* }
    ) => {
        /// The keys allowed both in `[defaults]` and in each `[[inbox]]`, each `None` when
        /// not written.
        #[derive(Debug, Default, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct InboxKeys {
            $( $(#[$meta])* pub $name: Option<$ty>, )*
        }

        /// One `[[inbox]]` as written: its own keys, then the shared ones.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct RawInbox {
            $( $(#[$first_meta])* pub $first: $first_ty, )*
            $( $(#[$meta])* $name: Option<$ty>, )*
            $( $(#[$last_meta])* pub $last: $last_ty, )*
        }

        impl RawInbox {
            /// This inbox's shared keys, each combined with `[defaults]`' by its `merge`.
            pub(super) fn keys_over(&self, defaults: &InboxKeys) -> InboxKeys {
                InboxKeys {
                    $( $name: $merge(self.$name.clone(), defaults.$name.clone()), )*
                }
            }
        }
    };
}

per_inbox_keys! {
    first {
        path: Option<PathBuf>,
        #[serde(rename = "type")]
        doc_type: Option<String>,
        done: Option<PathBuf>,
        failed: Option<PathBuf>,
    }
    shared {
        key: String => own_else_default,
        stages: Vec<String> => own_else_default,
        #[serde(default, with = "humantime_serde")]
        settle: Duration => own_else_default,
        #[serde(default, with = "humantime_serde")]
        first_poll: Duration => own_else_default,
        #[serde(default, with = "humantime_serde")]
        max_poll_interval: Duration => own_else_default,
        #[serde(default, with = "humantime_serde")]
        result_timeout: Duration => own_else_default,
        watch: WatchMode => own_else_default,
        #[serde(default, with = "humantime_serde")]
        poll_interval: Duration => own_else_default,
        recursive: bool => own_else_default,
        ignore: Vec<String> => defaults_then_own,
        preflight: Policy => own_else_default,
        project_id: String => own_else_default,
        project_field: ProjectField => own_else_default,
        tariff: Tariff => own_else_default,
        review: PathBuf => own_else_default,
        min_confidence: f64 => own_else_default,
        #[serde(default, with = "humantime_serde")]
        retention: Duration => own_else_default,
        // Delivery of outcomes (see `delivery`).
        webhook: String => own_else_default,
        webhook_secret_file: PathBuf => own_else_default,
        exec: Vec<String> => own_else_default,
        #[serde(default, with = "humantime_serde")]
        exec_timeout: Duration => own_else_default,
        ledger: PathBuf => own_else_default,
        delivery_retry: Vec<String> => own_else_default,
    }
    last {
        // Document sets: per inbox only (see `sets`).
        sets: Option<bool>,
        ready_file: Option<String>,
        #[serde(default)]
        documents: Vec<RuleText>,
    }
}

/// The inbox's own value, else `[defaults]`'.
fn own_else_default<T>(own: Option<T>, default: Option<T>) -> Option<T> {
    own.or(default)
}

/// Both lists apply: `[defaults]`' entries, then the inbox's own.
fn defaults_then_own<T>(own: Option<Vec<T>>, default: Option<Vec<T>>) -> Option<Vec<T>> {
    match (default, own) {
        (None, None) => None,
        (default, own) => Some(default.into_iter().chain(own).flatten().collect()),
    }
}

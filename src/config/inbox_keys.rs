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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::tests::GOOD;
    use super::super::{Config, ConfigError, TokenRule};

    /// Each shared key with two values the loader accepts (`webhook_secret_file` is checked
    /// with a `webhook` beside it, and not read: the rule is `Optional`).
    const SHARED: [(&str, &str, &str); 23] = [
        ("key", "\"K1\"", "\"K2\""),
        ("stages", "[\"verification\"]", "[\"biometry_liveness\"]"),
        ("settle", "\"1s\"", "\"3s\""),
        ("first_poll", "\"1s\"", "\"2s\""),
        ("max_poll_interval", "\"10s\"", "\"20s\""),
        ("result_timeout", "\"5m\"", "\"10m\""),
        ("watch", "\"poll\"", "\"events\""),
        ("poll_interval", "\"1s\"", "\"2s\""),
        ("recursive", "true", "false"),
        ("ignore", "[\"*.a\"]", "[\"*.b\"]"),
        ("preflight", "\"warn\"", "\"off\""),
        ("project_id", "\"U_RATE_3\"", "\"U_RATE_4\""),
        ("project_field", "\"campaign_id\"", "\"project_id\""),
        ("tariff", "\"passport_auto\"", "\"universal\""),
        ("review", "\"/srv/review/a\"", "\"/srv/review/b\""),
        ("min_confidence", "0.5", "0.9"),
        ("retention", "\"2d\"", "\"3d\""),
        (
            "webhook",
            "\"https://a.example/h\"",
            "\"https://b.example/h\"",
        ),
        ("webhook_secret_file", "\"a.secret\"", "\"b.secret\""),
        ("exec", "[\"/bin/a\"]", "[\"/bin/b\"]"),
        ("exec_timeout", "\"10s\"", "\"20s\""),
        (
            "ledger",
            "\"/srv/ledger/a.jsonl\"",
            "\"/srv/ledger/b.jsonl\"",
        ),
        ("delivery_retry", "[\"1s\"]", "[\"2s\"]"),
    ];

    /// A config whose one inbox has `inbox` lines, with `defaults` lines in `[defaults]`: the
    /// inbox as resolved, in `Debug` form.
    fn inbox(defaults: &str, inbox: &str) -> Result<String, ConfigError> {
        let text = format!(
            "[api]\nproject_id = \"P\"\nmachine_uid = \"m\"\n[defaults]\n{defaults}\n[[inbox]]\npath = \"/srv/in/a\"\ntype = \"PASSPORT\"\ndone = \"/srv/done/a\"\nfailed = \"/srv/failed/a\"\n{inbox}\n"
        );
        let origin = Path::new("/etc/bh/config.toml");
        let c = Config::parse(&text, origin, None, TokenRule::Optional)?;
        Ok(format!("{:?}", c.inboxes[0]))
    }

    /// `webhook_secret_file` means something only beside a `webhook`.
    fn line(key: &str, value: &str) -> String {
        match key {
            "webhook_secret_file" => format!("{key} = {value}\nwebhook = \"https://c.example/h\""),
            _ => format!("{key} = {value}"),
        }
    }

    /// The keys toml lists as known when it refuses `bogus_key` in `table` ("defaults" or
    /// "inbox").
    fn known_keys(table: &str) -> Vec<String> {
        let text = match table {
            "defaults" => GOOD.replace("[defaults]\n", "[defaults]\nbogus_key = 1\n"),
            _ => GOOD.replace("first_poll = \"1s\"", "bogus_key = 1"),
        };
        let e = Config::from_toml(&text, Path::new("c.toml"), None)
            .unwrap_err()
            .to_string();
        let list = e
            .split("unknown field `bogus_key`, expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("{table}: not refused as unknown: {e}"));
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect()
    }

    #[test]
    fn every_shared_key_is_read_from_defaults_and_an_inbox_value_wins() {
        let shared: Vec<&str> = SHARED.iter().map(|(key, _, _)| *key).collect();
        assert_eq!(
            known_keys("defaults"),
            shared,
            "every key [defaults] accepts has a case here"
        );
        let none = inbox("", "").unwrap();
        for (key, a, b) in SHARED {
            let (a, b) = (line(key, a), line(key, b));
            let in_defaults = inbox(&a, "").unwrap_or_else(|e| panic!("{key}: {e}"));
            let in_inbox = inbox("", &a).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_ne!(in_defaults, none, "`{key}` in [defaults] has an effect");
            assert_eq!(
                in_defaults, in_inbox,
                "`{key}` means the same in both tables"
            );
            let both = inbox(&a, &b).unwrap_or_else(|e| panic!("{key}: {e}"));
            if key == "ignore" {
                let joined = inbox("", "ignore = [\"*.a\", \"*.b\"]").unwrap();
                assert_eq!(both, joined, "both ignore lists apply, [defaults]' first");
            } else {
                assert_eq!(both, inbox("", &b).unwrap(), "the inbox's `{key}` wins");
            }
        }
    }

    #[test]
    fn a_misspelt_key_is_refused_in_defaults_and_in_an_inbox_with_the_keys_each_accepts() {
        let shared = known_keys("defaults");
        let own_first = ["path", "type", "done", "failed"];
        let own_last = ["sets", "ready_file", "documents"];
        let expected: Vec<String> = (own_first.iter().map(|k| k.to_string()))
            .chain(shared.iter().cloned())
            .chain(own_last.iter().map(|k| k.to_string()))
            .collect();
        assert_eq!(known_keys("inbox"), expected);
        for key in own_first.iter().chain(&own_last) {
            let text = GOOD.replace("[defaults]\n", &format!("[defaults]\n{key} = \"x\"\n"));
            let e = Config::from_toml(&text, Path::new("c.toml"), None)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!(
                    ", key `{key}`: unknown field `{key}`, expected one of `key`,"
                )),
                "an inbox's own `{key}` is refused in [defaults]: {e}"
            );
        }
        let defaults = GOOD.replace("settle = \"500ms\"", "setle = \"500ms\"");
        let in_inbox = GOOD.replace("first_poll = \"1s\"", "frist_poll = \"1s\"");
        for (text, nearest) in [(defaults, "settle"), (in_inbox, "first_poll")] {
            let e = Config::from_toml(&text, Path::new("c.toml"), None)
                .unwrap_err()
                .to_string();
            assert!(e.ends_with(&format!("\ndid you mean `{nearest}`?")), "{e}");
        }
        let rule = GOOD.replace(
            "first_poll = \"1s\"",
            "sets = true\n\n[[inbox.documents]]\nmatc = \"*\"\ntype = \"X\"",
        );
        let e = Config::from_toml(&rule, Path::new("c.toml"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field `matc`, expected one of `match`, `type`, `key`, `stages`, `relation`\ndid you mean `match`?"),
            "{e}"
        );
    }
}

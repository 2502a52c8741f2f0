//! One `[[inbox]]` resolved into [`InboxConfig`]: its keys (as `super::inbox_keys` reads
//! them, the inbox's own over `[defaults]`') given their defaults and checked, one statement
//! per key, in the order refusals are reported; an inbox's delivery and set keys are checked
//! by `super::delivery` and `super::sets`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::delivery::{self, DeliveryConfig};
use super::folders::{check_absolute_or_relative, normalize};
use super::inbox_keys::{InboxKeys, Policy, ProjectField, RawInbox, Tariff, WatchMode};
use super::sets::{self, DocumentRule};
use super::{ConfigError, DAY, HOUR, MS_10, MS_100, check_range, key_error};

/// One watched folder and what to do with its files.
#[derive(Debug, Clone)]
pub struct InboxConfig {
    /// The folder the scanner writes into.
    pub path: PathBuf,
    /// Document type sent in `process_info` (`PASSPORT`, `SNILS`, ...).
    pub doc_type: String,
    /// Optional `process_info.key`; the API uses the type when absent.
    pub key: Option<String>,
    /// Optional `process_info.options.stages` (`verification`, `biometry_liveness`, ...).
    pub stages: Vec<String>,
    /// Where originals and sidecars of recognised files go.
    pub done: PathBuf,
    /// Where originals and sidecars of files that could not be recognised go.
    pub failed: PathBuf,
    /// A file is taken once its size and mtime stayed unchanged this long.
    pub settle: Duration,
    /// The shortest wait between the submit and the first result request (the learned ready
    /// time, `pipeline::ready_times`, is used when it is later).
    pub first_poll: Duration,
    /// Result requests back off up to this interval; the first comes at most
    /// `first_poll + max_poll_interval` after the submit.
    pub max_poll_interval: Duration,
    /// No result by then: the file goes to failed with kind `timeout`.
    pub result_timeout: Duration,
    /// How new files are noticed: folder events, polling, or chosen by filesystem.
    pub watch: WatchMode,
    /// How often the inbox is listed when polled.
    pub poll_interval: Duration,
    /// Take files in subfolders too, keeping the subfolder path under done/ and failed/.
    pub recursive: bool,
    /// Extra name patterns intake leaves alone, on top of the built-in list.
    pub ignore: Vec<String>,
    /// What preflight does with a file the service would refuse.
    pub preflight: Policy,
    /// This inbox's project: its own `project_id`, else `[defaults]`, else `[api].project_id`.
    pub project_id: String,
    /// The name `project_id` travels under in a submit.
    pub project_field: ProjectField,
    /// Whether `process_info` is sent, and which result shape comes back.
    pub tariff: Tariff,
    /// Where results a person must check go (with `status: "review"`); without it they go to
    /// done/ with the reasons listed.
    pub review: Option<PathBuf>,
    /// A field read with a lower confidence than this sends the result to review.
    pub min_confidence: Option<f64>,
    /// Outcomes in done/, review/ and failed/ whose sidecar is older than this are deleted.
    pub retention: Option<Duration>,
    /// Every direct subfolder of the inbox is one document set, sent as one request.
    pub sets: bool,
    /// In a `sets` inbox: a set is taken only once a file of this name is in it.
    pub ready_file: Option<String>,
    /// In a `sets` inbox: `process_info` for the files of a set, first match wins.
    pub documents: Vec<DocumentRule>,
    /// Where each outcome is delivered (webhook, command, ledger), and the retry schedule.
    pub delivery: DeliveryConfig,
}

/// Defaults of the per-inbox durations, used when neither `[defaults]` nor the inbox sets them.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);
pub const DEFAULT_FIRST_POLL: Duration = Duration::from_secs(3);
pub const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_RESULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Inbox `index` (`raw`), its shared keys over `[defaults]` (`defaults`); `api_project_id`
/// is the project when neither names one.
pub(super) fn resolve_inbox(
    index: usize,
    raw: RawInbox,
    defaults: &InboxKeys,
    api_project_id: &str,
) -> Result<InboxConfig, ConfigError> {
    let key = |name: &str| format!("inbox[{index}].{name}");
    let s = raw.keys_over(defaults);
    let path = raw.path.ok_or_else(|| {
        key_error(
            key("path"),
            "is missing: the folder the scanner writes into",
        )
    })?;
    let doc_type = raw
        .doc_type
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            key_error(
                key("type"),
                "is missing: the document type, e.g. \"PASSPORT\", \"SNILS\", \"VNG\"",
            )
        })?;
    let done = raw
        .done
        .ok_or_else(|| key_error(key("done"), "is missing: where recognised files go"))?;
    let failed = raw.failed.ok_or_else(|| {
        key_error(
            key("failed"),
            "is missing: where files that could not be recognised go",
        )
    })?;
    for (name, p) in [("path", &path), ("done", &done), ("failed", &failed)] {
        check_absolute_or_relative(p, &key(name))?;
    }
    let zero = Duration::ZERO;
    let settle = within(s.settle, DEFAULT_SETTLE, &key("settle"), (zero, DAY), "2s")?;
    let first_poll = within(
        s.first_poll,
        DEFAULT_FIRST_POLL,
        &key("first_poll"),
        (zero, DAY),
        "3s",
    )?;
    let max_poll_interval = within(
        s.max_poll_interval,
        DEFAULT_MAX_POLL_INTERVAL,
        &key("max_poll_interval"),
        (MS_10, DAY),
        "30s",
    )?;
    let result_timeout = within(
        s.result_timeout,
        DEFAULT_RESULT_TIMEOUT,
        &key("result_timeout"),
        (MS_100, 30 * DAY),
        "30m",
    )?;
    if max_poll_interval < first_poll {
        return Err(key_error(
            key("max_poll_interval"),
            "must not be shorter than first_poll",
        ));
    }
    let tariff = s.tariff.unwrap_or_default();
    let sets_asked = (raw.sets == Some(true), !raw.documents.is_empty());
    check_tariff(tariff, &s, sets_asked, &key("tariff"))?;
    let delivery = delivery::resolve(&s, &key)?;
    let recursive = s.recursive.unwrap_or(false);
    let set_settings = sets::resolve(index, raw.sets, raw.ready_file, &raw.documents, recursive)?;
    let project_id = project_id(s.project_id.as_deref(), api_project_id, &key("project_id"))?;
    let poll_interval = within(
        s.poll_interval,
        DEFAULT_POLL_INTERVAL,
        &key("poll_interval"),
        (MS_10, DAY),
        "5s",
    )?;
    let ignore = globs(s.ignore.unwrap_or_default(), &key("ignore"))?;
    let review = optional_folder(s.review.as_deref(), &key("review"))?;
    check_min_confidence(s.min_confidence, &key("min_confidence"))?;
    let retention = s.retention;
    if let Some(retention) = retention {
        check_range(retention, &key("retention"), (HOUR, 100 * 365 * DAY), "off")?;
    }
    Ok(InboxConfig {
        path: normalize(&path),
        doc_type,
        key: s.key,
        stages: s.stages.unwrap_or_default(),
        done: normalize(&done),
        failed: normalize(&failed),
        settle,
        first_poll,
        max_poll_interval,
        result_timeout,
        watch: s.watch.unwrap_or_default(),
        poll_interval,
        recursive,
        ignore,
        preflight: s.preflight.unwrap_or_default(),
        project_id,
        project_field: s.project_field.unwrap_or_default(),
        tariff,
        review,
        min_confidence: s.min_confidence,
        retention,
        sets: set_settings.sets,
        ready_file: set_settings.ready_file,
        documents: set_settings.documents,
        delivery,
    })
}

/// A duration key: its value, else `default`, within `allowed` (`shown`: the default as the
/// message gives it).
fn within(
    value: Option<Duration>,
    default: Duration,
    key: &str,
    allowed: (Duration, Duration),
    shown: &str,
) -> Result<Duration, ConfigError> {
    let value = value.unwrap_or(default);
    check_range(value, key, allowed, shown)?;
    Ok(value)
}

/// The inbox's project: its own (or `[defaults]`') `project_id`, else `[api]`'s; an empty
/// one is refused.
fn project_id(value: Option<&str>, api_project_id: &str, key: &str) -> Result<String, ConfigError> {
    match value.map(str::trim) {
        None => Ok(api_project_id.to_string()),
        Some("") => Err(key_error(
            key,
            "is empty; give this inbox's project from the Beorg account page (e.g. \"U_RATE_3\"), or leave the key out to use api.project_id",
        )),
        Some(project) => Ok(project.to_string()),
    }
}

/// `ignore`: each pattern must be a valid glob.
fn globs(patterns: Vec<String>, key: &str) -> Result<Vec<String>, ConfigError> {
    for pattern in &patterns {
        globset::Glob::new(pattern).map_err(|e| {
            key_error(
                key,
                format!("pattern \"{pattern}\" is not a valid glob ({e}); e.g. \"*.bak\""),
            )
        })?;
    }
    Ok(patterns)
}

/// A folder key that may be left out (`review`): when given, not empty, and made absolute.
fn optional_folder(folder: Option<&Path>, key: &str) -> Result<Option<PathBuf>, ConfigError> {
    folder
        .map(|folder| check_absolute_or_relative(folder, key).map(|()| normalize(folder)))
        .transpose()
}

/// `min_confidence` compares with the API's confidences, which run from 0 to 1.
fn check_min_confidence(value: Option<f64>, key: &str) -> Result<(), ConfigError> {
    match value {
        Some(v) if !(v.is_finite() && (0.0..=1.0).contains(&v)) => Err(key_error(
            key,
            format!(
                "{v} is out of range: allowed 0 to 1 (the API's confidences run from 0 to 0.9999; e.g. 0.9), or leave it out"
            ),
        )),
        _ => Ok(()),
    }
}

/// Refuses settings the inbox's tariff cannot send: "Passport Auto" sends no `process_info`,
/// so nothing that would go into it may be configured (an inbox's own value or one from
/// `[defaults]`). `key` names the tariff key in the error.
fn check_tariff(
    tariff: Tariff,
    s: &InboxKeys,
    (sets, documents): (bool, bool),
    key: &str,
) -> Result<(), ConfigError> {
    if tariff != Tariff::PassportAuto {
        return Ok(());
    }
    // Document sets too are sent as process_info.
    let stages = s.stages.as_ref().is_some_and(|stages| !stages.is_empty());
    let refused = [
        ("key", s.key.is_some()),
        ("stages", stages),
        ("sets", sets),
        ("[[inbox.documents]]", documents),
    ];
    match refused.iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(key_error(
            key,
            format!(
                "\"passport_auto\" sends no process_info, so `{name}` (set on this inbox or in [defaults]) cannot be sent; remove `{name}`, or use tariff = \"universal\""
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{GOOD, err_text, parse};
    use super::super::*;
    use super::*;

    #[test]
    fn watch_poll_recursive_ignore_and_preflight_per_inbox() {
        let text = GOOD.replace(
            "first_poll = \"1s\"",
            "first_poll = \"1s\"\nwatch = \"poll\"\npoll_interval = \"250ms\"\nrecursive = true\nignore = [\"*.bak\"]\npreflight = \"warn\"",
        );
        let c = parse(&text).unwrap();
        let i = &c.inboxes[0];
        assert_eq!(i.watch, WatchMode::Poll);
        assert_eq!(i.poll_interval, Duration::from_millis(250));
        assert!(i.recursive);
        assert_eq!(i.ignore, vec!["*.bak".to_string()]);
        assert_eq!(i.preflight, Policy::Warn);
        let d = parse(GOOD).unwrap();
        assert_eq!(d.inboxes[0].watch, WatchMode::Auto);
        assert_eq!(d.inboxes[0].preflight, Policy::Strict);
    }

    #[test]
    fn a_bad_glob_or_watch_mode_is_named() {
        let text = GOOD.replace("first_poll = \"1s\"", "ignore = [\"[oops\"]");
        assert!(err_text(&text).contains("inbox[0].ignore"));
        let text = GOOD.replace("first_poll = \"1s\"", "watch = \"sometimes\"");
        let e = err_text(&text);
        assert!(e.contains("watch") && e.contains("poll"), "{e}");
    }

    /// Issue 10: a project per inbox (own, else `[defaults]`, else `[api]`), the name it
    /// travels under, and the tariff.
    #[test]
    fn project_field_and_tariff_are_taken_per_inbox_else_from_defaults() {
        let d = parse(GOOD).unwrap();
        let i = &d.inboxes[0];
        assert_eq!(i.project_id, "U_RATE_2", "[api].project_id by default");
        assert_eq!(i.project_field, ProjectField::ProjectId);
        assert_eq!(i.tariff, Tariff::Universal);
        let text = GOOD
            .replace(
                "[defaults]\n",
                "[defaults]\nproject_id = \"U_RATE_9\"\nproject_field = \"campaign_id\"\ntariff = \"passport_auto\"\n",
            )
            .replace(
                "first_poll = \"1s\"",
                "first_poll = \"1s\"\n\n[[inbox]]\npath = \"/srv/in/otpr\"\ntype = \"OTPR\"\ndone = \"/srv/done/otpr\"\nfailed = \"/srv/failed/otpr\"\nproject_id = \"U_RATE_3\"\nproject_field = \"project_id\"\ntariff = \"universal\"",
            );
        let c = parse(&text).unwrap();
        let (a, b) = (&c.inboxes[0], &c.inboxes[1]);
        assert_eq!(
            (a.project_id.as_str(), a.project_field, a.tariff),
            ("U_RATE_9", ProjectField::CampaignId, Tariff::PassportAuto)
        );
        assert_eq!(
            (b.project_id.as_str(), b.project_field, b.tariff),
            ("U_RATE_3", ProjectField::ProjectId, Tariff::Universal)
        );
    }

    /// Issue 10: "Passport Auto" sends no process_info, so `key` and `stages` (the inbox's
    /// or `[defaults]`') are refused with it, and bad values are refused naming the key and
    /// the allowed values.
    #[test]
    fn project_field_and_tariff_refusals_name_the_key() {
        let inbox = |extra: &str| GOOD.replace("first_poll = \"1s\"", extra);
        for extra in [
            "tariff = \"passport_auto\"\nkey = \"PASSPORT1\"",
            "tariff = \"passport_auto\"\nstages = [\"verification\"]",
        ] {
            let e = err_text(&inbox(extra));
            assert!(e.contains("inbox[0].tariff"), "{e}");
            assert!(e.contains("process_info"), "{e}");
            let named = if extra.contains("key =") {
                "`key`"
            } else {
                "`stages`"
            };
            assert!(e.contains(named), "{e}");
        }
        let from_defaults = GOOD
            .replace("[defaults]\n", "[defaults]\nstages = [\"verification\"]\n")
            .replace("first_poll = \"1s\"", "tariff = \"passport_auto\"");
        assert!(err_text(&from_defaults).contains("`stages`"));
        // An empty list asks for nothing: no conflict.
        parse(&inbox("tariff = \"passport_auto\"\nstages = []")).unwrap();
        let e = err_text(&inbox("tariff = \"auto\""));
        assert!(
            e.contains("tariff") && e.contains("universal") && e.contains("passport_auto"),
            "{e}"
        );
        let e = err_text(&inbox("project_field = \"project\""));
        assert!(
            e.contains("project_field") && e.contains("campaign_id") && e.contains("project_id"),
            "{e}"
        );
        let e = err_text(&inbox("project_id = \" \""));
        assert!(e.contains("inbox[0].project_id"), "{e}");
    }

    #[test]
    fn missing_type_is_named() {
        let text = GOOD.replace("type = \"PASSPORT\"", "");
        assert!(err_text(&text).contains("inbox[0].type"));
    }

    /// Issue 11: `review`, `min_confidence` and `retention` per inbox or in [defaults]; a bad
    /// value is refused naming the key; a review folder is apart from every other folder,
    /// though inboxes may share one.
    #[test]
    fn review_min_confidence_and_retention_are_taken_per_inbox_and_refused_naming_the_key() {
        let c = parse(GOOD).unwrap();
        let i = &c.inboxes[0];
        assert_eq!(
            (&i.review, i.min_confidence, i.retention),
            (&None, None, None)
        );
        let text = GOOD.replace(
            "[defaults]\n",
            "[defaults]\nreview = \"/srv/review\"\nmin_confidence = 0.9\nretention = \"90d\"\n",
        );
        let text = format!(
            "{text}\n[[inbox]]\npath = \"/srv/in/snils\"\ntype = \"SNILS\"\ndone = \"/srv/done/snils\"\nfailed = \"/srv/failed/snils\"\nmin_confidence = 0.5\nretention = \"2h\"\n"
        );
        let c = parse(&text).unwrap();
        let (a, b) = (&c.inboxes[0], &c.inboxes[1]);
        assert_eq!(a.review.as_deref(), Some(Path::new("/srv/review")));
        assert_eq!(b.review, a.review, "a shared review folder is allowed");
        assert_eq!((a.min_confidence, b.min_confidence), (Some(0.9), Some(0.5)));
        assert_eq!(a.retention, Some(Duration::from_secs(90 * 24 * 3600)));
        assert_eq!(b.retention, Some(Duration::from_secs(2 * 3600)));
        let inbox = |line: &str| GOOD.replace("first_poll = \"1s\"", line);
        for (line, key, words) in [
            ("min_confidence = 1.5", "inbox[0].min_confidence", "0 to 1"),
            ("min_confidence = -0.1", "inbox[0].min_confidence", "0 to 1"),
            ("retention = \"5m\"", "inbox[0].retention", "allowed"),
            ("retention = \"soon\"", "retention", ""),
            ("review = \"\"", "inbox[0].review", "empty"),
            (
                "review = \"/srv/done/passport\"",
                "inbox[0].review",
                "same folder",
            ),
            (
                "review = \"/srv/in/passport/review\"",
                "inbox[0].review",
                "inside",
            ),
        ] {
            let e = err_text(&inbox(line));
            assert!(e.contains(key) && e.contains(words), "{line}: {e}");
        }
    }
}

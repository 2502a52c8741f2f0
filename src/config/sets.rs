//! The config of document sets: `sets`, `ready_file` and the `[[inbox.documents]]` rules,
//! read and checked here (a refusal names the key and the fix), so the rest of the daemon
//! sees only valid rules.

use std::collections::BTreeMap;

use super::{ConfigError, key_error};

/// One `[[inbox.documents]]` rule: the `process_info` of the set files whose name matches.
#[derive(Debug, Clone)]
pub struct DocumentRule {
    /// The glob as written (`*selfie*`), for messages.
    pub pattern: String,
    /// The glob, matched case-insensitively against the file name.
    pub matcher: globset::GlobMatcher,
    pub doc_type: String,
    /// A key given to at most one file of a set; without it keys are made up (`<TYPE>1`, ...).
    pub key: Option<String>,
    pub stages: Vec<String>,
    /// `options.relation`: stage → the key of the file it relates to (`biometry_match`).
    pub relation: BTreeMap<String, String>,
}

/// A rule as written in the file (`[[inbox.documents]]`), before it is checked.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleText {
    #[serde(rename = "match")]
    pub pattern: Option<String>,
    #[serde(rename = "type")]
    pub doc_type: Option<String>,
    pub key: Option<String>,
    #[serde(default)]
    pub stages: Vec<String>,
    #[serde(default)]
    pub relation: BTreeMap<String, String>,
}

/// An inbox's set settings, checked.
pub(super) struct SetSettings {
    pub sets: bool,
    pub ready_file: Option<String>,
    pub documents: Vec<DocumentRule>,
}

/// Checks the set keys of inbox `index` (`recursive` is its resolved setting).
pub(super) fn resolve(
    index: usize,
    sets: Option<bool>,
    ready_file: Option<String>,
    rules: &[RuleText],
    recursive: bool,
) -> Result<SetSettings, ConfigError> {
    let key = |name: &str| format!("inbox[{index}].{name}");
    let sets = sets.unwrap_or(false);
    if sets && recursive {
        return Err(key_error(
            key("sets"),
            "cannot be combined with recursive = true: in a sets inbox every subfolder is one set; remove `recursive` or `sets`",
        ));
    }
    if !sets && !rules.is_empty() {
        return Err(key_error(
            format!("inbox[{index}].documents"),
            "[[inbox.documents]] describes the files of a document set, but this inbox has no `sets = true`; add it, or remove the rules",
        ));
    }
    let ready_file = match ready_file.map(|r| r.trim().to_string()) {
        None => None,
        Some(_) if !sets => {
            return Err(key_error(
                key("ready_file"),
                "only means something for document sets; add `sets = true` to this inbox, or remove `ready_file`",
            ));
        }
        Some(name) if !is_plain_name(&name) => {
            return Err(key_error(
                key("ready_file"),
                format!(
                    "\"{name}\" must be a plain file name (no \"/\", not empty, not starting with \".\"), e.g. \"READY\""
                ),
            ));
        }
        Some(name) => Some(name),
    };
    let documents = rules
        .iter()
        .enumerate()
        .map(|(n, rule)| resolve_rule(&format!("inbox[{index}].documents[{n}]"), rule))
        .collect::<Result<Vec<_>, _>>()?;
    check_relations(index, &documents)?;
    Ok(SetSettings {
        sets,
        ready_file,
        documents,
    })
}

/// A name a set's files can have: no path, not hidden (intake ignores hidden names).
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.starts_with('.')
}

fn resolve_rule(prefix: &str, rule: &RuleText) -> Result<DocumentRule, ConfigError> {
    let key = |name: &str| format!("{prefix}.{name}");
    let pattern = rule.pattern.clone().ok_or_else(|| {
        key_error(
            key("match"),
            "is missing: a glob on the file name, e.g. \"*selfie*\"",
        )
    })?;
    let matcher = globset::GlobBuilder::new(&pattern)
        .case_insensitive(true)
        .literal_separator(true)
        .build()
        .map_err(|e| {
            key_error(
                key("match"),
                format!("\"{pattern}\" is not a valid glob ({e}); e.g. \"*selfie*\""),
            )
        })?
        .compile_matcher();
    let doc_type = rule
        .doc_type
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            key_error(
                key("type"),
                "is missing: the document type of the matching files, e.g. \"SELFIE\"",
            )
        })?
        .to_string();
    if rule.key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        return Err(key_error(
            key("key"),
            "is empty; give a key such as \"SELFIE1\", or leave it out",
        ));
    }
    Ok(DocumentRule {
        pattern,
        matcher,
        doc_type,
        key: rule.key.as_ref().map(|k| k.trim().to_string()),
        stages: rule.stages.clone(),
        relation: rule.relation.clone(),
    })
}

/// Every `relation` names a key some rule gives.
fn check_relations(index: usize, rules: &[DocumentRule]) -> Result<(), ConfigError> {
    for (n, rule) in rules.iter().enumerate() {
        for (stage, target) in &rule.relation {
            if !rules.iter().any(|r| r.key.as_deref() == Some(target)) {
                return Err(key_error(
                    format!("inbox[{index}].documents[{n}].relation"),
                    format!(
                        "{stage} = \"{target}\" names a key no [[inbox.documents]] rule gives; add a rule with key = \"{target}\" (e.g. match = \"*selfie*\", type = \"SELFIE\"), or fix the key"
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    /// A config with one inbox carrying `inbox` lines (and `[defaults]` lines `defaults`).
    fn parse(defaults: &str, inbox: &str) -> Result<Config, String> {
        let text = format!(
            "[api]\nproject_id = \"U_RATE_2\"\nmachine_uid = \"m\"\ntoken = \"t\"\n[defaults]\n{defaults}\n[[inbox]]\npath = \"/srv/in\"\ntype = \"PASSPORT\"\ndone = \"/srv/done\"\nfailed = \"/srv/failed\"\n{inbox}\n"
        );
        Config::from_toml(&text, Path::new("/c.toml"), None).map_err(|e| e.to_string())
    }

    const SELFIE_RULE: &str =
        "[[inbox.documents]]\nmatch = \"*selfie*\"\ntype = \"SELFIE\"\nkey = \"SELFIE1\"\n";
    const MATCH_RULE: &str = "[[inbox.documents]]\nmatch = \"*\"\ntype = \"PASSPORT\"\nrelation = { biometry_match = \"SELFIE1\" }\n";

    #[test]
    fn the_issues_kyc_inbox_is_accepted() {
        let config = parse(
            "",
            &format!("sets = true\nready_file = \"READY\"\n{SELFIE_RULE}{MATCH_RULE}"),
        )
        .unwrap();
        let inbox = &config.inboxes[0];
        assert!(inbox.sets);
        assert_eq!(inbox.ready_file.as_deref(), Some("READY"));
        assert_eq!(inbox.documents.len(), 2);
        assert!(inbox.documents[0].matcher.is_match("My-SELFIE.JPG"));
        let plain = parse("", "").unwrap();
        assert!(!plain.inboxes[0].sets && plain.inboxes[0].documents.is_empty());
    }

    /// Each refusal names the key and says what to do.
    #[test]
    fn refusals_name_the_key_and_the_fix() {
        let cases = [
            (
                "",
                "sets = true\nrecursive = true",
                "inbox[0].sets",
                "recursive",
            ),
            (
                "recursive = true",
                "sets = true",
                "inbox[0].sets",
                "recursive",
            ),
            (
                "",
                "tariff = \"passport_auto\"\nsets = true",
                "inbox[0].tariff",
                "`sets`",
            ),
            (
                "tariff = \"passport_auto\"",
                SELFIE_RULE,
                "inbox[0].tariff",
                "[[inbox.documents]]",
            ),
            (
                "",
                &format!("sets = true\n{MATCH_RULE}"),
                "inbox[0].documents[0].relation",
                "biometry_match = \"SELFIE1\" names a key no [[inbox.documents]] rule gives",
            ),
            (
                "",
                SELFIE_RULE,
                "inbox[0].documents",
                "has no `sets = true`; add it",
            ),
            (
                "",
                "ready_file = \"READY\"",
                "inbox[0].ready_file",
                "sets = true",
            ),
            (
                "",
                "sets = true\nready_file = \"a/READY\"",
                "inbox[0].ready_file",
                "plain file name",
            ),
            (
                "",
                "sets = true\n[[inbox.documents]]\nmatch = \"[selfie\"\ntype = \"SELFIE\"",
                "inbox[0].documents[0].match",
                "not a valid glob",
            ),
            (
                "",
                "sets = true\n[[inbox.documents]]\nmatch = \"*\"",
                "inbox[0].documents[0].type",
                "is missing",
            ),
        ];
        for (defaults, inbox, key, says) in cases {
            let e = parse(defaults, inbox).expect_err(inbox);
            assert!(e.contains(&format!("`{key}`")), "{inbox}: {e}");
            assert!(e.contains(says), "{inbox}: {e}");
        }
    }
}

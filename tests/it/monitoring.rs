//! The monitoring shipped in `contrib/` (Prometheus rules, the Grafana dashboard, the Zabbix
//! template) against what a running daemon exports: every `beorg_*` metric they name is
//! exported, and every label they select, group by or show is one that metric carries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::helpers::*;

/// Labels Prometheus adds to every scraped series (and `le`, a histogram bucket's bound).
const TARGET_LABELS: [&str; 3] = ["job", "instance", "le"];

/// What the daemon exports: each sample name (a counter's `_total`, a histogram's
/// `_bucket`/`_sum`/`_count`, an info's `_info`) with the labels its samples carry, and the
/// families announced without a sample yet (`# TYPE` lines), under every sample name they
/// will have.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(family), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.entry(format!("{family}{suffix}")).or_default();
        }
    }
    for sample in parse_metrics(text) {
        names
            .entry(sample.name)
            .or_default()
            .extend(sample.labels.into_keys());
    }
    names
}

/// An identifier starting at `text[at..]`.
fn identifier(text: &str, at: usize) -> &str {
    let rest = &text[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Label names in a selector body `a="x", b!~"y|z"` (quoted values skipped).
fn selector_labels(body: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let name = identifier(rest, start);
        labels.push(name.to_owned());
        rest = &rest[start + name.len()..];
        // Skip the operator and the quoted value (which may hold anything).
        let Some(open) = rest.find('"') else { break };
        let Some(close) = rest[open + 1..].find('"') else {
            break;
        };
        rest = &rest[open + close + 2..];
    }
    labels
}

/// What a monitoring file names: each `beorg_*` metric with the labels selected right after
/// it, and the labels it groups by or shows (`by (..)`, `without (..)`, `{{label}}`,
/// `$labels.x`, `$.labels.x`) without saying of which metric.
struct Named {
    metrics: BTreeMap<String, BTreeSet<String>>,
    loose_labels: BTreeSet<String>,
}

fn named_in(text: &str) -> Named {
    let mut metrics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (at, _) in text.match_indices("beorg_") {
        // `beorg_` inside a longer word (a Zabbix key, a uid) is not a metric.
        if at > 0
            && text[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            continue;
        }
        let name = identifier(text, at);
        let entry = metrics.entry(name.to_owned()).or_default();
        let after = &text[at + name.len()..];
        if let Some(body) = after.strip_prefix('{') {
            let body = &body[..body.find('}').unwrap_or(body.len())];
            entry.extend(selector_labels(body));
        }
    }
    let mut loose_labels = BTreeSet::new();
    for opener in ["by (", "by(", "without (", "without("] {
        for (at, _) in text.match_indices(opener) {
            let body = &text[at + opener.len()..];
            let body = &body[..body.find(')').unwrap_or(0)];
            loose_labels.extend(body.split(',').map(|l| l.trim().to_owned()));
        }
    }
    for (at, _) in text.match_indices("{{") {
        let body = text[at + 2..].trim_start();
        let label = identifier(body, 0);
        if !label.is_empty() {
            loose_labels.insert(label.to_owned());
        }
    }
    for (at, _) in text.match_indices("labels.") {
        loose_labels.insert(identifier(text, at + "labels.".len()).to_owned());
    }
    loose_labels.retain(|l| !l.is_empty());
    Named {
        metrics,
        loose_labels,
    }
}

/// What is wrong with `file`'s names against `exported` (empty when nothing is).
fn mismatches(
    file: &str,
    text: &str,
    exported: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let named = named_in(text);
    let mut wrong = Vec::new();
    assert!(!named.metrics.is_empty(), "{file} names no beorg_ metric");
    let all_labels: BTreeSet<&String> = exported.values().flatten().collect();
    for (metric, labels) in &named.metrics {
        let Some(has) = exported.get(metric) else {
            wrong.push(format!("{file}: {metric} is not exported"));
            continue;
        };
        for label in labels {
            if !has.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                wrong.push(format!(
                    "{file}: {metric} has no label {label} (it has {has:?})"
                ));
            }
        }
    }
    for label in &named.loose_labels {
        let known = all_labels.contains(label) || TARGET_LABELS.contains(&label.as_str());
        if !known {
            wrong.push(format!("{file}: no exported metric has the label {label}"));
        }
    }
    wrong
}

const CONTRIB: [&str; 4] = [
    "contrib/prometheus/beorg-hotfolder.rules.yml",
    "contrib/prometheus/beorg-hotfolder.rules.test.yml",
    "contrib/grafana/beorg-hotfolder.json",
    "contrib/zabbix/beorg-hotfolder.yaml",
];

/// Issue 22: the alerts, the dashboard and the Zabbix template name only metrics and labels
/// a running daemon exports (scraped after it finished a file and delivered it to a ledger,
/// so every family the rules use has samples), with a review station (its queue gauges and
/// decision counters).
#[tokio::test]
async fn the_alerts_dashboard_and_zabbix_template_name_only_exported_metrics_and_labels() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let port = free_port();
    let (users, audit) = (
        env.dir.path().join("reviewers"),
        env.dir.path().join("audit.jsonl"),
    );
    std::fs::write(&users, "").unwrap();
    env.extra_tables = format!(
        "\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[review_station]\nlisten = \"127.0.0.1:{}\"\nusers_file = \"{}\"\naudit_log = \"{}\"\n",
        free_port(),
        users.display(),
        audit.display()
    );
    let ledger = env.dir.path().join("kyc.jsonl");
    env.inboxes[0].extra = format!("ledger = \"{}\"\n", ledger.display());
    let daemon = env.start();
    env.drop_scan(0, "good.jpg", 1, None);
    env.drop_scan(0, "broken.jpg", 2, Some("broken"));
    wait_until("two ledger lines", || {
        std::fs::read_to_string(&ledger).is_ok_and(|t| t.lines().count() == 2)
    })
    .await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let text = wait_for_async(
        "the queue gauges in /metrics",
        std::time::Duration::from_millis(200),
        || {
            let client = client.clone();
            async move {
                let text = client
                    .get(format!("http://127.0.0.1:{port}/metrics"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                text.contains("beorg_queue_files{").then_some(text)
            }
        },
    )
    .await;
    daemon.stop().await;
    let exported = exported(&text);

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut wrong = Vec::new();
    for file in CONTRIB {
        let body =
            std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        wrong.extend(mismatches(file, &body, &exported));
    }
    assert!(
        wrong.is_empty(),
        "{}\nexported: {exported:#?}",
        wrong.join("\n")
    );
}

/// The check itself: a metric the daemon does not export, or a label it does not carry, is
/// reported (so the test above cannot pass by reading nothing).
#[test]
fn a_rule_naming_an_unknown_metric_or_label_is_reported() {
    let text = "# TYPE beorg_account_paused gauge\nbeorg_account_paused 0\n# TYPE beorg_files counter\nbeorg_files_total{inbox=\"/a\",outcome=\"done\"} 1\n";
    let exported = exported(text);
    let ok =
        "expr: beorg_account_paused == 1 and sum by (inbox) (beorg_files_total{outcome=\"done\"})";
    assert!(mismatches("ok", ok, &exported).is_empty());
    let unknown = mismatches("x", "expr: beorg_acount_paused == 1", &exported);
    assert_eq!(unknown, ["x: beorg_acount_paused is not exported"]);
    let label = mismatches("x", "expr: beorg_files_total{status=\"200\"}", &exported);
    assert!(label[0].contains("has no label status"), "{label:?}");
    let grouped = mismatches("x", "expr: sum by (tenant) (beorg_files_total)", &exported);
    assert!(grouped[0].contains("the label tenant"), "{grouped:?}");
}

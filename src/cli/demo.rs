//! `beorg-hotfolder demo [DIR]`: the emulator and the daemon in one process, so a newcomer
//! sees scans become sidecars without an account.
//!
//! It lays out DIR (an inbox, done, review and failed folder per sample document type), writes
//! the config it uses to `DIR/config.toml`, drops a few generated scans in (one of them
//! unreadable on purpose, an expired passport a person must check, plus a text file preflight
//! refuses), prints where each result lands (and why a person must check it), and keeps
//! watching until Ctrl-C so the user can drop in files of their own. A `kyc` inbox takes
//! document sets (a passport spread and a selfie in one folder); its result lines show the
//! face match and liveness figures, and one sample set whose faces do not match goes to review.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::sidecar::{Sidecar, Status};
use beorg_emulator::{Emulator, EmulatorConfig};

/// Document types the demo sets up an inbox for.
const DEMO_TYPES: [&str; 5] = ["PASSPORT", "SNILS", "VNG", "FPRN", "OTPR"];

/// The folders per document type: the inbox, then where results land.
const ROLES: [&str; 4] = ["in", "done", "review", "failed"];

/// The document-set inbox: every subfolder of `in/kyc/` is one set (issue 10's rules).
const KYC_INBOX: &str = r#"
[[inbox]]
path = "in/kyc"
type = "PASSPORT"
done = "done/kyc"
failed = "failed/kyc"
review = "review/kyc"
sets = true

[[inbox.documents]]
match = "*selfie*"
type = "SELFIE"
key = "SELFIE1"
stages = ["biometry_liveness"]

[[inbox.documents]]
match = "*"
type = "PASSPORT"
key = "PASSPORT1"
stages = ["biometry_match"]
relation = { biometry_match = "SELFIE1" }
"#;

/// The emulator's processing times are the vendor's, times this (a passport: 1-3 s).
const DEMO_TIME_SCALE: f64 = 0.3;

/// Runs the demo in `dir` until Ctrl-C.
pub async fn run(dir: PathBuf) -> anyhow::Result<()> {
    let dir = absolute(&dir)?;
    let emulator_config = EmulatorConfig {
        time_scale: DEMO_TIME_SCALE,
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::start(
        emulator_config.clone(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await?;
    let config_path = lay_out(&dir, &emulator, &emulator_config)?;
    let config = Config::load(&config_path)?;
    write_samples(&dir)?;
    print_banner(&dir, &config_path, &emulator);

    let reporter = tokio::spawn(report_results(dir.clone()));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let outcome = crate::daemon::run(config, shutdown).await;
    reporter.abort();
    emulator.shutdown();
    outcome
}

fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    Ok(if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    })
}

/// Creates the folders and the config file; returns the config's path.
fn lay_out(dir: &Path, emulator: &Emulator, e: &EmulatorConfig) -> anyhow::Result<PathBuf> {
    let mut inboxes = String::new();
    for doc_type in DEMO_TYPES {
        let sub = doc_type.to_lowercase();
        for role in ROLES {
            std::fs::create_dir_all(dir.join(role).join(&sub))?;
        }
        inboxes.push_str(&format!(
            "\n[[inbox]]\npath = \"in/{sub}\"\ntype = \"{doc_type}\"\ndone = \"done/{sub}\"\nfailed = \"failed/{sub}\"\nreview = \"review/{sub}\"\n"
        ));
    }
    for role in ROLES {
        std::fs::create_dir_all(dir.join(role).join("kyc"))?;
    }
    inboxes.push_str(KYC_INBOX);
    let text = format!(
        r#"# Written by `beorg-hotfolder demo`: the daemon's config, pointed at the built-in emulator.
# Relative paths are relative to the folder the demo was started from.
[api]
base_url = "{url}"
project_id = "U_RATE_2"
machine_uid = "{uid}"
token = "{token}"
requests_per_second = 2.0
documents_per_minute = 60

[daemon]
state_dir = "state"
rescan_interval = "10s"

[defaults]
settle = "1s"
first_poll = "1s"
max_poll_interval = "3s"
result_timeout = "2m"
{inboxes}"#,
        url = emulator.base_url(),
        uid = e.machine_uid,
        token = e.token,
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text)?;
    // Paths in the file are relative to the demo folder: resolve them from there.
    std::env::set_current_dir(dir)?;
    Ok(path)
}

/// A scan per inbox, an unreadable one, and a text file preflight refuses.
fn write_samples(dir: &Path) -> anyhow::Result<()> {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    for (i, doc_type) in DEMO_TYPES.iter().enumerate() {
        let sub = doc_type.to_lowercase();
        let png = beorg_emulator::samples::page_png(seed + i as u64, None);
        std::fs::write(
            dir.join("in").join(&sub).join(format!("sample-{sub}.png")),
            png,
        )?;
    }
    let blurred = beorg_emulator::samples::page_png(seed + 100, Some("BEORG-EMU:broken"));
    std::fs::write(dir.join("in/passport/blurred-photo.png"), blurred)?;
    let expired = beorg_emulator::samples::page_png(seed + 101, Some("BEORG-EMU:verification=7"));
    std::fs::write(dir.join("in/passport/expired-passport.png"), expired)?;
    std::fs::write(dir.join("in/snils/notes.txt"), "not a scan\n")?;
    // Two sets: one whose faces match, one whose passport photo is someone else's (it goes
    // to review, with the reason printed).
    write_set(dir, "sample-kyc", seed + 200, None)?;
    write_set(
        dir,
        "sample-kyc-other-face",
        seed + 300,
        Some("BEORG-EMU:other-face"),
    )?;
    Ok(())
}

/// A set is built aside (a hidden name) and moved in whole, as a desk's script would.
fn write_set(
    dir: &Path,
    name: &str,
    seed: u64,
    passport_marker: Option<&str>,
) -> anyhow::Result<()> {
    let building = dir.join("in/kyc").join(format!(".{name}"));
    std::fs::create_dir_all(&building)?;
    for (file, bytes) in beorg_emulator::samples::kyc_set(seed, passport_marker) {
        std::fs::write(building.join(file), bytes)?;
    }
    std::fs::rename(&building, dir.join("in/kyc").join(name))?;
    Ok(())
}

fn print_banner(dir: &Path, config: &Path, emulator: &Emulator) {
    println!("beorg-hotfolder demo");
    println!(
        "  emulator of the Beorg API: {}",
        crate::redact::url(&emulator.base_url(), crate::redact::Show::Whole)
    );
    println!("  config:                    {}", config.display());
    println!("  inboxes:                   {}/in/<type>/", dir.display());
    println!(
        "  results:                   {0}/done/<type>/, {0}/review/<type>/ and {0}/failed/<type>/",
        dir.display()
    );
    println!("Sample scans are on their way. Drop your own JPEG/PNG/PDF files into an inbox;");
    println!("press Ctrl-C to stop.\n");
}

/// Prints one line per new sidecar in done/, review/ and failed/.
async fn report_results(dir: PathBuf) {
    let mut seen: HashSet<PathBuf> = HashSet::new();
    loop {
        for sidecar_path in sidecars(&dir) {
            if seen.insert(sidecar_path.clone())
                && let Some(line) = describe(&dir, &sidecar_path)
            {
                println!("{line}");
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn sidecars(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for role in &ROLES[1..] {
        let Ok(types) = std::fs::read_dir(dir.join(role)) else {
            continue;
        };
        for type_dir in types.flatten() {
            let Ok(files) = std::fs::read_dir(type_dir.path()) else {
                continue;
            };
            found.extend(
                files
                    .flatten()
                    .map(|f| f.path())
                    .filter(|p| crate::store::layout::is_sidecar(p)),
            );
        }
    }
    found.sort();
    found
}

fn describe(dir: &Path, sidecar_path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(sidecar_path).ok()?;
    let sidecar: Sidecar = serde_json::from_str(&text).ok()?;
    let original = sidecar_path.with_file_name(&sidecar.file);
    let shown = original
        .strip_prefix(dir)
        .unwrap_or(&original)
        .display()
        .to_string();
    let biometrics = sidecar
        .result
        .as_ref()
        .and_then(biometrics_summary)
        .map(|b| format!("; {b}"))
        .unwrap_or_default();
    Some(match sidecar.status {
        Status::Done => format!(
            "  done    {:<28} → {shown} (+ .json), document {}{biometrics}",
            sidecar.source.name,
            sidecar.document_id.as_deref().unwrap_or("-")
        ),
        Status::Review => format!(
            "  review  {:<28} → {shown} (+ .json): {}",
            sidecar.source.name,
            sidecar.review.join(" ")
        ),
        Status::Failed => format!(
            "  failed  {:<28} → {shown} (+ .json): {}",
            sidecar.source.name,
            sidecar.error.map(|e| e.message).unwrap_or_default()
        ),
    })
}

/// The face match and liveness figures of a set's result, per document, e.g. `PASSPORT1:
/// face match 1 (similarity 0.93); SELFIE1: liveness 1 (probability 0.97)`; `None` when the
/// result has neither.
fn biometrics_summary(result: &serde_json::Value) -> Option<String> {
    let documents = result.get("documents")?.as_array()?;
    let figure = |v: &serde_json::Value| match v.as_f64() {
        Some(x) => format!("{x:.2}"),
        None => v.to_string(),
    };
    let mut parts = Vec::new();
    for document in documents {
        let Some(biometrics) = document.get("biometrics") else {
            continue;
        };
        let mut checks = Vec::new();
        if let Some(m) = biometrics.get("match_faces") {
            checks.push(format!(
                "face match {} (similarity {})",
                m["match_faces"],
                figure(&m["similarity"])
            ));
        }
        if let Some(l) = biometrics.get("liveness") {
            checks.push(format!(
                "liveness {} (probability {})",
                l["liveness"],
                figure(&l["probability"])
            ));
        }
        let key = document.get("key").and_then(|k| k.as_str()).unwrap_or("?");
        parts.push(format!("{key}: {}", checks.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kyc_line_shows_match_and_liveness() {
        let result = serde_json::json!({"documents": [
            {"key": "PASSPORT1", "biometrics": {"match_faces": {"match_faces": 1, "similarity": 0.93, "comment": "Success"}}},
            {"key": "SELFIE1", "biometrics": {"liveness": {"liveness": 1, "probability": 0.97}}}
        ]});
        assert_eq!(
            biometrics_summary(&result).as_deref(),
            Some(
                "PASSPORT1: face match 1 (similarity 0.93); SELFIE1: liveness 1 (probability 0.97)"
            )
        );
        assert_eq!(
            biometrics_summary(&serde_json::json!({"documents": [{}]})),
            None
        );
    }

    /// The demo's kyc inbox is a valid sets inbox with the issue's rules.
    #[test]
    fn the_demo_kyc_inbox_is_valid() {
        let text = format!(
            "[api]\nproject_id = \"U_RATE_2\"\nmachine_uid = \"m\"\ntoken = \"t\"\n{KYC_INBOX}"
        );
        let config = Config::from_toml(&text, Path::new("/demo/config.toml"), None).unwrap();
        assert!(config.inboxes[0].sets);
        assert_eq!(config.inboxes[0].documents.len(), 2);
    }
}

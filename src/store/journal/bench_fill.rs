//! Bench-only (`cargo bench --bench year`): fills a journal with finished files as a year of
//! work leaves them, through the journal's own code: each file's row is inserted as a claim
//! is, and each event of its lifecycle is stepped by [`crate::lifecycle::step`] and stored as
//! [`Journal::record`] stores it (row, history lines), all in one transaction, so a million
//! files take a minute rather than the days a daemon would. The schema, indexes and history
//! lines are the real ones. Not part of the product's interface.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::{Journal, NewClaim, insert_row, record};
use crate::lifecycle::{Effect, Event, FileState, Payload, Stage, step};

/// What to write: `files` files of one inbox, finished (done) at even intervals from `from`
/// to `to`, each with its history.
#[derive(Debug, Clone)]
pub struct YearOfWork {
    pub inbox: PathBuf,
    pub done: PathBuf,
    pub files: usize,
    pub from: SystemTime,
    pub to: SystemTime,
}

/// Writes `work` into the journal at `journal` (opened, so created and migrated, as the
/// daemon opens it).
pub fn fill(journal: &Journal, work: &YearOfWork) -> anyhow::Result<()> {
    let conn = journal.conn.lock().unwrap_or_else(|p| p.into_inner());
    let tx = conn.unchecked_transaction()?;
    let span = work.to.duration_since(work.from).unwrap_or_default();
    let request =
        json!({"project": "P", "type": "PASSPORT", "key": null, "stages": null}).to_string();
    for n in 0..work.files {
        let at = work.from + span.mul_f64(n as f64 / work.files.max(1) as f64);
        one_file(&tx, work, n, at, &request)?;
    }
    tx.commit()?;
    Ok(())
}

/// One file from its claim to done, as the pipeline records it.
fn one_file(
    tx: &rusqlite::Transaction<'_>,
    work: &YearOfWork,
    n: usize,
    at: SystemTime,
    request: &str,
) -> anyhow::Result<()> {
    let name = format!("scan-{n:07}.jpg");
    let size = 200_000 + (n as u64 % 500_000);
    let claim = NewClaim {
        inbox: work.inbox.clone(),
        name: name.clone(),
        work_path: crate::store::layout::work_dir(&work.inbox)
            .join(format!("{}-{n}_{name}", super::ms(at))),
        size,
        detected_at: at,
        claimed_at: at + Duration::from_secs(2),
        set: false,
    };
    let id = insert_row(tx, &claim, None, claim.claimed_at)?;
    let sha256 = crate::store::fsutil::sha256_hex(name.as_bytes());
    let document_id = format!("s-{}", 10_000_000 + n);
    let final_path = work.done.join(&name);
    let events = [
        Event::Hashed {
            sha256: sha256.clone(),
            size,
            members: None,
        },
        Event::Preflight { refused: None },
        Event::Submitting {
            request: request.into(),
        },
        Event::Document {
            document_id: document_id.clone(),
            sha256: sha256.clone(),
            request: request.into(),
        },
        Event::Submitted {
            document_id: document_id.clone(),
        },
        Event::Asked {
            asked: Duration::from_millis(2000),
            still_processing: true,
        },
        Event::Asked {
            asked: Duration::from_millis(4000),
            still_processing: false,
        },
        Event::ReadyAfter {
            pending: Some(Duration::from_millis(2000)),
            ready: Duration::from_millis(4000),
        },
        Event::Finishing {
            sidecar_path: crate::store::layout::sidecar_path(&final_path),
            sidecar: sidecar(work, &name, &sha256, size, &document_id),
            final_path,
        },
        Event::Finished {
            stage: Stage::Done,
            label: "done".into(),
            delivery: None,
        },
    ];
    let mut state = FileState::claimed(Payload::File, size, at, claim.claimed_at);
    for (k, event) in events.into_iter().enumerate() {
        let now = at + Duration::from_secs(3 + k as u64);
        let (next, effects) = step(&state, event, now)?;
        for effect in effects {
            if let Effect::Store(change) = effect {
                record::store(tx, id, &change)?;
            }
        }
        state = next;
    }
    Ok(())
}

/// A done passport's sidecar, of the usual size (about 2 KB).
fn sidecar(work: &YearOfWork, name: &str, sha256: &str, size: u64, document_id: &str) -> String {
    let fields = json!({
        "LastName": "ИВАНОВА", "FirstName": "АННА", "MiddleName": "СЕРГЕЕВНА",
        "BirthDate": "01.02.1985", "BirthPlace": "ГОР. МОСКВА", "Gender": "ЖЕН.",
        "Series": "4510", "Number": "123456", "IssueDate": "15.03.2005",
        "IssuedBy": "ОТДЕЛЕНИЕМ ПО РАЙОНУ ХАМОВНИКИ ОУФМС РОССИИ ПО ГОР. МОСКВЕ",
        "DepartmentCode": "770-001", "HasOwnerSignature": true,
    });
    json!({
        "sidecar_version": 4,
        "status": "done",
        "type": "PASSPORT",
        "document_id": document_id,
        "file": name,
        "source": {"name": name, "inbox": work.inbox.display().to_string(), "sha256": sha256, "size": size},
        "result": {"document_id": document_id, "documents": [{"key": "PASSPORT", "type": "PASSPORT", "data": fields}]},
        "documents": [{"key": "PASSPORT", "type": "PASSPORT", "file": name, "fields": fields,
                       "confidence": {"LastName": 0.99, "FirstName": 0.99, "Series": 0.98, "Number": 0.97}}],
        "review": [],
        "timestamps": {"detected": "2026-11-23T09:15:02Z", "claimed": "2026-11-23T09:15:04Z",
                       "submitted": "2026-11-23T09:15:05Z", "finished": "2026-11-23T09:15:12Z"},
        "written_by": concat!("beorg-hotfolder ", env!("CARGO_PKG_VERSION")),
    })
    .to_string()
}

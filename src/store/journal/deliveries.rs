//! The journal's `deliveries` table: one row per outcome and way of delivering it (webhook,
//! command, ledger). The rows are inserted in the same transaction that marks the file
//! finished (so after its sidecar exists), and each try's result is written back: a crash, a
//! restart or a receiver that is down loses none. `sqlite3 journal.sqlite 'select * from
//! deliveries'` shows them.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};

use super::history::{self, transition};
use super::{FileId, Journal, PRUNE_BATCH, from_ms, ms, path_text};
pub use crate::lifecycle::outbox::{DeliveryKind, NewOutcome};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
    id          INTEGER PRIMARY KEY,
    file_id     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    inbox       TEXT NOT NULL,
    status      TEXT NOT NULL,
    original    TEXT NOT NULL,
    sidecar     TEXT NOT NULL,
    body        TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_at);
CREATE INDEX IF NOT EXISTS deliveries_by_way ON deliveries(state, inbox, kind, next_at);
";

/// Creates the table in a journal that lacks it (a new one, or one from an older daemon).
pub(super) fn create_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// Where a delivery stands. Only `waiting` rows are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Due at `next_at`.
    Waiting,
    Delivered,
    /// Every try of the schedule failed.
    GivenUp,
    /// The webhook receiver answered 410 Gone: never tried again.
    Gone,
    /// Its inbox no longer configures this way of delivering.
    Dropped,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Waiting => "waiting",
            DeliveryState::Delivered => "delivered",
            DeliveryState::GivenUp => "given_up",
            DeliveryState::Gone => "gone",
            DeliveryState::Dropped => "dropped",
        }
    }
}

/// A delivery row, as the delivering task needs it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub file_id: FileId,
    pub kind: DeliveryKind,
    pub message_id: String,
    pub inbox: PathBuf,
    pub status: String,
    pub original: PathBuf,
    pub sidecar: PathBuf,
    pub body: String,
    /// Tries made so far.
    pub attempts: u32,
    pub next_at: SystemTime,
}

/// Deliveries still to be made, and given up, for `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub waiting: u64,
    pub given_up: u64,
}

impl Journal {
    /// Wakes when [`Journal::mark_finished_delivering`] recorded deliveries (a wake-up
    /// given while nobody waits is kept for the next wait).
    pub async fn deliveries_added(&self) {
        self.deliveries_added.notified().await
    }

    /// Each (inbox, kind) that has waiting deliveries: the delivering task looks at each
    /// one's own queue, so deliveries of one way never queue behind another's.
    pub async fn waiting_ways(&self) -> anyhow::Result<Vec<(PathBuf, DeliveryKind)>> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare("SELECT DISTINCT inbox, kind FROM deliveries WHERE state = 'waiting'")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(inbox, kind)| {
                    Some((PathBuf::from(inbox), DeliveryKind::parse(&kind)?))
                })
                .collect())
        })
        .await
    }

    /// Up to `limit` waiting deliveries of `inbox` by `kind`, the earliest due first.
    pub async fn waiting_deliveries(
        &self,
        inbox: PathBuf,
        kind: DeliveryKind,
        limit: usize,
    ) -> anyhow::Result<Vec<Delivery>> {
        self.with(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, file_id, kind, message_id, inbox, status, original, sidecar, body,
                        attempts, next_at
                 FROM deliveries WHERE state = 'waiting' AND inbox = ?1 AND kind = ?2
                 ORDER BY next_at, id LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![path_text(&inbox), kind.as_str(), limit as i64],
                read_delivery,
            )?;
            let rows = rows.collect::<rusqlite::Result<Vec<Option<Delivery>>>>()?;
            Ok(rows.into_iter().flatten().collect())
        })
        .await
    }

    /// A try failed and another is due at `next_at`.
    pub async fn delivery_retry_at(
        &self,
        id: i64,
        attempts: u32,
        next_at: SystemTime,
        error: String,
    ) -> anyhow::Result<()> {
        self.with(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let owner = history::delivery_owner(&tx, id)?;
            tx.execute(
                "UPDATE deliveries SET attempts = ?2, next_at = ?3, last_error = ?4, updated_at = ?5
                 WHERE id = ?1",
                params![id, attempts, ms(next_at), error, ms(SystemTime::now())],
            )?;
            // A wait that was no try (its inbox is not configured now) adds no line.
            if let Some((file_id, kind, _)) = owner.filter(|(_, _, tried)| *tried != attempts) {
                let details = serde_json::json!({
                    "kind": kind, "delivery_id": id, "attempts": attempts,
                    "error": error, "next_at_ms": ms(next_at),
                });
                history::append(&tx, Some(file_id), transition::DELIVERY_RETRY, details)?;
            }
            tx.commit()
        })
        .await
    }

    /// The delivery is over (`state` is not waiting): delivered, given up, gone or dropped.
    pub async fn delivery_closed(
        &self,
        id: i64,
        attempts: u32,
        state: DeliveryState,
        error: Option<String>,
    ) -> anyhow::Result<()> {
        self.with(move |conn| {
            let tx = conn.unchecked_transaction()?;
            tx.execute(
                "UPDATE deliveries SET state = ?2, attempts = ?3, last_error = ?4, updated_at = ?5
                 WHERE id = ?1",
                params![id, state.as_str(), attempts, error, ms(SystemTime::now())],
            )?;
            if let Some((file_id, kind, _)) = history::delivery_owner(&tx, id)? {
                let details = serde_json::json!({
                    "kind": kind, "delivery_id": id, "attempts": attempts,
                    "state": state.as_str(), "error": error,
                });
                history::append(&tx, Some(file_id), transition::DELIVERY_CLOSED, details)?;
            }
            tx.commit()
        })
        .await
    }

    /// How many deliveries wait, and how many were given up (still in the journal).
    pub async fn delivery_counts(&self) -> anyhow::Result<DeliveryCounts> {
        self.with(|conn| {
            // Counted in `deliveries_due` (by state), not by reading every delivery.
            conn.query_row(
                "SELECT (SELECT COUNT(*) FROM deliveries WHERE state = 'waiting'),
                        (SELECT COUNT(*) FROM deliveries WHERE state = 'given_up')",
                [],
                |r| {
                    Ok(DeliveryCounts {
                        waiting: r.get::<_, i64>(0)? as u64,
                        given_up: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
        })
        .await
    }

    /// Forgets deliveries that are over and older than `keep`; waiting ones are kept. Found
    /// through `deliveries_ended`, [`PRUNE_BATCH`] per transaction, the journal free between
    /// batches (as [`Journal::prune`]).
    pub async fn prune_deliveries(&self, keep: Duration) -> anyhow::Result<usize> {
        let cutoff = ms(SystemTime::now().checked_sub(keep).unwrap_or(UNIX_EPOCH));
        let mut forgotten = 0;
        loop {
            let batch = self
                .with(move |conn| {
                    conn.execute(
                        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries
                            WHERE updated_at < ?1 AND state != 'waiting' LIMIT ?2)",
                        params![cutoff, PRUNE_BATCH as i64],
                    )
                })
                .await?;
            forgotten += batch;
            if batch < PRUNE_BATCH {
                return Ok(forgotten);
            }
            tokio::task::yield_now().await;
        }
    }
}

pub(super) fn insert_outcome(
    tx: &rusqlite::Transaction<'_>,
    file_id: FileId,
    o: &NewOutcome,
) -> rusqlite::Result<()> {
    let now = SystemTime::now();
    let next_at = ms(now + o.first_wait);
    for kind in &o.kinds {
        tx.execute(
            "INSERT INTO deliveries (file_id, kind, message_id, inbox, status, original, sidecar,
                 body, state, attempts, next_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'waiting', 0, ?9, ?10, ?10)",
            params![
                file_id,
                kind.as_str(),
                o.message_id,
                path_text(&o.inbox),
                o.status,
                path_text(&o.original),
                path_text(&o.sidecar),
                o.body,
                next_at,
                ms(now),
            ],
        )?;
        let details = serde_json::json!({
            "kind": kind.as_str(),
            "delivery_id": tx.last_insert_rowid(),
            "message_id": o.message_id,
            "status": o.status,
        });
        history::append(tx, Some(file_id), transition::DELIVERY_QUEUED, details)?;
    }
    Ok(())
}

/// A row; `None` for a kind this daemon does not know (left alone, never guessed).
fn read_delivery(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Delivery>> {
    let Some(kind) = DeliveryKind::parse(&row.get::<_, String>(2)?) else {
        return Ok(None);
    };
    Ok(Some(Delivery {
        id: row.get(0)?,
        file_id: row.get(1)?,
        kind,
        message_id: row.get(3)?,
        inbox: PathBuf::from(row.get::<_, String>(4)?),
        status: row.get(5)?,
        original: PathBuf::from(row.get::<_, String>(6)?),
        sidecar: PathBuf::from(row.get::<_, String>(7)?),
        body: row.get(8)?,
        attempts: row.get::<_, i64>(9)?.max(0) as u32,
        next_at: from_ms(row.get(10)?),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::record::testing::*;
    use super::*;
    use crate::lifecycle::{Event, Stage};
    use crate::store::journal::NewClaim;

    fn outcome() -> NewOutcome {
        NewOutcome {
            message_id: "msg_1".into(),
            inbox: "/in".into(),
            status: "done".into(),
            original: "/done/a.jpg".into(),
            sidecar: "/done/a.jpg.json".into(),
            body: "{}".into(),
            kinds: vec![DeliveryKind::Webhook, DeliveryKind::Ledger],
            first_wait: Duration::ZERO,
        }
    }

    async fn finishing(j: &Journal) -> Driven {
        let claim = NewClaim {
            inbox: "/in".into(),
            name: "a.jpg".into(),
            work_path: "/in/.beorg-work/1_a.jpg".into(),
            size: 1,
            detected_at: SystemTime::now(),
            claimed_at: SystemTime::now(),
            set: false,
        };
        let mut file = Driven::claim(j, claim).await;
        file.on(
            j,
            super::super::record::testing::finishing("/done/a.jpg", "{}"),
        )
        .await;
        file
    }

    fn finished_delivering() -> Event {
        Event::Finished {
            stage: Stage::Done,
            label: "done".into(),
            delivery: Some(outcome()),
        }
    }

    #[tokio::test]
    async fn deliveries_are_recorded_once_with_the_finish_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut file = finishing(&j).await;
        let id = file.id;
        let finish = file.on(&j, finished_delivering()).await;
        // A repeated finish (a retry after an unclear commit) records nothing more.
        j.record(id, finish).await.unwrap();
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        let mut ways = j.waiting_ways().await.unwrap();
        ways.sort_by_key(|(_, kind)| kind.as_str());
        let inbox = PathBuf::from("/in");
        assert_eq!(
            ways,
            [
                (inbox.clone(), DeliveryKind::Ledger),
                (inbox.clone(), DeliveryKind::Webhook)
            ]
        );
        let mut rows = Vec::new();
        for kind in [DeliveryKind::Webhook, DeliveryKind::Ledger] {
            let of_kind = j.waiting_deliveries(inbox.clone(), kind, 10).await.unwrap();
            assert_eq!(of_kind.len(), 1);
            rows.extend(of_kind);
        }
        assert!(
            rows.iter()
                .all(|d| d.message_id == "msg_1" && d.file_id == id)
        );
        let counts = j.delivery_counts().await.unwrap();
        assert_eq!(
            counts,
            DeliveryCounts {
                waiting: 2,
                given_up: 0
            }
        );
        j.delivery_closed(
            rows[0].id,
            8,
            DeliveryState::GivenUp,
            Some("HTTP 500".into()),
        )
        .await
        .unwrap();
        j.delivery_retry_at(rows[1].id, 1, SystemTime::now(), "x".into())
            .await
            .unwrap();
        let counts = j.delivery_counts().await.unwrap();
        assert_eq!(
            counts,
            DeliveryCounts {
                waiting: 1,
                given_up: 1
            }
        );
        let ledger = j
            .waiting_deliveries(inbox.clone(), DeliveryKind::Ledger, 10)
            .await
            .unwrap();
        assert_eq!(ledger[0].attempts, 1);
        assert!(
            j.waiting_deliveries(inbox, DeliveryKind::Webhook, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

//! An accepted document set and when its result is ready: the vendor's processing-time table
//! (or the configured range), fixed per image by its hash and scaled by
//! [`crate::EmulatorConfig::time_scale`].

use std::time::{Duration, Instant};

use crate::checks::{ProcessEntry, Submission};
use crate::markers::Markers;

/// An accepted document set.
pub(crate) struct DocumentSet {
    /// When the result becomes available; `None` when the scaled time does not fit an
    /// `Instant` (the set then stays in processing).
    pub(crate) ready_at: Option<Instant>,
    /// One per image, in order.
    pub(crate) entries: Vec<EntryPlan>,
    /// "Passport Auto" tariff: no `process_info` was sent.
    pub(crate) auto: bool,
    /// Markers of all images together.
    pub(crate) markers: Markers,
}

/// One image of a set and what was asked for it.
pub(crate) struct EntryPlan {
    pub(crate) sha256: [u8; 32],
    pub(crate) markers: Markers,
    pub(crate) info: ProcessEntry,
}

impl DocumentSet {
    pub(crate) fn new(
        submission: Submission,
        at: Instant,
        time_scale: f64,
        processing: Option<(f64, f64)>,
    ) -> Self {
        let auto = submission.process_info.is_none();
        let infos = submission.process_info.unwrap_or_else(|| {
            let passport = ProcessEntry {
                key: None,
                doc_type: "PASSPORT".to_owned(),
                stages: Vec::new(),
                match_with: None,
            };
            vec![passport; submission.images.len()]
        });
        let entries: Vec<EntryPlan> = submission
            .images
            .iter()
            .zip(infos)
            .map(|(image, info)| EntryPlan {
                sha256: image.sha256,
                markers: image.markers,
                info,
            })
            .collect();
        let markers = entries
            .iter()
            .fold(Markers::default(), |all, entry| all.union(entry.markers));
        let seconds = entries
            .iter()
            .map(|entry| processing_seconds(entry, processing))
            .fold(0.0_f64, f64::max);
        let ready_at = scaled(seconds, time_scale).and_then(|delay| at.checked_add(delay));
        Self {
            ready_at,
            entries,
            auto,
            markers,
        }
    }
}

/// The vendor's processing-time range in seconds for a type, automatic or with verifiers.
fn time_range(doc_type: &str, verified: bool) -> (f64, f64) {
    match (doc_type, verified) {
        (_, true) => (30.0, 120.0),
        ("PASSPORT_REG", false) => (6.0, 15.0),
        ("SELFIE", false) => (2.0, 5.0),
        _ => (3.0, 10.0),
    }
}

/// Unscaled processing time of one entry: uniform in its range, fixed by the image's hash.
fn processing_seconds(entry: &EntryPlan, processing: Option<(f64, f64)>) -> f64 {
    let verified = entry
        .info
        .stages
        .iter()
        .any(|stage| stage == "verification");
    let (min, max) = processing.unwrap_or_else(|| time_range(&entry.info.doc_type, verified));
    let mut head = [0u8; 8];
    head.copy_from_slice(&entry.sha256[..8]);
    let fraction = u64::from_be_bytes(head) as f64 / u64::MAX as f64;
    min + fraction * (max - min)
}

/// `seconds * time_scale` as a duration; nonsense scales count as 0, overflow as `None`.
fn scaled(seconds: f64, time_scale: f64) -> Option<Duration> {
    let value = seconds * time_scale;
    if value.is_nan() || value <= 0.0 {
        return Some(Duration::ZERO);
    }
    Duration::try_from_secs_f64(value).ok()
}

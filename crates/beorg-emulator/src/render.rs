//! The result body of a ready set, the same every time it is asked for: the "Passport Auto"
//! or the "Universal" shape, with the seed's oddities (FPRN answered as `PASSPORT_FPRN`, the
//! verification texts, biometrics, broken documents blanked) and what the markers ask for.

use serde_json::{Map, Value, json};

use crate::checks::ProcessEntry;
use crate::documents::{DocumentSet, EntryPlan};
use crate::fake;
use crate::markers::Markers;

/// `status_text` for a passport that passed every check. The seed spells it in Cyrillic
/// ("ок", U+043E U+043A): it looks like "ok" and is not; clients should read `status`.
const STATUS_TEXT_OK: &str = "\u{43e}\u{43a}";
/// Stand-in for a `metadata` value that is replaced by the seed's literal `{ ... }`.
const METADATA_ELLIPSIS_SENTINEL: &str = "__BEORG_EMU_METADATA_ELLIPSIS__";

/// The result body for a ready set (deterministic: the same every time it is asked for).
pub(crate) fn render_result(document_id: &str, set: &DocumentSet) -> String {
    let value = if set.auto {
        auto_body(document_id, set)
    } else {
        universal_body(document_id, set)
    };
    let Ok(text) = serde_json::to_string_pretty(&value) else {
        return value.to_string();
    };
    // The OTPR seed's body literally says `"metadata": { ... }`.
    text.replace(&format!("\"{METADATA_ELLIPSIS_SENTINEL}\""), "{ ... }")
}

/// The "Passport Auto" shape: one passport, fields at the top level.
fn auto_body(document_id: &str, set: &DocumentSet) -> Value {
    let seed = set
        .entries
        .first()
        .map(|entry| entry.sha256)
        .unwrap_or([0; 32]);
    let mut rng = rng_for(&seed, 0);
    let document = fake::passport(&mut rng, false);
    let mut body = Map::new();
    body.insert("document_id".into(), Value::from(document_id));
    body.insert("data".into(), Value::Object(document.data));
    let mut confidences = document.confidences;
    if set.markers.low_confidence {
        lower_one_confidence(&mut confidences);
    }
    body.insert("metadata".into(), json!({ "confidences": confidences }));
    body.insert(
        "verifications".into(),
        verifications(set.markers.broken, set.markers.verification),
    );
    if set.markers.broken {
        blank_data(&mut body);
        insert_broken(
            &mut body,
            Some(true),
            &broken_reasons(set.markers.broken, false),
        );
    }
    if set.markers.invalid_json {
        body.insert("metadata".into(), Value::from(METADATA_ELLIPSIS_SENTINEL));
    }
    Value::Object(body)
}

/// The "Universal" shape: one entry in `documents` per `process_info` entry.
fn universal_body(document_id: &str, set: &DocumentSet) -> Value {
    let keys: Vec<&str> = set
        .entries
        .iter()
        .map(|entry| entry.info.key.as_deref().unwrap_or(&entry.info.doc_type))
        .collect();
    let documents: Vec<Value> = set
        .entries
        .iter()
        .enumerate()
        .map(|(index, entry)| render_document(entry, index, &keys, set.markers))
        .collect();
    json!({ "document_id": document_id, "documents": documents })
}

/// One entry of `documents`, in the seed's field order. `set_markers` are those of every image
/// of the set: a face match compares two images, so `other-face` on either fails it.
fn render_document(entry: &EntryPlan, index: usize, keys: &[&str], set_markers: Markers) -> Value {
    let mut rng = rng_for(&entry.sha256, index as u64);
    let info = &entry.info;
    let (key, doc_type) = reported_key_and_type(info);
    let match_failed = face_match_unpaired(info, keys);
    let broken = entry.markers.broken || match_failed;
    let mut document = Map::new();
    document.insert("key".into(), Value::from(key));
    document.insert("type".into(), Value::from(doc_type));
    let mut content = fake::content_for(&info.doc_type, &mut rng);
    if entry.markers.low_confidence
        && let Some(confidences) = content.metadata.get_mut("confidences")
    {
        lower_one_confidence(confidences);
    }
    document.insert("data".into(), content.data);
    document.insert("metadata".into(), content.metadata);
    if content.verified {
        let verification = verifications(broken, entry.markers.verification);
        document.insert("verifications".into(), verification);
    }
    let outcome = BiometricsOutcome {
        unpaired: match_failed,
        not_live: entry.markers.not_live,
        other_face: set_markers.other_face,
    };
    if let Some(biometrics) = biometrics(info, &mut rng, outcome) {
        document.insert("biometrics".into(), biometrics);
    }
    if broken {
        blank_data(&mut document);
        let reasons = broken_reasons(entry.markers.broken, match_failed);
        insert_broken(&mut document, Some(true), &reasons);
    } else {
        match content.broken_flag {
            fake::BrokenFlag::Absent => {}
            fake::BrokenFlag::Null => insert_broken(&mut document, None, &[]),
            fake::BrokenFlag::False => insert_broken(&mut document, Some(false), &[]),
        }
    }
    if entry.markers.invalid_json {
        document.insert("metadata".into(), Value::from(METADATA_ELLIPSIS_SENTINEL));
    }
    Value::Object(document)
}

/// The key and type the server answers with: FPRN comes back as `PASSPORT_FPRN`, its key with
/// the `FPRN` prefix replaced the same way.
fn reported_key_and_type(info: &ProcessEntry) -> (String, String) {
    if info.doc_type != "FPRN" {
        let key = info.key.clone().unwrap_or_else(|| info.doc_type.clone());
        return (key, info.doc_type.clone());
    }
    let key = match info.key.as_deref() {
        None => "PASSPORT_FPRN".to_owned(),
        Some(key) => match key.strip_prefix("FPRN") {
            Some(rest) => format!("PASSPORT_FPRN{rest}"),
            None => key.to_owned(),
        },
    };
    (key, "PASSPORT_FPRN".to_owned())
}

/// Whether an entry asks for a face match that has nothing to match against: the relation
/// names no other image of the set, or there is only one image.
fn face_match_unpaired(info: &ProcessEntry, keys: &[&str]) -> bool {
    let wants_match = info.match_with.is_some() || has_stage(info, "biometry_match");
    if !wants_match {
        return false;
    }
    let own_key = info.key.as_deref().unwrap_or(&info.doc_type);
    match info.match_with.as_deref() {
        Some(other) => other == own_key || !keys.contains(&other),
        None => keys.len() < 2,
    }
}

/// Whether `options.stages` lists `stage`.
fn has_stage(info: &ProcessEntry, stage: &str) -> bool {
    info.stages.iter().any(|s| s == stage)
}

/// How the biometric checks of one document come out.
#[derive(Clone, Copy)]
struct BiometricsOutcome {
    /// The match has nothing to compare against (the set is broken).
    unpaired: bool,
    /// The liveness check runs and fails.
    not_live: bool,
    /// The face match runs and fails.
    other_face: bool,
}

/// The biometrics block: both checks for a selfie, the requested ones for a document.
fn biometrics(
    info: &ProcessEntry,
    rng: &mut fastrand::Rng,
    outcome: BiometricsOutcome,
) -> Option<Value> {
    let selfie = info.doc_type == "SELFIE";
    let liveness = selfie || has_stage(info, "biometry_liveness");
    let matching = selfie || info.match_with.is_some() || has_stage(info, "biometry_match");
    if !liveness && !matching {
        return None;
    }
    let mut block = Map::new();
    if liveness {
        block.insert("liveness".into(), fake::liveness(rng, outcome.not_live));
    }
    if matching {
        let faces = fake::match_faces(rng, outcome.unpaired, outcome.other_face);
        block.insert("match_faces".into(), faces);
    }
    Some(Value::Object(block))
}

/// The passport verification block: status 1 for a broken document, else the status a
/// `verification=N` marker asks for, else 0.
fn verifications(broken: bool, asked: Option<u8>) -> Value {
    if broken {
        return json!({
            "status": 1,
            "status_text": VERIFICATION_TEXTS[1],
            "bad_fields": ["Series", "Number", "LastName", "FirstName", "BirthDate"],
        });
    }
    match asked.filter(|code| (1..=7).contains(code)) {
        None => json!({ "status": 0, "status_text": STATUS_TEXT_OK, "bad_fields": [] }),
        Some(code) => json!({
            "status": code,
            "status_text": VERIFICATION_TEXTS[usize::from(code)],
            "bad_fields": verification_bad_fields(code),
        }),
    }
}

/// The seed's text for each passport verification status, by code.
const VERIFICATION_TEXTS: [&str; 8] = [
    STATUS_TEXT_OK,
    "одно или несколько обязательных полей отсутствует или имеет неверный формат",
    "МЧЗ не согласуется со значением полей",
    "серия паспорта не согласуется с кодом подразделения",
    "место выдачи не согласуется с кодом подразделения",
    "паспорт выдан до 14-ти лет",
    "паспорт выдан до 1 октября 1997 года",
    "паспорт просрочен",
];

/// The fields a verification status (1 to 7) points at.
fn verification_bad_fields(code: u8) -> Vec<&'static str> {
    match code {
        1 => vec!["Series", "Number"],
        2 => vec!["MRZ1", "MRZ2"],
        3 => vec!["Series", "IssueId"],
        4 => vec!["IssuedBy", "IssueId"],
        5 | 7 => vec!["IssueDate", "BirthDate"],
        _ => vec!["IssueDate"],
    }
}

/// Sets the `LastName` confidence (any casing), or the first one, to 0.42, keeping whether it
/// was a string or a number.
fn lower_one_confidence(confidences: &mut Value) {
    let Value::Object(map) = confidences else {
        return;
    };
    let name = map
        .keys()
        .find(|k| k.eq_ignore_ascii_case("LastName"))
        .or_else(|| map.keys().next())
        .cloned();
    if let Some(value) = name.and_then(|name| map.get_mut(&name)) {
        *value = if value.is_string() {
            Value::from("0.4200")
        } else {
            Value::from(0.42)
        };
    }
}

/// English and Russian reasons for a broken document.
fn broken_reasons(unreadable: bool, match_failed: bool) -> Vec<(&'static str, &'static str)> {
    let mut reasons = Vec::new();
    if unreadable {
        reasons.push(("Document is not readable", "Документ не читается"));
    }
    if match_failed {
        reasons.push((
            "Face match needs both a document and a photo",
            "Для сверки лиц нужны и документ, и фотография",
        ));
    }
    reasons
}

/// Adds `broken`, `broken_reasons` and `broken_reasons_ru`.
fn insert_broken(object: &mut Map<String, Value>, broken: Option<bool>, reasons: &[(&str, &str)]) {
    let english: Vec<&str> = reasons.iter().map(|(en, _)| *en).collect();
    let russian: Vec<&str> = reasons.iter().map(|(_, ru)| *ru).collect();
    object.insert("broken".into(), broken.map_or(Value::Null, Value::Bool));
    object.insert("broken_reasons".into(), json!(english));
    object.insert("broken_reasons_ru".into(), json!(russian));
}

/// Empties the recognised fields of a broken document (nested `data.data` included) and drops
/// its confidences.
fn blank_data(object: &mut Map<String, Value>) {
    if let Some(data) = object.get_mut("data") {
        blank(data);
    }
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        metadata.insert("confidences".into(), Value::Null);
    }
}

/// Strings become `""`, booleans `false`, numbers `null`; objects recursively.
fn blank(value: &mut Value) {
    match value {
        Value::String(text) => text.clear(),
        Value::Bool(flag) => *flag = false,
        Value::Number(_) => *value = Value::Null,
        Value::Object(fields) => fields.values_mut().for_each(blank),
        Value::Array(items) => items.clear(),
        Value::Null => {}
    }
}

/// A generator seeded from an image's hash and its position in the set.
fn rng_for(sha256: &[u8; 32], index: u64) -> fastrand::Rng {
    let mut word = [0u8; 8];
    word.copy_from_slice(&sha256[8..16]);
    fastrand::Rng::with_seed(u64::from_le_bytes(word) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

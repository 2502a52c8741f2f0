//! What a result means, for the programs and people who read it: the normalised view
//! (`documents` in the sidecar) and the review rule (`review`: why a person must check it).
//!
//! Pure functions on the API's JSON; the raw `result` is never changed. The view hides the
//! vendor's quirks: two result shapes ("Universal" `documents[]`, the flat "Passport Auto"
//! body), FPRN's fields nested as `data.data`, booleans sent as strings, confidences as
//! strings or numbers keyed with another casing than the fields, `broken: null`, and
//! biometric blocks whose "Success" says the check ran, not that it passed.
//!
//! Review reasons name fields, never their values: they are logged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One document of a result, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// `key` as the API answered (null in the flat "Passport Auto" body).
    pub key: Option<String>,
    /// `type` as the API answered (FPRN comes back as `PASSPORT_FPRN`); the inbox's type
    /// when the API gave none (the flat body).
    #[serde(rename = "type")]
    pub doc_type: Option<String>,
    /// The file this document was read from: the original's name, or the set member's.
    pub file: String,
    /// Field name → value; FPRN's `data.data` unwrapped, `"true"`/`"false"` as booleans.
    pub fields: Map<String, Value>,
    /// Field name → confidence (0..1), keyed like `fields`; absent when the API gave none.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub confidence: Option<Map<String, Value>>,
    /// The passport verification, when the API gave one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verification: Option<Verification>,
    /// The biometric checks that ran.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub biometrics: Option<Biometrics>,
    /// The service could not read it (`null` from the API reads as false).
    pub broken: bool,
    pub broken_reasons: Vec<String>,
}

/// The API's passport verification: status 0 is "ok", 1 to 7 name a problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// Null when the API's status could not be read as a number.
    pub status: Option<i64>,
    /// The API's `status_text` (Russian).
    pub text: Option<String>,
    pub bad_fields: Vec<String>,
}

/// Biometric checks; each present only when it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Biometrics {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub liveness: Option<Liveness>,
    #[serde(rename = "match", skip_serializing_if = "Option::is_none", default)]
    pub face_match: Option<FaceMatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Liveness {
    pub passed: bool,
    pub probability: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceMatch {
    pub passed: bool,
    pub similarity: Option<f64>,
}

/// Which file each document belongs to, and what to assume where the API says nothing.
#[derive(Debug, Clone, Copy)]
pub struct Naming<'a> {
    /// `(key sent in process_info, file)` for the members of a set; empty for a single file.
    pub files: &'a [(String, String)],
    /// The file of a single-file request, and of any document no member matches.
    pub file: &'a str,
    /// The inbox's document type, for a body that names none ("Passport Auto").
    pub doc_type: &'a str,
}

/// The documents of a result: one per `documents[]` entry ("Universal"), or one built from
/// the flat body ("Passport Auto"). Anything else (not an object) has none.
pub fn documents(result: &Value, naming: &Naming) -> Vec<Document> {
    match result.get("documents") {
        Some(Value::Array(entries)) => entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                document(entry, file_of(entry, index, entries.len(), naming), naming)
            })
            .collect(),
        _ if result.is_object() => vec![document(result, naming.file.to_string(), naming)],
        _ => Vec::new(),
    }
}

/// The file a `documents[]` entry belongs to: the member sent under its key, else the member
/// at its position (the API renames some keys: `FPRN1` comes back as `PASSPORT_FPRN1`), else
/// the request's file.
fn file_of(entry: &Value, index: usize, count: usize, naming: &Naming) -> String {
    let key = entry.get("key").and_then(Value::as_str);
    let by_key = naming.files.iter().find(|(k, _)| Some(k.as_str()) == key);
    let by_position = (naming.files.len() == count)
        .then(|| naming.files.get(index))
        .flatten();
    by_key
        .or(by_position)
        .map_or_else(|| naming.file.to_string(), |(_, file)| file.clone())
}

fn document(entry: &Value, file: String, naming: &Naming) -> Document {
    let fields = fields(entry.get("data"));
    let confidence = confidence(entry.pointer("/metadata/confidences"), &fields);
    Document {
        key: entry.get("key").and_then(Value::as_str).map(str::to_string),
        doc_type: entry
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(naming.doc_type)
            .to_string()
            .into(),
        file,
        fields,
        confidence,
        verification: verification(entry.get("verifications")),
        biometrics: biometrics(entry.get("biometrics")),
        broken: truthy(entry.get("broken")),
        broken_reasons: strings(entry.get("broken_reasons")),
    }
}

/// `data`, with FPRN's extra level (`data.data`) removed and string booleans made booleans.
fn fields(data: Option<&Value>) -> Map<String, Value> {
    let Some(Value::Object(mut data)) = data.cloned() else {
        return Map::new();
    };
    if data.len() == 1
        && let Some(Value::Object(inner)) = data.get("data")
    {
        data = inner.clone();
    }
    for value in data.values_mut() {
        if let Value::String(text) = value {
            match text.as_str() {
                "true" => *value = Value::Bool(true),
                "false" => *value = Value::Bool(false),
                _ => {}
            }
        }
    }
    data
}

/// Confidences as numbers, renamed to the casing of the field they belong to (matched
/// case-insensitively: `Lastname` → `LastName`); names without a field (`MRZ1`) stay as they
/// are. `None` when the API gave no readable confidence.
fn confidence(raw: Option<&Value>, fields: &Map<String, Value>) -> Option<Map<String, Value>> {
    let Some(Value::Object(raw)) = raw else {
        return None;
    };
    let mut out = Map::new();
    for (name, value) in raw {
        let Some(number) = number(value).and_then(serde_json::Number::from_f64) else {
            continue;
        };
        let key = fields
            .keys()
            .find(|field| field.eq_ignore_ascii_case(name))
            .unwrap_or(name);
        out.insert(key.clone(), Value::Number(number));
    }
    (!out.is_empty()).then_some(out)
}

/// The `verifications` block, when it says anything.
fn verification(raw: Option<&Value>) -> Option<Verification> {
    let Some(Value::Object(raw)) = raw else {
        return None;
    };
    if raw.is_empty() {
        return None;
    }
    Some(Verification {
        status: raw.get("status").and_then(number).map(|n| n as i64),
        text: raw
            .get("status_text")
            .and_then(Value::as_str)
            .map(str::to_string),
        bad_fields: strings(raw.get("bad_fields")),
    })
}

/// The checks that ran: a block with its 0/1 verdict and no error code. (Its comment
/// "Success" says the check ran, not that it passed.)
fn biometrics(raw: Option<&Value>) -> Option<Biometrics> {
    let raw = raw?;
    let liveness =
        ran(raw.get("liveness"), "liveness", "probability").map(|(passed, p)| Liveness {
            passed,
            probability: p,
        });
    let face_match =
        ran(raw.get("match_faces"), "match_faces", "similarity").map(|(passed, s)| FaceMatch {
            passed,
            similarity: s,
        });
    (liveness.is_some() || face_match.is_some()).then_some(Biometrics {
        liveness,
        face_match,
    })
}

/// `(passed, score)` of a check block that ran.
fn ran(block: Option<&Value>, verdict: &str, score: &str) -> Option<(bool, Option<f64>)> {
    let block = block?.as_object()?;
    let verdict = block.get(verdict)?;
    let error = block.get("error_code").and_then(number).unwrap_or(0.0);
    (error == 0.0).then(|| (truthy(Some(verdict)), block.get(score).and_then(number)))
}

/// A number, or a string holding one.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
}

/// `true`, `1`, `"true"`, `"1"`; anything else (`null` included) is false.
fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() == Some(1.0),
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true") || s == "1",
        _ => false,
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Review

/// Why a person must check these documents, one sentence per reason (empty: nothing to
/// check): a passport verification status other than 0, a biometric check that ran and
/// failed, a confidence below `min_confidence`. With several documents each reason starts
/// with the file it is about.
pub fn review_reasons(documents: &[Document], min_confidence: Option<f64>) -> Vec<String> {
    let mut reasons = Vec::new();
    for document in documents {
        let prefix = if documents.len() > 1 {
            format!("{}: ", document.file)
        } else {
            String::new()
        };
        for reason in document_reasons(document, min_confidence) {
            reasons.push(format!("{prefix}{reason}"));
        }
    }
    reasons
}

fn document_reasons(document: &Document, min_confidence: Option<f64>) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(verification) = &document.verification
        && verification.status != Some(0)
    {
        reasons.push(verification_sentence(verification.status));
    }
    if let Some(biometrics) = &document.biometrics {
        if let Some(liveness) = biometrics.liveness.as_ref().filter(|l| !l.passed) {
            reasons.push(format!(
                "The liveness check failed: the photo may not show a live person{}.",
                score("probability", liveness.probability)
            ));
        }
        if let Some(face) = biometrics.face_match.as_ref().filter(|m| !m.passed) {
            reasons.push(format!(
                "The face match failed: the faces may be of different people{}.",
                score("similarity", face.similarity)
            ));
        }
    }
    if let (Some(min), Some(confidence)) = (min_confidence, &document.confidence) {
        for (field, value) in confidence {
            if let Some(value) = value.as_f64().filter(|v| *v < min) {
                reasons.push(format!(
                    "The field {field} was read with confidence {value}, below min_confidence {min}."
                ));
            }
        }
    }
    reasons
}

/// One sentence per passport verification status (the codes of the API's "Правила проверок").
fn verification_sentence(status: Option<i64>) -> String {
    let Some(code) = status else {
        return "The passport check gave no readable status.".to_string();
    };
    let what = match code {
        1 => "A required field of the passport is missing or malformed",
        2 => "The machine-readable zone (MRZ) disagrees with the passport's fields",
        3 => "The passport series disagrees with the issuing office code",
        4 => "The place of issue disagrees with the issuing office code",
        5 => "The passport was issued before its holder turned 14",
        6 => "The passport was issued before 1 October 1997",
        7 => "The passport has expired",
        _ => "The passport check returned a status this daemon does not know",
    };
    format!("{what} (verification status {code}).")
}

fn score(name: &str, value: Option<f64>) -> String {
    value.map_or_else(String::new, |v| format!(" ({name} {:.2})", v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SINGLE: Naming = Naming {
        files: &[],
        file: "scan.jpg",
        doc_type: "PASSPORT",
    };

    fn pretty(documents: &[Document]) -> String {
        serde_json::to_string_pretty(documents).unwrap()
    }

    /// Snapshot: a single "Universal" passport. Confidences as strings and numbers, a
    /// boolean sent as a string, `broken: false`.
    #[test]
    fn snapshot_single_file() {
        let result = json!({"document_id": "s-1", "documents": [{
            "key": "PASSPORT1", "type": "PASSPORT",
            "data": {"Series": "4510", "LastName": "ИВАНОВ", "BirthDate": "", "HasPhoto": true, "HasOwnerSignature": "true", "HasStamp": ""},
            "metadata": {"confidences": {"Series": "0.9999", "LastName": 0.983924329280853, "MRZ1": "0.95", "HasPhoto": "0.9999"}},
            "verifications": {"status": 0, "status_text": "ок", "bad_fields": []},
            "broken": false, "broken_reasons": [], "broken_reasons_ru": []
        }]});
        let expected = r#"[
  {
    "key": "PASSPORT1",
    "type": "PASSPORT",
    "file": "scan.jpg",
    "fields": {
      "Series": "4510",
      "LastName": "ИВАНОВ",
      "BirthDate": "",
      "HasPhoto": true,
      "HasOwnerSignature": true,
      "HasStamp": ""
    },
    "confidence": {
      "Series": 0.9999,
      "LastName": 0.983924329280853,
      "MRZ1": 0.95,
      "HasPhoto": 0.9999
    },
    "verification": {
      "status": 0,
      "text": "ок",
      "bad_fields": []
    },
    "broken": false,
    "broken_reasons": []
  }
]"#;
        let documents = documents(&result, &SINGLE);
        assert_eq!(pretty(&documents), expected);
        assert!(review_reasons(&documents, Some(0.9)).is_empty());
    }

    /// Snapshot: FPRN as the seed answers it: renamed type and key, fields under `data.data`,
    /// no confidences, no `broken` at all; SNILS-style `Lastname` confidence casing.
    #[test]
    fn snapshot_fprn_and_confidence_casing() {
        let result = json!({"document_id": "s-2", "documents": [{
            "key": "PASSPORT_FPRN1", "type": "PASSPORT_FPRN",
            "data": {"data": {"Series": "75", "LastName": "IVANOV", "HasPhoto": "true", "ExpirationDate": null}},
            "metadata": {"confidences": null, "verifications": {}}
        }, {
            "key": "SNILS", "type": "SNILS",
            "data": {"Number": "112-233-445 95", "LastName": "ИВАНОВ"},
            "metadata": {"confidences": {"Number": 0.97, "Lastname": "0.5"}, "verifications": {}},
            "broken": null
        }]});
        let files = [
            ("FPRN1".to_string(), "fprn.jpg".to_string()),
            ("SNILS".to_string(), "snils.jpg".to_string()),
        ];
        let naming = Naming {
            files: &files,
            ..SINGLE
        };
        let expected = r#"[
  {
    "key": "PASSPORT_FPRN1",
    "type": "PASSPORT_FPRN",
    "file": "fprn.jpg",
    "fields": {
      "Series": "75",
      "LastName": "IVANOV",
      "HasPhoto": true,
      "ExpirationDate": null
    },
    "broken": false,
    "broken_reasons": []
  },
  {
    "key": "SNILS",
    "type": "SNILS",
    "file": "snils.jpg",
    "fields": {
      "Number": "112-233-445 95",
      "LastName": "ИВАНОВ"
    },
    "confidence": {
      "Number": 0.97,
      "LastName": 0.5
    },
    "broken": false,
    "broken_reasons": []
  }
]"#;
        let documents = documents(&result, &naming);
        assert_eq!(pretty(&documents), expected);
        assert_eq!(
            review_reasons(&documents, Some(0.9)),
            [
                "snils.jpg: The field LastName was read with confidence 0.5, below min_confidence 0.9."
            ]
        );
        assert!(review_reasons(&documents, None).is_empty());
    }

    /// Snapshot: a passport + selfie set with biometrics, as the emulator answers a KYC
    /// request; a failed match on both, an error-coded liveness that did not run.
    #[test]
    fn snapshot_set_with_biometrics() {
        let result = json!({"document_id": "s-3", "documents": [{
            "key": "PASSPORT1", "type": "PASSPORT",
            "data": {"LastName": "ИВАНОВА"},
            "metadata": {"confidences": {"LastName": "0.9999"}},
            "verifications": {"status": 7, "status_text": "паспорт просрочен", "bad_fields": ["IssueDate"]},
            "biometrics": {"match_faces": {"match_faces": 0, "similarity": 0.23, "error_code": 0, "comment": "Success"}},
            "broken": false, "broken_reasons": [], "broken_reasons_ru": []
        }, {
            "key": "SELFIE1", "type": "SELFIE",
            "data": {},
            "metadata": {"confidences": null, "verifications": {}},
            "biometrics": {
                "liveness": {"liveness": 0, "probability": 0.12, "error_code": 0, "comment": "Success"},
                "match_faces": {"match_faces": 1, "similarity": 0.91, "error_code": 0, "comment": "Success"}
            },
            "broken": false, "broken_reasons": [], "broken_reasons_ru": []
        }, {
            "key": "SELFIE2", "type": "SELFIE", "data": {},
            "biometrics": {"liveness": {"liveness": 0, "probability": 0, "error_code": 1100010, "comment": "No face"}},
            "broken": true, "broken_reasons": ["No face found"]
        }]});
        let files = [
            ("PASSPORT1".to_string(), "passport.jpg".to_string()),
            ("SELFIE1".to_string(), "selfie.jpg".to_string()),
            ("SELFIE2".to_string(), "selfie-2.jpg".to_string()),
        ];
        let naming = Naming {
            files: &files,
            ..SINGLE
        };
        let expected = r#"[
  {
    "key": "PASSPORT1",
    "type": "PASSPORT",
    "file": "passport.jpg",
    "fields": {
      "LastName": "ИВАНОВА"
    },
    "confidence": {
      "LastName": 0.9999
    },
    "verification": {
      "status": 7,
      "text": "паспорт просрочен",
      "bad_fields": [
        "IssueDate"
      ]
    },
    "biometrics": {
      "match": {
        "passed": false,
        "similarity": 0.23
      }
    },
    "broken": false,
    "broken_reasons": []
  },
  {
    "key": "SELFIE1",
    "type": "SELFIE",
    "file": "selfie.jpg",
    "fields": {},
    "biometrics": {
      "liveness": {
        "passed": false,
        "probability": 0.12
      },
      "match": {
        "passed": true,
        "similarity": 0.91
      }
    },
    "broken": false,
    "broken_reasons": []
  },
  {
    "key": "SELFIE2",
    "type": "SELFIE",
    "file": "selfie-2.jpg",
    "fields": {},
    "broken": true,
    "broken_reasons": [
      "No face found"
    ]
  }
]"#;
        let documents = documents(&result, &naming);
        assert_eq!(pretty(&documents), expected);
        assert_eq!(
            review_reasons(&documents, None),
            [
                "passport.jpg: The passport has expired (verification status 7).",
                "passport.jpg: The face match failed: the faces may be of different people (similarity 0.23).",
                "selfie.jpg: The liveness check failed: the photo may not show a live person (probability 0.12).",
            ]
        );
    }

    /// Snapshot: the flat "Passport Auto" body becomes one document, typed from the inbox.
    #[test]
    fn snapshot_passport_auto() {
        let result = json!({"document_id": "12345",
            "data": {"Series": "4510", "HasPhoto": "false"},
            "metadata": {"confidences": {"Series": "0.81"}},
            "verifications": {"status": 2, "status_text": "МЧЗ не согласуется со значением полей", "bad_fields": ["MRZ1"]}
        });
        let expected = r#"[
  {
    "key": null,
    "type": "PASSPORT",
    "file": "scan.jpg",
    "fields": {
      "Series": "4510",
      "HasPhoto": false
    },
    "confidence": {
      "Series": 0.81
    },
    "verification": {
      "status": 2,
      "text": "МЧЗ не согласуется со значением полей",
      "bad_fields": [
        "MRZ1"
      ]
    },
    "broken": false,
    "broken_reasons": []
  }
]"#;
        let documents = documents(&result, &SINGLE);
        assert_eq!(pretty(&documents), expected);
        assert_eq!(
            review_reasons(&documents, Some(0.9)),
            [
                "The machine-readable zone (MRZ) disagrees with the passport's fields (verification status 2).",
                "The field Series was read with confidence 0.81, below min_confidence 0.9.",
            ]
        );
    }

    #[test]
    fn every_verification_status_has_its_own_sentence() {
        let sentences: Vec<String> = (0..=8).map(|s| verification_sentence(Some(s))).collect();
        for (i, a) in sentences.iter().enumerate() {
            assert!(a.ends_with(&format!("(verification status {i}).")), "{a}");
            for b in &sentences[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            verification_sentence(Some(7)),
            "The passport has expired (verification status 7)."
        );
    }

    #[test]
    fn odd_inputs_never_panic_and_give_no_documents_or_empty_ones() {
        for result in [json!(null), json!("text"), json!([1, 2])] {
            assert!(documents(&result, &SINGLE).is_empty());
        }
        let odd = json!({"documents": [null, 5, {"data": [1], "metadata": {"confidences": {"A": "x", "B": [1]}}, "verifications": {"status": "seven"}, "biometrics": {"liveness": "yes"}}]});
        let documents = documents(&odd, &SINGLE);
        assert_eq!(documents.len(), 3);
        assert!(documents[2].confidence.is_none());
        assert_eq!(documents[2].verification.as_ref().unwrap().status, None);
        assert_eq!(
            review_reasons(&documents, Some(0.5)),
            ["scan.jpg: The passport check gave no readable status.".to_string()]
        );
    }
}

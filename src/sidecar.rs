//! The sidecar: one JSON file beside each finished original, the format downstream programs
//! (1C, CRMs, scripts) parse. This type is its only definition; the snapshot test pins it.
//! It knows nothing of the pipeline: `finish` fills it in from the file's journey.
//!
//! `<final name>.json` is written after the original is in place, atomically, so its arrival
//! means both files are complete.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Version of the sidecar layout. 2 added `documents` and `review` (and the status
/// `review`); 3 added `superseded` (and the error kind `deleted`); 4 added `reviewed` (a
/// review station's decision); every key of the earlier versions is unchanged.
pub const SIDECAR_VERSION: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Done,
    /// Recognised, and a person must check it (`review` says why); in the review folder.
    Review,
    Failed,
}

/// Why a file went to failed/. The string forms are stable: scripts match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Refused before sending: empty, or not something the service accepts.
    InvalidFile,
    /// The file could not be read from disk.
    Unreadable,
    /// 400: the service refused the request.
    Rejected,
    /// 413: too large.
    TooLarge,
    /// 409: the service already has this content.
    Duplicate,
    /// The service processed it and marked it broken (unreadable, wrong document).
    Broken,
    /// 404 on the result: the service no longer has the document.
    NotFound,
    /// No result within `result_timeout`.
    Timeout,
    /// Server or network errors on every submit attempt.
    ServerError,
    /// The result arrived but is not JSON; the raw text is in `result_raw`.
    BadResponse,
    /// The original (or a file of a set) was deleted from the work folder after it was sent:
    /// the result paid for is kept in the sidecar, the original cannot be.
    Deleted,
}

impl ErrorKind {
    /// The stable name, as in the sidecar.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidFile => "invalid_file",
            ErrorKind::Unreadable => "unreadable",
            ErrorKind::Rejected => "rejected",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::Broken => "broken",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ServerError => "server_error",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::Deleted => "deleted",
        }
    }
}

/// What went wrong, for people and for scripts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub kind: ErrorKind,
    /// The API's HTTP status, when the API answered.
    pub http_status: Option<u16>,
    /// One or two sentences a receptionist can act on.
    pub message: String,
}

/// The original file, as it was taken from the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Name in the inbox.
    pub name: String,
    /// The inbox folder.
    pub inbox: String,
    /// Hex SHA-256 of the content (null if the file could not be read).
    pub sha256: Option<String>,
    pub size: u64,
    /// A document set's files in the order sent (absent for a single file).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub files: Option<Vec<SourceFile>>,
}

/// One file of a document set, as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    #[serde(rename = "type")]
    pub doc_type: String,
    pub key: String,
}

/// When each step happened (RFC 3339, UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timestamps {
    pub detected: String,
    pub claimed: String,
    pub submitted: Option<String>,
    pub finished: String,
}

/// The whole sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub sidecar_version: u32,
    pub status: Status,
    /// Document type the inbox is configured for.
    #[serde(rename = "type")]
    pub doc_type: String,
    /// The API's id for this document; null when it never got one.
    pub document_id: Option<String>,
    /// Present when this content had been sent before: the earlier document it was answered
    /// from (no new submit was paid for). Equal to `document_id`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duplicate_of: Option<String>,
    /// Documents the API gave for this file whose answers it does not use (the file changed
    /// after it was sent), each with why: paid for, so never only in a log.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub superseded: Vec<Superseded>,
    /// Name of the original beside this sidecar (differs from `source.name` after a clash).
    pub file: String,
    pub source: Source,
    /// The API's result JSON exactly as received; null when there is none.
    pub result: Option<serde_json::Value>,
    /// The result as text, when it arrived but was not valid JSON.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub result_raw: Option<String>,
    /// The result normalised: one entry per document (empty when there is no result).
    #[serde(default)]
    pub documents: Vec<crate::results::Document>,
    /// Why a person must check this result, in plain words; empty when nothing needs it.
    #[serde(default)]
    pub review: Vec<String>,
    /// A person's decision at the review station (absent until one is made): `review` stays
    /// as it was, the decision is here.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reviewed: Option<Reviewed>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ErrorInfo>,
    pub timestamps: Timestamps,
    /// `beorg-hotfolder <version>` that wrote it.
    pub written_by: String,
}

/// A review station's decision on a result that needed a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reviewed {
    /// "approved" (the original went to done/) or "rejected" (to failed/).
    pub decision: String,
    /// The reviewer's name.
    pub by: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Field name → its value as read and as corrected; the normalised view (`documents`)
    /// carries the corrected value, `result` stays as the API answered.
    #[serde(default)]
    pub corrections: serde_json::Map<String, serde_json::Value>,
}

/// A document paid for and not used as this file's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Superseded {
    pub document_id: String,
    /// Why its answer is not this file's, in plain words.
    pub why: String,
}

/// How a file's journey ended, before it is written down.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub result: Option<serde_json::Value>,
    pub result_raw: Option<String>,
    pub error: Option<ErrorInfo>,
    /// Why a person must check the result (see [`crate::results::review_reasons`]).
    pub review: Vec<String>,
}

impl Outcome {
    pub fn done(result: serde_json::Value) -> Outcome {
        Outcome {
            status: Status::Done,
            result: Some(result),
            result_raw: None,
            error: None,
            review: Vec::new(),
        }
    }

    pub fn failed(
        kind: ErrorKind,
        http_status: Option<u16>,
        message: impl Into<String>,
    ) -> Outcome {
        Outcome {
            status: Status::Failed,
            result: None,
            result_raw: None,
            error: Some(ErrorInfo {
                kind,
                http_status,
                message: message.into(),
            }),
            review: Vec::new(),
        }
    }

    /// Keeps the API's result (e.g. a broken document's) alongside the error.
    pub fn with_result(mut self, result: serde_json::Value) -> Outcome {
        self.result = Some(result);
        self
    }

    pub fn with_raw(mut self, raw: String) -> Outcome {
        self.result_raw = Some(raw);
        self
    }
}

impl Sidecar {
    /// Pretty JSON with a trailing newline: readable by a person opening the folder.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("sidecar serializes");
        text.push('\n');
        text
    }
}

/// RFC 3339 in UTC with second precision: `2026-11-23T10:15:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Snapshot of the format other programs parse. Change it only on purpose, and then bump
    /// SIDECAR_VERSION if a key changes meaning or disappears.
    #[test]
    fn sidecar_format_snapshot() {
        let sidecar = Sidecar {
            sidecar_version: SIDECAR_VERSION,
            status: Status::Failed,
            doc_type: "PASSPORT".into(),
            document_id: Some("s-10001".into()),
            duplicate_of: None,
            superseded: vec![Superseded {
                document_id: "s-10000".into(),
                why: "the file changed while it was sent".into(),
            }],
            file: "scan (2).jpg".into(),
            source: Source {
                name: "scan.jpg".into(),
                inbox: "/srv/scans/in/passport".into(),
                sha256: Some("ab".repeat(32)),
                size: 123456,
                files: None,
            },
            result: Some(serde_json::json!({"document_id": "s-10001", "documents": []})),
            result_raw: None,
            documents: Vec::new(),
            review: Vec::new(),
            reviewed: None,
            error: Some(ErrorInfo {
                kind: ErrorKind::Broken,
                http_status: None,
                message: "The service could not read the document: Document is not readable."
                    .into(),
            }),
            timestamps: Timestamps {
                detected: rfc3339(at(1_800_000_000)),
                claimed: rfc3339(at(1_800_000_002)),
                submitted: Some(rfc3339(at(1_800_000_003))),
                finished: rfc3339(at(1_800_000_010)),
            },
            written_by: "beorg-hotfolder 0.1.0".into(),
        };
        let expected = r#"{
  "sidecar_version": 4,
  "status": "failed",
  "type": "PASSPORT",
  "document_id": "s-10001",
  "superseded": [
    {
      "document_id": "s-10000",
      "why": "the file changed while it was sent"
    }
  ],
  "file": "scan (2).jpg",
  "source": {
    "name": "scan.jpg",
    "inbox": "/srv/scans/in/passport",
    "sha256": "abababababababababababababababababababababababababababababababab",
    "size": 123456
  },
  "result": {
    "document_id": "s-10001",
    "documents": []
  },
  "documents": [],
  "review": [],
  "error": {
    "kind": "broken",
    "http_status": null,
    "message": "The service could not read the document: Document is not readable."
  },
  "timestamps": {
    "detected": "2027-01-15T08:00:00Z",
    "claimed": "2027-01-15T08:00:02Z",
    "submitted": "2027-01-15T08:00:03Z",
    "finished": "2027-01-15T08:00:10Z"
  },
  "written_by": "beorg-hotfolder 0.1.0"
}
"#;
        assert_eq!(sidecar.to_json(), expected);
        let back: Sidecar = serde_json::from_str(expected).unwrap();
        assert_eq!(back, sidecar);
    }

    /// Snapshot of a version 2 sidecar sent to review: the normalised `documents` beside the
    /// raw `result`, and the reasons.
    #[test]
    fn review_sidecar_snapshot() {
        let result = serde_json::json!({"document_id": "12345", "data": {"Series": "4510"},
            "verifications": {"status": 7, "status_text": "паспорт просрочен", "bad_fields": []}});
        let naming = crate::results::Naming {
            files: &[],
            file: "scan.jpg",
            doc_type: "PASSPORT",
        };
        let documents = crate::results::documents(&result, &naming);
        let sidecar = Sidecar {
            sidecar_version: SIDECAR_VERSION,
            status: Status::Review,
            doc_type: "PASSPORT".into(),
            document_id: Some("12345".into()),
            duplicate_of: None,
            superseded: vec![],
            file: "scan.jpg".into(),
            source: Source {
                name: "scan.jpg".into(),
                inbox: "/srv/scans/in/passport".into(),
                sha256: None,
                size: 1,
                files: None,
            },
            review: crate::results::review_reasons(&documents, None),
            reviewed: None,
            documents,
            result: Some(result),
            result_raw: None,
            error: None,
            timestamps: Timestamps {
                detected: rfc3339(at(1_800_000_000)),
                claimed: rfc3339(at(1_800_000_002)),
                submitted: None,
                finished: rfc3339(at(1_800_000_010)),
            },
            written_by: "beorg-hotfolder 0.1.0".into(),
        };
        let expected = r#"{
  "sidecar_version": 4,
  "status": "review",
  "type": "PASSPORT",
  "document_id": "12345",
  "file": "scan.jpg",
  "source": {
    "name": "scan.jpg",
    "inbox": "/srv/scans/in/passport",
    "sha256": null,
    "size": 1
  },
  "result": {
    "document_id": "12345",
    "data": {
      "Series": "4510"
    },
    "verifications": {
      "status": 7,
      "status_text": "паспорт просрочен",
      "bad_fields": []
    }
  },
  "documents": [
    {
      "key": null,
      "type": "PASSPORT",
      "file": "scan.jpg",
      "fields": {
        "Series": "4510"
      },
      "verification": {
        "status": 7,
        "text": "паспорт просрочен",
        "bad_fields": []
      },
      "broken": false,
      "broken_reasons": []
    }
  ],
  "review": [
    "The passport has expired (verification status 7)."
  ],
  "timestamps": {
    "detected": "2027-01-15T08:00:00Z",
    "claimed": "2027-01-15T08:00:02Z",
    "submitted": null,
    "finished": "2027-01-15T08:00:10Z"
  },
  "written_by": "beorg-hotfolder 0.1.0"
}
"#;
        assert_eq!(sidecar.to_json(), expected);
        let back: Sidecar = serde_json::from_str(expected).unwrap();
        assert_eq!(back, sidecar);
    }

    /// A version 1 sidecar (no `documents`, no `review`) still reads: version 2 only adds.
    #[test]
    fn a_version_1_sidecar_still_reads() {
        let v1 = r#"{"sidecar_version": 1, "status": "done", "type": "SNILS", "document_id": "s-1",
            "file": "a.png", "source": {"name": "a.png", "inbox": "/in", "sha256": null, "size": 3},
            "result": null, "timestamps": {"detected": "x", "claimed": "x", "submitted": null, "finished": "x"},
            "written_by": "beorg-hotfolder 0.1.0"}"#;
        let sidecar: Sidecar = serde_json::from_str(v1).unwrap();
        assert_eq!(sidecar.status, Status::Done);
        assert!(sidecar.documents.is_empty() && sidecar.review.is_empty());
    }

    /// Issue 10: a document set's sidecar is the same format plus `source.files`, in the
    /// order sent.
    #[test]
    fn sidecar_format_snapshot_of_a_set() {
        let sidecar = Sidecar {
            sidecar_version: SIDECAR_VERSION,
            status: Status::Done,
            doc_type: "PASSPORT".into(),
            document_id: Some("s-10002".into()),
            duplicate_of: None,
            superseded: vec![],
            file: "kyc-1".into(),
            source: Source {
                name: "kyc-1".into(),
                inbox: "/srv/scans/in/kyc".into(),
                sha256: Some("cd".repeat(32)),
                size: 300,
                files: Some(vec![
                    SourceFile {
                        name: "passport.jpg".into(),
                        sha256: "01".repeat(32),
                        size: 200,
                        doc_type: "PASSPORT".into(),
                        key: "PASSPORT1".into(),
                    },
                    SourceFile {
                        name: "selfie.jpg".into(),
                        sha256: "02".repeat(32),
                        size: 100,
                        doc_type: "SELFIE".into(),
                        key: "SELFIE1".into(),
                    },
                ]),
            },
            result: Some(serde_json::json!({"document_id": "s-10002", "documents": []})),
            documents: Vec::new(),
            review: Vec::new(),
            reviewed: None,
            result_raw: None,
            error: None,
            timestamps: Timestamps {
                detected: rfc3339(at(1_800_000_000)),
                claimed: rfc3339(at(1_800_000_002)),
                submitted: Some(rfc3339(at(1_800_000_003))),
                finished: rfc3339(at(1_800_000_010)),
            },
            written_by: "beorg-hotfolder 0.1.0".into(),
        };
        let expected = r#"{
  "sidecar_version": 4,
  "status": "done",
  "type": "PASSPORT",
  "document_id": "s-10002",
  "file": "kyc-1",
  "source": {
    "name": "kyc-1",
    "inbox": "/srv/scans/in/kyc",
    "sha256": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
    "size": 300,
    "files": [
      {
        "name": "passport.jpg",
        "sha256": "0101010101010101010101010101010101010101010101010101010101010101",
        "size": 200,
        "type": "PASSPORT",
        "key": "PASSPORT1"
      },
      {
        "name": "selfie.jpg",
        "sha256": "0202020202020202020202020202020202020202020202020202020202020202",
        "size": 100,
        "type": "SELFIE",
        "key": "SELFIE1"
      }
    ]
  },
  "result": {
    "document_id": "s-10002",
    "documents": []
  },
  "documents": [],
  "review": [],
  "timestamps": {
    "detected": "2027-01-15T08:00:00Z",
    "claimed": "2027-01-15T08:00:02Z",
    "submitted": "2027-01-15T08:00:03Z",
    "finished": "2027-01-15T08:00:10Z"
  },
  "written_by": "beorg-hotfolder 0.1.0"
}
"#;
        assert_eq!(sidecar.to_json(), expected);
        let back: Sidecar = serde_json::from_str(expected).unwrap();
        assert_eq!(back, sidecar);
    }

    #[test]
    fn error_kind_names_match_the_serialized_form() {
        for kind in [
            ErrorKind::InvalidFile,
            ErrorKind::Unreadable,
            ErrorKind::Rejected,
            ErrorKind::TooLarge,
            ErrorKind::Duplicate,
            ErrorKind::Broken,
            ErrorKind::NotFound,
            ErrorKind::Timeout,
            ErrorKind::ServerError,
            ErrorKind::BadResponse,
            ErrorKind::Deleted,
        ] {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json.as_str(), Some(kind.as_str()));
        }
    }

    #[test]
    fn result_keeps_the_servers_key_order() {
        let raw = r#"{"z":1,"a":{"y":"0.9999","b":0.983924329280853}}"#;
        let v: serde_json::Value = serde_json::from_str(raw).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), raw);
    }
}

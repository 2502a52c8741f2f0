//! What a claimed entry carries: one file, or a document set (a folder whose files are sent
//! as one request). The kind is decided once, at the claim, by the inbox's `sets` setting,
//! and the stages ask the payload instead of testing a flag: what it is called in a
//! sentence, which files it sends, which of them are gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::{ProcessInfo, ProcessOptions};

/// The kind of a claimed entry, with what only that kind has.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Payload {
    /// One file: its work path is the file.
    #[default]
    File,
    /// A document set: its work path is the folder; `members` are its files once hashed,
    /// in the order they are sent (empty before).
    Set { members: Vec<Member> },
}

impl Payload {
    /// A set not hashed yet.
    pub fn new_set() -> Payload {
        Payload::Set {
            members: Vec::new(),
        }
    }

    /// The payload of a claim: a set in a `sets` inbox, else a file.
    pub fn of_inbox(sets: bool) -> Payload {
        if sets {
            Payload::new_set()
        } else {
            Payload::File
        }
    }

    /// Whether this is a set (stored as the row's `kind`).
    pub fn is_set(&self) -> bool {
        matches!(self, Payload::Set { .. })
    }

    /// A set's files once hashed (none for a file).
    pub fn members(&self) -> &[Member] {
        match self {
            Payload::File => &[],
            Payload::Set { members } => members,
        }
    }

    /// "the file" or "the set", for sentences about it.
    pub fn noun(&self) -> &'static str {
        match self {
            Payload::File => "the file",
            Payload::Set { .. } => "the set",
        }
    }

    /// The files sent for it, as (path, name in the set): the work file itself (with an
    /// empty name), or each member of the set's folder at `work_path`.
    pub fn parts(&self, work_path: &Path) -> Vec<(PathBuf, String)> {
        match self {
            Payload::File => vec![(work_path.to_path_buf(), String::new())],
            Payload::Set { members } => members
                .iter()
                .map(|m| (work_path.join(&m.name), m.name.clone()))
                .collect(),
        }
    }

    /// The payload as the journal row's `kind` column says (`"set"` or none) with its
    /// stored members (JSON), if any.
    pub fn from_row(kind_is_set: bool, set_files: Option<&str>) -> Payload {
        if !kind_is_set {
            return Payload::File;
        }
        Payload::Set {
            members: set_files
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default(),
        }
    }
}

/// One file of a set as recorded in the journal once hashed: what was read and what is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    #[serde(rename = "type")]
    pub doc_type: String,
    pub key: String,
    #[serde(default)]
    pub stages: Vec<String>,
    #[serde(default)]
    pub relation: BTreeMap<String, String>,
}

impl Member {
    /// Its `process_info` entry.
    pub fn process_info(&self) -> ProcessInfo {
        ProcessInfo {
            doc_type: self.doc_type.clone(),
            key: Some(self.key.clone()),
            options: (!self.stages.is_empty() || !self.relation.is_empty()).then(|| {
                ProcessOptions {
                    stages: self.stages.clone(),
                    relation: (!self.relation.is_empty()).then(|| self.relation.clone()),
                }
            }),
        }
    }
}

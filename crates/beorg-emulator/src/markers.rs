//! Behaviour requested from inside an image: every `BEORG-EMU:<name>` marker in its bytes
//! (`broken`, `invalid-json`, `lost`, `never`, `verification=N`, `not-live`, `other-face`,
//! `low-confidence`).

/// What every marker inside an image starts with.
const MARKER_PREFIX: &[u8] = b"BEORG-EMU:";

/// Behaviour requested from inside an image.
#[derive(Clone, Copy, Default)]
pub(crate) struct Markers {
    pub(crate) broken: bool,
    pub(crate) invalid_json: bool,
    pub(crate) lost: bool,
    pub(crate) never: bool,
    /// `verification=N`: the passport verification status to answer with.
    pub(crate) verification: Option<u8>,
    /// `not-live`: the liveness check runs and says "not live".
    pub(crate) not_live: bool,
    /// `other-face`: the face match runs and says "another person".
    pub(crate) other_face: bool,
    /// `low-confidence`: one field is read with confidence 0.42.
    pub(crate) low_confidence: bool,
}

impl Markers {
    /// Finds every `BEORG-EMU:<name>` in `bytes`.
    pub(crate) fn scan(bytes: &[u8]) -> Self {
        let mut markers = Markers::default();
        let mut rest = bytes;
        while let Some(at) = find(rest, MARKER_PREFIX) {
            rest = &rest[at + MARKER_PREFIX.len()..];
            markers.broken |= rest.starts_with(b"broken");
            markers.invalid_json |= rest.starts_with(b"invalid-json");
            markers.lost |= rest.starts_with(b"lost");
            markers.never |= rest.starts_with(b"never");
            markers.not_live |= rest.starts_with(b"not-live");
            markers.other_face |= rest.starts_with(b"other-face");
            markers.low_confidence |= rest.starts_with(b"low-confidence");
            if let Some(code) = rest.strip_prefix(b"verification=".as_slice()) {
                markers.verification = code
                    .first()
                    .filter(|c| c.is_ascii_digit())
                    .map(|c| c - b'0');
            }
        }
        markers
    }

    /// Markers of several images together.
    pub(crate) fn union(self, other: Markers) -> Markers {
        Markers {
            broken: self.broken || other.broken,
            invalid_json: self.invalid_json || other.invalid_json,
            lost: self.lost || other.lost,
            never: self.never || other.never,
            verification: self.verification.or(other.verification),
            not_live: self.not_live || other.not_live,
            other_face: self.other_face || other.other_face,
            low_confidence: self.low_confidence || other.low_confidence,
        }
    }
}

/// Position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

//! What is waiting in the review folders, and the only way to reach a file there.
//!
//! An item is an original the daemon finished into a review folder: a regular file or a
//! set's folder (never a symlink) whose sidecar beside it names it and says `review`. Each
//! gets an opaque id, a keyed hash of its inbox, name and content (never a path): a request
//! names an id, the station lists the folders and takes the item with that id, so nothing
//! but what the listing found can be served. Scan files are opened relative to the review
//! folder's descriptor, one name at a time, without following symlinks.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Config;
use crate::sidecar::{Sidecar, Status};
use crate::store::{fsutil, layout};

/// One original waiting for a person.
#[derive(Debug, Clone)]
pub struct Item {
    /// Opaque: `/items/{id}`.
    pub id: String,
    /// The inbox it came from (as configured).
    pub inbox: PathBuf,
    /// That inbox's review folder.
    pub review_dir: PathBuf,
    /// Its name in the review folder.
    pub name: String,
    /// A set's folder rather than a file.
    pub is_set: bool,
    /// Its sidecar, as read.
    pub sidecar: Sidecar,
    /// The sidecar's JSON, every key kept (rewritten by the decision).
    pub sidecar_json: serde_json::Value,
    /// When it was finished into the review folder.
    pub since: SystemTime,
}

impl Item {
    /// Its path in the review folder.
    pub fn path(&self) -> PathBuf {
        self.review_dir.join(&self.name)
    }

    /// The names of the files to show: the original, or a set's members in the order sent.
    pub fn pages(&self) -> Vec<String> {
        match &self.sidecar.source.files {
            Some(files) if self.is_set => files.iter().map(|f| f.name.clone()).collect(),
            _ => vec![self.name.clone()],
        }
    }
}

/// Every item of every inbox's review folder, oldest first. `key` makes the ids.
pub fn list(config: &Config, key: &[u8]) -> Vec<Item> {
    let mut items: Vec<Item> = config
        .inboxes
        .iter()
        .filter_map(|inbox| Some((inbox.path.clone(), inbox.review.clone()?)))
        .flat_map(|(inbox, review)| list_folder(&inbox, &review, key))
        .collect();
    items.sort_by(|a, b| a.since.cmp(&b.since).then(a.name.cmp(&b.name)));
    items
}

/// The item with `id`, if the listing finds it now.
pub fn find(config: &Config, key: &[u8], id: &str) -> Option<Item> {
    if id.len() != ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    list(config, key).into_iter().find(|item| item.id == id)
}

/// How many items wait in `review`, and since when the oldest.
pub fn waiting(inbox: &Path, review: &Path) -> (u64, Option<SystemTime>) {
    let items = list_folder(inbox, review, b"");
    let oldest = items.iter().map(|i| i.since).min();
    (items.len() as u64, oldest)
}

/// Hex characters of an id (128 bits).
const ID_LEN: usize = 32;

fn list_folder(inbox: &Path, review: &Path, key: &[u8]) -> Vec<Item> {
    let Ok(entries) = std::fs::read_dir(review) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            item(inbox, review, name, key)
        })
        .collect()
}

fn item(inbox: &Path, review: &Path, name: String, key: &[u8]) -> Option<Item> {
    if name.starts_with('.') || layout::is_temp_file(&name) {
        return None;
    }
    let path = review.join(&name);
    if layout::is_sidecar(&path) {
        return None;
    }
    // symlink_metadata: a symlink is neither a file nor a folder here, so never listed.
    let meta = path.symlink_metadata().ok()?;
    if !meta.is_file() && !meta.is_dir() {
        return None;
    }
    let text = read_no_follow(&layout::sidecar_path(&path))?;
    let sidecar: Sidecar = serde_json::from_str(&text).ok()?;
    let sidecar_json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let is_set = meta.is_dir();
    if sidecar.status != Status::Review
        || sidecar.file != name
        || sidecar.source.files.is_some() != is_set
    {
        return None;
    }
    let since = humantime::parse_rfc3339(&sidecar.timestamps.finished)
        .ok()
        .or_else(|| meta.modified().ok())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Some(Item {
        id: id_of(key, inbox, &name, &sidecar),
        inbox: inbox.to_path_buf(),
        review_dir: review.to_path_buf(),
        name,
        is_set,
        sidecar,
        sidecar_json,
        since,
    })
}

fn read_no_follow(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    fsutil::open_no_follow(path)
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// HMAC-SHA256 of the inbox, the name and the content's hash (or document id) under `key`,
/// the first 128 bits in hex: stable while the process runs, meaningless outside it.
fn id_of(key: &[u8], inbox: &Path, name: &str, sidecar: &Sidecar) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    for part in [
        inbox.as_os_str().as_encoded_bytes(),
        name.as_bytes(),
        sidecar.source.sha256.as_deref().unwrap_or("").as_bytes(),
        sidecar.document_id.as_deref().unwrap_or("").as_bytes(),
    ] {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
    let digest = mac.finalize().into_bytes();
    digest[..ID_LEN / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Opens page `n` of `item` for reading: relative to the review folder, each name a single
/// component opened without following symlinks; only a regular file. `None` when there is no
/// such page or it is not a plain file inside the item.
pub fn open_page(item: &Item, n: usize) -> Option<(File, String)> {
    let name = item.pages().into_iter().nth(n)?;
    let review = open_dir(None, &item.review_dir)?;
    let file = if item.is_set {
        let set = open_dir(Some(&review), Path::new(&item.name))?;
        open_file(&set, &name)?
    } else {
        open_file(&review, &name)?
    };
    Some((file, name))
}

fn single_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

fn open_dir(parent: Option<&OwnedFd>, path: &Path) -> Option<OwnedFd> {
    use rustix::fs::{CWD, Mode, OFlags, openat};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match parent {
        None => openat(CWD, path, flags, Mode::empty()).ok(),
        Some(dir) => {
            let name = path.to_str()?;
            if !single_component(name) {
                return None;
            }
            openat(dir, name, flags | OFlags::NOFOLLOW, Mode::empty()).ok()
        }
    }
}

fn open_file(dir: &OwnedFd, name: &str) -> Option<File> {
    use rustix::fs::{Mode, OFlags, openat};
    if !single_component(name) {
        return None;
    }
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = openat(dir, name, flags, Mode::empty()).ok()?;
    let file = File::from(fd);
    file.metadata().ok()?.is_file().then_some(file)
}

/// How a browser is given a scan file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// As it is, with this content type.
    AsIs(&'static str),
    /// Converted to PNG for display (TIFF, which browsers cannot show): the first page, at
    /// most [`SHOWN_MAX_SIDE`] pixels a side.
    AsPng,
}

/// The longest side of a converted scan: enough to read a passport on a screen.
pub const SHOWN_MAX_SIDE: u32 = 2400;

/// How the browser gets `name`, by its extension; `None` for a format it cannot show
/// and the station does not convert.
pub fn shown_as(name: &str) -> Option<Shown> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(Shown::AsIs(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "bmp" => "image/bmp",
        "pdf" => "application/pdf",
        "tif" | "tiff" => return Some(Shown::AsPng),
        _ => return None,
    }))
}

/// The bytes and content type the browser gets for an opened page (blocking).
pub fn for_browser(file: File, shown: Shown) -> Option<(&'static str, Vec<u8>)> {
    use std::io::Read;
    let mut reader = std::io::BufReader::new(file);
    match shown {
        Shown::AsIs(kind) => {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).ok()?;
            Some((kind, bytes))
        }
        Shown::AsPng => {
            let decoder = image::codecs::tiff::TiffDecoder::new(reader).ok()?;
            let picture = image::DynamicImage::from_decoder(decoder).ok()?;
            let picture = if picture.width().max(picture.height()) > SHOWN_MAX_SIDE {
                picture.thumbnail(SHOWN_MAX_SIDE, SHOWN_MAX_SIDE)
            } else {
                picture
            };
            let mut png = std::io::Cursor::new(Vec::new());
            picture.write_to(&mut png, image::ImageFormat::Png).ok()?;
            Some(("image/png", png.into_inner()))
        }
    }
}

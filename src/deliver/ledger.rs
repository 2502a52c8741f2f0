//! Delivering a message to a ledger: one compact JSON line per outcome, appended to the file
//! as [`crate::store::append_log`] appends (opened by path for each line, so logrotate can
//! rename it at any moment; the mode kept private; a torn line closed). A crash between the
//! append and recording it repeats the line at the next try, with the same `id`: a reader
//! keeps the first line of each `id`.

use std::path::PathBuf;

use crate::store::append_log::append_line;

use super::Tried;

/// One try of appending `line` (ending in a newline) to `path`.
pub async fn append(path: PathBuf, line: String, mode: u32) -> Tried {
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || append_line(&path, &line, mode, "ledger")).await {
        Ok(Ok(())) => Tried::Delivered(format!("appended to {shown}")),
        Ok(Err(e)) => Tried::Failed(format!("cannot append to {shown}: {e}")),
        Err(e) => Tried::Failed(format!("appending to {shown} stopped: {e}")),
    }
}

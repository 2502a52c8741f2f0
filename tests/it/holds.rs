//! Files that are not finished yet stay in the inbox (issue 14, finding 6), and files no
//! request can carry are never sent (finding 10).

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use beorg_hotfolder::sidecar::{ErrorKind, Status};

use crate::helpers::*;

/// A PDF of about `first` bytes that is complete (it ends with `%%EOF`), then an incremental
/// update of about `rest` bytes that ends with its own `%%EOF`: the first part alone looks
/// like a finished file, so only the open writer says it is not.
fn pdf_in_two_parts(first: usize, rest: usize) -> (Vec<u8>, Vec<u8>) {
    let mut a = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n<< /Type /Page /Parent 2 0 R >>\nendobj\n%".to_vec();
    let tail = b"\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
    a.resize(first - tail.len(), b'a');
    a.extend_from_slice(tail);
    let mut b = b"4 0 obj\n<< /Type /Annot >>\nendobj\n%".to_vec();
    let tail = b"\ntrailer\n<< /Root 1 0 R /Prev 9 >>\n%%EOF\n";
    b.resize(rest - tail.len(), b'b');
    b.extend_from_slice(tail);
    (a, b)
}

#[tokio::test]
async fn a_file_open_for_writing_is_not_taken_when_its_writer_pauses_longer_than_settle() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    // Events tell an open writer: wait until the inbox is watched (a first scan went through).
    env.drop_scan(0, "first.png", 60, None);
    env.sidecar(0, "first.png").await;
    let (first, rest) = pdf_in_two_parts(40 * 1024, 30 * 1024);
    let path = env.inboxes[0].path.join("slow.pdf");
    // A local writer keeps the file open: 40 KB, a pause of seven settle times, the rest.
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(&first).unwrap();
    file.flush().unwrap();
    holds_for(
        "the half-written file stays in the inbox, unsent",
        Duration::from_millis(1000),
        || path.exists() && env.submits().len() == 1,
    )
    .await;
    file.write_all(&rest).unwrap();
    drop(file);
    let whole = [first, rest].concat();
    let sidecar = env.sidecar(0, "slow.pdf").await;
    assert_eq!(sidecar.status, Status::Done);
    assert_eq!(sidecar.source.size, whole.len() as u64);
    holds_for("slow.pdf is sent once", Duration::from_millis(300), || {
        env.submits().len() == 2
    })
    .await;
    daemon.stop().await;
    let submits = env.submits();
    assert_eq!(submits.len(), 2, "first.png, then slow.pdf once");
    assert_eq!(
        submits[1].image_sha256,
        vec![sha256_hex(&whole)],
        "sent complete"
    );
}

#[tokio::test]
async fn a_file_left_open_is_taken_after_hold_limit_with_a_warn() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.daemon_extra.push("hold_limit = \"1s\"".into());
    let mut daemon = env.spawn_binary(&[]);
    wait_until("started", || daemon.stderr().contains("running")).await;
    let bytes = beorg_emulator::samples::page_png(61, None);
    let path = env.inboxes[0].path.join("forgotten.png");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(&bytes).unwrap();
    file.flush().unwrap();
    // Complete, but never closed: held for the hold limit, then taken.
    holds_for("held while open", Duration::from_millis(600), || {
        path.exists() && env.submits().is_empty()
    })
    .await;
    let sidecar = env.sidecar(0, "forgotten.png").await;
    assert_eq!(sidecar.status, Status::Done);
    drop(file);
    daemon.signal(rustix::process::Signal::TERM);
    daemon.wait(Duration::from_secs(5)).await;
    let log = daemon.stderr();
    assert!(log.contains("still open for writing"), "{log}");
    assert!(
        log.contains("held for 1s without a change")
            && log.contains("although a writer still has it open"),
        "{log}"
    );
    assert_eq!(env.submits().len(), 1);
}

#[tokio::test]
async fn a_cut_off_file_is_held_until_it_is_complete_then_sent_once() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    let full = beorg_emulator::samples::page_png(62, None);
    // Copied in two goes by a writer that closes in between (an SMB client retrying):
    // the first part, closed, is a PNG without its end.
    let cut = full.len() * 2 / 3;
    let path = env.drop_bytes(0, "copied.png", &full[..cut]);
    holds_for(
        "the cut-off file stays in the inbox, unsent",
        Duration::from_millis(1000),
        || path.exists() && env.submits().is_empty(),
    )
    .await;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(&full[cut..]).unwrap();
    drop(file);
    let sidecar = env.sidecar(0, "copied.png").await;
    assert_eq!(sidecar.status, Status::Done);
    holds_for(
        "copied.png is sent once",
        Duration::from_millis(300),
        || env.submits().len() == 1,
    )
    .await;
    daemon.stop().await;
    let submits = env.submits();
    assert_eq!(submits.len(), 1);
    assert_eq!(submits[0].image_sha256, vec![sha256_hex(&full)]);
}

#[tokio::test]
async fn a_file_that_stays_cut_off_fails_after_hold_limit_without_a_request() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.daemon_extra.push("hold_limit = \"1s\"".into());
    let daemon = env.start();
    let full = beorg_emulator::samples::page_png(63, None);
    let path = env.drop_bytes(0, "cut.png", &full[..full.len() - 100]);
    holds_for("held", Duration::from_millis(600), || path.exists()).await;
    let sidecar = env.sidecar(0, "cut.png").await;
    daemon.stop().await;
    assert_eq!(sidecar.status, Status::Failed);
    let e = sidecar.error.unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidFile);
    assert!(
        e.message.starts_with(
            "The file is cut off: it was not saved or copied completely. Scan it again."
        ),
        "{}",
        e.message
    );
    assert!(env.emulator.requests().is_empty(), "nothing was paid for");
}

#[tokio::test]
async fn a_file_over_the_800_mb_request_limit_fails_as_too_large_without_a_request() {
    let mut env = TestEnv::new(&["PASSPORT", "SNILS"]).await;
    env.inboxes[0].extra = "preflight = \"off\"".into();
    env.inboxes[1].extra = "preflight = \"warn\"".into();
    let daemon = env.start();
    for i in 0..2 {
        // 800 MB + 1 byte, sparse (nothing but the ends is written): a JPEG start, its end.
        let inbox = &env.inboxes[i].path;
        let temp = inbox.join(".incoming-huge.jpg");
        let mut file = std::fs::File::create(&temp).unwrap();
        file.write_all(b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
            .unwrap();
        let size = 800 * 1024 * 1024 + 1;
        file.set_len(size).unwrap();
        file.seek(SeekFrom::Start(size - 2)).unwrap();
        file.write_all(b"\xFF\xD9").unwrap();
        drop(file);
        std::fs::rename(&temp, inbox.join("huge.jpg")).unwrap();
    }
    for i in 0..2 {
        let sidecar = env.sidecar(i, "huge.jpg").await;
        assert_eq!(sidecar.status, Status::Failed);
        let e = sidecar.error.unwrap();
        assert_eq!(e.kind, ErrorKind::TooLarge);
        assert!(
            e.message.contains("at most 800 MB in one request"),
            "{}",
            e.message
        );
    }
    daemon.stop().await;
    assert!(env.emulator.requests().is_empty(), "no request was made");
}

/// A cut-off file copied in several goes (a pause longer than `settle` between them) is
/// said held once at INFO while the hold lasts, not again at each change, as a set's file
/// still arriving is; the hold limit still counts from the last change.
#[tokio::test]
async fn a_file_held_through_several_changes_is_said_held_once() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.daemon_extra.push("hold_limit = \"1s\"".into());
    let mut daemon = env.spawn_binary(&[]);
    wait_until("started", || daemon.stderr().contains("running")).await;
    let full = beorg_emulator::samples::page_png(65, None);
    let (first, second) = (full.len() / 3, full.len() * 2 / 3);
    let path = env.drop_bytes(0, "in-goes.png", &full[..first]);
    let held = "ends before its format's end";
    daemon.logged(held, 1).await;
    // The copy goes on, still short of the end: the file changes, settles and is held again.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(&full[first..second]).unwrap();
    drop(file);
    let sidecar = env.sidecar(0, "in-goes.png").await;
    daemon.stop().await;
    assert_eq!(sidecar.status, Status::Failed);
    assert_eq!(
        sidecar.source.size, second as u64,
        "held again after the change"
    );
    let log = daemon.stderr();
    assert_eq!(log.matches(held).count(), 1, "{log}");
    assert_eq!(
        log.matches("held for 1s without a change").count(),
        1,
        "{log}"
    );
    assert!(env.emulator.requests().is_empty(), "nothing was paid for");
}

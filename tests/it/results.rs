//! Issue 11 §1: the normalised `documents` view in real sidecars, for every result shape the
//! emulator answers (the seeds' quirks included), beside the raw `result` kept as received.

use serde_json::Value;

use crate::helpers::*;
use beorg_hotfolder::sidecar::{SIDECAR_VERSION, Status};

#[tokio::test]
async fn each_result_shape_is_normalised_beside_the_raw_result() {
    let mut env = TestEnv::new(&["PASSPORT", "SNILS", "FPRN", "OTPR"]).await;
    let auto = env.add_inbox("PASSPORT", "passport-auto", "tariff = \"passport_auto\"");
    let daemon = env.start();
    for i in 0..env.inboxes.len() {
        env.drop_scan(i, "scan.png", 1100 + i as u64, None);
    }
    let mut sidecars = Vec::new();
    for i in 0..env.inboxes.len() {
        let sidecar = env.sidecar(i, "scan.png").await;
        assert_eq!(sidecar.status, Status::Done, "{}", env.inboxes[i].doc_type);
        assert_eq!(sidecar.sidecar_version, SIDECAR_VERSION);
        assert_eq!(sidecar.sidecar_version, 4);
        assert!(sidecar.review.is_empty(), "{:?}", sidecar.review);
        assert_eq!(sidecar.documents.len(), 1);
        assert_eq!(sidecar.documents[0].file, "scan.png");
        sidecars.push(sidecar);
    }
    daemon.stop().await;

    // PASSPORT: strings and numbers become numbers; a boolean sent as a string becomes one.
    let (passport, raw) = (
        &sidecars[0].documents[0],
        sidecars[0].result.as_ref().unwrap(),
    );
    let raw_doc = &raw["documents"][0];
    assert_eq!(passport.key.as_deref(), Some("PASSPORT"));
    assert_eq!(passport.doc_type.as_deref(), Some("PASSPORT"));
    assert_eq!(passport.fields["LastName"], raw_doc["data"]["LastName"]);
    assert_eq!(
        raw_doc["data"]["HasOwnerSignature"], "true",
        "raw kept as received"
    );
    assert_eq!(passport.fields["HasOwnerSignature"], true);
    assert_eq!(passport.fields["HasPhoto"], true);
    let confidence = passport.confidence.as_ref().expect("passport confidences");
    assert!(raw_doc["metadata"]["confidences"]["Series"].is_string());
    assert!(raw_doc["metadata"]["confidences"]["Number"].is_number());
    for name in ["Series", "Number", "MRZ1", "MRZ2"] {
        assert!(confidence[name].is_f64(), "{name}: {confidence:?}");
    }
    let verification = passport.verification.as_ref().expect("verification");
    assert_eq!(verification.status, Some(0));
    assert!(!passport.broken);

    // SNILS: `Lastname` confidence keyed like the field `LastName`.
    let snils = &sidecars[1].documents[0];
    let raw_conf = &sidecars[1].result.as_ref().unwrap()["documents"][0]["metadata"]["confidences"];
    assert!(raw_conf.get("Lastname").is_some(), "{raw_conf}");
    let confidence = snils.confidence.as_ref().unwrap();
    assert!(confidence.contains_key("LastName") && !confidence.contains_key("Lastname"));
    assert!(snils.fields.contains_key("LastName"));
    assert!(snils.verification.is_none());

    // FPRN: answered as PASSPORT_FPRN with fields under data.data; no confidences, no broken.
    let fprn = &sidecars[2].documents[0];
    assert_eq!(fprn.doc_type.as_deref(), Some("PASSPORT_FPRN"));
    assert!(!fprn.fields.contains_key("data"), "{:?}", fprn.fields);
    assert!(fprn.fields.contains_key("LastNameRu"));
    assert_eq!(fprn.fields["HasPhoto"], true);
    assert!(fprn.confidence.is_none());
    assert!(!fprn.broken);

    // OTPR: `broken: null` reads as false.
    let raw_otpr = &sidecars[3].result.as_ref().unwrap()["documents"][0];
    assert_eq!(raw_otpr["broken"], Value::Null);
    assert!(!sidecars[3].documents[0].broken);

    // Passport Auto: the flat body is one document, typed from the inbox.
    let flat = &sidecars[auto].documents[0];
    assert_eq!(flat.key, None);
    assert_eq!(flat.doc_type.as_deref(), Some("PASSPORT"));
    assert!(flat.fields.contains_key("Series"));
    assert!(flat.confidence.is_some());
    assert_eq!(flat.verification.as_ref().unwrap().status, Some(0));

    // The sidecar on disk carries both, and `review` as an empty list.
    let text = std::fs::read_to_string(layout::sidecar_path(&env.inboxes[0].done.join("scan.png")))
        .unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["review"], serde_json::json!([]));
    assert!(json["documents"].is_array() && json["result"].is_object());
}

#[tokio::test]
async fn a_failed_file_with_a_result_has_its_documents_and_no_review() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    env.drop_scan(0, "blurred.png", 1200, Some("BEORG-EMU:broken"));
    let sidecar = env.sidecar(0, "blurred.png").await;
    daemon.stop().await;
    assert_eq!(sidecar.status, Status::Failed);
    assert!(sidecar.review.is_empty());
    let document = &sidecar.documents[0];
    assert!(document.broken);
    assert_eq!(document.broken_reasons, ["Document is not readable"]);
}

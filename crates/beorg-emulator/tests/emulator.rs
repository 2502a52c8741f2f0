//! The Beorg API emulator over real HTTP on loopback: status codes in the vendor's order, result
//! shapes per document type with the seeds' quirks, the in-file markers, the test controls and
//! the request log.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use beorg_emulator::{Emulator, EmulatorConfig, Endpoint};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A token nobody else uses, so the request log can be searched for it.
const TOKEN: &str = "tok-7f3a9c-secret";
const MACHINE: &str = "machine-42";
/// How long any wait on a condition may take.
const DEADLINE: Duration = Duration::from_secs(5);

fn config() -> EmulatorConfig {
    EmulatorConfig {
        token: TOKEN.to_owned(),
        machine_uid: MACHINE.to_owned(),
        time_scale: 0.01,
        ..EmulatorConfig::default()
    }
}

/// A test's emulator and a client for it.
struct Api {
    emulator: Emulator,
    client: reqwest::Client,
}

async fn start(config: EmulatorConfig) -> Api {
    let addr = "127.0.0.1:0".parse().expect("address");
    let emulator = Emulator::start(config, addr)
        .await
        .expect("emulator starts");
    Api {
        emulator,
        client: reqwest::Client::new(),
    }
}

/// Fake file contents; `text` makes them unique and may carry a marker.
fn file(text: &str) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n fake scan: ".to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

/// A submit body with valid credentials.
fn body(files: &[&[u8]], process_info: Option<Value>) -> Value {
    let images: Vec<String> = files.iter().map(|bytes| BASE64.encode(bytes)).collect();
    let mut body = json!({
        "project_id": "U_RATE_2",
        "token": TOKEN,
        "machine_uid": MACHINE,
        "images": images,
    });
    if let Some(info) = process_info {
        body["process_info"] = info;
    }
    body
}

/// One `process_info` entry per `(type, key)`.
fn info(entries: &[(&str, Option<&str>)]) -> Value {
    entries
        .iter()
        .map(|(doc_type, key)| match key {
            Some(key) => json!({ "type": doc_type, "key": key }),
            None => json!({ "type": doc_type }),
        })
        .collect()
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emulator.base_url())
    }

    async fn submit_raw(&self, body: Vec<u8>) -> (u16, String) {
        let response = self
            .client
            .post(self.url("/api/bescan/add_document"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("submit is answered");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn submit(&self, body: &Value) -> (u16, Value) {
        let (status, text) = self.submit_raw(body.to_string().into_bytes()).await;
        let value = serde_json::from_str(&text).expect("submit answers are JSON");
        (status, value)
    }

    /// Submits and expects a 200; returns the document id.
    async fn accepted(&self, body: &Value) -> String {
        let (status, answer) = self.submit(body).await;
        assert_eq!(status, 200, "submit answered {answer}");
        let id = answer["document_id"]
            .as_str()
            .expect("document_id")
            .to_owned();
        assert!(id.starts_with("s-"), "{id}");
        id
    }

    async fn result_at(&self, method: reqwest::Method, path: &str) -> (u16, String) {
        let response = self
            .client
            .request(method, self.url(path))
            .send()
            .await
            .expect("result is answered");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn result(&self, id: &str) -> (u16, String) {
        let path = format!("/api/document/result/{id}?token={TOKEN}");
        self.result_at(reqwest::Method::GET, &path).await
    }

    /// Polls every 20 ms until the answer is not 425, up to the deadline.
    async fn wait_result(&self, id: &str) -> (u16, String) {
        let start = Instant::now();
        loop {
            let (status, text) = self.result(id).await;
            if status != 425 || start.elapsed() > DEADLINE {
                return (status, text);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for a 200 and parses it.
    async fn ready(&self, id: &str) -> Value {
        let (status, text) = self.wait_result(id).await;
        assert_eq!(status, 200, "result answered {text}");
        serde_json::from_str(&text).expect("result is JSON")
    }
}

/// Polls `condition` every 20 ms until it holds; fails the test at the deadline.
async fn wait_until(condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn message(value: &Value) -> &str {
    value["message"]
        .as_str()
        .expect("error bodies carry a message")
}

#[tokio::test]
async fn passport_is_425_while_processing_then_200_with_the_universal_shape() {
    let api = start(config()).await;
    let passport = file("passport with verifiers");
    let process_info = json!([{
        "key": "PASSPORT1",
        "type": "PASSPORT",
        "options": { "stages": ["verification"] }
    }]);
    let submitted = Instant::now();
    let id = api.accepted(&body(&[&passport], Some(process_info))).await;

    // With verifiers a passport takes 30-120 s, scaled by 0.01: 0.3-1.2 s.
    let (status, text) = api.result(&id).await;
    assert_eq!(status, 425, "{text}");
    let result = api.ready(&id).await;
    assert!(submitted.elapsed() >= Duration::from_millis(300));

    assert_eq!(result["document_id"], id.as_str());
    let documents = result["documents"].as_array().expect("documents");
    assert_eq!(documents.len(), 1);
    let document = &documents[0];
    assert_eq!(document["key"], "PASSPORT1");
    assert_eq!(document["type"], "PASSPORT");
    for field in [
        "IssuedBy",
        "IssueDate",
        "IssueId",
        "Series",
        "Number",
        "Gender",
        "LastName",
        "FirstName",
        "MiddleName",
        "BirthDate",
        "BirthPlace",
        "HasPhoto",
        "HasOwnerSignature",
    ] {
        assert!(
            document["data"].get(field).is_some(),
            "data.{field} missing"
        );
    }
    let birth = document["data"]["BirthDate"].as_str().expect("date");
    assert_eq!(birth.len(), 10, "dd.mm.yyyy: {birth}");
    assert_eq!(&birth[2..3], ".");
    let confidences = document["metadata"]["confidences"]
        .as_object()
        .expect("confidences");
    assert!(
        confidences.values().any(Value::is_string),
        "string confidences"
    );
    assert!(confidences.values().any(Value::is_f64), "float confidences");
    assert!(confidences.contains_key("MRZ1"));
    assert_eq!(document["verifications"]["status"], 0);
    assert_eq!(document["verifications"]["bad_fields"], json!([]));
    assert_eq!(document["broken"], false);
    assert_eq!(document["broken_reasons"], json!([]));
    assert_eq!(document["broken_reasons_ru"], json!([]));

    // The same answer every time it is asked for.
    let again: Value = serde_json::from_str(&api.result(&id).await.1).expect("json");
    assert_eq!(again, result);
}

#[tokio::test]
async fn fprn_comes_back_as_passport_fprn_with_fields_under_data_data() {
    let api = start(config()).await;
    let files = [file("fprn one"), file("fprn two")];
    let process_info = info(&[("FPRN", Some("FPRN1")), ("FPRN", None)]);
    let id = api
        .accepted(&body(&[&files[0], &files[1]], Some(process_info)))
        .await;
    let result = api.ready(&id).await;
    let documents = result["documents"].as_array().expect("documents");
    assert_eq!(documents[0]["key"], "PASSPORT_FPRN1");
    assert_eq!(documents[0]["type"], "PASSPORT_FPRN");
    assert_eq!(documents[1]["key"], "PASSPORT_FPRN");
    assert_eq!(documents[1]["type"], "PASSPORT_FPRN");
    let inner = &documents[0]["data"]["data"];
    for field in [
        "Series",
        "LastName",
        "LastNameRu",
        "BirthDate",
        "ExpirationDate",
    ] {
        assert!(inner.get(field).is_some(), "data.data.{field} missing");
    }
    assert!(documents[0]["data"].get("LastName").is_none());
}

#[tokio::test]
async fn snils_confidence_keys_are_cased_unlike_the_data_keys() {
    let api = start(config()).await;
    let snils = file("snils");
    let id = api
        .accepted(&body(&[&snils], Some(info(&[("SNILS", Some("SNILS1"))]))))
        .await;
    let result = api.ready(&id).await;
    let document = &result["documents"][0];
    assert_eq!(document["key"], "SNILS1");
    assert!(document["data"].get("LastName").is_some());
    assert!(document["data"].get("Lastname").is_none());
    let confidences = &document["metadata"]["confidences"];
    for key in ["Lastname", "Firstname", "Middlename"] {
        assert!(confidences[key].is_f64(), "confidences.{key}");
    }
    assert!(confidences.get("LastName").is_none());
    assert_eq!(document["data"]["RegistrationDate"], Value::Null);
    assert_eq!(document["broken"], false);
}

#[tokio::test]
async fn without_process_info_the_answer_has_the_passport_auto_shape() {
    let api = start(config()).await;
    let passport = file("auto passport");
    let id = api.accepted(&body(&[&passport], None)).await;
    let result = api.ready(&id).await;
    assert_eq!(result["document_id"], id.as_str());
    assert!(result.get("documents").is_none());
    assert!(result["data"]["LastName"].is_string());
    assert!(result["data"].get("HasStamp").is_some());
    assert!(result["metadata"]["confidences"]["Series"].is_string());
    assert_eq!(result["verifications"]["status"], 0);
    let records = api.emulator.requests();
    assert!(records[0].types.is_empty());
}

#[tokio::test]
async fn other_types_have_their_seed_shapes() {
    let api = start(config()).await;
    let files: Vec<Vec<u8>> = ["reg", "selfie", "vng", "otpr", "unknown"]
        .iter()
        .map(|name| file(name))
        .collect();
    let refs: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
    let process_info = json!([
        {
            "key": "PASSPORT_REG1",
            "type": "PASSPORT_REG",
            "options": { "stages": ["biometry_match"], "relation": { "biometry_match": "SELFIE1" } }
        },
        { "key": "SELFIE1", "type": "SELFIE", "options": { "stages": ["biometry_liveness"] } },
        { "type": "VNG" },
        { "key": "OTPR", "type": "OTPR" },
        { "type": "DRIVER_LICENSE_XYZ" }
    ]);
    let (status, _) = api.submit(&body(&refs, Some(process_info))).await;
    assert_eq!(status, 200);
    let id = api.emulator.requests()[0]
        .document_id
        .clone()
        .expect("id recorded");
    let result = api.ready(&id).await;
    let docs = result["documents"].as_array().expect("documents");
    assert_eq!(docs.len(), 5);

    assert!(docs[0]["data"]["Address"].is_string());
    assert_eq!(docs[0]["verifications"]["status"], 0);
    assert_eq!(docs[0]["biometrics"]["match_faces"]["comment"], "Success");

    assert_eq!(docs[1]["key"], "SELFIE1");
    assert_eq!(docs[1]["biometrics"]["liveness"]["comment"], "Success");
    assert_eq!(docs[1]["biometrics"]["match_faces"]["comment"], "Success");

    assert_eq!(docs[2]["key"], "VNG");
    assert_eq!(docs[2]["data"]["ExpiryDate"], Value::Null);
    assert!(docs[2]["data"]["Citizenship"].is_string());
    assert_eq!(docs[2]["broken"], false);

    assert!(docs[3]["data"]["DebtorLastName"].is_string());
    assert!(
        docs[3]["data"]["TotalAmount"]
            .as_str()
            .expect("sum")
            .contains(',')
    );
    assert_eq!(docs[3]["broken"], Value::Null);

    assert_eq!(docs[4]["type"], "DRIVER_LICENSE_XYZ");
    assert_eq!(docs[4]["data"], json!({}));
}

#[tokio::test]
async fn a_lone_face_match_is_broken() {
    let api = start(config()).await;
    let passport = file("lonely passport");
    let process_info = json!([{ "type": "PASSPORT", "options": { "stages": ["biometry_match"] } }]);
    let id = api.accepted(&body(&[&passport], Some(process_info))).await;
    let document = &api.ready(&id).await["documents"][0];
    assert_eq!(document["broken"], true);
    assert_eq!(document["broken_reasons"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_401_on_both_endpoints() {
    let api = start(config()).await;
    let scan = file("credentials");
    let mut wrong_token = body(&[&scan], None);
    wrong_token["token"] = json!("nope");
    let mut wrong_machine = body(&[&scan], None);
    wrong_machine["machine_uid"] = json!("other");
    let mut no_token = body(&[&scan], None);
    no_token.as_object_mut().expect("object").remove("token");
    for request in [wrong_token, wrong_machine, no_token] {
        let (status, answer) = api.submit(&request).await;
        assert_eq!(status, 401, "{answer}");
        assert!(!message(&answer).is_empty());
    }

    let id = api.accepted(&body(&[&scan], None)).await;
    let get = reqwest::Method::GET;
    for path in [
        format!("/api/document/result/{id}?token=nope"),
        format!("/api/document/result/{id}"),
        format!("/api/bescan/result/{id}?other={TOKEN}"),
    ] {
        let (status, text) = api.result_at(get.clone(), &path).await;
        assert_eq!(status, 401, "{path}: {text}");
        assert!(!text.contains(TOKEN));
    }
}

#[tokio::test]
async fn malformed_submits_are_400() {
    let api = start(config()).await;
    let scan = file("malformed");
    let (status, answer) = api.submit_raw(b"{not json".to_vec()).await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = api.submit_raw(b"[1, 2, 3]".to_vec()).await;
    assert_eq!(status, 400);

    let mut bad_base64 = body(&[&scan], None);
    bad_base64["images"] = json!(["not base64 at all!"]);
    let mut no_project = body(&[&scan], None);
    no_project
        .as_object_mut()
        .expect("object")
        .remove("project_id");
    let mut empty_project = body(&[&scan], None);
    empty_project["project_id"] = json!("");
    let mismatch = body(&[&scan], Some(info(&[("PASSPORT", None), ("SNILS", None)])));
    let no_type = body(&[&scan], Some(json!([{ "key": "A" }])));
    let not_objects = body(&[&scan], Some(json!(["PASSPORT"])));
    let eleven: Vec<Vec<u8>> = (0..11).map(|i| file(&format!("page {i}"))).collect();
    let eleven_refs: Vec<&[u8]> = eleven.iter().map(Vec::as_slice).collect();
    let too_many = body(&eleven_refs, None);
    let empty = body(&[], None);
    let mut not_strings = body(&[&scan], None);
    not_strings["images"] = json!([42]);
    for (name, request) in [
        ("bad base64", bad_base64),
        ("no project", no_project),
        ("empty project", empty_project),
        ("length mismatch", mismatch),
        ("entry without type", no_type),
        ("entries not objects", not_objects),
        ("eleven images", too_many),
        ("no images", empty),
        ("images not strings", not_strings),
    ] {
        let (status, answer) = api.submit(&request).await;
        assert_eq!(status, 400, "{name}: {answer}");
        assert!(!message(&answer).is_empty());
    }

    // campaign_id (the OTPR seed's name) stands in for project_id.
    let mut campaign = body(&[&scan], Some(info(&[("OTPR", Some("OTPR"))])));
    let object = campaign.as_object_mut().expect("object");
    object.remove("project_id");
    object.insert("campaign_id".into(), json!("U_RATE_3"));
    api.accepted(&campaign).await;
}

#[tokio::test]
async fn hostile_inputs_get_a_status_and_the_server_stays_up() {
    let api = start(config()).await;
    let deep = "[".repeat(100_000);
    let bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"null".to_vec(),
        deep.into_bytes(),
        br#"{"token": 1e999999}"#.to_vec(),
        br#"{"images": 123456789012345678901234567890123456789}"#.to_vec(),
        format!(r#"{{"token":"{TOKEN}","machine_uid":"{MACHINE}","project_id":"P","images":["QQ=="],"process_info":{{"a":1}}}}"#)
            .into_bytes(),
        format!(r#"{{"token":"{TOKEN}","machine_uid":"{MACHINE}","project_id":["P"],"images":"QQ=="}}"#)
            .into_bytes(),
        vec![0xff, 0xfe, 0x00, 0x7b],
    ];
    for raw in bodies {
        let (status, text) = api.submit_raw(raw).await;
        assert!(matches!(status, 400 | 401), "{status}: {text}");
    }
    let (status, _) = api
        .result_at(
            reqwest::Method::GET,
            "/api/document/result/%FF%FE?token=%ZZ",
        )
        .await;
    assert!(matches!(status, 400 | 401 | 404), "{status}");
    let (status, _) = api.result_at(reqwest::Method::GET, "/nowhere").await;
    assert_eq!(status, 404);
    api.accepted(&body(&[&file("still alive")], None)).await;
}

#[tokio::test]
async fn too_large_is_413_decoded_and_raw() {
    let api = start(EmulatorConfig {
        max_total_bytes: 1000,
        ..config()
    })
    .await;
    let big = vec![7u8; 1001];
    let (status, answer) = api.submit(&body(&[&big], None)).await;
    assert_eq!(status, 413, "{answer}");
    // Two files under the limit each, over it together.
    let halves = [vec![1u8; 600], vec![2u8; 600]];
    let (status, _) = api.submit(&body(&[&halves[0], &halves[1]], None)).await;
    assert_eq!(status, 413);
    // Over 1000 * 4/3 + 64 KiB raw is refused before parsing.
    let (status, text) = api.submit_raw(vec![b'a'; 200_000]).await;
    assert_eq!(status, 413, "{text}");
    // Exactly at the limit is fine.
    api.accepted(&body(&[&vec![3u8; 1000]], None)).await;
}

#[tokio::test]
async fn no_money_is_402_after_validation() {
    let api = start(config()).await;
    let scan = file("no money");
    api.emulator.set_no_money(true);
    let (status, answer) = api.submit(&body(&[&scan], None)).await;
    assert_eq!(status, 402, "{answer}");
    let (status, _) = api.submit_raw(b"{}".to_vec()).await;
    assert_eq!(status, 401, "credentials are checked before money");
    api.emulator.set_no_money(false);
    api.accepted(&body(&[&scan], None)).await;
    assert_eq!(api.emulator.accepted_images(), 1);
}

#[tokio::test]
async fn repeated_content_is_409_without_an_id_by_default() {
    let api = start(config()).await;
    let (first, second) = (file("dup one"), file("dup two"));
    api.accepted(&body(&[&first], None)).await;
    let (status, answer) = api.submit(&body(&[&first], None)).await;
    assert_eq!(status, 409, "{answer}");
    assert!(message(&answer).contains("already exists"));
    assert!(answer.get("document_id").is_none());
    // One known file in a set is enough.
    let (status, _) = api.submit(&body(&[&second, &first], None)).await;
    assert_eq!(status, 409);
    assert_eq!(api.emulator.accepted_images(), 1);
}

/// Issue 8, finding 7: the same picture asked for as another document type is a new request
/// (a misfiled scan re-dropped into the right inbox), not a duplicate.
#[tokio::test]
async fn the_same_content_asked_as_another_type_is_a_new_document() {
    let api = start(config()).await;
    let scan = file("misfiled");
    let passport = api
        .accepted(&body(&[&scan], Some(info(&[("PASSPORT", None)]))))
        .await;
    let snils = api
        .accepted(&body(&[&scan], Some(info(&[("SNILS", None)]))))
        .await;
    assert_ne!(passport, snils);
    let (status, _) = api
        .submit(&body(&[&scan], Some(info(&[("SNILS", None)]))))
        .await;
    assert_eq!(status, 409, "asked the same way again: a duplicate");
}

#[tokio::test]
async fn repeated_content_409_names_the_earlier_document_when_configured() {
    let api = start(EmulatorConfig {
        duplicate_reports_id: true,
        ..config()
    })
    .await;
    let scan = file("dup with id");
    let id = api.accepted(&body(&[&scan], None)).await;
    let (status, answer) = api.submit(&body(&[&scan], None)).await;
    assert_eq!(status, 409);
    assert_eq!(answer["document_id"], id.as_str());
}

#[tokio::test]
async fn unknown_ids_are_404_and_the_alias_and_post_work() {
    let api = start(config()).await;
    let (status, text) = api.result("s-1").await;
    assert_eq!(status, 404, "{text}");
    let id = api.accepted(&body(&[&file("alias")], None)).await;
    let expected = api.ready(&id).await;
    for (method, path) in [
        (
            reqwest::Method::GET,
            format!("/api/bescan/result/{id}?token={TOKEN}"),
        ),
        (
            reqwest::Method::POST,
            format!("/api/document/result/{id}?token={TOKEN}"),
        ),
    ] {
        let (status, text) = api.result_at(method, &path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).expect("json"),
            expected
        );
    }
}

#[tokio::test]
async fn fail_next_answers_the_forced_status_then_recovers() {
    let api = start(config()).await;
    let scan = file("flaky");
    api.emulator.fail_next(Endpoint::Submit, 500, 1);
    let (status, answer) = api.submit(&body(&[&scan], None)).await;
    assert_eq!(status, 500);
    assert!(!message(&answer).is_empty());
    let id = api.accepted(&body(&[&scan], None)).await;

    api.emulator.fail_next(Endpoint::Result, 503, 2);
    assert_eq!(api.result(&id).await.0, 503);
    assert_eq!(api.result(&id).await.0, 503);
    api.ready(&id).await;

    let records = api.emulator.requests();
    assert_eq!(records[0].status, 500);
    assert_eq!(records[0].image_sha256, vec![sha256_hex(&scan)]);
    assert_eq!(records[1].status, 200);
    assert_eq!(records[2].status, 503);
    assert_eq!(records[2].document_id.as_deref(), Some(id.as_str()));
}

/// A share of requests answered with a server error, from a seeded generator: the same seed
/// gives the same faults, a faulted submit admits nothing, and the rest are answered as usual.
#[tokio::test]
async fn a_server_error_rate_answers_that_share_of_requests_5xx_repeatably() {
    let run = || async {
        let api = start(EmulatorConfig {
            server_error_rate: 0.3,
            server_error_seed: 7,
            ..config()
        })
        .await;
        let mut statuses = Vec::new();
        for n in 0..60 {
            let (status, _) = api
                .submit(&body(&[&file(&format!("scan {n}"))], None))
                .await;
            statuses.push(status);
        }
        let accepted = statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(api.emulator.accepted_images(), accepted);
        statuses
    };
    let first = run().await;
    assert_eq!(first, run().await, "the same seed gives the same faults");
    let faulted = first.iter().filter(|s| **s >= 500).count();
    assert!((6..=30).contains(&faulted), "{faulted} of 60 faulted");
    assert!(
        first.iter().all(|s| [200, 500, 503].contains(s)),
        "{first:?}"
    );
}

#[tokio::test]
async fn a_delayed_submit_times_out_at_the_client_but_is_accepted() {
    let api = start(config()).await;
    let scan = file("slow");
    api.emulator
        .delay_next(Endpoint::Submit, Duration::from_millis(800), 1);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .expect("client");
    let outcome = impatient
        .post(api.url("/api/bescan/add_document"))
        .header("Content-Type", "application/json")
        .body(body(&[&scan], None).to_string())
        .send()
        .await;
    assert!(outcome.is_err_and(|err| err.is_timeout()));
    // The server handled it on arrival: the log shows the 200 the client never saw.
    wait_until(|| api.emulator.requests().len() == 1).await;
    assert_eq!(api.emulator.requests()[0].status, 200);
    // The retry finds the document already there.
    let (status, _) = api.submit(&body(&[&scan], None)).await;
    assert_eq!(status, 409);
}

/// A client that dies while its submit is being admitted (a daemon killed mid-request) has
/// still paid for a document: the request log, which the tests count payments by, shows it.
#[tokio::test]
async fn a_submit_whose_client_goes_away_while_it_is_admitted_is_still_in_the_request_log() {
    use tokio::io::AsyncWriteExt;
    let api = start(config()).await;
    // Many large images: admitting them (decoding, hashing) takes a while in a debug build,
    // long after the client has gone.
    let scans: Vec<Vec<u8>> = (0..10)
        .map(|n| {
            let mut scan = file(&format!("gone {n}"));
            scan.resize(1_500_000, b'x');
            scan
        })
        .collect();
    let images: Vec<&[u8]> = scans.iter().map(Vec::as_slice).collect();
    let payload = body(&images, None).to_string();
    let addr = api
        .emulator
        .base_url()
        .trim_start_matches("http://")
        .to_owned();
    let request = format!(
        "POST /api/bescan/add_document HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    let mut client = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    client
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    // The body is read within moments over loopback; admitting it takes longer. Not a wait:
    // the moment the client leaves is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        api.emulator.accepted_images(),
        0,
        "precondition: the client must leave before the admission ends (make the images larger)"
    );
    drop(client);
    wait_until(|| api.emulator.accepted_images() == scans.len()).await;
    wait_until(|| {
        api.emulator
            .requests()
            .iter()
            .any(|r| r.endpoint == Endpoint::Submit && r.status == 200)
    })
    .await;
}

#[tokio::test]
async fn broken_marker_marks_that_document_broken() {
    let api = start(config()).await;
    let (bad, good) = (file("BEORG-EMU:broken"), file("fine"));
    let id = api
        .accepted(&body(
            &[&bad, &good],
            Some(info(&[("PASSPORT", Some("P1")), ("SNILS", None)])),
        ))
        .await;
    let result = api.ready(&id).await;
    let broken = &result["documents"][0];
    assert_eq!(broken["broken"], true);
    assert_eq!(
        broken["broken_reasons"],
        json!(["Document is not readable"])
    );
    assert_eq!(broken["broken_reasons_ru"], json!(["Документ не читается"]));
    assert_eq!(result["documents"][1]["broken"], false);
}

#[tokio::test]
async fn invalid_json_marker_gives_an_unparsable_200() {
    let api = start(config()).await;
    let scan = file("court ruling BEORG-EMU:invalid-json");
    let id = api
        .accepted(&body(&[&scan], Some(info(&[("OTPR", None)]))))
        .await;
    let (status, text) = api.wait_result(&id).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    assert!(text.contains("\"metadata\": { ... }"), "{text}");
}

#[tokio::test]
async fn lost_and_never_markers_give_404_and_endless_425() {
    let api = start(config()).await;
    let lost = api.accepted(&body(&[&file("BEORG-EMU:lost")], None)).await;
    let never = api.accepted(&body(&[&file("BEORG-EMU:never")], None)).await;
    let normal = api.accepted(&body(&[&file("normal")], None)).await;
    // Once an ordinary passport is done, the other two are past their processing time too.
    api.ready(&normal).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(api.result(&lost).await.0, 404);
    assert_eq!(api.result(&never).await.0, 425);
}

#[tokio::test]
async fn the_request_log_keeps_arrival_order_and_statuses_and_no_token() {
    let api = start(config()).await;
    let scan = file("logged");
    let id = api
        .accepted(&body(&[&scan], Some(info(&[("SNILS", None)]))))
        .await;
    api.ready(&id).await;
    let wrong_token = format!("/api/document/result/{id}?token=wrong");
    api.result_at(reqwest::Method::GET, &wrong_token).await;
    api.result("s-0").await;
    api.submit(&body(&[&scan], Some(info(&[("SNILS", None)]))))
        .await;

    let records = api.emulator.requests();
    let first = &records[0];
    assert_eq!(first.endpoint, Endpoint::Submit);
    assert_eq!(first.status, 200);
    assert_eq!(first.document_id.as_deref(), Some(id.as_str()));
    assert_eq!(first.image_sha256, vec![sha256_hex(&scan)]);
    assert_eq!(first.types, vec!["SNILS".to_owned()]);
    let tail: Vec<(Endpoint, u16)> = records[records.len() - 3..]
        .iter()
        .map(|r| (r.endpoint, r.status))
        .collect();
    assert_eq!(
        tail,
        vec![
            (Endpoint::Result, 401),
            (Endpoint::Result, 404),
            (Endpoint::Submit, 409)
        ]
    );
    assert!(
        records[1..records.len() - 1]
            .iter()
            .all(|r| r.endpoint == Endpoint::Result)
    );
    assert!(records.windows(2).all(|pair| pair[0].at <= pair[1].at));
    let dump = format!("{records:?}");
    assert!(!dump.contains(TOKEN));
    assert!(!dump.contains("token="));
    assert!(!format!("{:?}", config()).contains(TOKEN));
}

#[tokio::test]
async fn shutdown_refuses_new_and_pooled_connections() {
    let api = start(config()).await;
    let id = api.accepted(&body(&[&file("before shutdown")], None)).await;
    let addr = api.emulator.addr();
    api.emulator.shutdown();
    assert!(std::net::TcpStream::connect(addr).is_err());
    // The pooled keep-alive connection is cut too.
    let pooled = api
        .client
        .get(api.url(&format!("/api/document/result/{id}?token={TOKEN}")))
        .send()
        .await;
    assert!(pooled.is_err());
    api.emulator.shutdown();
}

/// Issue 10: the request log says which project field arrived with which value, and whether
/// `process_info` was there at all (absent for "Passport Auto").
#[tokio::test]
async fn the_request_log_names_the_project_field_and_whether_process_info_came() {
    let api = start(config()).await;
    let (universal, auto) = (file("project universal"), file("project auto"));
    api.accepted(&body(&[&universal], Some(info(&[("OTPR", None)]))))
        .await;
    let mut campaign = body(&[&auto], None);
    let object = campaign.as_object_mut().expect("object");
    object.remove("project_id");
    object.insert("campaign_id".into(), json!("U_RATE_3"));
    api.accepted(&campaign).await;
    // A refused body is described too.
    let (status, _) = api
        .submit(&body(
            &[&universal],
            Some(info(&[("OTPR", None), ("OTPR", None)])),
        ))
        .await;
    assert_eq!(status, 400, "process_info and images differ in length");

    let records = api.emulator.requests();
    let seen: Vec<(Option<(String, String)>, bool)> = records
        .iter()
        .map(|r| (r.project.clone(), r.process_info))
        .collect();
    let project = |field: &str, value: &str| Some((field.to_owned(), value.to_owned()));
    assert_eq!(
        seen,
        vec![
            (project("project_id", "U_RATE_2"), true),
            (project("campaign_id", "U_RATE_3"), false),
            (project("project_id", "U_RATE_2"), true),
        ]
    );
    assert!(!format!("{records:?}").contains(TOKEN));
}

/// Issue 10: a document belongs to its project: the same picture sent to another project is
/// a new document there; sent to the same project again (under either field name), a 409.
#[tokio::test]
async fn the_same_content_in_another_project_is_a_new_document() {
    let api = start(config()).await;
    let scan = file("two projects");
    let in_project = |project: &str, field: &str| {
        let mut request = body(&[&scan], Some(info(&[("PASSPORT", None)])));
        let object = request.as_object_mut().expect("object");
        object.remove("project_id");
        object.insert(field.into(), json!(project));
        request
    };
    let first = api.accepted(&in_project("U_RATE_2", "project_id")).await;
    let second = api.accepted(&in_project("U_RATE_3", "project_id")).await;
    assert_ne!(first, second);
    let (status, _) = api.submit(&in_project("U_RATE_3", "campaign_id")).await;
    assert_eq!(
        status, 409,
        "the same project under its other name: a duplicate"
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 11: results a person must check

/// A passport + selfie request as the KYC seed sends it: the passport's face matched against
/// the selfie, the selfie checked for liveness.
fn kyc_info() -> Value {
    json!([
        { "key": "PASSPORT1", "type": "PASSPORT",
          "options": { "stages": ["biometry_match"], "relation": { "biometry_match": "SELFIE1" } } },
        { "key": "SELFIE1", "type": "SELFIE", "options": { "stages": ["biometry_liveness"] } },
    ])
}

#[tokio::test]
async fn the_verification_marker_answers_each_status_with_the_seeds_text() {
    let api = start(config()).await;
    let expected = [
        (1, "одно или несколько обязательных полей"),
        (2, "МЧЗ не согласуется"),
        (3, "серия паспорта не согласуется"),
        (4, "место выдачи не согласуется"),
        (5, "выдан до 14-ти лет"),
        (6, "до 1 октября 1997 года"),
        (7, "паспорт просрочен"),
    ];
    for (code, text) in expected {
        let scan = file(&format!("passport BEORG-EMU:verification={code}"));
        let id = api
            .accepted(&body(&[&scan], Some(info(&[("PASSPORT", None)]))))
            .await;
        let result = api.ready(&id).await;
        let document = &result["documents"][0];
        let verification = &document["verifications"];
        assert_eq!(verification["status"], code, "{verification}");
        assert!(
            verification["status_text"].as_str().unwrap().contains(text),
            "{verification}"
        );
        assert!(!verification["bad_fields"].as_array().unwrap().is_empty());
        assert_eq!(
            document["broken"], false,
            "a status is not a broken document"
        );
    }
    // The flat "Passport Auto" body carries it too.
    let auto = file("auto passport BEORG-EMU:verification=7");
    let id = api.accepted(&body(&[&auto], None)).await;
    assert_eq!(api.ready(&id).await["verifications"]["status"], 7);
}

#[tokio::test]
async fn not_live_and_other_face_markers_fail_checks_that_ran() {
    let api = start(config()).await;
    let (passport, selfie) = (file("kyc passport"), file("kyc selfie BEORG-EMU:not-live"));
    let id = api
        .accepted(&body(&[&passport, &selfie], Some(kyc_info())))
        .await;
    let result = api.ready(&id).await;
    let selfie_bio = &result["documents"][1]["biometrics"];
    assert_eq!(selfie_bio["liveness"]["liveness"], 0, "{selfie_bio}");
    assert_eq!(
        selfie_bio["liveness"]["comment"], "Success",
        "the check ran"
    );
    assert!(selfie_bio["liveness"]["probability"].as_f64().unwrap() < 0.5);
    assert_eq!(
        result["documents"][0]["biometrics"]["match_faces"]["match_faces"],
        1
    );
    assert_eq!(result["documents"][1]["broken"], false);

    let (passport, selfie) = (
        file("kyc passport 2 BEORG-EMU:other-face"),
        file("kyc selfie 2"),
    );
    let id = api
        .accepted(&body(&[&passport, &selfie], Some(kyc_info())))
        .await;
    let result = api.ready(&id).await;
    for document in result["documents"].as_array().unwrap() {
        let faces = &document["biometrics"]["match_faces"];
        assert_eq!(faces["match_faces"], 0, "{document}");
        assert_eq!(faces["error_code"], 0, "the check ran");
        assert_eq!(faces["comment"], "Success");
        assert!(faces["similarity"].as_f64().unwrap() < 0.5);
        assert_eq!(document["broken"], false);
    }
    assert_eq!(
        result["documents"][1]["biometrics"]["liveness"]["liveness"],
        1
    );
}

#[tokio::test]
async fn the_low_confidence_marker_lowers_one_confidence_keeping_its_form() {
    let api = start(config()).await;
    let passport = file("passport BEORG-EMU:low-confidence");
    let snils = file("snils BEORG-EMU:low-confidence");
    let id = api
        .accepted(&body(
            &[&passport, &snils],
            Some(info(&[("PASSPORT", None), ("SNILS", None)])),
        ))
        .await;
    let result = api.ready(&id).await;
    let passport = &result["documents"][0]["metadata"]["confidences"];
    assert_eq!(
        passport["LastName"], "0.4200",
        "strings stay strings: {passport}"
    );
    let snils = &result["documents"][1]["metadata"]["confidences"];
    assert_eq!(
        snils["Lastname"], 0.42,
        "the SNILS casing, a number: {snils}"
    );
    let low = |c: &Value| {
        c.as_object()
            .unwrap()
            .values()
            .filter(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()) < Some(0.5))
            .count()
    };
    assert_eq!((low(passport), low(snils)), (1, 1));
}

/// Issue 10: a passport matched against its selfie by `relation`: the passport gets
/// `match_faces` (similarity, "Success"), the selfie `liveness`, neither is broken; the
/// request log keeps `process_info` exactly as sent.
#[tokio::test]
async fn a_passport_and_selfie_set_gets_match_and_liveness() {
    let api = start(config()).await;
    let (passport, selfie) = (file("kyc passport"), file("kyc selfie"));
    let process_info = json!([
        {"type": "PASSPORT", "key": "PASSPORT1", "options": {"stages": ["biometry_match"], "relation": {"biometry_match": "SELFIE1"}}},
        {"type": "SELFIE", "key": "SELFIE1", "options": {"stages": ["biometry_liveness"]}}
    ]);
    let id = api
        .accepted(&body(&[&passport, &selfie], Some(process_info.clone())))
        .await;
    let result = api.ready(&id).await;
    let documents = result["documents"].as_array().expect("documents");
    assert_eq!(documents.len(), 2);
    let matched = &documents[0]["biometrics"]["match_faces"];
    assert_eq!(matched["match_faces"], 1, "{result}");
    assert!(matched["similarity"].is_number(), "{result}");
    assert_eq!(matched["comment"], "Success", "{result}");
    assert!(documents[1]["biometrics"]["liveness"]["probability"].is_number());
    assert_eq!(documents[0]["broken"], false, "{result}");
    assert_eq!(documents[1]["broken"], false, "{result}");
    let logged = api.emulator.requests();
    assert_eq!(logged[0].process_info_sent.as_ref(), Some(&process_info));
}

/// Issue 10: a relation naming a key no image of the set has is a match without its selfie:
/// that document is broken.
#[tokio::test]
async fn a_relation_to_a_missing_key_makes_that_document_broken() {
    let api = start(config()).await;
    let (a, b) = (file("passport one"), file("passport two"));
    let process_info = json!([
        {"type": "PASSPORT", "key": "PASSPORT1", "options": {"stages": ["biometry_match"], "relation": {"biometry_match": "SELFIE1"}}},
        {"type": "PASSPORT", "key": "PASSPORT2"}
    ]);
    let id = api.accepted(&body(&[&a, &b], Some(process_info))).await;
    let result = api.ready(&id).await;
    assert_eq!(result["documents"][0]["broken"], true, "{result}");
    assert_eq!(result["documents"][1]["broken"], false, "{result}");
}

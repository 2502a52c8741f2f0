//! Issue 21: the review station. The real daemon serves it with a `[review_station]` section;
//! items reach review/ through the real pipeline (the emulator's markers); the tests speak
//! HTTP to it with reqwest, as a browser would (a cookie, forms), and look at the files, the
//! sidecars, the journal's history, the deliveries, the audit log and the metrics.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use crate::helpers::*;
use beorg_hotfolder::sidecar::Status;

pub const PASSWORD: &str = "correct horse battery";

/// A daemon with one PASSPORT inbox (min_confidence 0.9, a review folder, a ledger) and the
/// review station on a free port, with the reviewers `anna` and `boris`.
pub struct Station {
    pub env: TestEnv,
    pub review: PathBuf,
    pub users: PathBuf,
    pub audit: PathBuf,
    pub ledger: PathBuf,
    pub base: String,
    pub metrics_port: u16,
}

impl Station {
    pub async fn new() -> Station {
        Station::with_extra("").await
    }

    /// `extra`: more lines for `[review_station]`.
    pub async fn with_extra(extra: &str) -> Station {
        let mut env = TestEnv::new(&["PASSPORT"]).await;
        let review = env.review_folder(0, true);
        let ledger = env.dir.path().join("ledger.jsonl");
        env.inboxes[0].extra.push_str(&format!(
            "min_confidence = 0.9\nledger = \"{}\"\ndelivery_retry = [\"0s\", \"100ms\"]\n",
            ledger.display()
        ));
        let users = env.dir.path().join("reviewers");
        let hash = beorg_hotfolder::review_station::auth::hash_password(PASSWORD).unwrap();
        let other = beorg_hotfolder::review_station::auth::hash_password(PASSWORD).unwrap();
        beorg_hotfolder::review_station::auth::write_users(
            &users,
            &[("anna".into(), hash), ("boris".into(), other)],
        )
        .unwrap();
        let audit = env.dir.path().join("audit").join("review-audit.jsonl");
        std::fs::create_dir_all(audit.parent().unwrap()).unwrap();
        let port = free_port();
        let metrics_port = free_port();
        env.extra_tables = format!(
            "\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n[review_station]\nlisten = \"127.0.0.1:{port}\"\nusers_file = \"{}\"\naudit_log = \"{}\"\n{extra}\n",
            users.display(),
            audit.display()
        );
        Station {
            env,
            review,
            users,
            audit,
            ledger,
            base: format!("http://127.0.0.1:{port}"),
            metrics_port,
        }
    }

    /// Drops a scan the emulator answers with an expired passport (verification 7) and a
    /// field below min_confidence, and waits for it in review/.
    pub async fn scan_to_review(&self, name: &str, seed: u64) {
        self.env.drop_scan(
            0,
            name,
            seed,
            Some("BEORG-EMU:verification=7 BEORG-EMU:low-confidence"),
        );
        let sidecar = sidecar_in(&self.review, name).await;
        assert_eq!(sidecar.status, Status::Review);
    }

    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A browser without JavaScript: one cookie, forms, no redirects followed.
pub struct Browser {
    pub base: String,
    client: reqwest::Client,
    pub cookie: Option<String>,
    pub lang: &'static str,
}

/// An answer: status, headers, body.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first `name="csrf"` hidden field.
    pub fn csrf(&self) -> String {
        attribute_after(&self.body, "name=\"csrf\" value=\"").expect("a csrf field")
    }

    /// Every `/items/<id>` link, in order.
    pub fn item_links(&self) -> Vec<String> {
        self.body
            .split("href=\"/items/")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(|id| format!("/items/{id}"))
            .collect()
    }
}

fn attribute_after(body: &str, prefix: &str) -> Option<String> {
    let start = body.find(prefix)? + prefix.len();
    Some(body[start..].split('"').next()?.to_string())
}

/// `application/x-www-form-urlencoded`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            base: base.to_string(),
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
            lang: "ru",
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Page {
        let mut request = request.header(header::ACCEPT_LANGUAGE, self.lang);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Page {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form(pairs)),
        )
        .await
    }

    /// Waits for the station to answer, then logs in as `user`.
    pub async fn log_in(&mut self, user: &str) -> Page {
        let base = self.base.clone();
        wait_for_async(
            "the review station answers",
            std::time::Duration::from_millis(20),
            || {
                let url = format!("{base}/login");
                let client = self.client.clone();
                async move { client.get(url).send().await.ok().map(|_| ()) }
            },
        )
        .await;
        let page = self
            .post("/login", &[("user", user), ("password", PASSWORD)])
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let set = page.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_string();
        self.cookie = Some(set.split(';').next().unwrap().to_string());
        page
    }

    /// The queue's item links.
    pub async fn items(&self) -> Vec<String> {
        let page = self.get("/").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        page.item_links()
    }
}

fn sidecar_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(layout::sidecar_path(path)).unwrap()).unwrap()
}

#[tokio::test]
async fn a_reviewer_approves_with_a_correction_and_the_file_moves_to_done_with_the_reviewed_block()
{
    let s = Station::new().await;
    let daemon = s.env.start();
    s.scan_to_review("expired.png", 2101).await;
    let before = sidecar_json(&s.review.join("expired.png"));
    let mut anna = Browser::new(&s.base);
    let login = anna.log_in("anna").await;
    assert_eq!(login.location(), "/");
    let cookie = login.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && !cookie.contains("Secure"),
        "{cookie}"
    );
    let items = anna.items().await;
    assert_eq!(items.len(), 1);
    let page = anna.get(&items[0]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("expired.png"));
    // The reason, the field below min_confidence marked, the scan as an image.
    assert!(page.body.contains("verification status 7"), "{}", page.body);
    assert!(page.body.contains("class=\"low\""), "{}", page.body);
    assert!(page.body.contains(&format!("src=\"{}/files/0\"", items[0])));
    let image = anna.get(&format!("{}/files/0", items[0])).await;
    assert_eq!(image.status, StatusCode::OK);
    assert_eq!(image.headers[header::CONTENT_TYPE], "image/png");
    assert!(image.body.len() > 100);

    let old_last_name = before["documents"][0]["fields"]["LastName"].clone();
    assert!(old_last_name.is_string(), "{before}");
    let csrf = page.csrf();
    let answer = anna
        .post(
            &format!("{}/approve", items[0]),
            &[("csrf", &csrf), ("field.LastName", "Петрова")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.location(), "/", "the queue is empty: back to it");

    let done = &s.env.inboxes[0].done;
    assert!(done.join("expired.png").exists() && !s.review.join("expired.png").exists());
    assert!(!layout::sidecar_path(&s.review.join("expired.png")).exists());
    let after = sidecar_json(&done.join("expired.png"));
    assert_eq!(after["status"], "done");
    assert_eq!(after["sidecar_version"], 4);
    let reviewed = &after["reviewed"];
    assert_eq!(reviewed["decision"], "approved");
    assert_eq!(reviewed["by"], "anna");
    assert!(reviewed["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        reviewed["corrections"],
        serde_json::json!({"LastName": {"from": old_last_name, "to": "Петрова"}})
    );
    assert_eq!(after["documents"][0]["fields"]["LastName"], "Петрова");
    assert_eq!(
        after["result"], before["result"],
        "the API's answer stays as received"
    );
    assert_eq!(after["review"], before["review"], "the reasons stay");
    // The typed reader of the format reads it too.
    let typed = read_sidecar(&layout::sidecar_path(&done.join("expired.png")));
    assert_eq!(typed.reviewed.unwrap().by, "anna");

    // Delivered as `file.reviewed`, after the `file.review` of the finish.
    wait_until("the file.reviewed ledger line", || {
        std::fs::read_to_string(&s.ledger).is_ok_and(|t| t.contains("\"file.reviewed\""))
    })
    .await;
    let ledger = std::fs::read_to_string(&s.ledger).unwrap();
    let types: Vec<String> = ledger
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types, ["file.review", "file.reviewed"]);
    let line: serde_json::Value = serde_json::from_str(ledger.lines().last().unwrap()).unwrap();
    assert_eq!(line["data"]["reviewed"]["by"], "anna");
    assert_eq!(
        line["data"]["original_path"],
        done.join("expired.png").to_str().unwrap()
    );

    // The audit log: login, view, approve; no field value, no password.
    let audit = s.audit_lines();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|l| (l["action"].as_str().unwrap(), l["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [("login", "ok"), ("view", "ok"), ("approve", "ok")]
    );
    assert_eq!(audit[2]["item"], "expired.png");
    assert_eq!(audit[2]["user"], "anna");
    for line in &audit {
        let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["at", "user", "action", "item", "inbox", "result"]);
    }
    let audit_text = std::fs::read_to_string(&s.audit).unwrap();
    assert!(!audit_text.contains("Петрова") && !audit_text.contains(PASSWORD));
    assert!(!audit_text.contains(old_last_name.as_str().unwrap()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&s.audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o037, 0, "audit log mode {mode:o}");

    // The decision counted; `explain` tells it.
    let samples = scrape_metrics(s.metrics_port).await;
    assert_eq!(
        metric_value(
            &samples,
            "beorg_review_decisions_total",
            &[("decision", "approved")]
        ),
        Some(1.0)
    );
    let config = s.env.write_config();
    let (code, text) = run_bin(&["explain", "expired.png"], &config, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("approved by anna at the review station"),
        "{text}"
    );
    assert!(text.contains("corrected LastName"), "{text}");
    daemon.stop().await;
}

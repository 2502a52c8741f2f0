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

    /// The `/items/<id>` link of the item named `name` in the queue.
    pub fn item_named(&self, name: &str) -> String {
        self.body
            .split("href=\"/items/")
            .skip(1)
            .find_map(|s| {
                let (id, rest) = s.split_once("\">")?;
                rest.starts_with(&format!("{name}<"))
                    .then(|| format!("/items/{id}"))
            })
            .unwrap_or_else(|| panic!("no item {name} in {}", self.body))
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

#[tokio::test]
async fn a_rejection_moves_the_file_to_failed_with_the_reason_as_a_rejected_error() {
    let s = Station::new().await;
    let daemon = s.env.start();
    s.scan_to_review("blurry.png", 2102).await;
    let mut boris = Browser::new(&s.base);
    boris.log_in("boris").await;
    let item = boris.items().await.remove(0);
    let csrf = boris.get(&item).await.csrf();
    // No reason: refused, nothing moves.
    let empty = boris
        .post(
            &format!("{item}/reject"),
            &[("csrf", &csrf), ("reason", " ")],
        )
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert!(s.review.join("blurry.png").exists());
    let answer = boris
        .post(
            &format!("{item}/reject"),
            &[("csrf", &csrf), ("reason", "The photo page is cut off")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let failed = &s.env.inboxes[0].failed;
    let sidecar = sidecar_json(&failed.join("blurry.png"));
    assert_eq!(sidecar["status"], "failed");
    assert_eq!(sidecar["error"]["kind"], "rejected");
    assert_eq!(sidecar["error"]["message"], "The photo page is cut off");
    assert_eq!(sidecar["reviewed"]["decision"], "rejected");
    assert_eq!(sidecar["reviewed"]["by"], "boris");
    assert_eq!(sidecar["reviewed"]["corrections"], serde_json::json!({}));
    assert!(!s.review.join("blurry.png").exists());
    // A rejected file can be requeued like any failed one.
    let typed = read_sidecar(&layout::sidecar_path(&failed.join("blurry.png")));
    assert_eq!(typed.status, Status::Failed);
    daemon.stop().await;
}

#[tokio::test]
async fn a_wrong_password_is_401_and_five_failures_shut_the_name_out_for_a_minute() {
    let s = Station::new().await;
    let daemon = s.env.start();
    let mut browser = Browser::new(&s.base);
    // Wait for the station (a right login), then log out of it by dropping the cookie.
    browser.log_in("anna").await;
    browser.cookie = None;
    for _ in 0..5 {
        let page = browser
            .post("/login", &[("user", "boris"), ("password", "guess")])
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(page.body.contains("name=\"password\""), "the form again");
        assert!(!page.headers.contains_key(header::SET_COOKIE));
    }
    // Even the right password is refused now, without a session.
    let page = browser
        .post("/login", &[("user", "boris"), ("password", PASSWORD)])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!page.headers.contains_key(header::SET_COOKIE));
    // Another name is not shut out.
    let other = browser
        .post("/login", &[("user", "anna"), ("password", PASSWORD)])
        .await;
    assert_eq!(other.status, StatusCode::SEE_OTHER);
    let results: Vec<String> = s
        .audit_lines()
        .iter()
        .filter(|l| l["user"] == "boris")
        .map(|l| l["result"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        results,
        ["failed", "failed", "failed", "failed", "failed", "shut_out"]
    );
    daemon.stop().await;
}

#[tokio::test]
async fn twenty_failed_logins_from_one_address_shut_it_out_whatever_the_names() {
    let s = Station::new().await;
    let daemon = s.env.start();
    let mut browser = Browser::new(&s.base);
    browser.log_in("anna").await;
    browser.cookie = None;
    for n in 0..20 {
        let name = format!("guess{n}");
        let page = browser
            .post("/login", &[("user", &name), ("password", "guess")])
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{name}");
    }
    let page = browser
        .post("/login", &[("user", "anna"), ("password", PASSWORD)])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!page.headers.contains_key(header::SET_COOKIE));
    daemon.stop().await;
}

#[tokio::test]
async fn each_login_gets_a_new_session_and_logout_ends_it() {
    let s = Station::new().await;
    let daemon = s.env.start();
    let mut browser = Browser::new(&s.base);
    browser.log_in("anna").await;
    let first = browser.cookie.clone().unwrap();
    let csrf = browser.get("/").await.csrf();
    browser.log_in("anna").await;
    let second = browser.cookie.clone().unwrap();
    assert_ne!(first, second, "a new id at each login");
    // Logout needs the session's token.
    let csrf = {
        assert_ne!(
            browser.get("/").await.csrf(),
            csrf,
            "a new token with the new session"
        );
        browser.get("/").await.csrf()
    };
    let refused = browser.post("/logout", &[("csrf", "x")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let out = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login");
    let after = browser.get("/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location(), "/login");
    daemon.stop().await;
}

#[tokio::test]
async fn every_path_without_a_session_redirects_to_login_images_included() {
    let s = Station::new().await;
    let daemon = s.env.start();
    s.scan_to_review("private.png", 2103).await;
    let mut anna = Browser::new(&s.base);
    anna.log_in("anna").await;
    let item = anna.items().await.remove(0);
    let stranger = Browser::new(&s.base);
    let paths = [
        "/".to_string(),
        item.clone(),
        format!("{item}/files/0"),
        "/no/such/page".to_string(),
    ];
    for path in &paths {
        let page = stranger.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/login", "{path}");
        assert!(!page.body.contains("private.png"), "{path}");
    }
    // A forged or expired cookie is no session.
    let mut forged = Browser::new(&s.base);
    forged.cookie = Some("beorg_review=00112233445566778899aabbccddeeff".into());
    assert_eq!(forged.get(&item).await.status, StatusCode::SEE_OTHER);
    let post = stranger
        .post(&format!("{item}/approve"), &[("csrf", "x")])
        .await;
    assert_eq!(post.status, StatusCode::SEE_OTHER);
    assert!(s.review.join("private.png").exists());
    assert_eq!(stranger.get("/login").await.status, StatusCode::OK);
    daemon.stop().await;
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_403_and_nothing_moves() {
    let s = Station::new().await;
    let daemon = s.env.start();
    s.scan_to_review("csrf.png", 2104).await;
    let mut anna = Browser::new(&s.base);
    anna.log_in("anna").await;
    let item = anna.items().await.remove(0);
    let mut boris = Browser::new(&s.base);
    boris.log_in("boris").await;
    let borises_token = boris.get(&item).await.csrf();
    for pairs in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", borises_token.as_str())],
    ] {
        for action in ["approve", "reject"] {
            let mut pairs = pairs.clone();
            pairs.push(("reason", "r"));
            let page = anna.post(&format!("{item}/{action}"), &pairs).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{action} {pairs:?}");
        }
    }
    // The right token from another site's page (Origin) is refused too.
    let token = anna.get(&item).await.csrf();
    let cross = anna
        .send(
            anna.client
                .post(format!("{}{item}/approve", anna.base))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::ORIGIN, "https://evil.example")
                .body(form(&[("csrf", &token)])),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(s.review.join("csrf.png").exists());
    assert!(layout::sidecar_path(&s.review.join("csrf.png")).exists());
    assert!(files_in(&s.env.inboxes[0].done).is_empty());
    assert!(files_in(&s.env.inboxes[0].failed).is_empty());
    let forbidden = s
        .audit_lines()
        .iter()
        .filter(|l| l["result"] == "forbidden")
        .count();
    assert_eq!(forbidden, 7);
    daemon.stop().await;
}

#[tokio::test]
async fn the_second_reviewer_to_decide_gets_409_naming_who_decided_first() {
    let s = Station::new().await;
    let daemon = s.env.start();
    s.scan_to_review("twice.png", 2105).await;
    let mut anna = Browser::new(&s.base);
    anna.log_in("anna").await;
    let mut boris = Browser::new(&s.base);
    boris.log_in("boris").await;
    let item = anna.items().await.remove(0);
    let (anna_token, boris_token) = (anna.get(&item).await.csrf(), boris.get(&item).await.csrf());
    // Both at once: exactly one wins.
    let (approve, reject) = (format!("{item}/approve"), format!("{item}/reject"));
    let anna_form = [("csrf", anna_token.as_str())];
    let boris_form = [("csrf", boris_token.as_str()), ("reason", "no")];
    let (a, b) = tokio::join!(
        anna.post(&approve, &anna_form),
        boris.post(&reject, &boris_form),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::SEE_OTHER, StatusCode::CONFLICT]);
    let (winner, loser) = if a.status == StatusCode::SEE_OTHER {
        ("anna", &b)
    } else {
        ("boris", &a)
    };
    assert!(
        loser.body.contains(winner),
        "the 409 page names {winner}: {}",
        loser.body
    );
    // Exactly one place: done/ or failed/.
    let done = files_in(&s.env.inboxes[0].done);
    let failed = files_in(&s.env.inboxes[0].failed);
    assert_eq!(done.len() + failed.len(), 2, "{done:?} {failed:?}");
    // A later try by the loser answers the same.
    let again = boris
        .post(&format!("{item}/approve"), &[("csrf", &boris_token)])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains(winner));
    daemon.stop().await;
}

#[tokio::test]
async fn an_item_removed_by_hand_leaves_the_queue_and_its_page_is_404() {
    let s = Station::new().await;
    let daemon = s.env.start();
    s.scan_to_review("gone.png", 2106).await;
    let mut anna = Browser::new(&s.base);
    anna.log_in("anna").await;
    let item = anna.items().await.remove(0);
    let csrf = anna.get(&item).await.csrf();
    let aside = s.env.dir.path().join("aside.png");
    std::fs::rename(s.review.join("gone.png"), &aside).unwrap();
    assert!(anna.items().await.is_empty());
    assert_eq!(anna.get(&item).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        anna.get(&format!("{item}/files/0")).await.status,
        StatusCode::NOT_FOUND
    );
    let post = anna
        .post(&format!("{item}/approve"), &[("csrf", &csrf)])
        .await;
    assert_eq!(post.status, StatusCode::NOT_FOUND);
    assert!(files_in(&s.env.inboxes[0].done).is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn nothing_outside_the_review_folders_is_served() {
    let s = Station::new().await;
    let daemon = s.env.start();
    s.scan_to_review("real.png", 2107).await;
    // A symlink in review/ pointing elsewhere, with a sidecar that would make it an item.
    let secret = s.env.dir.path().join("secret.png");
    std::fs::write(&secret, b"not for reviewers").unwrap();
    let link = s.review.join("link.png");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let mut forged = sidecar_json(&s.review.join("real.png"));
    forged["file"] = "link.png".into();
    std::fs::write(layout::sidecar_path(&link), forged.to_string()).unwrap();
    // A set folder whose sidecar names a member outside it.
    let set = s.review.join("kyc-1");
    std::fs::create_dir(&set).unwrap();
    let mut set_sidecar = sidecar_json(&s.review.join("real.png"));
    set_sidecar["file"] = "kyc-1".into();
    set_sidecar["source"]["files"] = serde_json::json!([
        {"name": "../../secret.png", "sha256": "00", "size": 1, "type": "PASSPORT", "key": "PASSPORT1"},
        {"name": "inner-link.png", "sha256": "00", "size": 1, "type": "PASSPORT", "key": "PASSPORT2"}
    ]);
    std::os::unix::fs::symlink(&secret, set.join("inner-link.png")).unwrap();
    std::fs::write(layout::sidecar_path(&set), set_sidecar.to_string()).unwrap();

    let mut anna = Browser::new(&s.base);
    anna.log_in("anna").await;
    let queue = anna.get("/").await;
    assert!(!queue.body.contains("link.png"), "a symlink is no item");
    let items = queue.item_links();
    // The set is listed (a real folder) but neither member is served.
    assert_eq!(items.len(), 2, "{}", queue.body);
    for item in &items {
        for n in 0..2 {
            let page = anna.get(&format!("{item}/files/{n}")).await;
            assert!(!page.body.contains("not for reviewers"), "{item}/files/{n}");
        }
    }
    for path in [
        "/items/..%2F..%2Fsecret.png".to_string(),
        "/items/%2e%2e/files/0".to_string(),
        "/items/../../secret.png".to_string(),
        format!("{}/files/..%2F..%2Fsecret.png", items[0]),
        format!("{}/files/-1", items[0]),
        format!("{}/files/99", items[0]),
        "/items/00112233445566778899aabbccddeeff".to_string(),
        s.review.join("real.png").display().to_string(),
    ] {
        let page = anna.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.body.contains("not for reviewers"), "{path}");
    }
    daemon.stop().await;
}

#[tokio::test]
async fn names_are_escaped_and_every_answer_carries_the_security_headers() {
    let s = Station::new().await;
    let daemon = s.env.start();
    let name = "<img src=x onerror=alert(1)>.png";
    s.scan_to_review(name, 2108).await;
    let mut anna = Browser::new(&s.base);
    anna.log_in("anna").await;
    let queue = anna.get("/").await;
    assert!(!queue.body.contains("<img src=x"), "{}", queue.body);
    assert!(
        queue
            .body
            .contains("&lt;img src=x onerror=alert(1)&gt;.png")
    );
    let item = queue.item_links().remove(0);
    let page = anna.get(&item).await;
    assert!(!page.body.contains("<img src=x"));
    assert!(page.body.contains("&lt;img src=x onerror=alert(1)&gt;.png"));
    let login = Browser::new(&s.base).get("/login").await;
    let image = anna.get(&format!("{item}/files/0")).await;
    for (what, p) in [
        ("queue", &queue),
        ("item", &page),
        ("login", &login),
        ("image", &image),
    ] {
        let h = |name: header::HeaderName| {
            p.headers
                .get(&name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_else(|| panic!("{what}: no {name}"))
        };
        let csp = h(header::CONTENT_SECURITY_POLICY);
        assert!(csp.starts_with("default-src 'none'"), "{what}: {csp}");
        assert!(!csp.contains("unsafe"), "{what}: {csp}");
        assert_eq!(h(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{what}");
        assert_eq!(h(header::CACHE_CONTROL), "no-store", "{what}");
        assert_eq!(h(header::REFERRER_POLICY), "same-origin", "{what}");
    }
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"));
    assert!(!page.body.contains("<script"));
    daemon.stop().await;
}

#[tokio::test]
async fn pages_are_russian_by_default_and_english_when_the_browser_asks() {
    let s = Station::new().await;
    let daemon = s.env.start();
    let mut browser = Browser::new(&s.base);
    browser.log_in("anna").await;
    let ru = browser.get("/").await;
    assert!(ru.body.contains("lang=\"ru\"") && ru.body.contains("Нечего проверять"));
    browser.lang = "en-GB,en;q=0.9";
    let en = browser.get("/").await;
    assert!(en.body.contains("lang=\"en\"") && en.body.contains("Nothing to review"));
    daemon.stop().await;
}

#[tokio::test]
async fn status_and_metrics_count_the_review_queue_and_its_oldest_item() {
    let s = Station::new().await;
    let daemon = s.env.start();
    s.scan_to_review("one.png", 2109).await;
    s.scan_to_review("two.png", 2110).await;
    let inbox = s.env.inboxes[0].path.display().to_string();
    let samples = wait_for_async(
        "beorg_review_waiting 2",
        std::time::Duration::from_millis(100),
        || async {
            let samples = scrape_metrics(s.metrics_port).await;
            (metric_value(
                &samples,
                "beorg_review_waiting",
                &[("inbox", inbox.as_str())],
            ) == Some(2.0))
            .then_some(samples)
        },
    )
    .await;
    assert!(
        metric_value(
            &samples,
            "beorg_review_oldest_age_seconds",
            &[("inbox", inbox.as_str())]
        )
        .is_some()
    );
    let status = s.env.status();
    assert_eq!(status["inboxes"][0]["review_waiting"], 2);
    assert!(status["inboxes"][0]["oldest_review_seconds"].is_u64());
    daemon.stop().await;
}

/// Runs `beorg-hotfolder reviewer ARGS` with `stdin` piped in (not a terminal).
fn reviewer_cli(args: &[&str], stdin: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_beorg-hotfolder"))
        .arg("reviewer")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test]
async fn reviewer_add_writes_an_argon2id_hash_from_stdin_and_remove_takes_the_name_out() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("reviewers");
    let file = users.to_str().unwrap();
    let (code, text) = reviewer_cli(&["add", "anna", "--users-file", file], "a long secret\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("anna: added"), "{text}");
    let content = std::fs::read_to_string(&users).unwrap();
    assert!(content.contains("\nanna:$argon2id$v=19$"), "{content}");
    assert!(!content.contains("a long secret"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&users).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let check = beorg_hotfolder::review_station::auth::check_password;
    assert!(check(&users, "anna", "a long secret").unwrap());
    // A second add sets a new password; a short one and a bad name are refused.
    let (code, text) = reviewer_cli(&["add", "anna", "--users-file", file], "another secret\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(check(&users, "anna", "another secret").unwrap());
    assert!(!check(&users, "anna", "a long secret").unwrap());
    let (code, text) = reviewer_cli(&["add", "boris", "--users-file", file], "short\n");
    assert_eq!(code, Some(1));
    assert!(text.contains("too short"), "{text}");
    let (code, text) = reviewer_cli(&["add", "bo:ris", "--users-file", file], "long enough!\n");
    assert_eq!(code, Some(1));
    assert!(text.contains("cannot be a reviewer's name"), "{text}");
    let (code, text) = reviewer_cli(&["remove", "anna", "--users-file", file], "");
    assert_eq!(code, Some(0), "{text}");
    assert!(!std::fs::read_to_string(&users).unwrap().contains("anna:"));
    let (code, text) = reviewer_cli(&["remove", "anna", "--users-file", file], "");
    assert_eq!(code, Some(1));
    assert!(text.contains("anna is not a reviewer"), "{text}");
}

#[tokio::test]
async fn check_and_run_name_a_missing_users_file_and_a_plain_listen_off_this_machine() {
    let s = Station::new().await;
    std::fs::remove_file(&s.users).unwrap();
    let config = s.env.write_config();
    let (code, text) = run_bin(&["check"], &config, &[]);
    assert_eq!(code, Some(1), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("review_station.users_file"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.starts_with("error") && line.contains("reviewer add"),
        "{line}"
    );
    let mut daemon = s.env.spawn_binary(&[]);
    let status = daemon.wait(std::time::Duration::from_secs(10)).await;
    assert!(!status.success());
    assert!(
        daemon.stderr().contains("review_station.users_file"),
        "{}",
        daemon.stderr()
    );
    // Off loopback without TLS or the proxy's word: refused by the config itself.
    let text = s
        .env
        .config_text()
        .replace("listen = \"127.0.0.1:", "listen = \"0.0.0.0:");
    std::fs::write(&config, text).unwrap();
    let (code, text) = run_bin(&["check"], &config, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("review_station.listen") && text.contains("tls_cert"),
        "{text}"
    );
}

/// A self-signed certificate for 127.0.0.1 made with openssl, in `dir`: (cert, key).
fn self_signed(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .is_ok_and(|o| o.status.success());
    made.then_some((cert, key))
}

#[tokio::test]
async fn under_tls_the_station_speaks_https_only_and_its_cookie_is_secure() {
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(dir.path()) else {
        precondition(
            false,
            "openssl (to make a test certificate) is missing",
            "apt-get install openssl",
        );
        return;
    };
    let s = Station::with_extra(&format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    ))
    .await;
    let daemon = s.env.start();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let https = s.base.replace("http://", "https://");
    let login = wait_for_async(
        "the station answers over HTTPS",
        std::time::Duration::from_millis(20),
        || {
            let client = client.clone();
            let url = format!("{https}/login");
            async move {
                client
                    .post(url)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form(&[("user", "anna"), ("password", PASSWORD)]))
                    .send()
                    .await
                    .ok()
            }
        },
    )
    .await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let cookie = login.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // Plain HTTP on the same port gets no page.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = plain.get(format!("{}/login", s.base)).send().await;
    assert!(answer.is_err() || !answer.unwrap().status().is_success());
    daemon.stop().await;
}

#[tokio::test]
async fn a_tiff_scan_is_shown_as_png_and_its_original_is_not_touched() {
    let s = Station::new().await;
    let daemon = s.env.start();
    s.scan_to_review("page.png", 2111).await;
    // A TIFF in review/ (browsers cannot show TIFF), 3000 × 2000 px, with a sidecar naming it.
    let mut picture = image::RgbImage::new(3000, 2000);
    for (x, y, p) in picture.enumerate_pixels_mut() {
        *p = image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]);
    }
    let tiff = s.review.join("scan.tif");
    image::DynamicImage::ImageRgb8(picture)
        .save_with_format(&tiff, image::ImageFormat::Tiff)
        .unwrap();
    let original = std::fs::read(&tiff).unwrap();
    let mut sidecar = sidecar_json(&s.review.join("page.png"));
    sidecar["file"] = "scan.tif".into();
    sidecar["source"]["name"] = "scan.tif".into();
    std::fs::write(layout::sidecar_path(&tiff), sidecar.to_string()).unwrap();

    let mut anna = Browser::new(&s.base);
    anna.log_in("anna").await;
    let item = &anna.get("/").await.item_named("scan.tif");
    let page = anna.get(item).await;
    assert!(
        page.body.contains(&format!("<img src=\"{item}/files/0\"")),
        "{}",
        page.body
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let shown = client
        .get(format!("{}{item}/files/0", s.base))
        .header(header::COOKIE, anna.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(shown.headers()[header::CONTENT_TYPE], "image/png");
    let bytes = shown.bytes().await.unwrap();
    let png = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap();
    assert_eq!(
        (png.width(), png.height()),
        (2400, 1600),
        "scaled, aspect kept"
    );
    assert_eq!(
        std::fs::read(&tiff).unwrap(),
        original,
        "the original is untouched"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn an_item_with_a_5_mb_scan_is_served_quickly() {
    let s = Station::new().await;
    let daemon = s.env.start();
    s.scan_to_review("page.png", 2112).await;
    // A 5 MB PNG (noise does not compress; the most the API takes for a page) in review/
    // with a sidecar naming it.
    let mut picture = image::RgbImage::new(1300, 1300);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for p in picture.pixels_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *p = image::Rgb([seed as u8, (seed >> 8) as u8, (seed >> 16) as u8]);
    }
    let big = s.review.join("big.png");
    picture
        .save_with_format(&big, image::ImageFormat::Png)
        .unwrap();
    let size = std::fs::metadata(&big).unwrap().len();
    assert!(size > 5_000_000, "{size}");
    let mut sidecar = sidecar_json(&s.review.join("page.png"));
    sidecar["file"] = "big.png".into();
    std::fs::write(layout::sidecar_path(&big), sidecar.to_string()).unwrap();
    let mut anna = Browser::new(&s.base);
    anna.log_in("anna").await;
    let item = anna.get("/").await.item_named("big.png");
    let started = std::time::Instant::now();
    let page = anna.get(&item).await;
    let page_time = started.elapsed();
    assert_eq!(page.status, StatusCode::OK);
    let started = std::time::Instant::now();
    let scan = anna.get(&format!("{item}/files/0")).await;
    let scan_time = started.elapsed();
    assert_eq!(
        scan.headers[header::CONTENT_LENGTH],
        size.to_string().as_str()
    );
    eprintln!("item page with a {size} B scan: page {page_time:?}, scan {scan_time:?}");
    // Generous for a debug build on a shared machine; the release figure is in the README.
    assert!(
        page_time < std::time::Duration::from_millis(500),
        "{page_time:?}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_document_set_is_shown_member_by_member_and_approved_whole() {
    let mut s = Station::new().await;
    s.env.inboxes[0].extra.push_str(KYC);
    let daemon = s.env.start();
    let inbox = &s.env.inboxes[0].path;
    let building = inbox.join(".building-kyc-1");
    std::fs::create_dir_all(&building).unwrap();
    let page = beorg_emulator::samples::page_png;
    std::fs::write(
        building.join("passport.png"),
        page(2301, Some("BEORG-EMU:other-face")),
    )
    .unwrap();
    std::fs::write(building.join("selfie.png"), page(2302, None)).unwrap();
    std::fs::rename(&building, inbox.join("kyc-1")).unwrap();
    let sidecar = sidecar_in(&s.review, "kyc-1").await;
    assert_eq!(sidecar.status, Status::Review);

    let mut anna = Browser::new(&s.base);
    anna.log_in("anna").await;
    let item = anna.get("/").await.item_named("kyc-1");
    let page = anna.get(&item).await;
    for n in 0..2 {
        assert!(
            page.body.contains(&format!("{item}/files/{n}")),
            "{}",
            page.body
        );
        let member = anna.get(&format!("{item}/files/{n}")).await;
        assert_eq!(member.status, StatusCode::OK);
        assert_eq!(member.headers[header::CONTENT_TYPE], "image/png");
    }
    let csrf = page.csrf();
    let answer = anna
        .post(&format!("{item}/approve"), &[("csrf", &csrf)])
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let done = s.env.inboxes[0].done.join("kyc-1");
    assert!(done.join("passport.png").exists() && done.join("selfie.png").exists());
    assert!(!s.review.join("kyc-1").exists());
    let after = read_sidecar(&layout::sidecar_path(&done));
    assert_eq!(after.status, Status::Done);
    assert_eq!(after.source.files.unwrap().len(), 2);
    assert_eq!(after.reviewed.unwrap().decision, "approved");
    daemon.stop().await;
}

/// A decision's journal transaction moves the files before it commits: the daemon killed
/// right there (the `before:reviewed` fail point, as a power cut would) leaves the original
/// and its new sidecar in done/ and the old sidecar in review/. The next start records the
/// decision (history, row, `file.reviewed` delivery) and removes the old sidecar.
#[tokio::test]
async fn a_decision_interrupted_by_a_crash_before_its_record_is_recorded_at_the_next_start() {
    let s = Station::new().await;
    let mut crashing = s
        .env
        .spawn_binary(&[("FAILPOINTS", "before:reviewed=return")]);
    s.scan_to_review("crashed.png", 2113).await;
    let mut anna = Browser::new(&s.base);
    anna.log_in("anna").await;
    let item = anna.items().await.remove(0);
    let csrf = anna.get(&item).await.csrf();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let _ = client
        .post(format!("{}{item}/approve", s.base))
        .header(header::COOKIE, anna.cookie.clone().unwrap())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[("csrf", &csrf), ("field.LastName", "Петрова")]))
        .send()
        .await;
    let status = crashing.wait(std::time::Duration::from_secs(10)).await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "killed at the fail point: {}",
        crashing.stderr()
    );
    let done = s.env.inboxes[0].done.join("crashed.png");
    let old_sidecar = layout::sidecar_path(&s.review.join("crashed.png"));
    assert!(
        done.exists() && old_sidecar.exists(),
        "the crash left both sidecars"
    );
    assert!(
        !std::fs::read_to_string(&s.ledger)
            .unwrap_or_default()
            .contains("file.reviewed")
    );

    let daemon = s.env.start();
    wait_until("the old sidecar is removed", || !old_sidecar.exists()).await;
    wait_until("the file.reviewed ledger line", || {
        std::fs::read_to_string(&s.ledger).is_ok_and(|t| t.contains("\"file.reviewed\""))
    })
    .await;
    let config = s.env.write_config();
    let (code, text) = run_bin(&["explain", "--json", "crashed.png"], &config, &[]);
    assert_eq!(code, Some(0), "{text}");
    let stories: serde_json::Value = serde_json::from_str(&text).unwrap();
    let history = stories[0]["history"].as_array().unwrap();
    let reviewed: Vec<&serde_json::Value> = history
        .iter()
        .filter(|l| l["transition"] == "reviewed")
        .collect();
    assert_eq!(reviewed.len(), 1, "{text}");
    assert_eq!(reviewed[0]["details"]["recovered"], true);
    assert_eq!(reviewed[0]["details"]["by"], "anna");
    assert_eq!(
        sidecar_json(&done)["documents"][0]["fields"]["LastName"],
        "Петрова"
    );
    daemon.stop().await;
}

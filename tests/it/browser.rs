//! Issue 21: the review station in a real browser. Chromium, headless, through chromedriver
//! (Debian's `chromium` and `chromium-driver`; `.ci/run` installs them), driven with
//! fantoccini over WebDriver: log in, open an item, correct a field, approve, see it leave
//! the queue and its sidecar in done/ with the `reviewed` block; reject another; log out.
//! With `BEORG_SCREENSHOTS=DIR` it also writes the README's screenshots there.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::helpers::*;
use crate::review_station::{PASSWORD, Station};

/// chromedriver on a free loopback port, killed (by its pid) when dropped.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_chromedriver() -> ChromeDriver {
    let found = Command::new("chromedriver").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "chromedriver is missing: the review station's browser test needs Chromium and its WebDriver; install them with: apt-get install chromium chromium-driver (.ci/run does)"
    );
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    ChromeDriver { child, port }
}

async fn browser(driver: &ChromeDriver) -> Client {
    let url = format!("http://127.0.0.1:{}", driver.port);
    wait_until("chromedriver listens", || {
        std::net::TcpStream::connect(("127.0.0.1", driver.port)).is_ok()
    })
    .await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            // As root in CI: no sandbox; /dev/shm may be small in containers.
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1366,768", "--lang=en-US"],
            "prefs": {"intl.accept_languages": "en-US,en"},
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&url)
        .await
        .expect("a Chromium session through chromedriver")
}

async fn fill(c: &Client, css: &str, text: &str) {
    let field = c.wait().for_element(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Writes a screenshot to `$BEORG_SCREENSHOTS/name` when that is set; always checks the
/// browser can take one.
async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    if let Some(dir) = std::env::var_os("BEORG_SCREENSHOTS") {
        std::fs::write(Path::new(&dir).join(name), png).unwrap();
    }
}

#[tokio::test]
async fn in_a_real_browser_a_reviewer_logs_in_corrects_and_approves_one_item_rejects_another_and_logs_out()
 {
    let driver = start_chromedriver();
    let s = Station::new().await;
    let daemon = s.env.start();
    s.scan_to_review("anna-passport.png", 2201).await;
    s.scan_to_review("second.png", 2202).await;
    let c = browser(&driver).await;

    c.goto(&format!("{}/", s.base)).await.unwrap();
    // Without a session: the login form.
    fill(&c, "#user", "anna").await;
    fill(&c, "#password", PASSWORD).await;
    click(&c, "#login").await;
    c.wait().for_element(Locator::Css("#queue")).await.unwrap();
    let queue = c.source().await.unwrap();
    assert!(queue.contains("anna-passport.png") && queue.contains("second.png"));
    assert!(
        queue.contains("Waiting for review"),
        "English, as the browser asks"
    );
    screenshot(&c, "review-queue.png").await;

    c.find(Locator::LinkText("anna-passport.png"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("input[name='field.LastName']"))
        .await
        .unwrap();
    // The scan is shown: the image loaded (its natural width is known).
    let width = c
        .execute(
            "return document.querySelector('.scan img').naturalWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        width.as_u64().unwrap_or(0) > 0,
        "the scan image loads: {width}"
    );
    screenshot(&c, "review-item.png").await;
    fill(&c, "input[name='field.LastName']", "Petrova").await;
    click(&c, "#approve").await;

    // The next item opens; the first has left the queue, in done/ with its block.
    c.wait().for_element(Locator::Css("#reason")).await.unwrap();
    assert!(c.source().await.unwrap().contains("second.png"));
    let done = s.env.inboxes[0].done.join("anna-passport.png");
    let sidecar = read_sidecar(&layout::sidecar_path(&done));
    let reviewed = sidecar.reviewed.expect("the reviewed block");
    assert_eq!(
        (reviewed.decision.as_str(), reviewed.by.as_str()),
        ("approved", "anna")
    );
    assert_eq!(reviewed.corrections["LastName"]["to"], "Petrova");
    assert_eq!(sidecar.documents[0].fields["LastName"], "Petrova");

    fill(&c, "#reason", "The photo page is cut off").await;
    click(&c, "#reject").await;
    c.wait().for_element(Locator::Css("#empty")).await.unwrap();
    let failed = s.env.inboxes[0].failed.join("second.png");
    let rejected = read_sidecar(&layout::sidecar_path(&failed));
    assert_eq!(rejected.error.unwrap().message, "The photo page is cut off");

    click(&c, "#logout").await;
    c.wait()
        .for_element(Locator::Css("#password"))
        .await
        .unwrap();
    c.goto(&format!("{}/", s.base)).await.unwrap();
    c.wait()
        .for_element(Locator::Css("#password"))
        .await
        .unwrap();
    c.close().await.unwrap();
    daemon.stop().await;
}

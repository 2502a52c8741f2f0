//! The Prometheus endpoint over real HTTP on loopback: scrape `/metrics`, parse the text,
//! check samples; `/healthz` follows its closure; other paths are 404; `serve` stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use beorg_hotfolder::metrics::{self, Metrics};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Sample, metric_value as value, parse_metrics as parse};

/// A running endpoint: its base URL, its metrics, the health flag, and how to stop it.
struct Endpoint {
    base: String,
    metrics: Arc<Metrics>,
    healthy: Arc<AtomicBool>,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    client: reqwest::Client,
}

impl Endpoint {
    async fn start() -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let metrics = Arc::new(Metrics::new());
        let healthy = Arc::new(AtomicBool::new(true));
        let stop = CancellationToken::new();
        let flag = healthy.clone();
        let server = tokio::spawn(metrics::serve(
            listener,
            metrics.clone(),
            move || flag.load(Ordering::SeqCst),
            stop.clone(),
        ));
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        Endpoint {
            base,
            metrics,
            healthy,
            stop,
            server,
            client,
        }
    }

    async fn get(&self, path: &str) -> (u16, Option<String>, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        (status, content_type, response.text().await.unwrap())
    }

    async fn scrape(&self) -> Vec<Sample> {
        let (status, content_type, body) = self.get("/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(content_type.as_deref(), Some(metrics::CONTENT_TYPE));
        assert!(body.ends_with("# EOF\n"), "{body}");
        parse(&body)
    }

    /// Cancels `stop` and checks `serve` returns promptly and cleanly.
    async fn stop(self) {
        self.stop.cancel();
        let result = tokio::time::timeout(Duration::from_secs(3), self.server)
            .await
            .expect("serve returns after stop")
            .expect("serve does not panic");
        result.expect("serve returns Ok");
    }
}

#[tokio::test]
async fn scrape_shows_every_metric() {
    let e = Endpoint::start().await;
    let m = &e.metrics;
    let passport = "/srv/in/passport";
    m.file_finished(passport, "done", Duration::from_secs(3));
    m.file_finished(passport, "done", Duration::from_secs(40));
    m.file_finished(passport, "timeout", Duration::from_secs(7300));
    m.api_request("submit", Some(200));
    m.api_request("submit", Some(200));
    m.api_request("submit", Some(429));
    m.api_request("result", Some(425));
    m.api_request("result", None);
    m.rate_limit_wait("submit", Duration::from_millis(1500));
    m.rate_limit_wait("submit", Duration::from_millis(250));
    m.set_queue(passport, "waiting", 12);
    m.set_queue(passport, "waiting", 5);
    m.set_queue(passport, "polling", 2);
    m.set_account_paused(true);

    let s = e.scrape().await;
    let inbox = ("inbox", passport);
    assert_eq!(
        value(&s, "beorg_files_total", &[inbox, ("outcome", "done")]),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "beorg_files_total", &[inbox, ("outcome", "timeout")]),
        Some(1.0)
    );
    let api = |endpoint, status| {
        value(
            &s,
            "beorg_api_requests_total",
            &[("endpoint", endpoint), ("status", status)],
        )
    };
    assert_eq!(api("submit", "200"), Some(2.0));
    assert_eq!(api("submit", "429"), Some(1.0));
    assert_eq!(api("result", "425"), Some(1.0));
    assert_eq!(api("result", "error"), Some(1.0));
    assert_eq!(api("submit", "error"), None);

    let latency = |suffix: &str, le: Option<&str>| {
        let mut labels = vec![inbox];
        labels.extend(le.map(|le| ("le", le)));
        value(&s, &format!("beorg_file_latency_seconds_{suffix}"), &labels)
    };
    assert_eq!(latency("count", None), Some(3.0));
    assert_eq!(latency("sum", None), Some(3.0 + 40.0 + 7300.0));
    // prometheus-client writes `le` as a float: "5.0", not "5".
    assert_eq!(latency("bucket", Some("1.0")), Some(0.0));
    assert_eq!(latency("bucket", Some("5.0")), Some(1.0));
    assert_eq!(latency("bucket", Some("60.0")), Some(2.0));
    assert_eq!(latency("bucket", Some("7200.0")), Some(2.0));
    assert_eq!(latency("bucket", Some("+Inf")), Some(3.0));
    assert_eq!(latency("bucket", Some("5")), None);

    assert_eq!(
        value(
            &s,
            "beorg_rate_limit_wait_seconds_total",
            &[("kind", "submit")]
        ),
        Some(1.75)
    );
    let queue = |state| value(&s, "beorg_queue_files", &[inbox, ("state", state)]);
    assert_eq!(queue("waiting"), Some(5.0));
    assert_eq!(queue("polling"), Some(2.0));
    assert_eq!(value(&s, "beorg_account_paused", &[]), Some(1.0));
    assert_eq!(
        value(
            &s,
            "beorg_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    m.set_account_paused(false);
    m.set_queue(passport, "waiting", 0);
    let s = e.scrape().await;
    assert_eq!(value(&s, "beorg_account_paused", &[]), Some(0.0));
    assert_eq!(
        value(&s, "beorg_queue_files", &[inbox, ("state", "waiting")]),
        Some(0.0)
    );
    e.stop().await;
}

#[tokio::test]
async fn odd_label_values_stay_parseable() {
    let e = Endpoint::start().await;
    let odd = r#"/srv/in/"odd"\dir"#;
    let odd_with_newline = "/srv/in/two\nlines} 3";
    e.metrics
        .file_finished(odd, "invalid_file", Duration::from_secs(2));
    e.metrics.set_queue(odd_with_newline, "waiting", 4);

    let (_, _, body) = e.get("/metrics").await;
    assert!(
        body.contains(r#"inbox="/srv/in/\"odd\"\\dir""#),
        "quote and backslash are escaped: {body}"
    );
    let s = parse(&body);
    assert_eq!(
        value(
            &s,
            "beorg_files_total",
            &[("inbox", odd), ("outcome", "invalid_file")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "beorg_file_latency_seconds_bucket",
            &[("inbox", odd), ("le", "2.0")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "beorg_queue_files",
            &[("inbox", odd_with_newline), ("state", "waiting")]
        ),
        Some(4.0)
    );
    e.stop().await;
}

#[tokio::test]
async fn healthz_follows_the_closure() {
    let e = Endpoint::start().await;
    assert_eq!(e.get("/healthz").await, (200, text_plain(), "ok\n".into()));
    e.healthy.store(false, Ordering::SeqCst);
    assert_eq!(
        e.get("/healthz").await,
        (503, text_plain(), "unhealthy\n".into())
    );
    e.healthy.store(true, Ordering::SeqCst);
    assert_eq!(e.get("/healthz").await.0, 200);
    e.stop().await;
}

fn text_plain() -> Option<String> {
    Some("text/plain; charset=utf-8".into())
}

#[tokio::test]
async fn other_paths_are_404() {
    let e = Endpoint::start().await;
    for path in ["/", "/metrics/", "/healthz/x", "/favicon.ico"] {
        assert_eq!(e.get(path).await.0, 404, "{path}");
    }
    e.stop().await;
}

#[tokio::test]
async fn serve_returns_after_stop_and_stops_listening() {
    let e = Endpoint::start().await;
    // Leaves a keep-alive connection in the client's pool.
    e.scrape().await;
    let client = e.client.clone();
    let base = e.base.clone();
    e.stop().await;
    assert!(
        client.get(format!("{base}/metrics")).send().await.is_err(),
        "nothing answers after stop"
    );
}

#[tokio::test]
async fn a_stuck_client_does_not_hold_up_stop() {
    let e = Endpoint::start().await;
    let mut stuck = tokio::net::TcpStream::connect(e.base.trim_start_matches("http://"))
        .await
        .unwrap();
    // Half a request head, never finished.
    stuck
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    stuck.flush().await.unwrap();
    // The server has accepted the stuck connection: a request made after it is answered.
    assert_eq!(e.get("/metrics").await.0, 200);
    e.stop().await;
    drop(stuck);
}

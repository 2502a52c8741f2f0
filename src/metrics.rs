//! The Prometheus endpoint: what the daemon counts, and the HTTP server that exposes it.
//!
//! [`Metrics`] owns every metric the daemon publishes: finished files and their latency,
//! API responses, time spent waiting for the rate limits, queue sizes per inbox and the
//! account pause. The pipeline updates it through small methods (an atomic add, at most a
//! short read lock inside `prometheus-client`'s families, never held across an await);
//! [`Metrics::render`] writes the OpenMetrics text that [`serve`] hands to a scraper on
//! `GET /metrics`. `GET /healthz` answers from a closure the daemon passes in.
//!
//! Label values are inbox paths (one per configured inbox) and short fixed words, so the
//! number of series stays small and bounded by the config.

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;

/// Content type of `GET /metrics`: the OpenMetrics text format `prometheus-client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of `beorg_file_latency_seconds`: a scan usually takes seconds, a
/// backlog or a paused account can stretch it to hours.
pub const LATENCY_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

/// After `stop`, how long open scrape connections may take to finish before [`serve`] returns
/// anyway, so a stuck scraper cannot hold up the daemon's shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Labels of `beorg_files_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    inbox: String,
    outcome: String,
}

/// Labels of `beorg_file_latency_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InboxLabels {
    inbox: String,
}

/// Labels of `beorg_api_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    endpoint: String,
    status: String,
}

/// Labels of `beorg_rate_limit_wait_seconds_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitLabels {
    kind: String,
}

/// Labels of `beorg_queue_files`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    inbox: String,
    state: String,
}

/// Labels of `beorg_deliveries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    kind: String,
    result: String,
}

/// Labels of `beorg_review_decisions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: String,
}

/// A histogram family needs a constructor to give each new inbox its buckets.
type LatencyFamily = Family<InboxLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Everything the daemon publishes. Send + Sync: share one in an `Arc` between all tasks.
///
/// Each field is a handle onto a metric that is also registered in `registry` (the
/// `prometheus-client` handles are `Arc`s inside), so updates go straight to the atomics and
/// only [`Metrics::render`] walks the registry.
#[derive(Debug)]
pub struct Metrics {
    /// What [`Metrics::render`] encodes; read-only after [`Metrics::new`], so no lock.
    registry: Registry,
    /// Finished files per inbox and outcome ("done" or a failure kind): the throughput and
    /// the failure rate.
    files: Family<FileLabels, Counter>,
    /// Detection to sidecar, per inbox: what a user waits for a scan.
    latency: LatencyFamily,
    /// API responses per endpoint and HTTP status ("error" for transport failures): shows
    /// 425s (not ready), 429s (over the limit) and outages.
    api_requests: Family<ApiLabels, Counter>,
    /// Seconds requests waited for a turn under the rate limits: whether the account's
    /// limits, not the API, are the bottleneck.
    rate_limit_wait: Family<WaitLabels, Counter<f64, AtomicU64>>,
    /// Files per inbox and state, replaced on each update: the backlog.
    queue: Family<QueueLabels, Gauge>,
    /// Detection time (unix seconds) of the oldest claimed file not yet sent, per inbox; 0
    /// when none waits: a queue that does not move (alert on its age, `time() - value`).
    oldest_waiting: Family<InboxLabels, Gauge>,
    /// 1 while submits are held after a 401/402: the one alert that needs a human.
    account_paused: Gauge,
    /// The config's `[api] requests_per_second`: what the request rate is drawn against.
    limit_requests: Gauge<f64, AtomicU64>,
    /// The config's `[api] documents_per_minute`: what the submit rate is drawn against.
    limit_documents: Gauge<f64, AtomicU64>,
    /// Outcomes deleted by `retention`, per inbox: personal data removed on schedule.
    retention_deleted: Family<InboxLabels, Counter>,
    /// Delivery tries by kind and result, and deliveries given up: a receiver that is down.
    deliveries: Family<DeliveryLabels, Counter>,
    /// Unix time since which the shared budget's Redis has not answered (0 while it does, or
    /// when the budget is this process's own): nothing is sent meanwhile.
    budget_unavailable_since: Gauge,
    /// 1 while this daemon keeps the stricter limits stored with the shared budget's key
    /// instead of its own `[api]` ones: the daemons on the key are configured differently.
    budget_limits_stricter: Gauge,
    /// Items waiting in each inbox's review folder: the work left for people.
    review_waiting: Family<InboxLabels, Gauge>,
    /// Seconds the oldest of them has waited (0 when none): a queue nobody works through.
    review_oldest_age: Family<InboxLabels, Gauge>,
    /// The review station's decisions, by decision (approved, rejected).
    review_decisions: Family<DecisionLabels, Counter>,
}

impl Metrics {
    /// All metrics at zero, plus `beorg_build_info{version}`. A family shows no samples
    /// until its first label set is used, except the rate-limit waits ("submit", "poll").
    pub fn new() -> Metrics {
        let files = Family::<FileLabels, Counter>::default();
        let latency = LatencyFamily::new_with_constructor(latency_histogram);
        let api_requests = Family::<ApiLabels, Counter>::default();
        let rate_limit_wait = Family::<WaitLabels, Counter<f64, AtomicU64>>::default();
        // Both kinds exist from the start, so `rate()` sees 0 rather than no series.
        for kind in ["submit", "poll"] {
            rate_limit_wait
                .get_or_create(&WaitLabels { kind: kind.into() })
                .inc_by(0.0);
        }
        let queue = Family::<QueueLabels, Gauge>::default();
        let oldest_waiting = Family::<InboxLabels, Gauge>::default();
        let account_paused = Gauge::default();
        let limit_requests = Gauge::<f64, AtomicU64>::default();
        let limit_documents = Gauge::<f64, AtomicU64>::default();
        let retention_deleted = Family::<InboxLabels, Counter>::default();
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let budget_unavailable_since = Gauge::default();
        let budget_limits_stricter = Gauge::default();
        let review_waiting = Family::<InboxLabels, Gauge>::default();
        let review_oldest_age = Family::<InboxLabels, Gauge>::default();
        let review_decisions = Family::<DecisionLabels, Counter>::default();

        let mut registry = Registry::default();
        registry.register(
            "beorg_build",
            "Version of the running beorg-hotfolder",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "beorg_files",
            "Files finished, by inbox and outcome (done, review or a failure kind)",
            files.clone(),
        );
        registry.register_with_unit(
            "beorg_file_latency",
            "Time from a file's detection to its sidecar",
            Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "beorg_api_requests",
            "API responses by endpoint and HTTP status (error: no response)",
            api_requests.clone(),
        );
        registry.register_with_unit(
            "beorg_rate_limit_wait",
            "Time requests waited for their turn under the rate limits",
            Unit::Seconds,
            rate_limit_wait.clone(),
        );
        registry.register(
            "beorg_queue_files",
            "Files per inbox and state (waiting, submitting, polling)",
            queue.clone(),
        );
        registry.register_with_unit(
            "beorg_queue_oldest_waiting_timestamp",
            "Detection time (unix) of the oldest claimed file not yet sent, by inbox; 0 when none waits",
            Unit::Seconds,
            oldest_waiting.clone(),
        );
        registry.register(
            "beorg_account_paused",
            "1 while submits are paused after a 401 or 402 from the API",
            account_paused.clone(),
        );
        registry.register(
            "beorg_api_limit_requests_per_second",
            "The configured ceiling for all requests to the API ([api] requests_per_second)",
            limit_requests.clone(),
        );
        registry.register(
            "beorg_api_limit_documents_per_minute",
            "The configured ceiling for submits ([api] documents_per_minute)",
            limit_documents.clone(),
        );
        registry.register(
            "beorg_retention_deleted",
            "Outcomes (original and sidecar) deleted under retention, by inbox",
            retention_deleted.clone(),
        );
        registry.register(
            "beorg_deliveries",
            "Delivery tries by kind (webhook, exec, ledger) and result (delivered, failed, gone, dropped), and deliveries given_up",
            deliveries.clone(),
        );

        registry.register_with_unit(
            "beorg_budget_unavailable_since",
            "Unix time since which the shared request budget (Redis) has not answered; 0 while it does. Nothing is sent meanwhile",
            Unit::Seconds,
            budget_unavailable_since.clone(),
        );
        registry.register(
            "beorg_budget_limits_stricter",
            "1 while this daemon keeps the stricter limits stored with the shared budget's key instead of its own [api] limits (daemons on the key are configured differently); 0 otherwise",
            budget_limits_stricter.clone(),
        );
        registry.register(
            "beorg_review_waiting",
            "Results waiting for a person in each inbox's review folder",
            review_waiting.clone(),
        );
        registry.register_with_unit(
            "beorg_review_oldest_age",
            "How long the oldest result in each inbox's review folder has waited (0 when none)",
            Unit::Seconds,
            review_oldest_age.clone(),
        );
        registry.register(
            "beorg_review_decisions",
            "Decisions made at the review station, by decision (approved, rejected)",
            review_decisions.clone(),
        );

        Metrics {
            registry,
            files,
            latency,
            api_requests,
            rate_limit_wait,
            queue,
            oldest_waiting,
            account_paused,
            limit_requests,
            limit_documents,
            retention_deleted,
            deliveries,
            budget_unavailable_since,
            budget_limits_stricter,
            review_waiting,
            review_oldest_age,
            review_decisions,
        }
    }

    /// `waiting` results are in `inbox`'s review folder, the oldest for `oldest_age`.
    pub fn set_review_waiting(&self, inbox: &str, waiting: u64, oldest_age: Duration) {
        let labels = InboxLabels {
            inbox: inbox.to_owned(),
        };
        self.review_waiting
            .get_or_create(&labels)
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.review_oldest_age
            .get_or_create(&labels)
            .set(i64::try_from(oldest_age.as_secs()).unwrap_or(i64::MAX));
    }

    /// The review station runs: both decisions' counters exist from 0, so a dashboard's
    /// `increase()` and an alert see the series before the first decision.
    pub fn review_station_started(&self) {
        for decision in ["approved", "rejected"] {
            let _at_zero = self.review_decisions.get_or_create(&DecisionLabels {
                decision: decision.to_owned(),
            });
        }
    }

    /// The review station decided a result (`decision`: approved or rejected).
    pub fn review_decision(&self, decision: &str) {
        self.review_decisions
            .get_or_create(&DecisionLabels {
                decision: decision.to_owned(),
            })
            .inc();
    }

    /// The shared budget's Redis has not answered since `since` (unix seconds), or (0) it
    /// answers.
    pub fn set_budget_unavailable_since(&self, since: u64) {
        self.budget_unavailable_since
            .set(i64::try_from(since).unwrap_or(i64::MAX));
    }

    /// Whether this daemon keeps the shared budget's stricter limits instead of its own.
    pub fn set_budget_limits_stricter(&self, stricter: bool) {
        self.budget_limits_stricter.set(i64::from(stricter));
    }

    /// One delivery try of `kind` ended with `result`, or (`result` "given_up") a delivery
    /// was given up after its last try.
    pub fn delivery(&self, kind: &str, result: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                kind: kind.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// `count` outcomes of `inbox` deleted under its `retention`.
    pub fn retention_deleted(&self, inbox: &str, count: u64) {
        self.retention_deleted
            .get_or_create(&InboxLabels {
                inbox: inbox.to_owned(),
            })
            .inc_by(count);
    }

    /// A file finished with `outcome` ("done", "review", or a failure kind such as "broken",
    /// "timeout"), `latency` after it was detected in `inbox`.
    pub fn file_finished(&self, inbox: &str, outcome: &str, latency: Duration) {
        self.files
            .get_or_create(&FileLabels {
                inbox: inbox.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&InboxLabels {
                inbox: inbox.to_owned(),
            })
            .observe(latency.as_secs_f64());
    }

    /// One API response from `endpoint` ("submit" or "result") with its HTTP status, or
    /// `None` when no response came (transport failure): counted as status "error".
    pub fn api_request(&self, endpoint: &str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.api_requests
            .get_or_create(&ApiLabels {
                endpoint: endpoint.to_owned(),
                status,
            })
            .inc();
    }

    /// A request of `kind` ("submit" or "poll") waited `waited` for its turn.
    pub fn rate_limit_wait(&self, kind: &str, waited: Duration) {
        self.rate_limit_wait
            .get_or_create(&WaitLabels {
                kind: kind.to_owned(),
            })
            .inc_by(waited.as_secs_f64());
    }

    /// `files` files are now in `state` ("waiting", "submitting", "polling") in `inbox`;
    /// replaces the previous value.
    pub fn set_queue(&self, inbox: &str, state: &str, files: u64) {
        self.queue
            .get_or_create(&QueueLabels {
                inbox: inbox.to_owned(),
                state: state.to_owned(),
            })
            .set(i64::try_from(files).unwrap_or(i64::MAX));
    }

    /// The oldest claimed, unsent file of `inbox` was detected at `detected_unix` (unix
    /// seconds), or (`None`) none waits.
    pub fn set_oldest_waiting(&self, inbox: &str, detected_unix: Option<u64>) {
        self.oldest_waiting
            .get_or_create(&InboxLabels {
                inbox: inbox.to_owned(),
            })
            .set(i64::try_from(detected_unix.unwrap_or(0)).unwrap_or(i64::MAX));
    }

    /// The `[api]` limits in force (set at start and after a reload).
    pub fn set_api_limits(&self, requests_per_second: f64, documents_per_minute: f64) {
        self.limit_requests.set(requests_per_second);
        self.limit_documents.set(documents_per_minute);
    }

    /// Submits are paused (after a 401/402) or resumed.
    pub fn set_account_paused(&self, paused: bool) {
        self.account_paused.set(i64::from(paused));
    }

    /// The OpenMetrics text of every metric, ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail, and the label sets here encode infallibly.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!("cannot encode the metrics: {e}");
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The healthiness check the daemon passes to [`serve`].
type HealthCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    healthy: HealthCheck,
}

/// Serves `GET /metrics` ([`Metrics::render`], [`CONTENT_TYPE`]) and `GET /healthz` (200
/// "ok\n" while `healthy()` is true, else 503 "unhealthy\n") on `listener` until `stop`
/// fires; any other path is 404. After `stop`, open connections get [`SHUTDOWN_GRACE`] to
/// finish. Returns an error only if the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    healthy: impl Fn() -> bool + Send + Sync + 'static,
    stop: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::debug!(%addr, "metrics endpoint listening");
    }
    let app = router(AppState {
        metrics,
        healthy: Arc::new(healthy),
    });
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .into_future();
    tokio::select! {
        result = server => result,
        () = grace_expired(&stop) => {
            tracing::debug!("metrics endpoint: connections still open after the grace, leaving them");
            Ok(())
        }
    }
}

/// Completes [`SHUTDOWN_GRACE`] after `stop` fires.
async fn grace_expired(stop: &CancellationToken) {
    stop.cancelled().await;
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .with_state(state)
}

async fn metrics_page(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    if (state.healthy)() {
        plain(StatusCode::OK, "ok\n")
    } else {
        plain(StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
    }
}

async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "not found\n")
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample line that starts with `prefix`, e.g. `name{labels}` (the value follows).
    fn sample<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix)?.strip_prefix(' '))
    }

    #[test]
    fn shares_across_tasks() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Metrics>();
    }

    #[test]
    fn fresh_metrics_show_build_info_and_no_pause() {
        let text = Metrics::new().render();
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            sample(&text, &format!("beorg_build_info{{version=\"{version}\"}}")),
            Some("1")
        );
        assert_eq!(sample(&text, "beorg_account_paused"), Some("0"));
        for kind in ["submit", "poll"] {
            let wait = format!("beorg_rate_limit_wait_seconds_total{{kind=\"{kind}\"}}");
            assert_eq!(sample(&text, &wait), Some("0.0"), "{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn names_carry_units_and_suffixes() {
        let m = Metrics::new();
        m.file_finished("/in", "done", Duration::from_millis(1500));
        m.rate_limit_wait("poll", Duration::from_millis(250));
        let text = m.render();
        assert!(text.contains("# TYPE beorg_file_latency_seconds histogram\n"));
        assert!(text.contains("# UNIT beorg_file_latency_seconds seconds\n"));
        assert_eq!(
            sample(&text, "beorg_file_latency_seconds_sum{inbox=\"/in\"}"),
            Some("1.5")
        );
        assert_eq!(
            sample(&text, "beorg_rate_limit_wait_seconds_total{kind=\"poll\"}"),
            Some("0.25")
        );
    }

    #[test]
    fn latency_buckets_are_cumulative_with_inf() {
        let m = Metrics::new();
        for secs in [0.5, 3.0, 4000.0, 9000.0] {
            m.file_finished("/in", "done", Duration::from_secs_f64(secs));
        }
        let text = m.render();
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("beorg_file_latency_seconds_bucket{{le=\"{le}\",inbox=\"/in\"}}"),
            )
        };
        assert_eq!(bucket("1.0"), Some("1"));
        assert_eq!(bucket("5.0"), Some("2"));
        assert_eq!(bucket("3600.0"), Some("2"));
        assert_eq!(bucket("7200.0"), Some("3"));
        assert_eq!(bucket("+Inf"), Some("4"));
    }

    #[test]
    fn transport_failures_count_as_error() {
        let m = Metrics::new();
        m.api_request("result", None);
        m.api_request("result", Some(425));
        m.api_request("result", Some(425));
        let text = m.render();
        let line = |status: &str| {
            sample(
                &text,
                &format!("beorg_api_requests_total{{endpoint=\"result\",status=\"{status}\"}}"),
            )
        };
        assert_eq!(line("error"), Some("1"));
        assert_eq!(line("425"), Some("2"));
    }

    #[test]
    fn queue_gauge_is_replaced_and_saturates() {
        let m = Metrics::new();
        m.set_queue("/in", "waiting", 7);
        m.set_queue("/in", "waiting", 3);
        m.set_queue("/in", "polling", u64::MAX);
        let text = m.render();
        assert_eq!(
            sample(&text, "beorg_queue_files{inbox=\"/in\",state=\"waiting\"}"),
            Some("3")
        );
        assert_eq!(
            sample(&text, "beorg_queue_files{inbox=\"/in\",state=\"polling\"}"),
            Some(i64::MAX.to_string().as_str())
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.file_finished("/srv/in/\"odd\"\\dir\nx", "done", Duration::ZERO);
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                r#"beorg_files_total{inbox="/srv/in/\"odd\"\\dir\nx",outcome="done"}"#
            ),
            Some("1"),
            "{text}"
        );
    }
}

//! `[metrics]`: where the Prometheus endpoint listens, if anywhere.

use serde::Deserialize;

use super::{ConfigError, key_error};

/// The Prometheus endpoint.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// Where `/metrics` and `/healthz` are served; off when None.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    listen: Option<String>,
}

pub(super) fn resolve_metrics(raw: RawMetrics) -> Result<MetricsConfig, ConfigError> {
    let listen = match raw.listen {
        None => None,
        Some(text) if text.trim().is_empty() => None,
        Some(text) => Some(text.trim().parse().map_err(|_| {
            key_error(
                "metrics.listen",
                format!("\"{text}\" is not an address:port; e.g. \"127.0.0.1:9187\""),
            )
        })?),
    };
    Ok(MetricsConfig { listen })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{GOOD, err_text, parse};

    #[test]
    fn metrics_listen_is_an_address() {
        let text = format!("{GOOD}\n[metrics]\nlisten = \"127.0.0.1:9187\"\n");
        let c = parse(&text).unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9187".parse().unwrap()));
        assert!(parse(GOOD).unwrap().metrics.listen.is_none());
        let text = format!("{GOOD}\n[metrics]\nlisten = \"localhost\"\n");
        assert!(err_text(&text).contains("metrics.listen"));
    }
}

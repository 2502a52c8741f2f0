//! The emulator's settings: the credentials it accepts, how fast it processes, how much it
//! takes, and which of the vendor's variations it shows.

/// Settings of one emulator instance.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// The only token accepted on both endpoints.
    pub token: String,
    /// The only `machine_uid` accepted on submit.
    pub machine_uid: String,
    /// Factor on the vendor's processing times: 1.0 is real time, tests use e.g. 0.01.
    pub time_scale: f64,
    /// Every document's processing time in seconds, uniform in `(min, max)` (fixed by the
    /// image's hash) instead of the vendor's table; `time_scale` still applies. For
    /// benchmarks that need a known spread (issue 12: "processing 1-3 s").
    pub processing: Option<(f64, f64)>,
    /// Largest accepted sum of decoded image sizes (the vendor says 800 MB).
    pub max_total_bytes: u64,
    /// Whether a 409 body also carries the `document_id` of the earlier document (one public
    /// client saw this on an older endpoint).
    pub duplicate_reports_id: bool,
    /// Share of requests (0.0 to 1.0) answered with a server error before any check, as the
    /// vendor's transient faults come: a submit 500 or 503 (nothing admitted, nothing paid),
    /// a result 500. Drawn per request from a generator seeded with `server_error_seed`, so a
    /// run's faults can be repeated; a status queued by [`crate::Emulator::fail_next`] goes
    /// first. For soak runs; 0 by default.
    pub server_error_rate: f64,
    /// Seed of the generator `server_error_rate` draws from.
    pub server_error_seed: u64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            token: "emulator-token".to_owned(),
            machine_uid: "emulator-machine".to_owned(),
            time_scale: 1.0,
            processing: None,
            max_total_bytes: 800 * 1024 * 1024,
            duplicate_reports_id: false,
            server_error_rate: 0.0,
            server_error_seed: 0,
        }
    }
}

impl std::fmt::Debug for EmulatorConfig {
    /// Prints everything but the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("token", &"<redacted>")
            .field("machine_uid", &self.machine_uid)
            .field("time_scale", &self.time_scale)
            .field("processing", &self.processing)
            .field("max_total_bytes", &self.max_total_bytes)
            .field("duplicate_reports_id", &self.duplicate_reports_id)
            .field("server_error_rate", &self.server_error_rate)
            .field("server_error_seed", &self.server_error_seed)
            .finish()
    }
}

//! What the test harness asks for from outside ([`crate::Emulator::fail_next`],
//! [`crate::Emulator::delay_next`]): forced statuses and delays per endpoint, each queued
//! with a number of uses and taken one request at a time; and the random server errors of
//! [`crate::EmulatorConfig::server_error_rate`], drawn when nothing is queued.

use std::collections::VecDeque;
use std::time::Duration;

use crate::records::Endpoint;
use crate::state::Shared;

impl Shared {
    /// Takes what the test harness asked for this request (a forced status, a delay).
    pub(crate) fn take_plan(&self, endpoint: Endpoint) -> Plan {
        let mut state = self.state();
        let index = slot(endpoint);
        let queued = take_one(&mut state.faults[index]);
        let fail = queued.or_else(|| {
            random_server_error(
                &mut state.fault_rng,
                self.config.server_error_rate,
                endpoint,
            )
        });
        Plan {
            fail,
            delay: take_one(&mut state.delays[index]),
        }
    }
}

/// With probability `rate`, a server error the vendor lists for `endpoint`: 500 or 503
/// ("request took too long") on submit, 500 on result.
fn random_server_error(rng: &mut fastrand::Rng, rate: f64, endpoint: Endpoint) -> Option<u16> {
    if rate <= 0.0 || rng.f64() >= rate {
        return None;
    }
    match endpoint {
        Endpoint::Submit if rng.bool() => Some(503),
        _ => Some(500),
    }
}

/// Index of an endpoint in the per-endpoint queues.
pub(crate) fn slot(endpoint: Endpoint) -> usize {
    match endpoint {
        Endpoint::Submit => 0,
        Endpoint::Result => 1,
    }
}

/// Pops one use off a queue of `(value, remaining uses)`.
fn take_one<T: Copy>(queue: &mut VecDeque<(T, usize)>) -> Option<T> {
    let (value, remaining) = queue.front_mut()?;
    let value = *value;
    *remaining -= 1;
    if *remaining == 0 {
        queue.pop_front();
    }
    Some(value)
}

/// What the harness asked for one request.
pub(crate) struct Plan {
    /// Answer this status before any check.
    pub(crate) fail: Option<u16>,
    /// Sleep this long before answering.
    pub(crate) delay: Option<Duration>,
}

impl Plan {
    /// Sleeps the planned delay, if any.
    pub(crate) async fn sleep(&self) {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
    }
}

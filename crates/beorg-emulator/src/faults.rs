//! What the test harness asks for from outside ([`crate::Emulator::fail_next`],
//! [`crate::Emulator::delay_next`]): forced statuses and delays per endpoint, each queued
//! with a number of uses and taken one request at a time.

use std::collections::VecDeque;
use std::time::Duration;

use crate::records::Endpoint;
use crate::state::Shared;

impl Shared {
    /// Takes what the test harness asked for this request (a forced status, a delay).
    pub(crate) fn take_plan(&self, endpoint: Endpoint) -> Plan {
        let mut state = self.state();
        let index = slot(endpoint);
        Plan {
            fail: take_one(&mut state.faults[index]),
            delay: take_one(&mut state.delays[index]),
        }
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

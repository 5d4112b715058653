//! Load shedding: a bounded number of requests in flight and of open WebSockets. Beyond a
//! bound the node answers 503 with `Retry-After` at once instead of queueing work (and
//! memory) without limit, and serves normally again as soon as a slot frees.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::{Filter, Rejection};

use super::ApiError;

/// A fixed number of slots; a held [`OwnedSemaphorePermit`] is one in use.
#[derive(Clone)]
pub struct Slots {
    free: Arc<Semaphore>,
    refusal: &'static str,
    refused: Counter,
}

impl Slots {
    /// `max` slots (at least one); `refusal` is the detail of the 503 when none is free,
    /// `refused` counts those 503s.
    pub fn new(max: usize, refusal: &'static str, refused: Counter) -> Self {
        Self {
            free: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            refusal,
            refused,
        }
    }

    /// A slot, or the 503 to answer when all are taken.
    pub fn take(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.free.clone().try_acquire_owned().map_err(|_| {
            self.refused.inc();
            ApiError::overloaded(self.refusal)
        })
    }

    /// A filter that holds a slot for as long as its extract lives.
    pub fn gate(
        &self,
    ) -> impl Filter<Extract = (OwnedSemaphorePermit,), Error = Rejection> + Clone {
        let slots = self.clone();
        warp::any().and_then(move || {
            let slot = slots.take().map_err(warp::reject::custom);
            async move { slot }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_refused_when_taken_and_come_back_when_released() {
        let counted = Counter::default();
        let slots = Slots::new(2, "busy", counted.clone());
        let first = slots.take().unwrap();
        let _second = slots.take().unwrap();
        let refused = slots.take().unwrap_err();
        assert_eq!(
            refused.status(),
            warp::http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(refused.errors()["detail"], "busy");
        assert_eq!(counted.get(), 1);
        drop(first);
        assert!(slots.take().is_ok());
    }
}

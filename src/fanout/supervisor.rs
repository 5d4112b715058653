//! Long-running background tasks that restart with backoff when they fail or panic, and
//! never once shutdown has begun.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::TaskError;
use crate::cause_chain;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run that lasted this long counts as healthy and resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// Runs `task` until `shutdown` fires, restarting it after errors, early ends and panics.
pub fn supervise<F, Fut>(
    name: &'static str,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    mut task: F,
) where
    F: FnMut(CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
{
    let inner_tracker = tracker.clone();
    tracker.spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        while !shutdown.is_cancelled() {
            let started = tokio::time::Instant::now();
            let run = inner_tracker.spawn(task(shutdown.child_token()));
            let outcome = run.await;
            if shutdown.is_cancelled() {
                break;
            }
            match outcome {
                Ok(Ok(())) => tracing::warn!(task = name, "task ended; restarting"),
                Ok(Err(error)) => {
                    let error = cause_chain(&error);
                    tracing::error!(task = name, %error, "task failed; restarting")
                }
                Err(panic) => tracing::error!(task = name, %panic, "task panicked; restarting"),
            }
            if started.elapsed() >= HEALTHY_RUN {
                backoff = FIRST_BACKOFF;
            }
            let jitter =
                Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 2 + 1));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(backoff + jitter) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn restarts_after_failures_and_panics_then_stops_on_shutdown() {
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        supervise("test", &tracker, shutdown.clone(), move |token| {
            let run = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                match run {
                    0 => Err(TaskError::StreamEnded),
                    1 => panic!("deliberate"),
                    _ => {
                        token.cancelled().await;
                        Ok(())
                    }
                }
            }
        });
        for _ in 0..100 {
            if runs.load(Ordering::SeqCst) >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        shutdown.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .expect("supervisor stops on shutdown");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}

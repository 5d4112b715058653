//! A progress bar on stderr that only appears once a phase has taken a few seconds, so short
//! runs print nothing but their report.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SHOW_AFTER: Duration = Duration::from_secs(2);
const REFRESH: Duration = Duration::from_millis(200);

pub struct Progress {
    stop: CancellationToken,
    ticker: JoinHandle<()>,
}

impl Progress {
    /// Polls `read` for the position and the message while the phase runs; draws only when
    /// `enabled` and after [`SHOW_AFTER`].
    pub fn start(
        enabled: bool,
        label: &str,
        len: u64,
        read: impl Fn() -> (u64, String) + Send + 'static,
    ) -> Self {
        let stop = CancellationToken::new();
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        let template =
            format!("{label:>10} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {{msg}}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        let ticker = tokio::spawn({
            let stop = stop.clone();
            async move {
                if !enabled
                    || tokio::time::timeout(SHOW_AFTER, stop.cancelled())
                        .await
                        .is_ok()
                {
                    return;
                }
                bar.set_draw_target(ProgressDrawTarget::stderr());
                loop {
                    let (position, message) = read();
                    bar.set_position(position);
                    bar.set_message(message);
                    if tokio::time::timeout(REFRESH, stop.cancelled())
                        .await
                        .is_ok()
                    {
                        break;
                    }
                }
                bar.finish_and_clear();
            }
        });
        Self { stop, ticker }
    }

    /// Ends the phase and removes the bar.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.ticker.await;
    }
}

//! Progress bars on a terminal (stderr), silent otherwise: a ticker thread
//! samples the operation's atomic counters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Ticker {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// `sample` returns (message, position in bytes); `total` enables an ETA.
    pub fn start(
        enabled: bool,
        total: Option<u64>,
        sample: impl Fn() -> (String, u64) + Send + 'static,
    ) -> Self {
        let bar = if !enabled {
            ProgressBar::hidden()
        } else if let Some(t) = total {
            ProgressBar::new(t).with_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            )
        } else {
            ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} {bytes} {bytes_per_sec} {msg}",
                )
                .expect("valid template"),
            )
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = enabled.then(|| {
            let (bar, stop) = (bar.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (msg, pos) = sample();
                    bar.set_position(pos);
                    bar.set_message(msg);
                    bar.tick();
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        });
        Self { bar, stop, thread }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}

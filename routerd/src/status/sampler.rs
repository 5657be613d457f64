//! The task that fills the history every 10 s: interface counters (sysfs), conntrack,
//! DHCP leases and the gateway check's verdict each time; the forwards' nft counters
//! once a minute (an `nft` process, shared with the page's requests through the
//! collector). The history is written to the state directory every 5 minutes and when
//! routerd stops.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::collect::Collector;
use super::history::{History, Sample, COARSE_STEP, FINE_STEP};
use super::Shared;

/// Samples between two readings of the forwards' counters (one a minute).
const FORWARDS_EVERY: u64 = 6;
/// Samples between two writes of the history file.
const SAVE_EVERY: u64 = COARSE_STEP / FINE_STEP;

/// The sampler; dropping it stops it.
pub struct Running(JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Loads the history kept in `file` (if any) and starts sampling.
pub fn start(collector: Arc<Collector>, file: Option<PathBuf>) -> Running {
    let shared = collector.shared().clone();
    if let Some(path) = &file {
        *shared.history.lock().unwrap_or_else(|e| e.into_inner()) = History::load(path);
    }
    Running(tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(FINE_STEP));
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        for tick in 0u64.. {
            every.tick().await;
            let forwards = tick % FORWARDS_EVERY == 0;
            let snapshot = collector.sample(forwards).await;
            let sample = Sample::of(&snapshot, forwards);
            shared.history.lock().unwrap_or_else(|e| e.into_inner()).record(&sample);
            if let Some(path) = file.as_ref().filter(|_| tick % SAVE_EVERY == SAVE_EVERY - 1) {
                let (shared, path) = (shared.clone(), path.clone());
                // fsync and rename off the runtime's thread.
                let _ = tokio::task::spawn_blocking(move || save(&shared, &path)).await;
            }
        }
    }))
}

/// Writes the history to `path` (atomically); a failure is logged, the rings stay.
pub fn save(shared: &Shared, path: &Path) {
    let history = shared.history.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Err(e) = history.save(path) {
        tracing::warn!("cannot save the graphs' history to {}: {e}", path.display());
    }
}

//! Upload progress: bytes, rate and estimated time left.

use std::time::{Duration, Instant};

/// A snapshot of an upload's progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UploadProgress {
    /// Bytes acknowledged by the server.
    pub done: u64,
    /// The file's size.
    pub total: u64,
    /// Average rate since the start, bytes per second.
    pub bytes_per_second: f64,
    /// Time left at that rate (`None` before the first part is through).
    pub eta: Option<Duration>,
}

impl UploadProgress {
    /// The progress after `done` of `total` bytes since `started`.
    pub fn measure(done: u64, total: u64, started: Instant) -> Self {
        let elapsed = started.elapsed().as_secs_f64();
        let bytes_per_second = if elapsed > 0.0 {
            done as f64 / elapsed
        } else {
            0.0
        };
        let eta = (bytes_per_second > 0.0)
            .then(|| Duration::from_secs_f64(total.saturating_sub(done) as f64 / bytes_per_second));
        Self {
            done,
            total,
            bytes_per_second,
            eta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_follow_the_bytes_done() {
        let started = Instant::now() - Duration::from_secs(10);
        let p = UploadProgress::measure(100, 300, started);
        assert!((p.bytes_per_second - 10.0).abs() < 0.1, "{p:?}");
        let eta = p.eta.expect("an eta once bytes went through").as_secs_f64();
        assert!((eta - 20.0).abs() < 0.5, "{p:?}");
        assert_eq!(UploadProgress::measure(0, 300, started).eta, None);
    }
}

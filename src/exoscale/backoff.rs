//! Waiting schedules: retries of failed requests (short, jittered, bounded) and polling of
//! asynchronous operations (3 s at first, growing to 60 s, up to a timeout). Both are plain
//! values so tests can make them fast.

use std::time::Duration;

/// How failed requests are retried: connection errors, 429 and 5xx answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many times a request is sent at most (1 = no retry).
    pub max_attempts: u32,
    /// The wait before the first retry; each further retry waits twice as long.
    pub first_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 1 s, 2 s, 4 s, 8 s apart (each with jitter).
    fn default() -> Self {
        Self {
            max_attempts: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1): exponential, capped,
    /// then "equal jitter" — a random point in the upper half, so clients that failed
    /// together do not retry together.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let nominal = self
            .first_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = nominal / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// How an asynchronous operation is polled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollSchedule {
    /// The wait before the first poll.
    pub first_delay: Duration,
    /// Each wait is the previous one times this factor…
    pub factor: f64,
    /// …up to this.
    pub max_delay: Duration,
    /// When to give up (the recipe's `api_timeout`).
    pub timeout: Duration,
}

impl Default for PollSchedule {
    /// 3 s, growing by half each time to 60 s, for at most an hour.
    fn default() -> Self {
        Self {
            first_delay: Duration::from_secs(3),
            factor: 1.5,
            max_delay: Duration::from_secs(60),
            timeout: crate::recipe::postprocessor::DEFAULT_API_TIMEOUT,
        }
    }
}

impl PollSchedule {
    /// The wait after `previous` (`None`: the first wait).
    pub fn next_delay(&self, previous: Option<Duration>) -> Duration {
        match previous {
            None => self.first_delay.min(self.max_delay),
            Some(d) => d.mul_f64(self.factor.max(1.0)).min(self.max_delay),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_are_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(10),
        };
        for _ in 0..200 {
            let first = p.delay_after(1);
            assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2));
            let third = p.delay_after(3);
            assert!(third >= Duration::from_secs(4) && third <= Duration::from_secs(8));
            let late = p.delay_after(30);
            assert!(late >= Duration::from_secs(5) && late <= Duration::from_secs(10));
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| p.delay_after(2)).collect();
        assert!(spread.len() > 1, "jitter varies the delay");
    }

    #[test]
    fn polling_starts_at_3s_and_grows_to_60s() {
        let s = PollSchedule::default();
        let mut delays = vec![s.next_delay(None)];
        for _ in 0..12 {
            delays.push(s.next_delay(delays.last().copied()));
        }
        assert_eq!(delays[0], Duration::from_secs(3));
        assert_eq!(delays[1], Duration::from_millis(4500));
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(60));
        assert_eq!(s.timeout, Duration::from_secs(3600));
    }
}

//! `--max-rate`: at most N objects per second, spaced evenly rather than in bursts.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    /// `per_second` must be positive (the CLI checks it).
    pub fn new(per_second: f64) -> Pacer {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / per_second.max(1e-6)),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this object's turn.
    pub async fn wait(&self) {
        let turn = {
            let mut next = self.next.lock().await;
            let turn = (*next).max(Instant::now());
            *next = turn + self.interval;
            turn
        };
        tokio::time::sleep_until(turn).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn turns_are_spaced_by_the_rate() {
        let pacer = Pacer::new(10.0);
        let start = Instant::now();
        for _ in 0..5 {
            pacer.wait().await;
        }
        // The first goes at once, then one every 100 ms (virtual time: exact).
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }
}

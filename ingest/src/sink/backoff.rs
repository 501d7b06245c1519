//! Exponential backoff with jitter: the InfluxDB writer's wait while the server fails, and each
//! refused bucket's own wait ([`super::lanes`]).

use std::time::Duration;

/// The wait after `attempt` failures in a row (0 for the first): `base` doubled per attempt,
/// capped at `max`, then a random share between half and all of it (so that many writers do
/// not retry in step).
pub(crate) fn delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    full(base, max, attempt).mul_f64(0.5 + 0.5 * rand::random::<f64>())
}

/// [`delay`] before the jitter.
fn full(base: Duration, max: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.min(20)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (base, max) = (Duration::from_secs(2), Duration::from_secs(60));
        let got: Vec<u64> = (0..8).map(|a| full(base, max, a).as_secs()).collect();
        assert_eq!(got, [2, 4, 8, 16, 32, 60, 60, 60]);
        // Past 20 attempts the shift stops; no overflow however many.
        assert_eq!(full(base, Duration::MAX, u32::MAX), base * (1 << 20));
    }

    #[test]
    fn backoff_jitter_stays_between_half_and_all() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 0..6 {
            let top = full(base, max, attempt);
            for _ in 0..50 {
                let d = delay(base, max, attempt);
                assert!(
                    d >= top / 2 && d <= top,
                    "attempt {attempt}: {d:?} of {top:?}"
                );
            }
        }
    }
}

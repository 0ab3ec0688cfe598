//! The request body's deadline: a total one, and a pace when `limits.min_body_rate` is set.
//! Used by the body pump and by spliced runs of a body (`splice`).

use std::time::{Duration, Instant};

/// When the rest of a request body must have arrived: `timeouts.body` after it began in
/// any case, and sooner when `limits.min_body_rate` is set and the client falls behind it
/// (the rule of Apache's mod_reqtimeout `MinRate`: a head start of
/// `limits.min_body_rate_grace`, then each byte received buys 1/rate seconds more). A
/// client trickling a byte at a time is closed long before the total deadline.
#[derive(Clone, Copy, Debug)]
pub struct BodyDeadline {
    total: Instant,
    paced_from: Instant,
    /// Bytes per second; 0 = no minimum rate.
    rate: u64,
}

impl BodyDeadline {
    /// A body that began at `start`: it must end within `total`, and after `grace` it must
    /// keep up with `rate` bytes per second (0: no minimum rate).
    pub fn new(start: Instant, total: Duration, grace: Duration, rate: u64) -> BodyDeadline {
        BodyDeadline {
            total: start + total,
            paced_from: start + grace,
            rate,
        }
    }

    /// `total` after the body began.
    pub fn total(&self) -> Instant {
        self.total
    }

    /// The deadline for the next read once `received` body bytes came in.
    pub fn at(&self, received: u64) -> Instant {
        if self.rate == 0 {
            return self.total;
        }
        let nanos = u128::from(received) * 1_000_000_000 / u128::from(self.rate);
        let earned = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.paced_from
            .checked_add(earned)
            .map_or(self.total, |t| t.min(self.total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_deadline_moves_with_the_bytes_received_up_to_the_total() {
        let start = Instant::now();
        let mut d = BodyDeadline {
            total: start + Duration::from_secs(60),
            paced_from: start + Duration::from_secs(5),
            rate: 0,
        };
        assert_eq!(d.at(0), d.total());
        assert_eq!(d.at(u64::MAX), d.total());
        d.rate = 1000;
        assert_eq!(d.at(0), start + Duration::from_secs(5));
        assert_eq!(d.at(500), start + Duration::from_millis(5500));
        assert_eq!(d.at(1_000_000), d.total());
        assert_eq!(d.at(u64::MAX), d.total());
    }
}

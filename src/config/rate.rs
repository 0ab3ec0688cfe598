//! A rate limit as the config writes it (`rate = "100/s"`, `burst = 20`), parsed into the
//! emission interval and burst that the GCRA limiter (`policy::ratelimit`) runs on.

const NS_PER_SEC: u64 = 1_000_000_000;

/// A parsed limit: sustained rate plus burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Emission interval T in ns: the period divided by the count, rounded down (so a
    /// `3/s` limit admits one request every 333_333_333 ns).
    interval_ns: u64,
    burst: u32,
}

impl Rate {
    /// Parses `N/s`, `N/m` or `N/h` (N a decimal integer >= 1, nothing else in the string).
    /// `burst` = requests allowed at once; `None` = the per-second rate rounded up, at least
    /// 1 (`100/s` → 100, `600/m` → 10, `10000/h` → 3, `1/h` → 1). A burst of 0 is invalid,
    /// and so is a rate above one request per nanosecond.
    pub fn parse(rate: &str, burst: Option<u32>) -> Result<Rate, String> {
        let (count, unit) = rate
            .split_once('/')
            .ok_or_else(|| format!("{rate:?} is not N/s, N/m or N/h"))?;
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{rate:?}: the count must be a whole number"));
        }
        let count: u64 = count
            .parse()
            .map_err(|_| format!("{rate:?}: the count is too large"))?;
        if count == 0 {
            return Err(format!("{rate:?}: the count must be at least 1"));
        }
        let period_secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return Err(format!("{rate:?}: the unit must be s, m or h")),
        };
        let interval_ns = period_secs * NS_PER_SEC / count;
        if interval_ns == 0 {
            return Err(format!("{rate:?}: more than one request per nanosecond"));
        }
        let burst = match burst {
            Some(0) => return Err("burst must be at least 1".into()),
            Some(b) => b,
            None => u32::try_from(count.div_ceil(period_secs)).unwrap_or(u32::MAX),
        };
        Ok(Rate { interval_ns, burst })
    }

    /// `share` (0 < share <= 1) of this limit: the rate times `share`, the burst times
    /// `share` rounded down, at least 1.
    pub fn scaled(&self, share: f64) -> Rate {
        let share = share.clamp(f64::MIN_POSITIVE, 1.0);
        Rate {
            interval_ns: ((self.interval_ns as f64 / share) as u64).max(1),
            burst: ((f64::from(self.burst) * share) as u32).max(1),
        }
    }

    /// The burst: requests allowed at once from a fresh state (the `RateLimit-Limit` value).
    pub fn limit(&self) -> u32 {
        self.burst
    }

    /// The emission interval T in ns.
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// L = T × burst: how far ahead of `now` a key's TAT may run and still pass.
    pub fn tolerance_ns(&self) -> u64 {
        self.interval_ns.saturating_mul(u64::from(self.burst))
    }
}

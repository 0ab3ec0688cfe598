//! Human durations in config: "250ms", "5s", "2m", "1h", "365d" (an integer and one unit).

/// A config duration; deserialises from a string like "5s".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn parse(s: &str) -> Result<Duration, String> {
        let expected = || {
            format!("{s:?} is not a duration: write an integer and a unit (ms, s, m, h, d), like \"500ms\" or \"5s\"")
        };
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(expected)?;
        let (num, unit) = s.split_at(split);
        if num.is_empty() {
            return Err(expected());
        }
        let n: u64 = num.parse().map_err(|_| expected())?;
        let d = match unit {
            "ms" => std::time::Duration::from_millis(n),
            "s" => std::time::Duration::from_secs(n),
            "m" => std::time::Duration::from_secs(n.saturating_mul(60)),
            "h" => std::time::Duration::from_secs(n.saturating_mul(3600)),
            "d" => std::time::Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(expected()),
        };
        Ok(Duration(d))
    }
}

/// The written form, in the largest unit that divides the value exactly: "10s", "5m",
/// "365d", "250ms"; zero is "0s". It parses back to the same value.
impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 != 0 {
            return write!(f, "{ms}ms");
        }
        let s = ms / 1000;
        let (n, unit) = [(86_400, "d"), (3600, "h"), (60, "m")]
            .into_iter()
            .find(|(size, _)| s != 0 && s % size == 0)
            .map_or((s, "s"), |(size, unit)| (s / size, unit));
        write!(f, "{n}{unit}")
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Duration;
    use std::time::Duration as D;

    #[test]
    fn durations_parse_with_each_unit() {
        assert_eq!(Duration::parse("250ms"), Ok(Duration(D::from_millis(250))));
        assert_eq!(Duration::parse("5s"), Ok(Duration(D::from_secs(5))));
        assert_eq!(Duration::parse("2m"), Ok(Duration(D::from_secs(120))));
        assert_eq!(Duration::parse("1h"), Ok(Duration(D::from_secs(3600))));
        assert_eq!(
            Duration::parse("365d"),
            Ok(Duration(D::from_secs(31_536_000)))
        );
        assert_eq!(Duration::parse("0s"), Ok(Duration(D::ZERO)));
    }

    #[test]
    fn durations_display_in_the_largest_exact_unit_and_parse_back() {
        for (d, text) in [
            (D::ZERO, "0s"),
            (D::from_millis(250), "250ms"),
            (D::from_millis(1500), "1500ms"),
            (D::from_secs(30), "30s"),
            (D::from_secs(90), "90s"),
            (D::from_secs(300), "5m"),
            (D::from_secs(7200), "2h"),
            (D::from_secs(365 * 86_400), "365d"),
        ] {
            assert_eq!(Duration(d).to_string(), text);
            assert_eq!(Duration::parse(text), Ok(Duration(d)));
        }
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for s in [
            "",
            "5",
            "s",
            "5 s",
            "-5s",
            "1.5s",
            "5sec",
            "5S",
            "5D",
            "99999999999999999999s",
        ] {
            assert!(Duration::parse(s).is_err(), "{s:?}");
        }
    }
}

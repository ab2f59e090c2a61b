//! The forecast, pure: what each node's renewable share did one period (a day) ago is what it
//! is expected to do now. A time-shiftable job need not wait for a share its window will not
//! see: [`Forecast::best_between`] says the most any node reached over the same stretch of the
//! last period, and the policy waits for no more than that (see
//! [`super::Policy::shift`]).
//!
//! Readings are kept as each node's highest share per slice of the period (a minute of a day),
//! for one period back: a few thousand numbers per node, whatever the devices' rate.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use chrono::{DateTime, Utc};
use cola_wire::energy::{NodeName, Share};

/// The slices a period is kept in (a minute each, for a day).
pub const SLICES_PER_PERIOD: u32 = 1440;
/// How many slices after the start of the stretch looked back at the first reading may come,
/// for the stretch to count as known (a device reports every few minutes, not at once).
const FIRST_READING_WITHIN_SLICES: i64 = 30;

/// Each node's renewable share over the last period, as the forecast of the next.
#[derive(Debug, Clone)]
pub struct Forecast {
    period: Duration,
    slice_ms: i64,
    /// Per node, the highest share seen in each slice (by slice number), oldest first.
    seen: HashMap<NodeName, BTreeMap<i64, f64>>,
    /// The slice of the earliest reading kept since this forecast began.
    first_slice: Option<i64>,
}

impl Forecast {
    /// A forecast that expects each node's share to come again after `period` (at least a
    /// millisecond per slice).
    pub fn new(period: Duration) -> Self {
        let slice_ms = (period.as_millis() / u128::from(SLICES_PER_PERIOD)).max(1);
        Self {
            period,
            slice_ms: i64::try_from(slice_ms).unwrap_or(i64::MAX),
            seen: HashMap::new(),
            first_slice: None,
        }
    }

    /// How long after a reading the same share is expected again.
    pub fn period(&self) -> Duration {
        self.period
    }

    fn slice_of(&self, at: DateTime<Utc>) -> i64 {
        at.timestamp_millis().div_euclid(self.slice_ms)
    }

    fn period_ago(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        at - chrono::Duration::from_std(self.period).unwrap_or(chrono::TimeDelta::MAX)
    }

    /// Keeps `node`'s reading of `share` made `at`, and forgets what is more than a period
    /// older than it.
    pub fn record(&mut self, node: &NodeName, at: DateTime<Utc>, share: Share) {
        let slice = self.slice_of(at);
        let oldest = self.slice_of(self.period_ago(at)) - 1;
        let slices = self.seen.entry(node.clone()).or_default();
        let highest = slices.entry(slice).or_insert(share.get());
        *highest = highest.max(share.get());
        if slices.first_key_value().is_some_and(|(&s, _)| s < oldest) {
            *slices = slices.split_off(&oldest);
        }
        self.first_slice = Some(self.first_slice.map_or(slice, |first| first.min(slice)));
    }

    /// What is expected of the nodes that `counts` from `now` to `until`: what they did over
    /// the same stretch one period before (the reading in force at its start, and every one
    /// within), the stretch cut at `now`. `None` when the readings do not go back that far.
    pub fn outlook(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        counts: impl Fn(&NodeName) -> bool,
    ) -> Option<Outlook> {
        let from = self.slice_of(self.period_ago(now));
        let to = self.slice_of(self.period_ago(until).min(now)).max(from);
        if self.first_slice? > from + FIRST_READING_WITHIN_SLICES {
            return None;
        }
        let (mut at_start, mut best) = (0.0_f64, 0.0_f64);
        for (_, slices) in self.seen.iter().filter(|(node, _)| counts(node)) {
            let start = slices.range(..=from).next_back().map_or(0.0, |(_, &s)| s);
            let within = slices.range(from + 1..to + 1).map(|(_, &s)| s);
            at_start = at_start.max(start);
            best = best.max(within.fold(start, f64::max));
        }
        Some(Outlook {
            now: Share::new(at_start).ok()?,
            best: Share::new(best).ok()?,
        })
    }
}

/// What the forecast expects of a stretch of time: the highest share any node is expected to
/// have at its start, and at any moment of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outlook {
    pub now: Share,
    pub best: Share,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(hour: f64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + chrono::Duration::milliseconds((hour * 3_600_000.0) as i64)
    }

    fn share(s: f64) -> Share {
        Share::new(s).unwrap()
    }

    fn node(name: &str) -> NodeName {
        NodeName::parse(name).unwrap()
    }

    impl Forecast {
        /// The best share expected from `now` to `until`.
        fn best_between(
            &self,
            now: DateTime<Utc>,
            until: DateTime<Utc>,
            counts: impl Fn(&NodeName) -> bool,
        ) -> Option<Share> {
            self.outlook(now, until, counts).map(|o| o.best)
        }
    }

    /// Yesterday (day 0) as readings every 5 minutes: `a` follows `shape`, `b` is always dark.
    fn yesterday(shape: impl Fn(f64) -> f64) -> Forecast {
        let mut f = Forecast::new(DAY);
        for step in 0..288 {
            let hour = f64::from(step) / 12.0;
            f.record(&node("a"), at(hour), share(shape(hour)));
            f.record(&node("b"), at(hour), Share::ZERO);
        }
        f
    }

    /// Sun from 06:00 to 18:00, highest at noon.
    fn sunny(hour: f64) -> f64 {
        if (6.0..18.0).contains(&hour) {
            ((hour - 6.0) / 12.0 * std::f64::consts::PI).sin()
        } else {
            0.0
        }
    }

    #[test]
    fn tomorrow_is_expected_to_be_like_yesterday() {
        let f = yesterday(sunny);
        let all = |_: &NodeName| true;
        // At 09:00 with until 15:00: noon's full sun is ahead.
        let best = f.best_between(at(33.0), at(39.0), all).unwrap();
        assert!(best.get() > 0.99, "{best:?}");
        // At 16:00 with until 22:00: no more than what 16:00 had.
        let best = f.best_between(at(40.0), at(46.0), all).unwrap().get();
        assert!((best - sunny(16.0)).abs() < 0.01, "{best}");
        // ... which is no better than its start: nothing to wait for.
        let outlook = f.outlook(at(40.0), at(46.0), all).unwrap();
        assert_eq!(outlook.now, outlook.best);
        // At 07:00 the best is ahead.
        let outlook = f.outlook(at(31.0), at(37.0), all).unwrap();
        assert!(outlook.best.get() > outlook.now.get() + 0.5, "{outlook:?}");
        // At night with until before sunrise: nothing.
        assert_eq!(f.best_between(at(44.0), at(49.0), all), Some(Share::ZERO));
        // Only the dark node counts: nothing either.
        let only_b = |n: &NodeName| n.as_str() == "b";
        assert_eq!(
            f.best_between(at(33.0), at(39.0), only_b),
            Some(Share::ZERO)
        );
    }

    #[test]
    fn a_reading_holds_until_the_next() {
        let mut f = Forecast::new(DAY);
        f.record(&node("a"), at(0.0), Share::ZERO);
        f.record(&node("a"), at(10.0), share(0.7));
        f.record(&node("a"), at(12.5), share(0.2));
        // 11:00 to 11:01 yesterday had no reading of its own: 10:00's held.
        let best = f.best_between(at(35.0), at(35.02), |_| true);
        assert_eq!(best, Some(share(0.7)));
        // A stretch within one slice, or ending before it begins: what held then.
        assert_eq!(
            f.best_between(at(35.0), at(35.0), |_| true),
            Some(share(0.7))
        );
        assert_eq!(
            f.best_between(at(35.0), at(34.0), |_| true),
            Some(share(0.7))
        );
        assert_eq!(
            f.best_between(at(36.6), at(36.0), |_| true),
            Some(share(0.2))
        );
    }

    #[test]
    fn no_forecast_without_readings_from_a_period_ago() {
        let mut f = Forecast::new(DAY);
        assert_eq!(f.best_between(at(30.0), at(31.0), |_| true), None);
        f.record(&node("a"), at(12.0), share(0.9));
        // Readings began at 12:00: nothing known of yesterday's 02:00.
        assert_eq!(f.best_between(at(26.0), at(30.0), |_| true), None);
        // A first reading a few minutes into the stretch is enough.
        assert_eq!(
            f.best_between(at(35.9), at(37.0), |_| true),
            Some(share(0.9))
        );
    }

    #[test]
    fn a_window_longer_than_the_period_is_cut_at_now() {
        let f = yesterday(sunny);
        // A short period: the stretch ahead would reach past now; what is known is used.
        let best = f.best_between(at(30.0), at(60.0), |_| true).unwrap();
        assert!(best.get() > 0.99);
    }

    #[test]
    fn what_is_older_than_a_period_is_forgotten() {
        let mut f = yesterday(sunny);
        // Two days later, yesterday's noon is gone, and nothing replaced it.
        f.record(&node("a"), at(72.0), Share::ZERO);
        let slices = &f.seen[&node("a")];
        assert_eq!(slices.len(), 1);
        assert!(
            f.seen
                .values()
                .all(|s| s.len() <= SLICES_PER_PERIOD as usize + 2)
        );
    }

    #[test]
    fn the_slices_fit_a_short_period() {
        // The bench's day: 240 s.
        let mut f = Forecast::new(Duration::from_secs(240));
        let t0 = DateTime::UNIX_EPOCH + chrono::Duration::seconds(1_000_000);
        let s = |secs: f64| t0 + chrono::Duration::milliseconds((secs * 1000.0) as i64);
        f.record(&node("a"), s(0.0), Share::ZERO);
        f.record(&node("a"), s(100.0), share(0.8));
        f.record(&node("a"), s(130.0), share(0.1));
        assert_eq!(
            f.best_between(s(240.0), s(300.0), |_| true),
            Some(Share::ZERO)
        );
        assert_eq!(
            f.best_between(s(300.0), s(360.0), |_| true),
            Some(share(0.8))
        );
        assert_eq!(
            f.best_between(s(371.0), s(400.0), |_| true),
            Some(share(0.1))
        );
    }
}

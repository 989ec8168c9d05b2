//! Which dumps retention keeps: pure selection over (key, time) pairs, with the reason each
//! survivor is kept. Listing the store and deleting are `dump`'s; the rules come from the plan
//! ([`Retention`]).
//!
//! The rules are those of restic's `forget`
//! (https://restic.readthedocs.io/en/stable/060_forget.html): the dumps are walked newest first;
//! `keep = N` keeps the first N; `keep-daily = N` keeps a dump if it is the newest of its day
//! (UTC) and fewer than N days have been kept so far, and `keep-weekly` (ISO 8601 weeks) and
//! `keep-monthly` likewise. Each rule counts on its own, and a dump kept by any rule stays. The
//! dump just written is always kept (it may not be listed yet), and it takes its place in the
//! walk like any other. Unlike restic 0.17 and later, the oldest dump is not kept additionally
//! when a rule finds fewer periods than it may keep.

use std::fmt;

use chrono::{Datelike, IsoWeek, NaiveDate, NaiveDateTime};

use crate::plan::Retention;

/// Why a dump is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The dump this run wrote.
    JustWritten,
    /// `keep = N`: the Nth newest (1 is the newest).
    Last(usize),
    /// `keep-daily`: the newest dump of that day.
    Daily(NaiveDate),
    /// `keep-weekly`: the newest dump of that ISO week.
    Weekly(IsoWeek),
    /// `keep-monthly`: the newest dump of that month (year, month).
    Monthly(i32, u32),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::JustWritten => write!(f, "just written"),
            Reason::Last(n) => write!(f, "last {n}"),
            Reason::Daily(d) => write!(f, "daily {d}"),
            Reason::Weekly(w) => write!(f, "weekly {}-W{:02}", w.year(), w.week()),
            Reason::Monthly(y, m) => write!(f, "monthly {y}-{m:02}"),
        }
    }
}

/// One dump's fate: kept for `reasons`, or deleted when there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) key: String,
    pub(crate) at: NaiveDateTime,
    pub(crate) reasons: Vec<Reason>,
}

impl Decision {
    pub(crate) fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }

    /// The reasons, for a log line: `daily 2026-11-29, weekly 2026-W48`.
    pub(crate) fn why(&self) -> String {
        self.reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One calendar rule during the walk: how many periods it may still keep, and the last period it
/// kept (dumps come newest first, so a new period is the newest dump of it).
struct Bucket<P> {
    left: usize,
    last: Option<P>,
}

impl<P: PartialEq + Copy> Bucket<P> {
    fn new(n: Option<usize>) -> Self {
        Bucket {
            left: n.unwrap_or(0),
            last: None,
        }
    }

    /// Whether the dump of period `p` is kept by this rule (and counts it if so).
    fn take(&mut self, p: P) -> bool {
        if self.left == 0 || self.last == Some(p) {
            return false;
        }
        self.left -= 1;
        self.last = Some(p);
        true
    }
}

/// Decides every dump of `dumps` (key and the time in its key, UTC), newest first (ties: the
/// greater key first, as listings sort). `just_written` is always kept.
pub(crate) fn select(dumps: &[(String, NaiveDateTime)], rules: &Retention, just_written: &str) -> Vec<Decision> {
    let mut sorted: Vec<&(String, NaiveDateTime)> = dumps.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut last = 0usize;
    let mut daily = Bucket::new(rules.daily);
    let mut weekly = Bucket::new(rules.weekly);
    let mut monthly = Bucket::new(rules.monthly);
    sorted
        .into_iter()
        .map(|(key, at)| {
            let mut reasons = Vec::new();
            if key == just_written {
                reasons.push(Reason::JustWritten);
            }
            if last < rules.last.unwrap_or(0) {
                last += 1;
                reasons.push(Reason::Last(last));
            }
            let day = at.date();
            if daily.take(day) {
                reasons.push(Reason::Daily(day));
            }
            if weekly.take(day.iso_week()) {
                reasons.push(Reason::Weekly(day.iso_week()));
            }
            if monthly.take((day.year(), day.month())) {
                reasons.push(Reason::Monthly(day.year(), day.month()));
            }
            Decision {
                key: key.clone(),
                at: *at,
                reasons,
            }
        })
        .collect()
}

/// The time of a dump from its key's sortable timestamp (`YYYYMMDDHHMMSSmmm`, see
/// [`crate::template::parse_timestamp`]); None for digits that are no real date (`20251341…`).
pub(crate) fn time_of(sort: &str) -> Option<NaiveDateTime> {
    let n = |r: std::ops::Range<usize>| sort.get(r)?.parse::<u32>().ok();
    let date = NaiveDate::from_ymd_opt(i32::try_from(n(0..4)?).ok()?, n(4..6)?, n(6..8)?)?;
    date.and_hms_milli_opt(n(8..10)?, n(10..12)?, n(12..14)?, n(14..17)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, 0, 0).unwrap()
    }

    fn key(t: NaiveDateTime) -> String {
        format!("db/app/{}.dump", t.format("%Y%m%dT%H%M%S%.3fZ"))
    }

    fn rules(last: Option<usize>, daily: Option<usize>, weekly: Option<usize>, monthly: Option<usize>) -> Retention {
        Retention {
            last,
            daily,
            weekly,
            monthly,
        }
    }

    /// The 120 nights 2026-08-02 .. 2026-11-29, each at 03:00 UTC, newest last.
    fn nights() -> Vec<(String, NaiveDateTime)> {
        let first = NaiveDate::from_ymd_opt(2026, 8, 2).unwrap();
        (0..120)
            .map(|i| {
                let t = (first + chrono::Days::new(i)).and_hms_opt(3, 0, 0).unwrap();
                (key(t), t)
            })
            .collect()
    }

    /// Issue 18, the must-show: `keep-daily = 7, keep-weekly = 4, keep-monthly = 6` over 120
    /// nightly dumps, the last one just written. The expected dates are listed by hand from a
    /// calendar, not computed: 2026-11-29 is a Sunday, so each ISO week's newest night is a
    /// Sunday; each month's newest is its last day, and only four months (Aug to Nov) exist.
    #[test]
    fn one_hundred_twenty_nights_keep_the_expected_dates() {
        let nights = nights();
        assert_eq!(nights[119].1, at(2026, 11, 29, 3), "the fixture ends on 2026-11-29");
        let just = nights[119].0.clone();
        let d = select(&nights, &rules(None, Some(7), Some(4), Some(6)), &just);
        assert_eq!(d.len(), 120);
        let kept: Vec<String> = d
            .iter()
            .filter(|d| d.keep())
            .map(|d| d.at.format("%Y-%m-%d").to_string())
            .collect();
        let expected = [
            // daily: the newest 7 days
            "2026-11-29",
            "2026-11-28",
            "2026-11-27",
            "2026-11-26",
            "2026-11-25",
            "2026-11-24",
            "2026-11-23",
            // weekly: Sundays of W48 (the 29th, already kept), W47, W46, W45
            "2026-11-22",
            "2026-11-15",
            "2026-11-08",
            // monthly: Nov (the 29th), Oct, Sep, Aug; fewer than 6 months exist
            "2026-10-31",
            "2026-09-30",
            "2026-08-31",
        ];
        assert_eq!(kept, expected);
        let reasons = |day: &str| -> Vec<String> {
            let d = d.iter().find(|d| d.at.format("%Y-%m-%d").to_string() == day).unwrap();
            d.reasons.iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            reasons("2026-11-29"),
            ["just written", "daily 2026-11-29", "weekly 2026-W48", "monthly 2026-11"]
        );
        assert_eq!(
            reasons("2026-11-23"),
            ["daily 2026-11-23"],
            "a Monday: not its week's newest"
        );
        assert_eq!(reasons("2026-11-22"), ["weekly 2026-W47"]);
        assert_eq!(reasons("2026-08-31"), ["monthly 2026-08"]);
        assert!(reasons("2026-08-02").is_empty(), "the oldest is deleted");
    }

    /// `keep = N` alone is the newest N, the dump just written among them.
    #[test]
    fn keep_last_is_the_newest_n() {
        let nights = nights();
        let d = select(&nights, &rules(Some(3), None, None, None), &nights[119].0);
        let kept: Vec<&str> = d.iter().filter(|d| d.keep()).map(|d| d.key.as_str()).collect();
        assert_eq!(kept, [&nights[119].0, &nights[118].0, &nights[117].0]);
        assert_eq!(d[2].reasons, [Reason::Last(3)]);
        // keep = 0 still keeps the dump just written, and only it.
        let d = select(&nights, &rules(Some(0), None, None, None), &nights[119].0);
        assert_eq!(d.iter().filter(|d| d.keep()).count(), 1);
    }

    /// Several dumps a day: only the newest of the day counts for the day, and a day's older
    /// dumps survive only through another rule; the dump just written stays whatever its place.
    #[test]
    fn several_dumps_a_day_and_a_just_written_dump_out_of_order() {
        let times = [
            at(2026, 1, 5, 23),
            at(2026, 1, 5, 1),
            at(2026, 1, 4, 12),
            at(2026, 1, 3, 12),
        ];
        let dumps: Vec<_> = times.iter().map(|t| (key(*t), *t)).collect();
        let d = select(&dumps, &rules(None, Some(2), None, None), &dumps[3].0);
        let kept: Vec<&str> = d.iter().filter(|d| d.keep()).map(|d| d.key.as_str()).collect();
        assert_eq!(kept, [&dumps[0].0, &dumps[2].0, &dumps[3].0]);
        assert_eq!(d[3].reasons, [Reason::JustWritten], "its day is beyond the 2 kept");
        // 2026-01-04 is a Sunday (W01), 2026-01-05 a Monday (W02); 2025-12-29 is in 2026-W01.
        let w = select(&dumps, &rules(None, None, Some(5), None), "");
        assert_eq!(
            w[0].reasons,
            [Reason::Weekly(NaiveDate::from_ymd_opt(2026, 1, 5).unwrap().iso_week())]
        );
        assert_eq!(w[0].reasons[0].to_string(), "weekly 2026-W02");
        assert_eq!(w[2].reasons[0].to_string(), "weekly 2026-W01");
        assert!(w[3].reasons.is_empty(), "same week as the 4th");
    }

    #[test]
    fn times_come_from_the_sortable_timestamp() {
        assert_eq!(time_of("20261129030000000"), Some(at(2026, 11, 29, 3)));
        assert_eq!(
            time_of("20240229235959999"),
            NaiveDate::from_ymd_opt(2024, 2, 29)
                .unwrap()
                .and_hms_milli_opt(23, 59, 59, 999)
        );
        assert_eq!(time_of("20251341000000000"), None);
        assert_eq!(time_of("2025"), None);
    }
}

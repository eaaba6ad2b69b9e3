//! Cron schedules as CronJobs spell them: five fields (minute, hour, day of month, month, day
//! of week) with `*`, `?`, lists, ranges, steps and English names, the `@hourly`-style
//! shorthands, and an optional `TZ=Zone` / `CRON_TZ=Zone` prefix. The next run is found in the
//! schedule's time zone, so `0 9 * * *` in Europe/Paris is 09:00 there across daylight saving
//! changes.
//!
//! Day of month and day of week combine as in Vixie cron (and upstream's parser): when both
//! are restricted a day matching either runs; when one of them is `*` only the other counts.

use jiff::civil::{self, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("expected exactly 5 fields, found {0}: {1}")]
    FieldCount(usize, String),
    #[error("failed to parse {what} {field:?}: {why}")]
    Field {
        what: &'static str,
        field: String,
        why: String,
    },
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    #[error("unknown time zone {0}")]
    TimeZone(String),
}

/// One field's allowed values as a bit set (bit n: value n allowed), and whether it was
/// written as `*`/`?` (which matters for the day rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    bits: u64,
    star: bool,
}

impl Field {
    fn has(&self, v: i8) -> bool {
        v >= 0 && self.bits & (1 << v) != 0
    }
}

struct Bounds {
    what: &'static str,
    min: u8,
    max: u8,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds {
    what: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    what: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    what: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
/// Month names start at 1: index 0 is never a name.
const MONTH: Bounds = Bounds {
    what: "month",
    min: 1,
    max: 12,
    names: &[
        "", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    what: "day of week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// A parsed schedule with the time zone its fields are read in.
#[derive(Debug, Clone)]
pub struct Schedule {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
    pub tz: TimeZone,
}

impl Schedule {
    /// Parses `spec` (as in spec.schedule); `zone` is spec.timeZone, and without either it
    /// the zone is UTC (the controller's zone upstream is the server's local one; nanokube's
    /// servers run in UTC).
    pub fn parse(spec: &str, zone: Option<&str>) -> Result<Schedule, Error> {
        let mut spec = spec.trim();
        let mut zone = zone.map(str::to_string);
        for prefix in ["TZ=", "CRON_TZ="] {
            if let Some(rest) = spec.strip_prefix(prefix) {
                let (z, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                zone = Some(z.to_string());
                spec = rest.trim();
            }
        }
        let tz = match zone.as_deref() {
            None | Some("") | Some("UTC") | Some("Etc/UTC") => TimeZone::UTC,
            Some(z) => TimeZone::get(z).map_err(|_| Error::TimeZone(z.to_string()))?,
        };
        let expanded = if let Some(d) = spec.strip_prefix('@') {
            match d.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => return Err(Error::Descriptor(spec.to_string())),
            }
        } else {
            spec
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(Error::FieldCount(fields.len(), expanded.to_string()));
        }
        Ok(Schedule {
            minute: parse_field(fields[0], &MINUTE)?,
            hour: parse_field(fields[1], &HOUR)?,
            dom: parse_field(fields[2], &DOM)?,
            month: parse_field(fields[3], &MONTH)?,
            dow: parse_field(fields[4], &DOW)?,
            tz,
        })
    }

    fn day_matches(&self, d: civil::Date) -> bool {
        let dom = self.dom.has(d.day());
        let dow = self.dow.has(d.weekday().to_sunday_zero_offset());
        if self.dom.star || self.dow.star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time strictly after `after`, or None if there is none within five
    /// years (e.g. `0 0 30 2 *`, which never comes).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned(self.tz.clone()).datetime();
        // Whole minutes only: the first candidate is the minute after `after`'s.
        let mut t = start
            .date()
            .at(start.hour(), start.minute(), 0, 0)
            .checked_add(1.minute())
            .ok()?;
        let limit = start.year() + 5;
        while t.year() <= limit {
            if !self.month.has(t.month()) {
                t = t
                    .date()
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .into();
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t.date().tomorrow().ok()?.into();
                continue;
            }
            if !self.hour.has(t.hour()) {
                t = next_hour(t)?;
                continue;
            }
            if !self.minute.has(t.minute()) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            // A time skipped by a daylight-saving jump runs at the first moment after it; one
            // that happens twice runs the first time.
            let at = t.to_zoned(self.tz.clone()).ok()?.timestamp();
            if at > after {
                return Some(at);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }

    /// Every scheduled time in (after, until], oldest first, at most `cap` of them (the
    /// newest ones are kept: they are the ones a controller that was down may still start).
    pub fn times_between(&self, after: Timestamp, until: Timestamp, cap: usize) -> Vec<Timestamp> {
        let mut out = std::collections::VecDeque::new();
        let mut t = after;
        while let Some(n) = self.next_after(t) {
            if n > until {
                break;
            }
            if out.len() == cap {
                out.pop_front();
            }
            out.push_back(n);
            t = n;
        }
        out.into()
    }
}

fn next_hour(t: DateTime) -> Option<DateTime> {
    t.date().at(t.hour(), 0, 0, 0).checked_add(1.hour()).ok()
}

fn parse_field(text: &str, b: &Bounds) -> Result<Field, Error> {
    let err = |why: String| Error::Field {
        what: b.what,
        field: text.to_string(),
        why,
    };
    let mut field = Field {
        bits: 0,
        star: false,
    };
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u8 = s.parse().map_err(|_| err(format!("bad step {s:?}")))?;
                if step == 0 {
                    return Err(err("step of zero".to_string()));
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (lo, hi, star) = if range == "*" || range == "?" {
            (b.min, b.max, true)
        } else if let Some((lo, hi)) = range.split_once('-') {
            (
                value(lo, b).map_err(&err)?,
                value(hi, b).map_err(&err)?,
                false,
            )
        } else {
            let v = value(range, b).map_err(&err)?;
            // `5/15` means from 5 to the end in steps of 15.
            (v, if step.is_some() { b.max } else { v }, false)
        };
        if lo > hi {
            return Err(err(format!(
                "beginning of range ({lo}) beyond end of range ({hi})"
            )));
        }
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            field.bits |= 1 << v;
            v += step;
        }
        // `*/5` restricts the field, so for the day rule it no longer counts as `*`.
        field.star |= star && step == 1;
    }
    Ok(field)
}

fn value(text: &str, b: &Bounds) -> Result<u8, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| !n.is_empty() && *n == lower) {
        return Ok(i as u8);
    }
    let v: u8 = text
        .parse()
        .map_err(|_| format!("failed to parse int from {text}"))?;
    if v < b.min || v > b.max {
        return Err(format!("{v} out of range [{}, {}]", b.min, b.max));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, zone: Option<&str>, after: &str) -> String {
        Schedule::parse(spec, zone)
            .unwrap()
            .next_after(ts(after))
            .unwrap()
            .to_string()
    }

    #[test]
    fn every_minute_and_steps() {
        assert_eq!(
            next("* * * * *", None, "2026-12-03T06:14:50Z"),
            "2026-12-03T06:15:00Z"
        );
        // Exactly on a scheduled minute: the next one, not the same.
        assert_eq!(
            next("* * * * *", None, "2026-12-03T06:15:00Z"),
            "2026-12-03T06:16:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", None, "2026-12-03T06:16:00Z"),
            "2026-12-03T06:30:00Z"
        );
        assert_eq!(
            next("5/20 2-4 * * *", None, "2026-12-03T04:50:00Z"),
            "2026-12-04T02:05:00Z"
        );
        assert_eq!(
            next("0 0 * * mon-fri", None, "2026-12-04T12:00:00Z"),
            "2026-12-07T00:00:00Z"
        );
    }

    #[test]
    fn shorthands() {
        assert_eq!(
            next("@hourly", None, "2026-12-03T06:14:00Z"),
            "2026-12-03T07:00:00Z"
        );
        assert_eq!(
            next("@daily", None, "2026-12-03T06:14:00Z"),
            "2026-12-04T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", None, "2026-12-03T06:14:00Z"),
            "2026-12-06T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", None, "2026-12-03T06:14:00Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", None, "2026-12-03T06:14:00Z"),
            "2027-01-01T00:00:00Z"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // The 13th or any Friday: Friday 2026-12-04 comes first.
        assert_eq!(
            next("0 0 13 * fri", None, "2026-12-03T00:00:00Z"),
            "2026-12-04T00:00:00Z"
        );
        // With dow `*` only the day of month counts.
        assert_eq!(
            next("0 0 13 * *", None, "2026-12-03T00:00:00Z"),
            "2026-12-13T00:00:00Z"
        );
        // `*/2` restricts: odd days of the month or Sundays (Dec 6th is a Sunday).
        assert_eq!(
            next("0 0 */2 * sun", None, "2026-12-05T12:00:00Z"),
            "2026-12-06T00:00:00Z"
        );
        assert!(Schedule::parse("0 0 30 feb *", None)
            .unwrap()
            .next_after(ts("2026-01-01T00:00:00Z"))
            .is_none());
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        // 09:00 in New York is 14:00 UTC in winter and 13:00 UTC in summer.
        assert_eq!(
            next(
                "0 9 * * *",
                Some("America/New_York"),
                "2026-12-03T00:00:00Z"
            ),
            "2026-12-03T14:00:00Z"
        );
        assert_eq!(
            next(
                "0 9 * * *",
                Some("America/New_York"),
                "2026-07-03T00:00:00Z"
            ),
            "2026-07-03T13:00:00Z"
        );
        assert_eq!(
            next(
                "TZ=America/New_York 0 9 * * *",
                None,
                "2026-07-03T00:00:00Z"
            ),
            "2026-07-03T13:00:00Z"
        );
        // 02:30 does not exist on 2026-03-08 in New York: it runs at 03:00 local (07:00 UTC).
        assert_eq!(
            next(
                "30 2 * * *",
                Some("America/New_York"),
                "2026-03-08T05:00:00Z"
            ),
            "2026-03-08T07:30:00Z"
        );
        // 01:30 happens twice on 2026-11-01: it runs once, the first time (EDT, 05:30 UTC),
        // then the next day.
        let s = Schedule::parse("30 1 * * *", Some("America/New_York")).unwrap();
        let first = s.next_after(ts("2026-11-01T04:00:00Z")).unwrap();
        assert_eq!(first.to_string(), "2026-11-01T05:30:00Z");
        assert_eq!(
            s.next_after(first).unwrap().to_string(),
            "2026-11-02T06:30:00Z"
        );
    }

    #[test]
    fn bad_schedules() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
            "@fortnightly",
        ] {
            assert!(Schedule::parse(bad, None).is_err(), "{bad}");
        }
        assert_eq!(
            Schedule::parse("* * * * *", Some("Mars/Olympus")).unwrap_err(),
            Error::TimeZone("Mars/Olympus".into())
        );
    }

    #[test]
    fn missed_times_keep_the_newest() {
        let s = Schedule::parse("* * * * *", None).unwrap();
        let t = s.times_between(ts("2026-12-03T06:00:30Z"), ts("2026-12-03T06:10:00Z"), 3);
        let t: Vec<String> = t.iter().map(|t| t.to_string()).collect();
        assert_eq!(
            t,
            [
                "2026-12-03T06:08:00Z",
                "2026-12-03T06:09:00Z",
                "2026-12-03T06:10:00Z"
            ]
        );
    }
}

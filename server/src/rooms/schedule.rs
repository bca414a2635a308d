//! Recurring sessions of scheduled rooms ("2nd and 4th Thursday of the month,
//! 19:00–20:30 Europe/London"): whether one is running now and when the
//! next starts, computed in the room's own time zone so DST is right.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

/// A schedule as written in the config file.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub timezone: String,
    pub days: Vec<String>,
    #[serde(default)]
    pub weeks_of_month: Vec<i8>,
    pub start: String,
    pub end: String,
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub spec: ScheduleSpec,
    tz: Tz,
    days: Vec<Weekday>,
    start: NaiveTime,
    length: Duration,
}

/// Whether a session runs at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open { closes_at: DateTime<Utc> },
    Closed { next_open_at: Option<DateTime<Utc>> },
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.to_ascii_lowercase().get(..3)? {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

impl Schedule {
    pub fn new(spec: ScheduleSpec) -> Result<Schedule, String> {
        let tz: Tz = spec.timezone.parse().map_err(|_| format!("unknown time zone {:?}", spec.timezone))?;
        let days = spec.days.iter().map(|d| weekday(d).ok_or_else(|| format!("unknown day {d:?}"))).collect::<Result<Vec<_>, _>>()?;
        if days.is_empty() {
            return Err("a schedule needs at least one day".into());
        }
        if let Some(w) = spec.weeks_of_month.iter().find(|w| !matches!(w, 1..=5 | -1)) {
            return Err(format!("week of month {w} is not 1–5 or -1 (the last)"));
        }
        let parse = |t: &str| NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| format!("time {t:?} is not HH:MM"));
        let start = parse(&spec.start)?;
        let end = parse(&spec.end)?;
        let mut length = end - start;
        if length <= Duration::zero() {
            length += Duration::days(1); // ends after midnight
        }
        Ok(Schedule { spec, tz, days, start, length })
    }

    fn runs_on(&self, date: NaiveDate) -> bool {
        if !self.days.contains(&date.weekday()) {
            return false;
        }
        if self.spec.weeks_of_month.is_empty() {
            return true;
        }
        let nth = ((date.day() - 1) / 7 + 1) as i8;
        let last = (date + Duration::days(7)).month() != date.month();
        self.spec.weeks_of_month.iter().any(|&w| w == nth || (w == -1 && last))
    }

    fn start_on(&self, date: NaiveDate) -> Option<DateTime<Utc>> {
        // `earliest` picks the first of two DST-ambiguous instants; a start in
        // a DST gap (it does not exist that day) moves on an hour.
        let local = date.and_time(self.start);
        self.tz
            .from_local_datetime(&local)
            .earliest()
            .or_else(|| self.tz.from_local_datetime(&(local + Duration::hours(1))).earliest())
            .map(|t| t.with_timezone(&Utc))
    }

    pub fn status(&self, now: DateTime<Utc>) -> Status {
        let today = now.with_timezone(&self.tz).date_naive();
        // From yesterday (a session may run past midnight) to ~2 months ahead.
        for offset in -1..=70 {
            let date = today + Duration::days(offset);
            if !self.runs_on(date) {
                continue;
            }
            let Some(start) = self.start_on(date) else { continue };
            let end = start + self.length;
            if now < start {
                return Status::Closed { next_open_at: Some(start) };
            }
            if now < end {
                return Status::Open { closes_at: end };
            }
        }
        Status::Closed { next_open_at: None }
    }

    /// The room's time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The start and end, in the room's local time, of the session running
    /// at `now` or else the next one: the first instance of the recurrence a
    /// calendar file describes. None when none starts within ~2 months.
    pub fn current_or_next_local(&self, now: DateTime<Utc>) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let today = now.with_timezone(&self.tz).date_naive();
        (-1..=70).map(|offset| today + Duration::days(offset)).filter(|d| self.runs_on(*d)).find_map(|date| {
            let start = self.start_on(date)?;
            (now < start + self.length).then(|| (date.and_time(self.start), date.and_time(self.start) + self.length))
        })
    }

    /// The schedule as an RFC 5545 recurrence rule (the value of `RRULE`):
    /// `FREQ=WEEKLY;BYDAY=TH`, or for weeks of the month each listed day with
    /// its ordinal, `FREQ=MONTHLY;BYDAY=2TH,4TH` (`-1TH` for the last). The
    /// ordinal of a weekday in its month is exactly `runs_on`'s week number
    /// (days 1–7 hold the 1st of each weekday, 8–14 the 2nd, …).
    pub fn rrule(&self) -> String {
        let code = |d: &Weekday| match d {
            Weekday::Mon => "MO",
            Weekday::Tue => "TU",
            Weekday::Wed => "WE",
            Weekday::Thu => "TH",
            Weekday::Fri => "FR",
            Weekday::Sat => "SA",
            Weekday::Sun => "SU",
        };
        if self.spec.weeks_of_month.is_empty() {
            let days: Vec<&str> = self.days.iter().map(code).collect();
            return format!("FREQ=WEEKLY;BYDAY={}", days.join(","));
        }
        let days: Vec<String> = self.spec.weeks_of_month.iter().flat_map(|w| self.days.iter().map(move |d| format!("{w}{}", code(d)))).collect();
        format!("FREQ=MONTHLY;BYDAY={}", days.join(","))
    }

    /// "2nd and 4th Thursday of the month, 19:00–20:30 Europe/London".
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.days.iter().map(|d| day_name(*d)).collect();
        let days = join_words(&names);
        let when = if self.spec.weeks_of_month.is_empty() {
            format!("Every {days}")
        } else {
            let nths: Vec<String> = self.spec.weeks_of_month.iter().map(|w| ordinal(*w)).collect();
            let nths: Vec<&str> = nths.iter().map(String::as_str).collect();
            format!("{} {days} of the month", join_words(&nths))
        };
        format!("{when}, {}–{} {}", self.spec.start, self.spec.end, self.spec.timezone)
    }
}

fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

fn ordinal(w: i8) -> String {
    match w {
        -1 => "last".into(),
        1 => "1st".into(),
        2 => "2nd".into(),
        3 => "3rd".into(),
        n => format!("{n}th"),
    }
}

fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second_and_fourth_thursday() -> Schedule {
        Schedule::new(ScheduleSpec {
            timezone: "Europe/London".into(),
            days: vec!["thu".into()],
            weeks_of_month: vec![2, 4],
            start: "19:00".into(),
            end: "20:30".into(),
        })
        .unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn open_during_a_session_in_winter_time() {
        // 2026-11-12 is the 2nd Thursday of November; London is on GMT.
        let s = second_and_fourth_thursday();
        assert_eq!(s.status(utc("2026-11-12T19:30:00Z")), Status::Open { closes_at: utc("2026-11-12T20:30:00Z") });
    }

    #[test]
    fn next_opening_skips_weeks_not_listed_and_honours_summer_time() {
        let s = second_and_fourth_thursday();
        // After the 4th Thursday of November (the 26th) the next is 10 December.
        assert_eq!(s.status(utc("2026-11-26T21:00:00Z")), Status::Closed { next_open_at: Some(utc("2026-12-10T19:00:00Z")) });
        // In June London is on BST (UTC+1): 19:00 local is 18:00 UTC. 2nd Thursday of June 2026 is the 11th.
        assert_eq!(s.status(utc("2026-06-01T00:00:00Z")), Status::Closed { next_open_at: Some(utc("2026-06-11T18:00:00Z")) });
    }

    #[test]
    fn sessions_past_midnight_are_open_after_midnight() {
        let s = Schedule::new(ScheduleSpec {
            timezone: "UTC".into(),
            days: vec!["fri".into()],
            weeks_of_month: vec![],
            start: "23:00".into(),
            end: "01:00".into(),
        })
        .unwrap();
        // Friday 2026-11-20 23:00 → Saturday 01:00.
        assert!(matches!(s.status(utc("2026-11-21T00:30:00Z")), Status::Open { .. }));
    }

    #[test]
    fn describes_itself_for_people() {
        assert_eq!(second_and_fourth_thursday().describe(), "2nd and 4th Thursday of the month, 19:00–20:30 Europe/London");
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut spec = second_and_fourth_thursday().spec;
        spec.timezone = "Mars/Olympus".into();
        assert!(Schedule::new(spec).is_err());
    }
}

//! A scheduled room as an RFC 5545 calendar (`GET /rooms/{id}/calendar.ics`):
//! one VEVENT recurring as the schedule does, in the room's own time zone
//! (`TZID`), with a VTIMEZONE built from chrono-tz's transitions so a
//! calendar shows every session at the right local time across DST changes.
//! The file is built with the `ics` crate (components, escaping, folding).

use super::RoomDef;
use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};
use ics::parameters::TzIDParam;
use ics::properties::{Description, DtEnd, DtStart, RRule, Summary, TzName, URL};
use ics::{Daylight, Event, ICalendar, Standard, escape_text};

const LOCAL: &str = "%Y%m%dT%H%M%S";

/// The room's calendar, or None when it has no schedule (or no session in
/// the next two months to anchor the recurrence on). `room_url` is the room
/// in the web client; `now` is when the file is made.
pub fn ics(room: &RoomDef, room_url: &str, now: DateTime<Utc>) -> Option<String> {
    let schedule = room.schedule.as_ref()?;
    let (start, end) = schedule.current_or_next_local(now)?;
    let tzid = schedule.spec.timezone.clone();

    let mut event = Event::new(format!("room-{}@kindred", room.id.0), now.format("%Y%m%dT%H%M%SZ").to_string());
    let mut dtstart = DtStart::new(start.format(LOCAL).to_string());
    dtstart.add(TzIDParam::new(tzid.clone()));
    let mut dtend = DtEnd::new(end.format(LOCAL).to_string());
    dtend.add(TzIDParam::new(tzid.clone()));
    event.push(dtstart);
    event.push(dtend);
    event.push(RRule::new(schedule.rrule()));
    event.push(Summary::new(escape_text(room.name.clone())));
    if !room.description.is_empty() {
        event.push(Description::new(escape_text(room.description.clone())));
    }
    event.push(URL::new(room_url.to_owned()));

    let mut calendar = ICalendar::new("2.0", "-//Kindred//Kindred peer support//EN");
    calendar.add_timezone(vtimezone(schedule.tz(), &tzid, now));
    calendar.add_event(event);
    Some(calendar.to_string())
}

/// One change of a zone's UTC offset.
#[derive(Debug, Clone)]
struct Transition {
    /// The local time it happens at, on the clock before it (how VTIMEZONE's DTSTART is written).
    onset: NaiveDateTime,
    from: FixedOffset,
    to: FixedOffset,
    dst: bool,
    name: String,
}

/// The years whose transitions are written: from last year (so the first
/// session is covered) for a few years; a rule seen every year is written as
/// a yearly RRULE, so later years follow it too.
const YEARS_BEFORE: i32 = 1;
const YEARS_AFTER: i32 = 4;

fn offset_at(tz: Tz, t: DateTime<Utc>) -> (FixedOffset, bool, String) {
    let o = tz.offset_from_utc_datetime(&t.naive_utc());
    let name = o.abbreviation().map(str::to_owned).unwrap_or_else(|| format_offset(o.fix()));
    (o.fix(), !o.dst_offset().is_zero(), name)
}

fn transitions(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Transition> {
    let mut found = Vec::new();
    let mut day = from;
    while day < to {
        let next = day + Duration::days(1);
        let before = offset_at(tz, day).0;
        if offset_at(tz, next).0 != before {
            // Bisect to the second: the last instant on the old offset.
            let (mut lo, mut hi) = (day, next);
            while hi - lo > Duration::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset_at(tz, mid).0 == before { lo = mid } else { hi = mid }
            }
            let (to_offset, dst, name) = offset_at(tz, hi);
            found.push(Transition { onset: hi.naive_utc() + before, from: before, to: to_offset, dst, name });
        }
        day = next;
    }
    found
}

fn format_offset(o: FixedOffset) -> String {
    let secs = o.local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    if s == 0 { format!("{sign}{h:02}{m:02}") } else { format!("{sign}{h:02}{m:02}{s:02}") }
}

fn days_in_month(d: NaiveDate) -> u32 {
    let first_next = if d.month() == 12 { NaiveDate::from_ymd_opt(d.year() + 1, 1, 1) } else { NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1) };
    first_next.and_then(|n| n.pred_opt()).map_or(31, |last| last.day())
}

/// `FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU` when every transition of a kind falls
/// on the same weekday of the same month at the same local time, one a year.
fn yearly_rule(group: &[&Transition], last_year: i32) -> Option<String> {
    let first = group.first()?;
    let (month, weekday, time) = (first.onset.month(), first.onset.weekday(), first.onset.time());
    let same = group.iter().all(|t| t.onset.month() == month && t.onset.weekday() == weekday && t.onset.time() == time);
    let yearly = group.windows(2).all(|w| w[1].onset.year() == w[0].onset.year() + 1);
    if group.len() < 2 || !same || !yearly {
        return None;
    }
    let nth = |t: &Transition| (t.onset.day() as i32 - 1) / 7 + 1;
    let ordinal = if group.iter().all(|t| t.onset.day() + 7 > days_in_month(t.onset.date())) {
        -1
    } else if group.iter().all(|t| nth(t) == nth(first)) {
        nth(first)
    } else {
        return None;
    };
    let day = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"][weekday.num_days_from_monday() as usize];
    let mut rule = format!("FREQ=YEARLY;BYMONTH={month};BYDAY={ordinal}{day}");
    let last = group.last()?;
    if last.onset.year() < last_year {
        // The rule stopped inside the window: say when, in UTC as RFC 5545 asks.
        rule.push_str(&format!(";UNTIL={}", (last.onset - last.from).format("%Y%m%dT%H%M%SZ")));
    }
    Some(rule)
}

/// The VTIMEZONE for `tz`: a STANDARD and a DAYLIGHT observance per rule
/// (yearly RRULEs where the zone follows one), or a single STANDARD for a
/// zone without changes.
fn vtimezone(tz: Tz, tzid: &str, now: DateTime<Utc>) -> ics::TimeZone<'static> {
    let year = now.year();
    let start = Utc.with_ymd_and_hms(year - YEARS_BEFORE, 1, 1, 0, 0, 0).single().unwrap_or(now);
    let end = Utc.with_ymd_and_hms(year + YEARS_AFTER + 1, 1, 1, 0, 0, 0).single().unwrap_or(now);
    let all = transitions(tz, start, end);
    let mut observances: Vec<(bool, String, String, String, String, Option<String>)> = Vec::new();
    // Group by what changes (kind, offsets, name), in order of first appearance.
    let mut keys: Vec<(bool, FixedOffset, FixedOffset, String)> = Vec::new();
    for t in &all {
        let key = (t.dst, t.from, t.to, t.name.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for key in &keys {
        let group: Vec<&Transition> = all.iter().filter(|t| (t.dst, t.from, t.to, &t.name) == (key.0, key.1, key.2, &key.3)).collect();
        let observance =
            |t: &Transition, rule: Option<String>| (t.dst, t.onset.format(LOCAL).to_string(), format_offset(t.from), format_offset(t.to), t.name.clone(), rule);
        match yearly_rule(&group, year + YEARS_AFTER) {
            Some(rule) => observances.push(observance(group[0], Some(rule))),
            None => observances.extend(group.iter().map(|t| observance(t, None))),
        }
    }
    if observances.is_empty() {
        let (offset, dst, name) = offset_at(tz, now);
        let o = format_offset(offset);
        observances.push((dst, "19700101T000000".into(), o.clone(), o, name, None));
    }
    let mut zone: Option<ics::TimeZone<'static>> = None;
    for (dst, dtstart, from, to, name, rule) in observances {
        macro_rules! observance {
            ($kind:ident, $add:ident, $new:ident) => {{
                let mut o = $kind::new(dtstart, from, to);
                o.push(TzName::new(name));
                if let Some(rule) = rule {
                    o.push(RRule::new(rule));
                }
                match zone.as_mut() {
                    Some(z) => z.$add(o),
                    None => zone = Some(ics::TimeZone::$new(tzid.to_owned(), o)),
                }
            }};
        }
        if dst {
            observance!(Daylight, add_daylight, daylight);
        } else {
            observance!(Standard, add_standard, standard);
        }
    }
    zone.expect("at least one observance")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::RoomsFile;

    fn seeded() -> RoomDef {
        RoomsFile::builtin().into_defs().unwrap().into_iter().find(|r| r.id.0 == "grief-evening").unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn london_has_one_yearly_rule_each_way() {
        let text = ics(&seeded(), "http://localhost/#/room/grief-evening", at("2026-11-30T12:00:00Z")).unwrap();
        assert!(text.contains("BEGIN:DAYLIGHT\r\nDTSTART:20250330T010000\r\nTZOFFSETFROM:+0000\r\nTZOFFSETTO:+0100\r\nTZNAME:BST\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n"), "{text}");
        assert!(text.contains("BEGIN:STANDARD\r\nDTSTART:20251026T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0000\r\nTZNAME:GMT\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\n"), "{text}");
        assert!(text.contains("DTSTART;TZID=Europe/London:20261210T190000\r\n"), "{text}");
        assert!(text.contains("DTEND;TZID=Europe/London:20261210T203000\r\n"), "{text}");
        assert!(text.contains("RRULE:FREQ=MONTHLY;BYDAY=2TH,4TH\r\n"), "{text}");
    }

    #[test]
    fn a_zone_without_dst_has_one_standard_observance() {
        let mut room = seeded();
        let mut spec = room.schedule.unwrap().spec;
        spec.timezone = "Asia/Tokyo".into();
        room.schedule = Some(crate::rooms::schedule::Schedule::new(spec).unwrap());
        let text = ics(&room, "u", at("2026-11-30T12:00:00Z")).unwrap();
        assert_eq!(text.matches("BEGIN:STANDARD").count(), 1, "{text}");
        assert!(!text.contains("DAYLIGHT"));
        assert!(text.contains("TZOFFSETTO:+0900"));
    }

    #[test]
    fn an_always_open_room_has_no_calendar() {
        let rooms = RoomsFile::builtin().into_defs().unwrap();
        let open = rooms.iter().find(|r| r.schedule.is_none()).unwrap();
        assert!(ics(open, "u", Utc::now()).is_none());
    }

    #[test]
    fn offsets_are_signed_hours_and_minutes() {
        assert_eq!(format_offset(FixedOffset::east_opt(-(3 * 3600 + 1800)).unwrap()), "-0330");
        assert_eq!(format_offset(FixedOffset::east_opt(5 * 3600 + 45 * 60).unwrap()), "+0545");
        assert_eq!(NaiveDate::from_ymd_opt(2028, 2, 10).map(days_in_month), Some(29));
    }
}

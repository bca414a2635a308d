//! `GET /rooms/{id}/calendar.ics`: read back with an independent parser
//! (`ical`), its RRULE expanded by an independent engine (`rrule`), and the
//! sessions it gives checked against the server's own schedule, across a
//! DST change.

use crate::common::*;
use crate::session::http_get;
use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Europe::London;
use kindred_server::rooms::RoomsFile;
use kindred_server::rooms::schedule::Status;

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn prop<'a>(props: &'a [ical::property::Property], name: &str) -> &'a ical::property::Property {
    props.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{name} in {props:?}"))
}

fn value<'a>(props: &'a [ical::property::Property], name: &str) -> &'a str {
    prop(props, name).value.as_deref().unwrap_or("")
}

fn tzid(p: &ical::property::Property) -> Option<&str> {
    p.params.as_ref()?.iter().find(|(k, _)| k == "TZID").and_then(|(_, v)| v.first()).map(String::as_str)
}

/// The first change of London's UTC offset at least 30 days from now: far
/// enough that a `now` 25 days before it is still after the calendar's first
/// session (made at the real now).
fn next_london_dst_change() -> DateTime<Utc> {
    let offset = |t: DateTime<Utc>| London.offset_from_utc_datetime(&t.naive_utc()).fix();
    let mut day = Utc::now() + Duration::days(30);
    while offset(day) == offset(day + Duration::days(1)) {
        day += Duration::days(1);
    }
    // Bisect, in whole seconds, to the instant the new offset starts.
    let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap();
    let (mut lo, mut hi) = (day.timestamp(), day.timestamp() + 86_400);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset(at(mid)) == offset(at(lo)) { lo = mid } else { hi = mid }
    }
    at(hi)
}

#[tokio::test]
async fn the_seeded_thursday_room_reaches_calendars_at_the_right_local_time_across_a_dst_change() {
    let server = TestServer::start().await;
    let response = http_get(server.addr, "/rooms/grief-evening/calendar.ics").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.to_ascii_lowercase().contains("content-type: text/calendar; charset=utf-8"), "{response}");

    let mut parser = ical::IcalParser::new(body(&response).as_bytes());
    let calendar = parser.next().expect("a VCALENDAR").expect("it parses");
    assert!(parser.next().is_none(), "one calendar");
    assert_eq!(value(&calendar.properties, "VERSION"), "2.0");
    let [event] = calendar.events.as_slice() else { panic!("one VEVENT: {:?}", calendar.events) };
    let room = RoomsFile::builtin().into_defs().unwrap().into_iter().find(|r| r.id.as_str() == "grief-evening").unwrap();
    assert_eq!(value(&event.properties, "SUMMARY"), room.name);
    assert_eq!(value(&event.properties, "DESCRIPTION"), room.description);
    assert_eq!(value(&event.properties, "URL"), "http://x/#/room/grief-evening");
    let dtstart = prop(&event.properties, "DTSTART");
    assert_eq!(tzid(dtstart), Some("Europe/London"));
    assert_eq!(tzid(prop(&event.properties, "DTEND")), Some("Europe/London"));
    let rrule = value(&event.properties, "RRULE");
    assert_eq!(rrule, "FREQ=MONTHLY;BYDAY=2TH,4TH");

    // The VTIMEZONE the event names, with London's two observances.
    let [zone] = calendar.timezones.as_slice() else { panic!("one VTIMEZONE") };
    assert_eq!(value(&zone.properties, "TZID"), "Europe/London");
    let offsets: Vec<(String, String)> =
        zone.transitions.iter().map(|t| (value(&t.properties, "TZOFFSETFROM").to_owned(), value(&t.properties, "TZOFFSETTO").to_owned())).collect();
    assert!(offsets.contains(&("+0000".into(), "+0100".into())) && offsets.contains(&("+0100".into(), "+0000".into())), "{offsets:?}");

    // Expand the event's recurrence from a `now` 25 days before a DST change.
    let change = next_london_dst_change();
    let now = change - Duration::days(25);
    let set: rrule::RRuleSet = format!("DTSTART;TZID=Europe/London:{}\nRRULE:{rrule}", dtstart.value.as_deref().unwrap()).parse().expect("rrule parses it");
    let expanded: Vec<DateTime<Utc>> = set.after(now.with_timezone(&rrule::Tz::UTC)).all(3).dates.iter().map(|d| d.with_timezone(&Utc)).collect();

    // The server's own next openings from the same `now`.
    let schedule = room.schedule.as_ref().unwrap();
    let mut expected = Vec::new();
    let mut t = now;
    while expected.len() < 3 {
        match schedule.status(t) {
            Status::Closed { next_open_at: Some(next) } => {
                expected.push(next);
                t = next + Duration::hours(2);
            }
            other => panic!("closed between sessions, got {other:?} at {t}"),
        }
    }
    assert_eq!(expanded, expected, "around the change at {change}");
    assert!(expected.first().unwrap() < &change && expected.last().unwrap() > &change, "{expected:?} spans {change}");
    let utc_hours: std::collections::BTreeSet<String> = expected.iter().map(|d| d.format("%H:%M").to_string()).collect();
    assert_eq!(utc_hours.len(), 2, "19:00 London is a different UTC time on each side of the change: {utc_hours:?}");

    // Each session lasts 19:00–20:30 local: DTEND is 90 minutes after DTSTART.
    let local = |p: &str| NaiveDateTime::parse_from_str(value(&event.properties, p), "%Y%m%dT%H%M%S").unwrap();
    assert_eq!(local("DTEND") - local("DTSTART"), Duration::minutes(90));

    // The VTIMEZONE's own DAYLIGHT/STANDARD rules, expanded, put the next change where chrono-tz does.
    let onsets: Vec<DateTime<Utc>> = zone
        .transitions
        .iter()
        .flat_map(|tr| {
            let from = value(&tr.properties, "TZOFFSETFROM");
            let hours: i64 = from[1..3].parse().unwrap();
            let sign = if from.starts_with('-') { -1 } else { 1 };
            let start = NaiveDateTime::parse_from_str(value(&tr.properties, "DTSTART"), "%Y%m%dT%H%M%S").unwrap() - Duration::hours(sign * hours);
            let rule = value(&tr.properties, "RRULE");
            let set: rrule::RRuleSet = format!("DTSTART:{}Z\nRRULE:{rule}", start.format("%Y%m%dT%H%M%S")).parse().unwrap();
            set.after(now.with_timezone(&rrule::Tz::UTC)).all(1).dates.into_iter().map(|d| d.with_timezone(&Utc))
        })
        .collect();
    assert_eq!(onsets.iter().min(), Some(&change), "{onsets:?}");
}

#[tokio::test]
async fn rooms_without_a_schedule_or_unknown_have_no_calendar() {
    let server = TestServer::start().await;
    for path in ["/rooms/anxiety/calendar.ics", "/rooms/nowhere/calendar.ics"] {
        let response = http_get(server.addr, path).await;
        assert!(response.starts_with("HTTP/1.1 404"), "{path}: {response}");
    }
}

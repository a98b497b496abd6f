//! FHIR date, dateTime and instant values as the instant ranges they cover (epoch ms, inclusive), which is
//! what date search compares: `2024` covers the whole year, `2024-03-05T10:00:00Z` one second.

use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

/// The inclusive millisecond range covered by a FHIR date/dateTime/instant, or `None` if it is not one.
/// Values without a time zone are read as UTC.
pub fn range(value: &str) -> Option<(i64, i64)> {
    let (date_part, rest) = match value.find('T') {
        Some(i) => (&value[..i], Some(&value[i + 1..])),
        None => (value, None),
    };
    let mut parts = date_part.split('-');
    let year: i32 = digits(parts.next()?, 4)?;
    let month: Option<u8> = match parts.next() {
        Some(m) => Some(digits(m, 2)?),
        None => None,
    };
    let day: Option<u8> = match parts.next() {
        Some(d) => Some(digits(d, 2)?),
        None => None,
    };
    if parts.next().is_some() || (day.is_some() && month.is_none()) {
        return None;
    }
    let Some(rest) = rest else {
        return match (month, day) {
            (None, _) => {
                let start = Date::from_calendar_date(year, Month::January, 1).ok()?;
                Some(span(start, Date::from_calendar_date(year + 1, Month::January, 1).ok()))
            }
            (Some(m), None) => {
                let month = Month::try_from(m).ok()?;
                let start = Date::from_calendar_date(year, month, 1).ok()?;
                let end = if month == Month::December {
                    Date::from_calendar_date(year + 1, Month::January, 1).ok()
                } else {
                    Date::from_calendar_date(year, month.next(), 1).ok()
                };
                Some(span(start, end))
            }
            (Some(m), Some(d)) => {
                let start = Date::from_calendar_date(year, Month::try_from(m).ok()?, d).ok()?;
                Some(span(start, start.next_day()))
            }
        };
    };
    let date = Date::from_calendar_date(year, Month::try_from(month?).ok()?, day?).ok()?;
    // Split the zone off: `Z`, `+hh:mm` or `-hh:mm`; without one, UTC.
    let (clock, offset) = if let Some(c) = rest.strip_suffix('Z') {
        (c, UtcOffset::UTC)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let zone = &rest[i + 1..];
        let (h, m) = zone.split_once(':')?;
        let (h, m): (i8, i8) = (digits(h, 2)?, digits(m, 2)?);
        let sign = if rest.as_bytes()[i] == b'-' { -1 } else { 1 };
        (&rest[..i], UtcOffset::from_hms(sign * h, sign * m, 0).ok()?)
    } else {
        (rest, UtcOffset::UTC)
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, f)) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => (hms, Some(f)),
        Some(_) => return None,
        None => (clock, None),
    };
    let mut fields = hms.split(':');
    let hour: u8 = digits(fields.next()?, 2)?;
    let minute: u8 = digits(fields.next()?, 2)?;
    let second: Option<u8> = match fields.next() {
        Some(s) => Some(digits(s, 2)?),
        None => None,
    };
    if fields.next().is_some() {
        return None;
    }
    let millis: u16 = fraction.map_or(0, |f| {
        let padded = format!("{:0<3}", &f[..f.len().min(3)]);
        padded.parse().unwrap_or(0)
    });
    let time = Time::from_hms_milli(hour, minute, second.unwrap_or(0), millis).ok()?;
    let start = PrimitiveDateTime::new(date, time).assume_offset(offset);
    let low = (start.unix_timestamp_nanos() / 1_000_000) as i64;
    let width = match (second, fraction) {
        (None, _) => 60_000,
        (Some(_), None) => 1_000,
        (Some(_), Some(_)) => 1,
    };
    Some((low, low + width - 1))
}

/// From the start of `start` to just before `end`; no `end` means past 9999-12-31 (the last FHIR year).
fn span(start: Date, end: Option<Date>) -> (i64, i64) {
    const YEAR_10000: i64 = 253_402_300_800_000;
    let ms = |d: Date| d.midnight().assume_utc().unix_timestamp() * 1000;
    (ms(start), end.map_or(YEAR_10000, ms) - 1)
}

fn digits<T: std::str::FromStr>(s: &str, len: usize) -> Option<T> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn ranges_follow_precision() {
        let year = range("2024").unwrap();
        assert_eq!(year, (1_704_067_200_000, 1_735_689_599_999));
        assert_eq!(range("2024-02").unwrap(), (1_706_745_600_000, 1_709_251_199_999));
        for end_of_time in ["9999", "9999-12", "9999-12-31"] {
            assert_eq!(range(end_of_time).unwrap().1, 253_402_300_799_999, "{end_of_time}");
        }
        assert_eq!(range("2024-02-29").unwrap(), (1_709_164_800_000, 1_709_251_199_999));
        assert_eq!(
            range("2024-02-29T00:00:00Z").unwrap(),
            (1_709_164_800_000, 1_709_164_800_999)
        );
        assert_eq!(range("2024-02-29T01:00:00+01:00").unwrap().0, 1_709_164_800_000);
        assert_eq!(
            range("2024-02-29T00:00:00.5Z").unwrap(),
            (1_709_164_800_500, 1_709_164_800_500)
        );
        assert_eq!(
            range("2024-02-29T10:00").unwrap().1 - range("2024-02-29T10:00").unwrap().0,
            59_999
        );
        for bad in [
            "",
            "24",
            "2024-2",
            "2024-13",
            "2023-02-29",
            "not a date",
            "2024-01-01T25:00:00Z",
            "2024-01-01T",
        ] {
            assert_eq!(range(bad), None, "{bad}");
        }
    }
}

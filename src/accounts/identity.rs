//! What people type to identify themselves, parsed once: an email address and a date of birth.

use crate::error::{Error, Result};

/// A lower-cased email address of plausible shape (the mail server has the last word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Email> {
        let email = input.trim().to_lowercase();
        let bad = || Error::field("email", "Enter an email address like name@example.com.");
        let (local, domain) = email.split_once('@').ok_or_else(bad)?;
        let plausible = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && email.len() <= 254
            && !email
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '"'));
        if plausible { Ok(Email(email)) } else { Err(bad()) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A date of birth, `YYYY-MM-DD` (what a date input sends); `MM/DD/YYYY` is accepted where people type it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirthDate(String);

impl BirthDate {
    pub fn parse(input: &str) -> Result<BirthDate> {
        let input = input.trim();
        let bad = || Error::field("birth_date", "Enter your date of birth (month, day and year).");
        let (y, m, d) = if let Some((m, rest)) = input.split_once('/') {
            let (d, y) = rest.split_once('/').ok_or_else(bad)?;
            (y, m, d)
        } else {
            let mut parts = input.splitn(3, '-');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(y), Some(m), Some(d)) => (y, m, d),
                _ => return Err(bad()),
            }
        };
        let num = |s: &str| s.parse::<u16>().map_err(|_| bad());
        let (year, month, day) = (num(y)?, num(m)?, num(d)?);
        if y.len() != 4 {
            return Err(bad());
        }
        let month = time::Month::try_from(u8::try_from(month).map_err(|_| bad())?).map_err(|_| bad())?;
        let date = time::Date::from_calendar_date(i32::from(year), month, u8::try_from(day).map_err(|_| bad())?)
            .map_err(|_| bad())?;
        Ok(BirthDate(format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_emails_and_birth_dates() {
        assert_eq!(Email::parse(" Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.org",
            "ann@x",
            "a b@x.org",
            "a@b@x.org",
            "<a@x.org>",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(BirthDate::parse("1984-03-07").unwrap().as_str(), "1984-03-07");
        assert_eq!(BirthDate::parse("3/7/1984").unwrap().as_str(), "1984-03-07");
        for bad in ["", "1984-02-30", "84-03-07", "1984-13-01", "March 7", "1984-03"] {
            assert!(BirthDate::parse(bad).is_err(), "{bad}");
        }
    }
}

//! Exchange holidays, by rule, for 2000–2035: the NYSE's and the Tokyo Stock
//! Exchange's. Rules (not lists) so that replay over the bundled years and live
//! trading today use the same code; the NYSE rules are checked against every
//! trading day of the bundled history.

use chrono::{Datelike, Duration, NaiveDate, Weekday};

/// Years the rules are written and checked for.
pub const YEARS: std::ops::RangeInclusive<i32> = 2000..=2035;

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid calendar date")
}

/// The `n`-th (1-based) `weekday` of a month.
fn nth_weekday(y: i32, m: u32, weekday: Weekday, n: u32) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(y, m, weekday, n as u8).expect("the month has it")
}

fn last_weekday(y: i32, m: u32, weekday: Weekday) -> NaiveDate {
    let first_next = if m == 12 {
        ymd(y + 1, 1, 1)
    } else {
        ymd(y, m + 1, 1)
    };
    let mut d = first_next - Duration::days(1);
    while d.weekday() != weekday {
        d -= Duration::days(1);
    }
    d
}

/// Western Easter Sunday (anonymous Gregorian algorithm).
pub fn easter(y: i32) -> NaiveDate {
    let a = y % 19;
    let b = y / 100;
    let c = y % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    ymd(y, month as u32, day as u32)
}

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// NYSE full-day closures in year `y`.
pub fn nyse_holidays(y: i32) -> Vec<NaiveDate> {
    // A Saturday holiday is observed on Friday, a Sunday one on Monday; except
    // New Year's Day on a Saturday, which is not observed (Rule 7.2).
    let observed = |d: NaiveDate| match d.weekday() {
        Weekday::Sat => d - Duration::days(1),
        Weekday::Sun => d + Duration::days(1),
        _ => d,
    };
    let mut days = Vec::new();
    let new_year = ymd(y, 1, 1);
    if new_year.weekday() != Weekday::Sat {
        days.push(observed(new_year));
    }
    days.push(nth_weekday(y, 1, Weekday::Mon, 3)); // Martin Luther King Jr. Day
    days.push(nth_weekday(y, 2, Weekday::Mon, 3)); // Washington's Birthday
    days.push(easter(y) - Duration::days(2)); // Good Friday
    days.push(last_weekday(y, 5, Weekday::Mon)); // Memorial Day
    if y >= 2022 {
        days.push(observed(ymd(y, 6, 19))); // Juneteenth
    }
    days.push(observed(ymd(y, 7, 4)));
    days.push(nth_weekday(y, 9, Weekday::Mon, 1)); // Labor Day
    days.push(nth_weekday(y, 11, Weekday::Thu, 4)); // Thanksgiving
    days.push(observed(ymd(y, 12, 25)));
    // Closures by proclamation or emergency.
    let special: &[(i32, u32, u32)] = &[
        (2001, 9, 11),
        (2001, 9, 12),
        (2001, 9, 13),
        (2001, 9, 14),
        (2004, 6, 11),  // President Reagan's funeral
        (2007, 1, 2),   // President Ford's funeral
        (2012, 10, 29), // Hurricane Sandy
        (2012, 10, 30),
        (2018, 12, 5), // President G. H. W. Bush's funeral
        (2025, 1, 9),  // President Carter's funeral
    ];
    days.extend(
        special
            .iter()
            .filter(|s| s.0 == y)
            .map(|&(y, m, d)| ymd(y, m, d)),
    );
    days.sort();
    days
}

/// Japanese national holidays in year `y` (the Act on National Holidays, with
/// its amendments since 2000), including substitute and "citizens'" holidays.
pub fn japan_holidays(y: i32) -> Vec<NaiveDate> {
    let t = (y - 1980) as f64;
    let leap = ((y - 1980) / 4) as f64;
    let vernal = (20.8431 + 0.242194 * t - leap).floor() as u32;
    let autumnal = (23.2488 + 0.242194 * t - leap).floor() as u32;

    let mut days = vec![
        ymd(y, 1, 1),
        nth_weekday(y, 1, Weekday::Mon, 2), // Coming of Age Day
        ymd(y, 2, 11),                      // National Foundation Day
        ymd(y, 3, vernal),
        ymd(y, 4, 29), // Greenery Day, Showa Day from 2007
        ymd(y, 5, 3),
        ymd(y, 5, 5),
        ymd(y, 9, autumnal),
        ymd(y, 11, 3),
        ymd(y, 11, 23),
    ];
    if y >= 2007 {
        days.push(ymd(y, 5, 4)); // Greenery Day
    }
    days.push(match y {
        2020 => ymd(y, 7, 23),
        2021 => ymd(y, 7, 22),
        ..=2002 => ymd(y, 7, 20),
        _ => nth_weekday(y, 7, Weekday::Mon, 3),
    }); // Marine Day
    if y >= 2016 {
        days.push(match y {
            2020 => ymd(y, 8, 10),
            2021 => ymd(y, 8, 8),
            _ => ymd(y, 8, 11),
        }); // Mountain Day
    }
    days.push(if y <= 2002 {
        ymd(y, 9, 15)
    } else {
        nth_weekday(y, 9, Weekday::Mon, 3)
    }); // Respect for the Aged Day
    days.push(match y {
        2020 => ymd(y, 7, 24),
        2021 => ymd(y, 7, 23),
        _ => nth_weekday(y, 10, Weekday::Mon, 2),
    }); // Sports Day
    match y {
        ..=2018 => days.push(ymd(y, 12, 23)),
        2019 => days.extend([ymd(y, 5, 1), ymd(y, 10, 22)]), // accession, enthronement
        _ => days.push(ymd(y, 2, 23)),
    } // Emperor's Birthday
    days.sort();
    days.dedup();

    // A weekday between two holidays is a holiday (2019's Apr 30 and May 2, some Septembers).
    let mut sandwiched = Vec::new();
    for pair in days.windows(2) {
        let between = pair[0] + Duration::days(1);
        if pair[1] - pair[0] == Duration::days(2) && !is_weekend(between) {
            sandwiched.push(between);
        }
    }
    days.extend(sandwiched);
    // A holiday on a Sunday moves to the next day that is not a holiday (from 2007;
    // before, to the Monday).
    let mut substitutes = Vec::new();
    for &d in &days {
        if d.weekday() == Weekday::Sun {
            let mut s = d + Duration::days(1);
            while y >= 2007 && days.contains(&s) {
                s += Duration::days(1);
            }
            substitutes.push(s);
        }
    }
    days.extend(substitutes);
    days.sort();
    days.dedup();
    days
}

/// Tokyo Stock Exchange closures: national holidays plus Dec 31 – Jan 3.
pub fn tse_holidays(y: i32) -> Vec<NaiveDate> {
    let mut days = japan_holidays(y);
    days.extend([ymd(y, 1, 2), ymd(y, 1, 3), ymd(y, 12, 31)]);
    days.sort();
    days.dedup();
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn easter_dates() {
        assert_eq!(easter(2000), ymd(2000, 4, 23));
        assert_eq!(easter(2011), ymd(2011, 4, 24));
        assert_eq!(easter(2025), ymd(2025, 4, 20));
    }

    #[test]
    fn nyse_2025() {
        let expected = [
            (1, 1),
            (1, 9),
            (1, 20),
            (2, 17),
            (4, 18),
            (5, 26),
            (6, 19),
            (7, 4),
            (9, 1),
            (11, 27),
            (12, 25),
        ];
        let expected: Vec<_> = expected.iter().map(|&(m, d)| ymd(2025, m, d)).collect();
        assert_eq!(nyse_holidays(2025), expected);
    }

    #[test]
    fn nyse_skips_new_year_on_saturday() {
        // 2011-01-01 was a Saturday: no Friday 2010-12-31 closure.
        assert!(!nyse_holidays(2010).contains(&ymd(2010, 12, 31)));
        assert!(
            !nyse_holidays(2011)
                .iter()
                .any(|d| d.month() == 1 && d.day() < 3)
        );
    }

    #[test]
    fn tse_2025_matches_the_exchange_calendar() {
        let expected = [
            (1, 1),
            (1, 2),
            (1, 3),
            (1, 13),
            (2, 11),
            (2, 24),
            (3, 20),
            (4, 29),
            (5, 5),
            (5, 6),
            (7, 21),
            (8, 11),
            (9, 15),
            (9, 23),
            (10, 13),
            (11, 3),
            (11, 24),
            (12, 31),
        ];
        let expected: Vec<_> = expected.iter().map(|&(m, d)| ymd(2025, m, d)).collect();
        let weekday_closures: Vec<_> = tse_holidays(2025)
            .into_iter()
            .filter(|d| !is_weekend(*d))
            .collect();
        assert_eq!(weekday_closures, expected);
    }

    #[test]
    fn japan_special_years() {
        let h2019 = japan_holidays(2019);
        for (m, d) in [(4, 30), (5, 1), (5, 2), (5, 6), (10, 22)] {
            assert!(h2019.contains(&ymd(2019, m, d)), "2019-{m}-{d}");
        }
        assert!(!h2019.contains(&ymd(2019, 12, 23)));
        // Citizens' holiday between Respect for the Aged Day and the equinox.
        assert!(japan_holidays(2015).contains(&ymd(2015, 9, 22)));
        assert!(japan_holidays(2026).contains(&ymd(2026, 9, 22)));
        // Olympic moves.
        assert!(japan_holidays(2021).contains(&ymd(2021, 7, 23)));
        assert!(japan_holidays(2021).contains(&ymd(2021, 8, 9)));
    }
}

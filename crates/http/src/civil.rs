//! Calendar arithmetic on the proleptic Gregorian calendar (Howard Hinnant's algorithms), for
//! the dates providers write: RFC 3339 resets, a quota's daily reset.

/// Days since 1970-01-01 of the date `y`-`m`-`d` (month 1–12, day 1–31).
///
/// ```
/// use infermux_http::civil::days_from_civil;
/// assert_eq!(days_from_civil(1970, 1, 1), 0);
/// assert_eq!(days_from_civil(2026, 12, 4), 20_791);
/// assert_eq!(days_from_civil(1969, 12, 31), -1);
/// ```
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1–12, day 1–31) of a day since 1970-01-01.
///
/// ```
/// use infermux_http::civil::{civil_from_days, days_from_civil};
/// assert_eq!(civil_from_days(20_791), (2026, 12, 4));
/// assert_eq!(civil_from_days(days_from_civil(2028, 2, 29)), (2028, 2, 29));
/// ```
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

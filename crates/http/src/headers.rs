//! Reading what servers say about retrying: `Retry-After` (seconds or HTTP date),
//! `retry-after-ms`, `x-should-retry`, and the OpenAI and Anthropic rate-limit headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use infermux_core::{RateLimitInfo, RateLimitWindow};

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The time the response was produced: its `Date` header, or now (a reset the server states
/// as a time of day is counted from its clock, not this machine's).
///
/// ```
/// use http::HeaderMap;
/// use infermux_http::response_time;
/// use std::time::{Duration, UNIX_EPOCH};
/// let mut h = HeaderMap::new();
/// h.insert("date", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
/// assert_eq!(response_time(&h), UNIX_EPOCH + Duration::from_secs(1_445_412_480));
/// ```
pub fn response_time(headers: &HeaderMap) -> SystemTime {
    header_str(headers, "date")
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .unwrap_or_else(SystemTime::now)
}

/// The longest retry-after kept: larger values (and ones too large to represent) are capped
/// here, never dropped, so a call can still fail at once saying how long the server wants.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `secs` (a server's delay) as a duration, capped at [`MAX_RETRY_AFTER`]; `None` when
/// negative, infinite or not a number (`inf`, `Infinity` and `1e400` parse as an infinite
/// `f64`: no server means that, and it would cool a key for a century).
///
/// ```
/// use infermux_http::{MAX_RETRY_AFTER, capped_secs};
/// use std::time::Duration;
/// assert_eq!(capped_secs(1.5), Some(Duration::from_millis(1500)));
/// assert_eq!(capped_secs(1e20), Some(MAX_RETRY_AFTER));
/// assert_eq!(capped_secs(-1.0), None);
/// assert_eq!(capped_secs(f64::INFINITY), None);
/// ```
pub fn capped_secs(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(
        Duration::try_from_secs_f64(secs)
            .unwrap_or(MAX_RETRY_AFTER)
            .min(MAX_RETRY_AFTER),
    )
}

/// The minimum delay before a retry: `retry-after-ms` (milliseconds, fractional allowed), else
/// `retry-after` as seconds or as an HTTP date (relative to the `Date` header, else now).
/// Negative or unparseable values are ignored; a long delay is kept as it is (a retry policy
/// fails at once when it exceeds its cap), only capped at [`MAX_RETRY_AFTER`].
///
/// ```
/// use http::HeaderMap;
/// use infermux_http::retry_after;
/// use std::time::Duration;
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "3".parse().unwrap());
/// assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
/// h.insert("retry-after-ms", "250.5".parse().unwrap());
/// assert_eq!(retry_after(&h), Some(Duration::from_micros(250_500)));
/// ```
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && let Some(d) = capped_secs(ms / 1000.0)
    {
        return Some(d);
    }
    let value = header_str(headers, "retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return capped_secs(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let d = at
        .duration_since(response_time(headers))
        .unwrap_or(Duration::ZERO);
    Some(d.min(MAX_RETRY_AFTER))
}

/// The server's `x-should-retry` verdict (`true` / `false`), if sent.
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match header_str(headers, "x-should-retry")? {
        v if v.eq_ignore_ascii_case("true") => Some(true),
        v if v.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Parses OpenAI-style durations: `12ms`, `1s`, `6m0s`, `1m30.5s`, `2h`, `1d` or plain seconds.
/// One too long for a `Duration` is capped at [`MAX_RETRY_AFTER`]; a negative, infinite or
/// malformed one is `None`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    // a number or a sum too large for a `Duration` (`1e20`, `99999999999999999999d`) is
    // capped at `MAX_RETRY_AFTER`, never a panic: these come from servers
    if let Ok(secs) = s.parse::<f64>() {
        return finite_capped(secs);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let (num, tail) = rest.split_at(num_len);
        let n: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let factor = match unit {
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        total += n * factor;
        rest = next;
    }
    finite_capped(total)
}

/// [`capped_secs`] of a finite `secs`; `None` for an infinity or NaN (`inf`, `1e400`).
fn finite_capped(secs: f64) -> Option<Duration> {
    secs.is_finite().then(|| capped_secs(secs)).flatten()
}

/// Parses an RFC 3339 timestamp (`2024-05-01T12:00:30Z`, with fraction and offset) to a
/// `SystemTime`.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        let mut f = frac.get(..digits.min(9))?.to_owned();
        while f.len() < 9 {
            f.push('0');
        }
        nanos = f.parse().ok()?;
        rest = frac.get(digits..)?;
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = match o.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let h: i64 = o.get(1..3)?.parse().ok()?;
            let m: i64 = o.get(4..6)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = crate::civil::days_from_civil(year, month, day);
    let secs = days * 86400 + hour * 3600 + min * 60 + sec - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Parses the OpenAI (`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`) and Anthropic
/// (`anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`)
/// rate-limit headers. Anthropic resets are RFC 3339 times, made relative to the `Date` header.
///
/// ```
/// use http::HeaderMap;
/// use infermux_http::rate_limits;
/// use std::time::Duration;
/// let mut h = HeaderMap::new();
/// h.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
/// h.insert("x-ratelimit-reset-requests", "1m30s".parse().unwrap());
/// let info = rate_limits(&h);
/// assert_eq!(info.requests.remaining, Some(0));
/// assert_eq!(info.exhausted_until(), Some(Duration::from_secs(90)));
/// ```
pub fn rate_limits(headers: &HeaderMap) -> RateLimitInfo {
    // One pass over the headers a response has (a dozen, not the eighteen names looked up
    // one by one, each hashed, and twelve of them formatted first); the `Date` header only
    // when a reset is a time. The first value of a name that parses is kept.
    let mut info = RateLimitInfo::default();
    let mut anthropic = [RateLimitWindow::default(); 4];
    let mut now = None;
    for (name, value) in headers {
        let name = name.as_str();
        let (w, field) = if let Some(rest) = name.strip_prefix("x-ratelimit-") {
            let Some((field, kind)) = rest.split_once('-') else {
                continue;
            };
            match kind {
                "requests" => (&mut info.requests, field),
                "tokens" => (&mut info.tokens, field),
                _ => continue,
            }
        } else if let Some(rest) = name.strip_prefix("anthropic-ratelimit-") {
            let Some((kind, field)) = rest.rsplit_once('-') else {
                continue;
            };
            let i = match kind {
                "requests" => 0,
                "tokens" => 1,
                "input-tokens" => 2,
                "output-tokens" => 3,
                _ => continue,
            };
            (&mut anthropic[i], field)
        } else {
            continue;
        };
        let Ok(v) = value.to_str().map(str::trim) else {
            continue;
        };
        match field {
            "limit" if w.limit.is_none() => w.limit = v.parse().ok(),
            "remaining" if w.remaining.is_none() => w.remaining = v.parse().ok(),
            "reset" if w.reset_after.is_none() => {
                w.reset_after = parse_duration(v).or_else(|| {
                    let at = parse_rfc3339(v)?;
                    let now = *now.get_or_insert_with(|| response_time(headers));
                    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
                });
            }
            _ => {}
        }
    }
    let [requests, tokens, input, output] = anthropic;
    if info.requests.is_empty() {
        info.requests = requests;
    }
    if info.tokens.is_empty() {
        info.tokens = tokens;
    }
    info.input_tokens = input;
    info.output_tokens = output;
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// The lookup-by-name parser this module had before the one-pass [`rate_limits`]: the
    /// oracle it is checked against.
    fn window(
        headers: &HeaderMap,
        limit: &str,
        remaining: &str,
        reset: &str,
        now: SystemTime,
    ) -> RateLimitWindow {
        let mut w = RateLimitWindow::default();
        w.limit = header_str(headers, limit).and_then(|v| v.parse().ok());
        w.remaining = header_str(headers, remaining).and_then(|v| v.parse().ok());
        w.reset_after = header_str(headers, reset).and_then(|v| {
            parse_duration(v).or_else(|| {
                parse_rfc3339(v).map(|t| t.duration_since(now).unwrap_or(Duration::ZERO))
            })
        });
        w
    }

    fn rate_limits_by_name(headers: &HeaderMap) -> RateLimitInfo {
        let now = response_time(headers);
        let mut info = RateLimitInfo::default();
        let openai = |kind: &str| {
            window(
                headers,
                &format!("x-ratelimit-limit-{kind}"),
                &format!("x-ratelimit-remaining-{kind}"),
                &format!("x-ratelimit-reset-{kind}"),
                now,
            )
        };
        let anthropic = |kind: &str| {
            window(
                headers,
                &format!("anthropic-ratelimit-{kind}-limit"),
                &format!("anthropic-ratelimit-{kind}-remaining"),
                &format!("anthropic-ratelimit-{kind}-reset"),
                now,
            )
        };
        info.requests = openai("requests");
        info.tokens = openai("tokens");
        if info.requests.is_empty() {
            info.requests = anthropic("requests");
        }
        if info.tokens.is_empty() {
            info.tokens = anthropic("tokens");
        }
        info.input_tokens = anthropic("input-tokens");
        info.output_tokens = anthropic("output-tokens");
        info
    }

    proptest::proptest! {
        /// The one-pass parser reads what the lookup by name read, for any subset of the
        /// rate-limit headers (once each) with good, bad and absurd values, among others.
        #[test]
        fn one_pass_reads_what_the_lookup_by_name_read(
            picks in proptest::collection::vec((0usize..22, 0usize..9), 0..14),
        ) {
            const NAMES: [&str; 22] = [
                "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
                "anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining",
                "anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-limit",
                "anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset",
                "anthropic-ratelimit-input-tokens-limit",
                "anthropic-ratelimit-input-tokens-remaining",
                "anthropic-ratelimit-input-tokens-reset",
                "anthropic-ratelimit-output-tokens-limit",
                "anthropic-ratelimit-output-tokens-remaining",
                "anthropic-ratelimit-output-tokens-reset",
                "x-ratelimit-limit-images", "anthropic-ratelimit-other-reset", "content-type",
                "date",
            ];
            const VALUES: [&str; 9] = [
                "0", " 42 ", "1m30s", "2024-05-01T12:00:30Z", "garbage", "-1", "1e400",
                "6ms", "Wed, 01 May 2024 12:00:00 GMT",
            ];
            let mut m = HeaderMap::new();
            // a response without a `Date` would read the clock in each parser: give one
            m.insert("date", HeaderValue::from_static("Wed, 01 May 2024 12:00:00 GMT"));
            for (n, v) in picks {
                if NAMES[n] != "date" {
                    m.insert(NAMES[n], HeaderValue::from_static(VALUES[v]));
                }
            }
            proptest::prop_assert_eq!(rate_limits(&m), rate_limits_by_name(&m));
        }
    }

    /// The oracle sees a difference: a parser that lost the Anthropic input-token window.
    #[test]
    fn the_oracle_tells_a_window_missing() {
        let m = h(&[("anthropic-ratelimit-input-tokens-remaining", "0")]);
        let mut wrong = rate_limits(&m);
        wrong.input_tokens = RateLimitWindow::default();
        assert_ne!(wrong, rate_limits_by_name(&m));
        assert_eq!(rate_limits(&m), rate_limits_by_name(&m));
    }

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            retry_after(&h(&[("retry-after", "0")])),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&h(&[("retry-after", "-1")])), None);
        assert_eq!(retry_after(&h(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&h(&[("retry-after", "nan")])), None);
        let date = h(&[
            ("date", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT"),
        ]);
        assert_eq!(retry_after(&date), Some(Duration::from_secs(30)));
        // ms wins over seconds
        let both = h(&[("retry-after", "5"), ("retry-after-ms", "20")]);
        assert_eq!(retry_after(&both), Some(Duration::from_millis(20)));
    }

    #[test]
    fn retry_after_beyond_a_day_is_kept_and_overflow_capped() {
        // two days: a retry policy must see it to fail at once with it attached
        assert_eq!(
            retry_after(&h(&[("retry-after", "172800")])),
            Some(Duration::from_secs(172_800))
        );
        assert_eq!(
            retry_after(&h(&[("retry-after-ms", "90000000")])),
            Some(Duration::from_secs(90_000))
        );
        let date = h(&[
            ("date", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("retry-after", "Fri, 23 Oct 2015 07:28:00 GMT"),
        ]);
        assert_eq!(retry_after(&date), Some(Duration::from_secs(172_800)));
        // absurd values are capped, not dropped, and never panic
        for absurd in ["999999999999", "1e300"] {
            assert_eq!(
                retry_after(&h(&[("retry-after", absurd)])),
                Some(MAX_RETRY_AFTER),
                "{absurd}"
            );
        }
        // an infinity is no delay a server means (as `parse_duration` has it): ignored
        for infinite in ["inf", "Infinity", "1e400", "-inf"] {
            assert_eq!(
                retry_after(&h(&[("retry-after", infinite)])),
                None,
                "{infinite}"
            );
            assert_eq!(
                retry_after(&h(&[("retry-after-ms", infinite)])),
                None,
                "{infinite}"
            );
            assert_eq!(parse_duration(infinite), None, "{infinite}");
        }
    }

    #[test]
    fn should_retry_values() {
        assert_eq!(
            should_retry(&h(&[("x-should-retry", "false")])),
            Some(false)
        );
        assert_eq!(should_retry(&h(&[("x-should-retry", "TRUE")])), Some(true));
        assert_eq!(should_retry(&h(&[("x-should-retry", "maybe")])), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("12ms"), Some(Duration::from_millis(12)));
        assert_eq!(parse_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(
            parse_duration("1m30.5s"),
            Some(Duration::from_millis(90_500))
        );
        assert_eq!(parse_duration("1h2m"), Some(Duration::from_secs(3720)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("7x"), None);
        assert_eq!(parse_duration("ms"), None);
    }

    #[test]
    fn durations_too_long_for_a_duration_are_capped_not_a_panic() {
        for v in [
            "1e20",
            "99999999999999999999",
            "1000000000000000d",
            "10000000000000000000s",
            "1e300",
        ] {
            assert_eq!(parse_duration(v), Some(MAX_RETRY_AFTER), "{v}");
        }
        for v in ["inf", "NaN", "-1", "1e400", &"9".repeat(400)] {
            assert_eq!(parse_duration(v), None, "{v}");
        }
        // every rate-limit header a server sends goes through it: a 429 or a 200 with an
        // absurd reset is read, not a panic
        let rl = rate_limits(&h(&[
            ("x-ratelimit-reset-requests", "1e20"),
            ("x-ratelimit-reset-tokens", "99999999999999999999"),
        ]));
        assert_eq!(rl.requests.reset_after, Some(MAX_RETRY_AFTER));
        assert_eq!(rl.tokens.reset_after, Some(MAX_RETRY_AFTER));
        let rl = rate_limits(&h(&[(
            "anthropic-ratelimit-tokens-reset",
            "1000000000000000d",
        )]));
        assert_eq!(rl.tokens.reset_after, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn rfc3339() {
        let t = parse_rfc3339("2024-05-01T12:00:30Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_714_564_830
        );
        let t2 = parse_rfc3339("2024-05-01T14:00:30.250+02:00").unwrap();
        assert_eq!(t2.duration_since(t).unwrap(), Duration::from_millis(250));
        assert!(parse_rfc3339("2024-13-01T00:00:00Z").is_none());
        assert!(parse_rfc3339("garbage").is_none());
    }

    #[test]
    fn anthropic_headers() {
        let m = h(&[
            ("date", "Wed, 01 May 2024 12:00:00 GMT"),
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-requests-reset", "2024-05-01T12:00:30Z"),
            ("anthropic-ratelimit-output-tokens-remaining", "0"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2024-05-01T12:01:00Z",
            ),
        ]);
        let info = rate_limits(&m);
        assert_eq!(info.requests.limit, Some(50));
        assert_eq!(info.requests.reset_after, Some(Duration::from_secs(30)));
        assert_eq!(info.exhausted_until(), Some(Duration::from_secs(60)));
    }
}

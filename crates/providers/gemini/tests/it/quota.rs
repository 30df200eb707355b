//! 429s and Gemini's quotas: which are per model (the key's other models go on), which are per
//! day (no half-minute wait helps), and when the day's quota resets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infermux_core::ErrorKind;
use infermux_gemini::wire::{self, QuotaScope};
use infermux_http::HeaderMap;
use serde_json::{Value, json};

/// Seconds to midnight Pacific time from instants around both daylight saving changes, leap
/// days and a century, as Python's `zoneinfo` (`America/Los_Angeles`) computes them.
#[test]
fn the_day_ends_at_midnight_pacific_time_across_daylight_saving_changes() {
    let cases: [(u64, u64); 19] = [
        (1768478400, 72000), // 2026-01-15T12:00:00 UTC
        (1772956740, 60),    // 2026-03-08T07:59:00 UTC
        (1772956800, 82800), // 2026-03-08T08:00:00 UTC (a 23-hour day)
        (1772963940, 75660), // 2026-03-08T09:59:00 UTC
        (1772964000, 75600), // 2026-03-08T10:00:00 UTC
        (1773039540, 60),    // 2026-03-09T06:59:00 UTC
        (1773039600, 86400), // 2026-03-09T07:00:00 UTC
        (1783146600, 1800),  // 2026-07-04T06:30:00 UTC
        (1783148400, 86400), // 2026-07-04T07:00:00 UTC
        (1793487600, 28800), // 2026-10-31T23:00:00 UTC
        (1793516400, 90000), // 2026-11-01T07:00:00 UTC (a 25-hour day)
        (1793521800, 84600), // 2026-11-01T08:30:00 UTC
        (1793525400, 81000), // 2026-11-01T09:30:00 UTC
        (1793604600, 1800),  // 2026-11-02T07:30:00 UTC
        (1793606400, 86400), // 2026-11-02T08:00:00 UTC
        (1798761599, 28801), // 2026-12-31T23:59:59 UTC
        (1805025600, 68400), // 2027-03-14T12:00:00 UTC
        (1835424000, 86400), // 2028-02-29T08:00:00 UTC
        (4115491200, 25200), // 2100-06-01T00:00:00 UTC
    ];
    for (now, want) in cases {
        assert_eq!(wire::quota_day_ends_in(now).as_secs(), want, "at {now}");
    }
    // never zero, never more than 25 hours, whatever the instant
    for now in (0..3_000_000_000u64).step_by(7_777_777) {
        let d = wire::quota_day_ends_in(now).as_secs();
        assert!((1..=90_000).contains(&d), "{d} at {now}");
    }
}

fn quota_error(violations: Value, message: &str, retry: &str) -> Vec<u8> {
    json!({"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations},
            {"@type": "type.googleapis.com/google.rpc.Help", "links": [
                {"description": "Learn more about Gemini API quotas",
                 "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry}]}})
    .to_string()
    .into_bytes()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The recorded per-minute 429 (vercel-ai's fixture) is model-scoped and waits its
/// `RetryInfo`; a spent day's quota — with the per-minute ones beside it, as Gemini reports
/// them — waits until midnight Pacific time, its 47 s notwithstanding; a zero quota too; a
/// quota not per model (per region) holds the whole key.
#[test]
fn per_model_and_per_day_quotas_are_read_from_the_429() {
    if let Some(path) = infermux_testkit::shared_fixture(
        "fixtures/recorded_payloads/gemini/vercel-ai/google-429-retry-info.json",
    ) {
        let body = std::fs::read(path).unwrap();
        let e = wire::error_from_response(429, &HeaderMap::new(), &body);
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert!(e.is_model_scoped());
        assert_eq!(e.retry_after(), Some(Duration::from_millis(34_400)));
    }

    let dims = json!({"location": "global", "model": "gemini-2.0-flash"});
    let per_day = quota_error(
        json!([
            {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
             "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "quotaDimensions": dims},
            {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
             "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaDimensions": dims}
        ]),
        "You exceeded your current quota, please check your plan and billing details.",
        "47s",
    );
    let before = unix_now();
    let e = wire::error_from_response(429, &HeaderMap::new(), &per_day);
    let after = unix_now();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert!(e.is_model_scoped());
    // the day's end, or the RetryInfo's 47 s when the day ends sooner (within 47 s of
    // midnight Pacific time)
    let wait = e.retry_after().unwrap();
    let retry = Duration::from_secs(47);
    assert!(
        wait <= wire::quota_day_ends_in(before).max(retry)
            && wait >= wire::quota_day_ends_in(after).max(retry),
        "{wait:?}"
    );

    // counted from the server's clock (its `Date`), not this machine's: 20:00 UTC on
    // 2026-01-15 is noon Pacific time, twelve hours before the quota's day ends
    let mut dated = HeaderMap::new();
    dated.insert("date", "Thu, 15 Jan 2026 20:00:00 GMT".parse().unwrap());
    let e = wire::error_from_response(429, &dated, &per_day);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(12 * 3600)));

    // a zero quota ("limit: 0", the tier has none of the model), per minute only
    let zero = quota_error(
        json!([{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
            "quotaId": "GenerateContentInputTokensPerModelPerMinute-FreeTier",
            "quotaDimensions": {"location": "global", "model": "gemini-3.1-pro"}}]),
        "You exceeded your current quota.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_input_token_count, limit: 0, model: gemini-3.1-pro\nPlease retry in 25.465784708s.",
        "25s",
    );
    assert_eq!(
        wire::quota_scope(&serde_json::from_slice(&zero).unwrap()),
        QuotaScope {
            per_model: true,
            per_day: true
        }
    );

    // per region, not per model: the key's
    let region = quota_error(
        json!([{"quotaId": "GenerateContentRequestsPerMinutePerProjectPerRegion"},
               {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]),
        "Quota exceeded",
        "10s",
    );
    let e = wire::error_from_response(429, &HeaderMap::new(), &region);
    assert!(!e.is_model_scoped());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(10)));
    // no QuotaFailure at all: neither
    let plain = br#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
    let e = wire::error_from_response(429, &HeaderMap::new(), plain);
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert!(!e.is_model_scoped());
    assert_eq!(e.retry_after(), None);
    // a 400 with a quota failure in it is no rate limit and is not scoped
    let e = wire::error_from_response(400, &HeaderMap::new(), &per_day);
    assert!(!e.is_model_scoped());
}

/// A quota error inside a stream (an `error` chunk) is read as a non-2xx answer is: model
/// scoped, waiting for the day's reset. Before, the stream's path read neither.
#[test]
fn a_quota_error_inside_a_stream_is_read_as_an_answer_is() {
    let body = quota_error(
        json!([{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]),
        "You exceeded your current quota",
        "40s",
    );
    let mut st = wire::GenerateState::new();
    let e = st
        .on_chunk(std::str::from_utf8(&body).unwrap())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert!(e.is_model_scoped());
    assert!(
        e.retry_after().unwrap() > Duration::from_secs(40).min(wire::quota_day_ends_in(unix_now()))
    );
}

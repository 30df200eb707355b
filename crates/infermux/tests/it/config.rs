//! `infermux.toml`: the documented example parses, and every validation names the file and
//! the line of what is wrong; keys never show in `Debug`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use infermux::config::{Config, KeySource, ProviderKind, StrategyKind};
use infermux::{ErrorKind, Priority};

/// The environment the tests see: a few fixed variables, nothing else (the process
/// environment is never read, so no test depends on the machine's variables).
fn env(var: &str) -> Option<String> {
    match var {
        "TEST_KEY_A" => Some("sk-test-env-a".into()),
        "TEST_KEY_B" => Some("sk-test-env-b".into()),
        "TEST_EMPTY" => Some("  ".into()),
        // the variables docs/infermux.toml names
        "OPENAI_KEY_1" => Some("sk-doc-openai-1".into()),
        "OPENAI_KEY_2" => Some("sk-doc-openai-2".into()),
        "ANTHROPIC_API_KEY" => Some("sk-doc-anthropic".into()),
        "S3_ACCESS_KEY" => Some("doc-access".into()),
        "S3_SECRET_KEY" => Some("doc-secret".into()),
        _ => None,
    }
}

fn load(text: &str) -> infermux::Result<Config> {
    Config::from_toml_str_with_env(text, "infermux.toml", None, &env)
}

/// The message of a load that must fail with a `Config` error.
fn fails(text: &str) -> String {
    let err = load(text).expect_err("the config must be rejected");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    err.message().to_owned()
}

/// A fresh file under the system's temporary folder.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "infermux-config-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

const LOCAL: &str = r#"
[[endpoint]]
name = "local"
provider = "openai-compat"
base_url = "http://127.0.0.1:8080/v1"
"#;

#[test]
fn the_documented_example_parses_with_every_section() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/infermux.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // its file key, beside a copy of it
    let dir = temp_file("infermux.toml", &text)
        .parent()
        .unwrap()
        .to_owned();
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/groq.key"), "gsk-doc-groq\n").unwrap();
    let cfg = Config::from_path(&dir.join("infermux.toml"));
    // from_path reads the process environment, where the example's variables are unset
    let err = cfg.unwrap_err();
    assert!(
        err.message()
            .contains("environment variable OPENAI_KEY_1 is not set"),
        "{err}"
    );
    let cfg = Config::from_toml_str_with_env(&text, "infermux.toml", Some(&dir), &env).unwrap();
    assert_eq!(
        cfg.endpoint("groq").unwrap().keys[0].key.expose(),
        "gsk-doc-groq"
    );
    assert_eq!(cfg.defaults.timeout, Some(Duration::from_secs(120)));
    assert!(cfg.defaults.retry.is_some());
    assert!(cfg.defaults.breaker.is_some());
    assert!(cfg.defaults.queue.is_some());
    assert!(cfg.endpoints.len() >= 3, "{cfg:?}");
    assert!(!cfg.groups.is_empty());
    assert!(!cfg.fallbacks.is_empty());
    let s3 = cfg.s3.as_ref().expect("the example's [s3]");
    assert_eq!(s3.endpoints.len(), 2);
    for e in &cfg.endpoints {
        let ec = e.endpoint_config().unwrap();
        assert_eq!(ec.id.to_string(), e.name);
    }
    // no key of the example shows in its Debug
    let dbg = format!("{cfg:?}");
    for e in &cfg.endpoints {
        for k in &e.keys {
            assert!(!k.key.appears_in(&dbg), "{} shows in Debug", k.alias);
        }
    }
    // the example names its env keys and they were read
    let openai = cfg.endpoint("openai-a").unwrap();
    assert_eq!(openai.keys[0].key.expose(), "sk-doc-openai-1");
    assert_eq!(openai.keys[0].source, KeySource::Env("OPENAI_KEY_1".into()));

    // and, with every provider compiled in, it builds a routed client: every group, in order
    if !cfg!(feature = "full") {
        let e = infermux::Client::from_config(&cfg).unwrap_err();
        assert!(e.message().contains("feature"), "{e}");
        return;
    }
    let client = infermux::Client::from_config(&cfg).unwrap();
    let groups: Vec<&str> = cfg.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(client.groups(), groups);
    for (id, _) in client.endpoint_counters() {
        assert!(cfg.endpoint(id.as_str()).is_some());
    }
    // keys of the file appear in the metrics by alias only
    let text = client.prometheus();
    for e in &cfg.endpoints {
        for k in &e.keys {
            assert!(!k.key.appears_in(&text), "{} shows in the metrics", k.alias);
        }
    }
}

#[test]
fn a_small_file_becomes_plain_specs() {
    let cfg = load(&format!(
        r#"
[defaults]
timeout = "1m30s"
priority = "high"
[defaults.retry]
max_attempts = 5
cap = "20s"
[defaults.breaker]
failure_rate = 0.25
[defaults.queue]
max_queued = 7

{LOCAL}
max_concurrency = 8
rpm = 500
tpm = 200000
keys = [ {{ alias = "k1", env = "TEST_KEY_A" }}, {{ alias = "k2", value = "sk-literal" }} ]
timeouts = {{ connect = "5s", first_byte = "60s", idle = "250ms" }}
headers = {{ "OpenAI-Organization" = "org-1" }}

[[endpoint]]
name = "claude"
provider = "anthropic"
keys = [ {{ alias = "a", env = "TEST_KEY_B" }} ]

[[group]]
name = "chat"
strategy = "weighted"
deployments = [ {{ endpoint = "local", model = "smollm2", weight = 3 }}, {{ endpoint = "claude", model = "claude-haiku" }} ]

[[group]]
name = "backup"
deployments = [ {{ endpoint = "claude", model = "claude-sonnet" }} ]

[[fallback]]
from = "chat"
to = ["backup"]
on = ["rate_limited", "context_length"]
"#
    ))
    .unwrap();
    assert_eq!(cfg.defaults.timeout, Some(Duration::from_secs(90)));
    assert_eq!(cfg.defaults.priority, Priority::High);
    let retry = cfg.defaults.retry.as_ref().unwrap();
    assert_eq!(
        (retry.max_attempts, retry.cap),
        (5, Duration::from_secs(20))
    );
    assert_eq!(cfg.defaults.breaker.as_ref().unwrap().failure_rate, 0.25);
    assert_eq!(cfg.defaults.queue.as_ref().unwrap().max_queued, 7);

    let local = cfg.endpoint("local").unwrap();
    assert_eq!(local.provider, ProviderKind::OpenAiCompat);
    assert_eq!(
        (local.max_concurrency, local.rpm, local.tpm),
        (Some(8), Some(500), Some(200_000))
    );
    assert_eq!(local.keys.len(), 2);
    assert_eq!(local.keys[1].source, KeySource::Literal);
    let ec = local.endpoint_config().unwrap();
    assert_eq!(ec.base_url, "http://127.0.0.1:8080/v1");
    assert_eq!(ec.api_key.as_ref().unwrap().expose(), "sk-test-env-a"); // the first key
    assert_eq!(ec.timeouts.connect, Duration::from_secs(5));
    assert_eq!(ec.timeouts.idle, Duration::from_millis(250));
    assert_eq!(
        ec.headers,
        vec![("OpenAI-Organization".into(), "org-1".into())]
    );

    // a provider's default base URL when `base_url` is left out
    let claude = cfg.endpoint("claude").unwrap();
    assert_eq!(claude.base_url, None);
    assert_eq!(
        claude.endpoint_config().unwrap().base_url,
        "https://api.anthropic.com/v1"
    );

    let chat = cfg.group("chat").unwrap();
    assert_eq!(chat.strategy, StrategyKind::Weighted);
    assert_eq!(chat.deployments[0].weight, 3);
    assert_eq!(chat.deployments[1].weight, 1);
    assert_eq!(
        cfg.group("backup").unwrap().strategy,
        StrategyKind::RoundRobin
    );
    let fb = cfg.fallback_from("chat").unwrap();
    assert_eq!(fb.to, vec!["backup".to_owned()]);
    assert_eq!(
        fb.on,
        vec![ErrorKind::RateLimited, ErrorKind::ContextLength]
    );
}

#[test]
fn unknown_keys_fail_naming_their_line_and_table() {
    // a deliberately broken file: each typo is found, at its own line
    let broken = "\
[defaults]
timeout = \"30s\"

[[endpoint]]
name = \"local\"
provider = \"openai-compat\"
base_url = \"http://127.0.0.1:8080/v1\"
tmeout = \"5s\"
";
    assert_eq!(
        fails(broken),
        "infermux.toml line 8, column 1: unknown key `tmeout` in [[endpoint]]"
    );
    let m = fails(&format!(
        "{LOCAL}keys = [\n  {{ alias = \"k1\", value = \"sk-x\" }},\n  {{ alias = \"k2\", vaule = \"sk-y\" }},\n]\n"
    ));
    assert_eq!(
        m,
        "infermux.toml line 8, column 19: unknown key `vaule` in `keys` of [[endpoint]]"
    );
    let m = fails(&format!("{LOCAL}timeouts = {{ conect = \"1s\" }}\n"));
    assert_eq!(
        m,
        "infermux.toml line 6, column 14: unknown key `conect` in `timeouts` of [[endpoint]]"
    );
    assert_eq!(
        fails("[defaults.retry]\nmax_attempts = 2\nbudgett = true\n"),
        "infermux.toml line 3, column 1: unknown key `budgett` in [defaults.retry]"
    );
    assert_eq!(
        fails("[defaults]\n[defaults.retyr]\n"),
        "infermux.toml line 2, column 11: unknown key `retyr` in [defaults]"
    );
    assert_eq!(
        fails("# a comment\n[[endpoints]]\nname = \"x\"\n"),
        "infermux.toml line 2, column 3: unknown key `endpoints` in the top level"
    );
    let m = fails(&format!(
        "{LOCAL}\n[[group]]\nname = \"g\"\ndeployments = [ {{ endpoint = \"local\", modle = \"m\" }} ]\n"
    ));
    assert!(
        m.starts_with(
            "infermux.toml line 9, column 39: unknown key `modle` in `deployments` of [[group]]"
        ),
        "{m}"
    );
}

/// A key missing from a table is named in that table (toml gives the error the header's
/// place: it read as the parent's); a whole table of the wrong type says what it should be,
/// not a Rust struct's name.
#[test]
fn missing_keys_and_mistyped_tables_name_their_table() {
    assert_eq!(
        fails("[[endpoint]]\nname = \"a\"\n"),
        "infermux.toml line 1, column 1: missing key `provider` in [[endpoint]]"
    );
    assert_eq!(
        fails(&format!("{LOCAL}[[group]]\nname = \"g\"\n")),
        "infermux.toml line 6, column 1: missing key `deployments` in [[group]]"
    );
    assert_eq!(
        fails("[cache]\n[cache.semantic]\nthreshold = 0.9\n"),
        "infermux.toml line 2, column 1: missing key `embedder` in [cache.semantic]"
    );
    for (text, want) in [
        (
            format!("{LOCAL}timeouts = \"30s\"\n"),
            "expected a timeouts table",
        ),
        (
            format!("{LOCAL}[[group]]\nname = \"g\"\ndeployments = [ \"local/m\" ]\n"),
            "expected a deployment table",
        ),
        (
            "[defaults]\nretry = 3\n".to_owned(),
            "expected the table [defaults.retry]",
        ),
        (
            "[batching]\nmax_items = 4\n[batching.x]\n".to_owned(),
            "line 3, column 11: unknown key `x` in [batching]",
        ),
        ("batching = 3\n".to_owned(), "expected the table [batching]"),
    ] {
        let m = fails(&text);
        assert!(m.contains(want) && !m.contains("Raw"), "{m}");
    }
}

/// One file for `infermux chat` and `infermux s3`: each reads the file whole but only its
/// own part's secrets, and keeps only its part; all of it needs every secret.
#[test]
fn a_program_reads_only_its_own_parts_secrets() {
    use infermux::config::Parts;
    let text = format!(
        "{LOCAL}keys = [{{ alias = \"k\", env = \"CHAT_KEY\" }}]\n\
         [s3]\n[[s3.endpoint]]\nname = \"store\"\nurl = \"http://127.0.0.1:9000\"\n\
         access_key_env = \"S3_ACCESS\"\nsecret_key_env = \"S3_SECRET\"\n"
    );
    let chat = |v: &str| (v == "CHAT_KEY").then(|| "sk-chat".to_owned());
    let s3 = |v: &str| v.starts_with("S3_").then(|| "s3-secret".to_owned());
    let both = |v: &str| chat(v).or_else(|| s3(v));
    let read = |env: &dyn Fn(&str) -> Option<String>, parts| {
        Config::from_toml_str_for(&text, "infermux.toml", None, env, parts)
    };
    let c = read(&chat, Parts::Inference).unwrap();
    assert_eq!(c.endpoints.len(), 1);
    assert_eq!(c.endpoints[0].keys[0].key.expose(), "sk-chat");
    assert!(c.s3.is_none());
    let c = read(&s3, Parts::S3).unwrap();
    assert!(c.endpoints.is_empty() && c.groups.is_empty() && c.s3.is_some());
    assert!(read(&both, Parts::All).is_ok());
    for (env, parts) in [
        (&chat as &dyn Fn(&str) -> Option<String>, Parts::All),
        (&s3, Parts::All),
        (&s3, Parts::Inference),
        (&chat, Parts::S3),
    ] {
        let e = read(env, parts).unwrap_err();
        assert!(e.message().contains("is not set"), "{parts:?}: {e}");
    }
    // the part left out is still checked
    let bad = text.replace("name = \"store\"", "name = \"store\"\nregoin = \"x\"");
    let e = Config::from_toml_str_for(&bad, "infermux.toml", None, &chat, Parts::Inference)
        .unwrap_err();
    assert!(e.message().contains("unknown key `regoin`"), "{e}");
}

/// A file without an `[[endpoint]]` loads (an `[s3]`-only file is `infermux s3`'s), but no
/// client is built from it: the error names the file (it was "a client needs a provider").
#[test]
fn a_client_from_a_file_without_endpoints_names_the_file() {
    for text in ["", "# nothing yet\n", "[defaults]\ntimeout = \"30s\"\n"] {
        let c = load(text).unwrap();
        let e = infermux::Client::from_config(&c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(
            e.message(),
            "infermux.toml: no [[endpoint]]: a client needs at least one"
        );
    }
}

/// A timeout or TTL of zero is refused at load, naming its line: it would fail every call (or
/// keep nothing). Before, it loaded and every call then timed out at once.
#[test]
fn zero_timeouts_and_ttls_name_their_line() {
    let m = fails("[defaults]\ntimeout = \"0s\"\n");
    assert!(
        m.starts_with("infermux.toml line 2, column 11: a duration of zero"),
        "{m}"
    );
    let m = fails(&format!("{LOCAL}timeouts = {{ first_byte = \"0ms\" }}\n"));
    assert!(m.contains("a duration of zero"), "{m}");
    let m = fails("[cache]\nttl = \"0h\"\n");
    assert!(
        m.contains("line 2") && m.contains("a duration of zero"),
        "{m}"
    );
    // a sum that is not zero loads
    assert!(load("[defaults]\ntimeout = \"0s500ms\"\n").is_ok());
}

/// Two endpoints with a key of one alias, sent by one group (a named one, or the implicit one
/// without groups), are refused at load naming the line: the group's pool names a key by its
/// alias. Before, the file loaded and the client then failed to build with the pool's message,
/// which named no line. In two different groups the aliases may repeat.
#[test]
fn one_alias_on_two_endpoints_of_one_group_names_its_line() {
    let two = |groups: &str| {
        format!(
            "[[endpoint]]\nname = \"a\"\nprovider = \"openai-compat\"\nbase_url = \"http://127.0.0.1:1/v1\"\nkeys = [ {{ alias = \"main\", value = \"sk-a\" }} ]\n\
             [[endpoint]]\nname = \"b\"\nprovider = \"openai-compat\"\nbase_url = \"http://127.0.0.1:2/v1\"\nkeys = [ {{ alias = \"main\", value = \"sk-b\" }} ]\n{groups}"
        )
    };
    let m = fails(&two(""));
    assert!(m.contains("line 10") && m.contains("`main`"), "{m}");
    let m = fails(&two(
        "[[group]]\nname = \"g\"\ndeployments = [ { endpoint = \"a\", model = \"m\" }, { endpoint = \"b\", model = \"m\" } ]\n",
    ));
    assert!(m.contains("line 13") && m.contains("group `g`"), "{m}");
    load(&two(
        "[[group]]\nname = \"g\"\ndeployments = [ { endpoint = \"a\", model = \"m\" } ]\n[[group]]\nname = \"h\"\ndeployments = [ { endpoint = \"b\", model = \"m\" } ]\n",
    ))
    .unwrap();
}

#[test]
fn bad_values_name_their_line() {
    let m = fails("[[endpoint]]\nname = \"x\"\nprovider = \"openia\"\n");
    assert!(m.starts_with("infermux.toml line 3, column 12: unknown provider `openia`; expected one of: openai-compat, openai, groq"), "{m}");
    let m = fails("[defaults]\ntimeout = \"30\"\n");
    assert!(
        m.starts_with("infermux.toml line 2, column 11: invalid duration `30`"),
        "{m}"
    );
    let m = fails(&format!(
        "{LOCAL}[[group]]\nname = \"g\"\nstrategy = \"fastest\"\ndeployments = [ {{ endpoint = \"local\", model = \"m\" }} ]\n"
    ));
    assert!(m.contains("line 8, column 12: unknown strategy `fastest`; expected one of: round-robin, weighted, least-in-flight, lowest-latency, lowest-usage"), "{m}");
    let m = fails(&format!(
        "{LOCAL}[[group]]\nname = \"g\"\ndeployments = [ {{ endpoint = \"local\", model = \"m\" }} ]\n[[group]]\nname = \"h\"\ndeployments = [ {{ endpoint = \"local\", model = \"m\" }} ]\n[[fallback]]\nfrom = \"g\"\nto = [\"h\"]\non = [\"rate_limit\"]\n"
    ));
    assert!(
        m.contains(
            "line 15, column 6: unknown error kind `rate_limit`; expected one of: rate_limited,"
        ),
        "{m}"
    );
    assert!(fails("[defaults]\npriority = \"urgent\"\n").contains("unknown priority `urgent`"));
    assert!(
        fails("[defaults.breaker]\nfailure_rate = 1.5\n")
            .contains("line 2, column 16: `failure_rate`")
    );
    assert!(
        fails("[defaults.retry]\nmax_attempts = 0\n")
            .contains("line 2, column 16: `max_attempts` must be at least 1")
    );
    assert!(
        fails("[defaults.retry]\nbase = \"2s\"\ncap = \"1s\"\n")
            .contains("`cap` must be at least `base`")
    );
    // found at load, not when the client is built
    let m = fails("[defaults.retry]\nthrottle_floor = \"1m\"\n");
    assert!(
        m.contains("`throttle_floor` (60s) must be at most `cap` (30s)"),
        "{m}"
    );
    assert!(
        fails("[defaults.breaker]\nminimum_calls = 51\n")
            .contains("line 2, column 17: `minimum_calls` must be at most 50")
    );
    // and what loads builds
    let cfg = load(&format!(
        "{LOCAL}[defaults.retry]\nthrottle_floor = \"30s\"\n[defaults.breaker]\nminimum_calls = 50\n"
    ))
    .unwrap();
    infermux::Client::from_config(&cfg).unwrap();
    assert!(
        fails(&format!("{LOCAL}rpm = 0\n"))
            .contains("line 6, column 7: endpoint `local`: `rpm` must be at least 1")
    );
    // a limit per key on an endpoint without keys would limit nothing
    assert!(
        fails(&format!("{LOCAL}tpm = 1000\n"))
            .contains("line 6, column 7: endpoint `local`: `tpm` limits each key")
    );
}

#[test]
fn duplicate_names_are_rejected() {
    assert_eq!(
        fails(&format!("{LOCAL}{LOCAL}")),
        "infermux.toml line 8, column 8: duplicate endpoint name `local`"
    );
    let group =
        "[[group]]\nname = \"g\"\ndeployments = [ { endpoint = \"local\", model = \"m\" } ]\n";
    assert_eq!(
        fails(&format!("{LOCAL}{group}{group}")),
        "infermux.toml line 10, column 8: duplicate group name `g`"
    );
    assert_eq!(
        fails(&format!(
            "{LOCAL}keys = [ {{ alias = \"k\", value = \"a\" }}, {{ alias = \"k\", value = \"b\" }} ]\n"
        )),
        "infermux.toml line 6, column 50: endpoint `local`: duplicate key alias `k`"
    );
}

#[test]
fn groups_name_known_endpoints_with_nonzero_weights() {
    let m = fails(&format!(
        "{LOCAL}[[group]]\nname = \"g\"\ndeployments = [ {{ endpoint = \"lokal\", model = \"m\" }} ]\n"
    ));
    assert_eq!(
        m,
        "infermux.toml line 8, column 30: group `g` names unknown endpoint `lokal`"
    );
    let m = fails(&format!(
        "{LOCAL}[[group]]\nname = \"g\"\ndeployments = [ {{ endpoint = \"local\", model = \"m\", weight = 0 }} ]\n"
    ));
    assert_eq!(
        m,
        "infermux.toml line 8, column 61: group `g`: a deployment's `weight` must be at least 1"
    );
    assert!(
        fails(&format!(
            "{LOCAL}[[group]]\nname = \"g\"\ndeployments = []\n"
        ))
        .contains("line 8, column 15: group `g` has no deployments")
    );
}

#[test]
fn fallbacks_name_known_groups_without_cycles() {
    let groups = format!(
        "{LOCAL}{}",
        ["a", "b", "c"]
            .iter()
            .map(|g| format!(
                "[[group]]\nname = \"{g}\"\ndeployments = [ {{ endpoint = \"local\", model = \"m\" }} ]\n"
            ))
            .collect::<String>()
    );
    // 5 + 9 lines: the first [[fallback]] is on line 15
    let fb = |from: &str, to: &str| {
        format!("[[fallback]]\nfrom = \"{from}\"\nto = [{to}]\non = [\"timeout\"]\n")
    };
    assert_eq!(
        fails(&format!("{groups}{}", fb("z", "\"a\""))),
        "infermux.toml line 16, column 8: fallback from unknown group `z`"
    );
    assert_eq!(
        fails(&format!("{groups}{}", fb("a", "\"b\", \"y\""))),
        "infermux.toml line 17, column 12: fallback from `a` names unknown group `y`"
    );
    let m = fails(&format!(
        "{groups}{}{}{}",
        fb("a", "\"b\""),
        fb("b", "\"c\""),
        fb("c", "\"a\"")
    ));
    assert_eq!(
        m,
        "infermux.toml line 15, column 1: fallback cycle: a -> b -> c -> a"
    );
    assert!(fails(&format!("{groups}{}", fb("a", "\"a\""))).contains("fallback cycle: a -> a"));
    // a chain without a cycle, and a diamond, are fine
    load(&format!(
        "{groups}{}{}",
        fb("a", "\"b\", \"c\""),
        fb("b", "\"c\"")
    ))
    .unwrap();
}

#[test]
fn an_unset_or_empty_key_variable_fails_at_load() {
    let m = fails(&format!(
        "{LOCAL}keys = [ {{ alias = \"k1\", env = \"OPENAI_KEY_UNSET\" }} ]\n"
    ));
    assert_eq!(
        m,
        "infermux.toml line 6, column 10: key `k1` of endpoint `local`: environment variable OPENAI_KEY_UNSET is not set"
    );
    assert!(
        fails(&format!(
            "{LOCAL}keys = [ {{ alias = \"k1\", env = \"TEST_EMPTY\" }} ]\n"
        ))
        .ends_with("environment variable TEST_EMPTY is empty")
    );
    // a key pasted where its variable's name goes is not printed back
    let pasted = "sk-proj-AbC123xyz789pasted";
    let m = fails(&format!(
        "{LOCAL}keys = [ {{ alias = \"k1\", env = \"{pasted}\" }} ]\n"
    ));
    assert!(!m.contains(pasted), "{m}");
    assert!(m.ends_with("is not set"), "{m}");
    // the process environment is what `from_toml_str` reads
    let err = Config::from_toml_str(
        &format!(
            "{LOCAL}keys = [ {{ alias = \"k1\", env = \"INFERMUX_TEST_SURELY_UNSET_KEY\" }} ]\n"
        ),
        "infermux.toml",
    )
    .unwrap_err();
    assert!(
        err.message()
            .contains("INFERMUX_TEST_SURELY_UNSET_KEY is not set")
    );
    // a hosted provider needs a key at all
    assert!(
        fails("[[endpoint]]\nname = \"o\"\nprovider = \"openai\"\n")
            .contains("endpoint `o`: provider openai needs at least one key")
    );
    assert!(
        fails(&format!(
            "{LOCAL}keys = [ {{ alias = \"k1\", env = \"TEST_KEY_A\", value = \"x\" }} ]\n"
        ))
        .ends_with("give exactly one of `env`, `file` or `value`")
    );
    assert!(
        fails(&format!("{LOCAL}keys = [ {{ alias = \"k1\" }} ]\n"))
            .ends_with("give exactly one of `env`, `file` or `value`")
    );
}

#[test]
fn a_key_file_must_exist_and_hold_a_key() {
    let key_file = temp_file("key", "sk-from-file\n");
    let cfg = load(&format!(
        "{LOCAL}keys = [ {{ alias = \"f\", file = {:?} }} ]\n",
        key_file.display().to_string()
    ))
    .unwrap();
    assert_eq!(cfg.endpoints[0].keys[0].key.expose(), "sk-from-file");
    // relative to the config file's folder when loaded from a path
    let config = key_file.with_file_name("infermux.toml");
    std::fs::write(
        &config,
        format!("{LOCAL}keys = [ {{ alias = \"f\", file = \"key\" }} ]\n"),
    )
    .unwrap();
    let cfg = Config::from_path(&config).unwrap();
    assert_eq!(cfg.endpoints[0].keys[0].key.expose(), "sk-from-file");
    assert_eq!(
        cfg.endpoints[0].keys[0].source,
        KeySource::File(key_file.clone())
    );

    let missing = key_file.with_file_name("missing");
    let m = fails(&format!(
        "{LOCAL}keys = [ {{ alias = \"f\", file = {:?} }} ]\n",
        missing.display().to_string()
    ));
    assert!(
        m.starts_with(&format!(
            "infermux.toml line 6, column 10: key `f` of endpoint `local`: cannot read file {}:",
            missing.display()
        )),
        "{m}"
    );
    let empty = temp_file("empty", " \n");
    let m = fails(&format!(
        "{LOCAL}keys = [ {{ alias = \"f\", file = {:?} }} ]\n",
        empty.display().to_string()
    ));
    assert!(
        m.ends_with(&format!("file {} is empty", empty.display())),
        "{m}"
    );
    // a missing config file is a Config error naming it
    let err = Config::from_path(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("missing"));
}

#[test]
fn base_urls_are_checked_at_load() {
    let m =
        fails("[[endpoint]]\nname = \"x\"\nprovider = \"vllm\"\nbase_url = \"localhost:8000\"\n");
    assert_eq!(
        m,
        "infermux.toml line 4, column 12: endpoint `x`: base URL must start with http:// or https:// and name a host"
    );
    let m = fails("[[endpoint]]\nname = \"x\"\nprovider = \"opea\"\n");
    assert_eq!(
        m,
        "infermux.toml line 1, column 1: endpoint `x`: provider opea has no default base URL; set `base_url`"
    );
    // vllm has a default
    let cfg = load("[[endpoint]]\nname = \"x\"\nprovider = \"vllm\"\n").unwrap();
    assert_eq!(
        cfg.endpoints[0].endpoint_config().unwrap().base_url,
        "http://127.0.0.1:8000"
    );
    // an auth header written by hand is refused: keys go in `keys`
    assert!(
        fails(&format!(
            "{LOCAL}headers = {{ Authorization = \"Bearer sk-x\" }}\n"
        ))
        .contains("header `Authorization` carries a key")
    );
}

#[test]
fn debug_of_a_parsed_config_shows_no_key() {
    let key_file = temp_file("key", "sk-secret-from-file");
    let cfg = load(&format!(
        "{LOCAL}keys = [ {{ alias = \"e\", env = \"TEST_KEY_A\" }}, {{ alias = \"f\", file = {:?} }}, {{ alias = \"v\", value = \"sk-secret-literal\" }} ]\nheaders = {{ \"X-Org\" = \"org-secret\" }}\n",
        key_file.display().to_string()
    ))
    .unwrap();
    let dbg = format!("{cfg:?} {:?}", cfg.endpoints[0]);
    for secret in [
        "sk-test-env-a",
        "sk-secret-from-file",
        "sk-secret-literal",
        "org-secret",
    ] {
        assert!(!dbg.contains(secret), "{secret} shows in {dbg}");
    }
    // the aliases and sources do show
    assert!(dbg.contains("\"e\"") && dbg.contains("TEST_KEY_A") && dbg.contains("X-Org"));
    let alt = format!("{cfg:#?}");
    assert!(!alt.contains("sk-secret-literal"));
}

#[test]
fn provider_names_round_trip_and_errors_list_them() {
    for p in ProviderKind::ALL {
        assert_eq!(p.as_str().parse::<ProviderKind>().unwrap(), *p);
    }
    assert_eq!(ProviderKind::ALL.len(), 12);
    let err = "claude".parse::<ProviderKind>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("hf-tgi, hf-tei, ovms, llvm"));
    for s in StrategyKind::ALL {
        assert_eq!(s.as_str().parse::<StrategyKind>().unwrap(), *s);
    }
}

/// The defaults this module states for each provider are the provider crates' own.
#[cfg(feature = "full")]
#[test]
fn provider_defaults_match_the_provider_crates() {
    use infermux::*;
    let p = |k: ProviderKind| {
        (
            k.default_base_url(),
            k.api_key_envs().to_vec(),
            k.base_url_env(),
        )
    };
    assert_eq!(
        p(ProviderKind::OpenAi),
        (
            Some(openai::DEFAULT_BASE_URL),
            vec![openai::API_KEY_ENV],
            Some(openai::BASE_URL_ENV)
        )
    );
    assert_eq!(
        p(ProviderKind::Groq),
        (
            Some(groq::DEFAULT_BASE_URL),
            vec![groq::API_KEY_ENV],
            Some(groq::BASE_URL_ENV)
        )
    );
    assert_eq!(
        p(ProviderKind::Anthropic),
        (
            Some(anthropic::DEFAULT_BASE_URL),
            vec![anthropic::API_KEY_ENV],
            Some(anthropic::BASE_URL_ENV)
        )
    );
    assert_eq!(
        p(ProviderKind::Gemini),
        (
            Some(gemini::DEFAULT_BASE_URL),
            gemini::API_KEY_ENVS.to_vec(),
            Some(gemini::BASE_URL_ENV)
        )
    );
    assert_eq!(
        p(ProviderKind::Vllm),
        (
            Some(vllm::DEFAULT_BASE_URL),
            vec![vllm::API_KEY_ENV],
            Some(vllm::BASE_URL_ENV)
        )
    );
    assert_eq!(
        p(ProviderKind::Ollama),
        (
            Some(ollama::DEFAULT_HOST),
            vec![ollama::API_KEY_ENV],
            Some(ollama::HOST_ENV)
        )
    );
    assert_eq!(
        p(ProviderKind::HfTgi),
        (
            Some(hf_tgi::DEFAULT_BASE_URL),
            vec![hf_tgi::SERVER_API_KEY_ENV],
            Some(hf_tgi::BASE_URL_ENV)
        )
    );
    assert_eq!(
        p(ProviderKind::HfTei),
        (
            Some(hf_tei::DEFAULT_BASE_URL),
            vec![hf_tei::SERVER_API_KEY_ENV],
            Some(hf_tei::BASE_URL_ENV)
        )
    );
    assert_eq!(
        p(ProviderKind::Opea),
        (None, vec![opea::API_KEY_ENV], Some(opea::BASE_URL_ENV))
    );
    assert_eq!(
        p(ProviderKind::Llvm),
        (None, vec![llvm::API_KEY_ENV], Some(llvm::BASE_URL_ENV))
    );
    assert_eq!(
        p(ProviderKind::Ovms),
        (
            Some(ovms::DEFAULT_BASE_URL),
            vec![],
            Some(ovms::BASE_URL_ENV)
        )
    );
    // each kind builds its provider, named as the kind
    for k in ProviderKind::ALL {
        let cfg = EndpointConfig::new("e", "http://127.0.0.1:1/v1").unwrap();
        let provider = k.provider(cfg).unwrap();
        assert_eq!(provider.name(), k.as_str(), "{k}");
    }
}

#[test]
fn the_cache_and_batching_sections_parse_and_their_errors_name_the_line() {
    let base = "[[endpoint]]\nname = \"e\"\nprovider = \"openai-compat\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\n[[group]]\nname = \"embed\"\ndeployments = [ { endpoint = \"e\", model = \"m\" } ]\n";
    let cfg = load(&format!(
        "{base}\n[cache]\nttl = \"10m\"\nmax_entries = 5\nmax_bytes = 1048576\ncoalesce = false\n\n[cache.semantic]\nembedder = \"embed\"\nmin_similarity = 0.7\nthreshold = 0.9\nmax_chars = 400\nmax_bytes = 2097152\n\n[batching]\nmax_items = 32\nmax_wait = \"2ms\"\n"
    ))
    .unwrap();
    let cache = cfg.cache.as_ref().unwrap();
    assert_eq!(cache.config.ttl, Duration::from_secs(600));
    assert_eq!(cache.config.max_entries, 5);
    assert_eq!(cache.config.max_bytes, 1 << 20);
    assert!(!cache.config.coalesce);
    assert_eq!(cache.semantic.as_ref().unwrap().config.max_bytes, 2 << 20);
    let sem = cache.semantic.as_ref().unwrap();
    assert_eq!(
        sem.embedder,
        infermux::config::EmbedderSpec::Group("embed".into())
    );
    assert_eq!(sem.threshold, Some(0.9));
    assert_eq!(sem.config.min_similarity, 0.7);
    assert_eq!(sem.config.max_chars, 400);
    let batching = cfg.batching.as_ref().unwrap();
    assert_eq!(batching.max_items(), 32);
    assert_eq!(batching.max_wait(), Duration::from_millis(2));

    // each mistake is rejected with its line
    let m = fails(&format!("{base}\n[cache]\nmax_entries = 0\n"));
    assert!(m.starts_with("infermux.toml line 10"), "{m}");
    let m = fails(&format!("{base}\n[cache]\nmax_bytes = 1000\n"));
    assert!(m.contains("line 11") && m.contains("max_bytes"), "{m}");
    let m = fails(&format!(
        "{base}\n[cache.semantic]\nembedder = \"embed\"\nmax_bytes = 0\n"
    ));
    assert!(m.contains("line 12") && m.contains("max_bytes"), "{m}");
    let m = fails(&format!("{base}\n[cache.semantic]\nembedder = \"nope\"\n"));
    assert!(m.contains("line 11") && m.contains("`nope`"), "{m}");
    let m = fails(&format!("{base}\n[cache.semantic]\nembedder = \"local\"\n"));
    assert!(m.contains("model_dir"), "{m}");
    // a model folder that is not there is found at load, with its line
    let m = fails(&format!(
        "{base}\n[cache.semantic]\nembedder = \"local\"\nmodel_dir = \"/no/such/minilm\"\n"
    ));
    assert!(
        m.contains("line 12") && m.contains("/no/such/minilm"),
        "{m}"
    );
    let m = fails(&format!(
        "{base}\n[cache.semantic]\nembedder = \"embed\"\nthreshold = 1.5\n"
    ));
    assert!(m.contains("line 12") && m.contains("threshold"), "{m}");
    let m = fails(&format!("{base}\n[batching]\nmax_items = 0\n"));
    assert!(m.contains("line 11"), "{m}");
    let m = fails(&format!("{base}\n[batching]\nmax_wiat = \"1ms\"\n"));
    assert!(m.contains("max_wiat"), "{m}");
}

#[test]
fn debug_of_the_cache_section_hides_the_redis_password() {
    let Ok(cfg) = load("[cache]\nredis_url = \"redis://user:s3cret-pw@127.0.0.1:6379\"\n") else {
        // without the feature `redis` the key is refused at load, naming the feature
        let m = fails("[cache]\nredis_url = \"redis://user:s3cret-pw@127.0.0.1:6379\"\n");
        assert!(m.contains("redis") && !m.contains("s3cret-pw"), "{m}");
        return;
    };
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("s3cret-pw"), "{debug}");
    assert!(debug.contains("redis://***@127.0.0.1:6379"), "{debug}");
    // a Unix socket's password goes in the query
    let cfg =
        load("[cache]\nredis_url = \"redis+unix:///run/redis.sock?pass=hunter2&db=1\"\n").unwrap();
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(
        debug.contains("redis+unix:///run/redis.sock?***"),
        "{debug}"
    );
    // a password with a `?` in it
    let cfg = load("[cache]\nredis_url = \"redis://:pa?ss-word@127.0.0.1:6379\"\n").unwrap();
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("ss-word"), "{debug}");
    assert!(debug.contains("redis://***@127.0.0.1:6379"), "{debug}");
}

#[test]
fn a_key_written_where_a_table_belongs_is_not_printed_in_the_error() {
    for (text, expected) in [
        (
            format!("{LOCAL}keys = [\"sk-live-plain-1\"]\n"),
            "expected a key table",
        ),
        (
            format!("{LOCAL}keys = \"sk-live-plain-1\"\n"),
            "expected a sequence",
        ),
        (
            format!("{LOCAL}keys = [ \"sk-live-\\\"quoted\\\" 1\" ]\n"),
            "expected a key table",
        ),
    ] {
        let msg = fails(&text);
        assert!(!msg.contains("sk-live"), "a key shows in: {msg}");
        assert!(msg.contains("line 6"), "still says where: {msg}");
        assert!(msg.contains("string (value not shown)"), "{msg}");
        assert!(msg.contains(expected), "{msg}");
    }
}

#[test]
fn keys_that_would_go_unused_are_refused_naming_their_line() {
    let s3 = |extra: &str| {
        format!("[s3]\n[[s3.endpoint]]\nname = \"a\"\nurl = \"http://127.0.0.1:9000\"\n{extra}\n")
    };
    let m = fails(&s3("profile = \"p\"\nsession_token_env = \"TEST_KEY_A\""));
    assert!(
        m.contains("`session_token_env` goes with `access_key_env`"),
        "{m}"
    );
    assert!(m.contains("line "), "{m}");
    let m = fails(&s3("anonymous = true\ncredentials_file = \"creds\""));
    assert!(m.contains("`credentials_file` goes with `profile`"), "{m}");
    let m = fails("[cache]\nredis_prefix = \"x\"\n");
    assert!(
        m.contains("`redis_prefix` in [cache] goes with `redis_url`"),
        "{m}"
    );
    let m = fails(&format!("{LOCAL}tpm = 4294967296\n"));
    assert!(m.contains("`tpm` must be from 1 to 4294967295"), "{m}");
    // the same keys where they belong load
    load(&s3("profile = \"p\"\ncredentials_file = \"creds\"")).unwrap();
    load(&s3(
        "access_key_env = \"TEST_KEY_A\"\nsecret_key_env = \"TEST_KEY_B\"\nsession_token_env = \"TEST_KEY_A\"",
    ))
    .unwrap();
    load(&format!(
        "{LOCAL}keys = [ {{ alias = \"k\", value = \"v\" }} ]\ntpm = 4294967295\n"
    ))
    .unwrap();
}

/// A header name or value, or a key, that cannot go into an HTTP header is refused at load,
/// naming the line (and never the key): before, the file loaded and every request to the
/// endpoint (or with the key) failed.
#[test]
fn headers_and_keys_that_cannot_be_sent_are_refused_at_load() {
    let m = fails(&format!("{LOCAL}headers = {{ \"X Tenant\" = \"a\" }}\n"));
    assert!(
        m.contains("line 6") && m.contains("not an HTTP header name"),
        "{m}"
    );
    let m = fails(&format!("{LOCAL}headers = {{ \"X-Note\" = \"a\\nb\" }}\n"));
    assert!(m.contains("line 6") && m.contains("line break"), "{m}");
    let two = temp_file("two-keys.txt", "sk-secret-one\nsk-secret-two\n");
    let m = fails(&format!(
        "{LOCAL}keys = [{{ alias = \"k\", file = \"{}\" }}]\n",
        two.display()
    ));
    assert!(m.contains("line 6") && m.contains("key `k`"), "{m}");
    assert!(!m.contains("sk-secret"), "{m}");
    let m = fails(&format!(
        "{LOCAL}keys = [{{ alias = \"k\", value = \"sk-secret\\u0007\" }}]\n"
    ));
    assert!(
        m.contains("control character") && !m.contains("sk-secret"),
        "{m}"
    );
    // a key file ending in a newline, a header with a tab, UTF-8: all fine
    let one = temp_file("one-key.txt", "sk-secret-one\n");
    let ok = format!(
        "{LOCAL}keys = [{{ alias = \"k\", file = \"{}\" }}]\nheaders = {{ \"X-Note\" = \"a\\tb é\" }}\n",
        one.display()
    );
    assert!(load(&ok).is_ok());
}

/// A deployment with an empty model, a `weight` in a group that never reads it, and a group
/// with more members than a pool holds are refused at load, naming the line.
#[test]
fn deployments_that_would_fail_or_be_ignored_are_refused_at_load() {
    let group = |deployments: &str, strategy: &str| {
        format!("{LOCAL}\n[[group]]\nname = \"g\"\n{strategy}deployments = [{deployments}]\n")
    };
    let m = fails(&group(r#"{ endpoint = "local", model = " " }"#, ""));
    assert!(
        m.contains("line 9") && m.contains("`model` must not be empty"),
        "{m}"
    );
    let m = fails(&group(
        r#"{ endpoint = "local", model = "m", weight = 3 }"#,
        "",
    ));
    assert!(
        m.contains("line 9") && m.contains("strategy = \"weighted\""),
        "{m}"
    );
    let weighted = "strategy = \"weighted\"\n";
    assert!(
        load(&group(
            r#"{ endpoint = "local", model = "m", weight = 3 }"#,
            weighted
        ))
        .is_ok()
    );
    let keys: Vec<String> = (0..33)
        .map(|i| format!("{{ alias = \"k{i}\", value = \"sk-{i}\" }}"))
        .collect();
    let many = format!(
        "{LOCAL}keys = [{}]\n\n[[group]]\nname = \"g\"\ndeployments = [{{ endpoint = \"local\", model = \"a\" }}, {{ endpoint = \"local\", model = \"b\" }}]\n",
        keys.join(", ")
    );
    let m = fails(&many);
    assert!(m.contains("66 members") && m.contains("at most 64"), "{m}");
}

/// A base URL whose host or port no URL parser takes is refused at load, naming its line (it
/// loaded, and building the client failed without saying where).
#[test]
fn a_base_url_with_a_bad_host_or_port_names_its_line() {
    for url in [
        "http://localhost:80800/v1",
        "http://my host/v1",
        "http://:8080/v1",
    ] {
        let m = fails(&format!(
            "[[endpoint]]\nname = \"x\"\nprovider = \"vllm\"\nbase_url = \"{url}\"\n"
        ));
        assert!(
            m.contains("line 4") && m.contains("host or port"),
            "{url}: {m}"
        );
    }
}

/// `[defaults.retry]` changes what a client built from a file does, and `Client::from_path`
/// builds it: an endpoint that always answers 503 is tried `max_attempts` times (the
/// breaker off and a short cap, so the retries go at once). Before, only the parsing was
/// tested.
#[tokio::test]
async fn a_files_retry_defaults_set_the_attempts_of_a_client_from_its_path() {
    use infermux_testkit::{Fault, FaultPlan, Simulator};
    let sim = Simulator::start(FaultPlan::seeded(3).with(Fault::Unavailable, 1.0))
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("infermux-config-retry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut before = 0;
    for attempts in [2u32, 4] {
        let path = dir.join(format!("infermux-{attempts}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"
[defaults]
timeout = "20s"
[defaults.retry]
max_attempts = {attempts}
base = "1ms"
cap = "2ms"
throttle_floor = "1ms"
budget = false
[defaults.breaker]
enabled = false

[[endpoint]]
name = "sim"
provider = "openai-compat"
base_url = "{}/v1"

[[group]]
name = "chat"
deployments = [ {{ endpoint = "sim", model = "m" }} ]
"#,
                sim.url()
            ),
        )
        .unwrap();
        let client = infermux::Client::from_path(&path).unwrap();
        let ask = infermux::ChatRequest::new("chat", vec![infermux::Message::user("hi")]);
        let e = client.chat(ask).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Server, "{e}");
        assert_eq!(sim.requests() - before, u64::from(attempts), "{e}");
        before = sim.requests();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

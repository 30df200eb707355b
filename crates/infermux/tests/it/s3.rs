//! `[s3]` in infermux.toml: what the loader refuses (with the line), and (feature `s3`) the kit
//! it builds, against the live s3s-fs endpoints `.ci/s3.sh` starts.

use infermux::config::{Config, S3CredentialSpec};

fn env(v: &str) -> Option<String> {
    match v {
        "S3_ACCESS" => Some("access".into()),
        "S3_SECRET" => Some("the-s3-secret".into()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, infermux::Error> {
    Config::from_toml_str_with_env(text, "infermux.toml", None, &env)
}

#[test]
fn s3_sections_load_with_their_defaults_and_hide_the_secret() {
    let c = load(
        "[s3]\n[[s3.endpoint]]\nname = \"a\"\nurl = \"http://127.0.0.1:9000\"\n\
         access_key_env = \"S3_ACCESS\"\nsecret_key_env = \"S3_SECRET\"\n\
         [[s3.endpoint]]\nname = \"aws\"\nregion = \"eu-west-1\"\nanonymous = true\n",
    )
    .unwrap();
    let s3 = c.s3.clone().unwrap();
    assert_eq!(s3.selection, "first-healthy");
    assert_eq!(
        (s3.part_size, s3.concurrency, s3.max_attempts),
        (8 << 20, 8, 4)
    );
    assert!(s3.endpoints[0].path_style, "a URL: path style");
    assert!(!s3.endpoints[1].path_style, "AWS: virtual hosts");
    assert_eq!(s3.endpoints[1].region, "eu-west-1");
    assert!(matches!(
        &s3.endpoints[0].credentials,
        S3CredentialSpec::Env { access_key_id, .. } if access_key_id == "access"
    ));
    assert!(!format!("{c:?}").contains("the-s3-secret"));
}

#[test]
fn bad_s3_sections_are_refused_with_their_line() {
    let cases = [
        (
            "[s3]\nselection = \"fastest\"\n[[s3.endpoint]]\nname = \"a\"\nanonymous = true\n",
            "line 2",
            "unknown selection `fastest`",
        ),
        (
            "[s3]\npart_size = 1024\n[[s3.endpoint]]\nname = \"a\"\nanonymous = true\n",
            "line 2",
            "must be 5 MiB",
        ),
        (
            "[s3]\nmultipart_threshold = 0\n[[s3.endpoint]]\nname = \"a\"\nanonymous = true\n",
            "line 2",
            "`multipart_threshold` must be 1 byte to 5 GiB",
        ),
        (
            "[s3]\npart_size = 6442450944\n[[s3.endpoint]]\nname = \"a\"\nanonymous = true\n",
            "line 2",
            "to 5 GiB",
        ),
        ("[s3]\n", "line 1", "at least one [[s3.endpoint]]"),
        (
            "[s3]\n[[s3.endpoint]]\nname = \"a\"\naccess_key_env = \"S3_ACCESS\"\n\
             secret_key_env = \"MISSING\"\n",
            "line 2",
            "environment variable MISSING is not set",
        ),
        (
            "[s3]\n[[s3.endpoint]]\nname = \"a\"\nprofile = \"p\"\nanonymous = true\n",
            "line 2",
            "exactly one of",
        ),
        (
            "[s3]\n[[s3.endpoint]]\nname = \"a\"\nurl = \"ftp://x\"\nanonymous = true\n",
            "line 4",
            "must be an http(s) URL",
        ),
        (
            "[s3]\n[[s3.endpoint]]\nname = \"a\"\nurl = \"http://me:pa55word@h:9000/\"\n\
             anonymous = true\n",
            "line 4",
            "carries credentials",
        ),
        (
            // a password holding a `/`: the authority would end at `me:ab`
            "[s3]\n[[s3.endpoint]]\nname = \"a\"\nurl = \"http://me:ab/cd@h:9000/\"\n\
             anonymous = true\n",
            "line 4",
            "carries credentials",
        ),
        (
            "[s3]\n[[s3.endpoint]]\nname = \"a\"\nanonymous = true\n[[s3.endpoint]]\n\
             name = \"a\"\nanonymous = true\n",
            "line 6",
            "duplicate s3 endpoint name `a`",
        ),
        (
            "[s3]\n[[s3.endpoint]]\nname = \"a\"\nanonymous = true\nsecret = \"x\"\n",
            "line 5",
            "unknown key `secret`",
        ),
    ];
    for (text, line, msg) in cases {
        let e = load(text).unwrap_err();
        assert!(
            e.message().contains(line) && e.message().contains(msg),
            "{text:?}: {}",
            e.message()
        );
        assert!(!e.message().contains("pa55word"), "{}", e.message());
    }
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn a_kit_built_from_the_file_stores_and_reads_through_both_endpoints() {
    let Some(url) = infermux_testkit::server_url("INFERMUX_S3_URL") else {
        return;
    };
    let Some(url2) = infermux_testkit::server_url("INFERMUX_S3_URL2") else {
        return;
    };
    let text = format!(
        "[defaults.breaker]\nminimum_calls = 5\n[s3]\nselection = \"round-robin\"\n\
         [[s3.endpoint]]\nname = \"a\"\nurl = \"{url}\"\naccess_key_env = \"INFERMUX_S3_ACCESS_KEY\"\n\
         secret_key_env = \"INFERMUX_S3_SECRET_KEY\"\nmax_concurrency = 4\n\
         [[s3.endpoint]]\nname = \"b\"\nurl = \"{url2}\"\naccess_key_env = \"INFERMUX_S3_ACCESS_KEY\"\n\
         secret_key_env = \"INFERMUX_S3_SECRET_KEY\"\n"
    );
    let config = Config::from_toml_str(&text, "infermux.toml").unwrap();
    let kit = config.s3_kit().unwrap();
    let bucket = format!("t-config-{}", std::process::id());
    kit.create_bucket(&bucket).await.unwrap();
    for i in 0..4 {
        kit.put_bytes(&bucket, &format!("k{i}"), vec![i; 10].into())
            .await
            .unwrap();
    }
    for i in 0..4 {
        assert_eq!(
            &kit.get_bytes(&bucket, &format!("k{i}")).await.unwrap()[..],
            &[i; 10]
        );
    }
    let status = kit.status();
    assert!(
        status.iter().all(|s| s.attempts >= 2),
        "round-robin used both endpoints: {status:?}"
    );
}

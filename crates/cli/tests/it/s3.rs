//! `infermux s3 …` (feature `s3`) against the live s3s-fs endpoint `.ci/s3.sh` starts.

use std::process::{Command, Output};

fn s3(args: &[&str]) -> Option<Output> {
    let url = infermux_testkit::server_url("INFERMUX_S3_URL")?;
    let access = std::env::var("INFERMUX_S3_ACCESS_KEY").unwrap_or_default();
    let secret = std::env::var("INFERMUX_S3_SECRET_KEY").unwrap_or_default();
    let out = Command::new(env!("CARGO_BIN_EXE_infermux"))
        .env_clear()
        .arg("s3")
        .args(args)
        .args(["--endpoint-url", &url, "--part-mib", "5", "--quiet"])
        .env("AWS_ACCESS_KEY_ID", access)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap();
    Some(out)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn put_ls_get_presign_sync_fetch_and_rm_work_from_the_command_line() {
    let bucket = format!("t-cli-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("infermux-cli-s3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("model/sub")).unwrap();
    let data: Vec<u8> = (0..(17u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("model/weights.bin"), &data).unwrap();
    std::fs::write(dir.join("model/sub/config.json"), b"{}").unwrap();
    let dirs = |p: &str| dir.join(p).to_str().unwrap().to_owned();
    // (s3s-fs makes the bucket on the first PUT)
    let Some(out) = s3(&[
        "put",
        &dirs("model/weights.bin"),
        &format!("s3://{bucket}/w.bin"),
    ]) else {
        return;
    };
    let line = ok(&out);
    assert!(line.contains("4 part(s)"), "{line}");
    let listed = ok(&s3(&["ls", &format!("s3://{bucket}")]).unwrap());
    assert_eq!(listed.trim(), format!("{}\tw.bin", 17 << 20));
    ok(&s3(&["get", &format!("s3://{bucket}/w.bin"), &dirs("back.bin")]).unwrap());
    assert_eq!(std::fs::read(dir.join("back.bin")).unwrap(), data);
    // into a directory: under the object's name (before, the whole object was downloaded
    // and then refused at the rename, its partial file left behind)
    std::fs::create_dir_all(dir.join("into")).unwrap();
    ok(&s3(&["get", &format!("s3://{bucket}/w.bin"), &dirs("into")]).unwrap());
    assert_eq!(std::fs::read(dir.join("into/w.bin")).unwrap(), data);
    let url = ok(&s3(&[
        "presign",
        &format!("s3://{bucket}/w.bin"),
        "--expires",
        "60",
    ])
    .unwrap());
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let synced = ok(&s3(&["sync", &dirs("model"), &format!("s3://{bucket}/m")]).unwrap());
    assert_eq!(synced.lines().count(), 2, "{synced}");
    let again = ok(&s3(&["sync", &dirs("model"), &format!("s3://{bucket}/m")]).unwrap());
    assert_eq!(again, "", "nothing changed");
    let fetched = ok(&s3(&["fetch", &format!("s3://{bucket}/m"), &dirs("cache")]).unwrap());
    assert_eq!(fetched.lines().count(), 2, "{fetched}");
    assert_eq!(std::fs::read(dir.join("cache/weights.bin")).unwrap(), data);
    ok(&s3(&["rm", &format!("s3://{bucket}/w.bin")]).unwrap());
    let listed = ok(&s3(&["ls", &format!("s3://{bucket}/w")]).unwrap());
    assert_eq!(listed, "");
    // a missing object is a typed error and a failure exit
    let out = s3(&["get", &format!("s3://{bucket}/w.bin"), &dirs("none")]).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_fetches_its_model_folder_from_s3_before_the_server_starts() {
    let Some(url) = infermux_testkit::server_url("INFERMUX_S3_URL") else {
        return;
    };
    let access = std::env::var("INFERMUX_S3_ACCESS_KEY").unwrap_or_default();
    let secret = std::env::var("INFERMUX_S3_SECRET_KEY").unwrap_or_default();
    let bucket = format!("t-serve-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("infermux-serve-s3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/model.bin"), b"weights").unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_infermux"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("INFERMUX_S3_URL", &url)
            .env("AWS_ACCESS_KEY_ID", &access)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .args(args)
            .output()
            .unwrap()
    };
    let d = |p: &str| dir.join(p).to_str().unwrap().to_owned();
    ok(&run(&[
        "s3",
        "sync",
        &d("src"),
        &format!("s3://{bucket}/m"),
        "--endpoint-url",
        &url,
    ]));
    // the "server" checks the fetched file is there, then fails: serve reports the crash
    // loop after having fetched, and never starts when the fetch fails
    let out = run(&[
        "serve",
        "--fetch",
        &format!("s3://{bucket}/m"),
        "--fetch-dir",
        &d("models"),
        "--max-restarts",
        "0",
        "--ready-timeout",
        "5",
        "cmd",
        "--port",
        "1",
        "--",
        "sh",
        "-c",
        &format!(
            "test -f {} && echo found-the-model; exit 3",
            d("models/model.bin")
        ),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fetched s3://"), "{err}");
    assert!(
        err.contains("found-the-model"),
        "the server saw the fetched file: {err}"
    );
    assert_eq!(
        std::fs::read(dir.join("models/model.bin")).unwrap(),
        b"weights"
    );
    let out = run(&[
        "serve",
        "--fetch",
        &format!("s3://{bucket}-missing/m"),
        "--fetch-dir",
        &d("none"),
        "cmd",
        "--port",
        "1",
        "--",
        "sh",
        "-c",
        "echo started-anyway",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!err.contains("started-anyway"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `--config`, `--part-mib` and `--concurrency` replace the file's (a part size below
/// S3's 5 MiB minimum is refused, which shows the flag reached the kit), and `--region`,
/// which belongs to each `[[s3.endpoint]]`, is refused. No server is needed: the kit is
/// refused before any request.
#[test]
fn transfer_flags_apply_with_a_config_and_the_region_is_refused() {
    let dir = std::env::temp_dir().join(format!("infermux-cli-s3cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("infermux.toml");
    std::fs::write(
        &path,
        "[s3]\n[[s3.endpoint]]\nname = \"a\"\nurl = \"http://127.0.0.1:9\"\nanonymous = true\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_infermux"))
            .env_clear()
            .args(["s3", "--config", p, "--quiet"])
            .args(extra)
            .args(["ls", "s3://b"])
            .output()
            .unwrap()
    };
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let out = run(&["--part-mib", "1"]);
    assert!(!out.status.success());
    assert!(err(&out).contains("part"), "{}", err(&out));
    let out = run(&["--concurrency", "0"]);
    assert!(!out.status.success());
    assert!(err(&out).contains("concurrency"), "{}", err(&out));
    let out = run(&["--region", "eu-west-1"]);
    assert!(!out.status.success());
    assert!(err(&out).contains("cannot be used with"), "{}", err(&out));
}

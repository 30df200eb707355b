//! Object keys: what the kit refuses before any call, and the local path a key maps to.

use std::path::{Component, Path, PathBuf};

use crate::S3Error;

/// Checks a key: not empty, at most 1024 bytes, no control characters (S3 allows them but
/// they break listings and XML 1.0). Spaces, `+`, `%`, `?`, `#`, quotes and any other UTF-8
/// are fine.
pub fn check_key(key: &str) -> Result<(), S3Error> {
    let bad = |reason| {
        Err(S3Error::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if key.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    Ok(())
}

/// The path under `dir` an object key (relative to a prefix) is written to; refuses keys that
/// would leave `dir` (`..`, an absolute path, an empty segment).
pub fn local_path(dir: &Path, relative: &str) -> Result<PathBuf, S3Error> {
    let bad = |reason| {
        Err(S3Error::InvalidKey {
            key: relative.to_owned(),
            reason,
        })
    };
    if relative.is_empty() {
        return bad("names the folder itself");
    }
    let mut out = dir.to_path_buf();
    for seg in relative.split('/') {
        if seg.is_empty() {
            return bad("has an empty path segment");
        }
        let p = Path::new(seg);
        match p.components().next() {
            Some(Component::Normal(_)) if p.components().count() == 1 => out.push(seg),
            _ => return bad("would leave the local folder"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_keys_pass_and_bad_keys_are_refused() {
        for k in ["a b+c%d?e#f", "ünï/cødé 🚀", "x'\"<&>"] {
            check_key(k).unwrap();
        }
        for k in ["", "a\nb", "tab\there"] {
            assert!(
                matches!(check_key(k), Err(S3Error::InvalidKey { .. })),
                "{k:?}"
            );
        }
        assert!(check_key(&"k".repeat(1025)).is_err());
        check_key(&"k".repeat(1024)).unwrap();
    }

    #[test]
    fn keys_never_leave_the_folder() {
        let d = Path::new("/tmp/models");
        assert_eq!(local_path(d, "a/b.bin").unwrap(), d.join("a").join("b.bin"));
        for k in ["../etc/passwd", "a/../../b", "/abs", "a//b", "", "."] {
            assert!(local_path(d, k).is_err(), "{k:?}");
        }
    }
}

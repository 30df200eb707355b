//! The shared credentials file (`~/.aws/credentials`): INI sections of static keys.

pub(crate) struct Profile {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: Option<String>,
}

/// The static keys of profile `name` in `text` (`[name]`; also `[profile name]`, the config
/// file's spelling); `None` when the profile or one of its two keys is missing.
pub(crate) fn find(text: &str, name: &str) -> Option<Profile> {
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            let section = section.strip_prefix("profile ").unwrap_or(section).trim();
            inside = section == name;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_owned();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Profile {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn a_profile_is_found_by_name_and_others_are_not_mixed_in() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = S\n\n\
                    [profile ci]\n# comment\naws_access_key_id=B\naws_secret_access_key=T\n\
                    aws_session_token = X\n[half]\naws_access_key_id = C\n";
        let d = find(text, "default").unwrap();
        assert_eq!(
            (d.access_key_id.as_str(), d.secret_access_key.as_str()),
            ("A", "S")
        );
        assert!(d.session_token.is_none());
        let c = find(text, "ci").unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("B", Some("X"))
        );
        assert!(find(text, "half").is_none(), "a profile without its secret");
        assert!(find(text, "missing").is_none());
    }
}

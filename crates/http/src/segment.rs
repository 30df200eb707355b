//! Names a caller gives that go into a request's path (a model id, a version).

use infermux_core::{Error, ErrorKind, Result};

/// What a name put into a request path may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PathName {
    /// `/`s allowed (each between two non-empty parts): `0` for one segment, `1` for
    /// `org/model` or `models/gemini-2.5-flash`.
    pub slashes: usize,
    /// Whether `:` is allowed (LLVM model ids; not where `:` separates a method, as Gemini's
    /// `models/m:generateContent`).
    pub colon: bool,
}

impl PathName {
    /// One segment, no `:`.
    pub const SEGMENT: PathName = PathName {
        slashes: 0,
        colon: false,
    };

    /// `slashes` `/`s allowed, no `:`.
    pub const fn with_slashes(slashes: usize) -> Self {
        PathName {
            slashes,
            colon: false,
        }
    }

    /// `:` allowed too.
    pub const fn with_colon(mut self) -> Self {
        self.colon = true;
        self
    }

    /// `name` if it stays the path part it is put in: not empty, no part empty, `.` or `..`,
    /// no `?`, `#`, `%` (the URL parser reads `%2e%2e` as `..`) or `\` (read as `/`), no
    /// whitespace or control character, at most [`PathName::slashes`] `/`s and `:` only
    /// where [`PathName::colon`] allows it; else an [`ErrorKind::InvalidRequest`] naming
    /// `what` (a model name from a caller could otherwise steer a request, key and all, to
    /// another route of the same API).
    ///
    /// ```
    /// use infermux_http::PathName;
    /// assert!(PathName::SEGMENT.check("model", "gemini-2.5-flash").is_ok());
    /// assert!(PathName::with_slashes(1).check("model", "BAAI/bge-small-en").is_ok());
    /// for bad in ["", ".", "a/../b", "../cachedContents", "m?x", "m#", "%2e%2e", "a\\b", "a b", "a:b", "a/b"] {
    ///     assert!(PathName::SEGMENT.check("model", bad).is_err(), "{bad}");
    /// }
    /// assert!(PathName::SEGMENT.with_colon().check("model", "llama:7b").is_ok());
    /// ```
    pub fn check<'a>(self, what: &str, name: &'a str) -> Result<&'a str> {
        let parts_ok = name
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..");
        let chars_ok = !name.chars().any(|c| {
            matches!(c, '?' | '#' | '%' | '\\')
                || c.is_whitespace()
                || c.is_control()
                || (c == ':' && !self.colon)
        });
        let slashes = name.bytes().filter(|b| *b == b'/').count();
        if parts_ok && chars_ok && slashes <= self.slashes {
            return Ok(name);
        }
        let colon = if self.colon { "" } else { " ':'," };
        let slashes = match self.slashes {
            0 => "a '/'".to_owned(),
            n => format!("more than {n} '/'"),
        };
        Err(Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "a {what} that goes into the request's path may not be empty, '.' or '..', or \
                 hold{colon} '?', '#', '%', '\\', whitespace or {slashes}"
            ),
        ))
    }
}

//! [`S3Error`], the kit's typed error, and the mapping of the AWS SDK's errors onto
//! [`infermux_core::Error`] (so the call policy's retry and the breakers read S3 failures like
//! any provider's).

use std::path::PathBuf;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use infermux_core::{Error, ErrorKind, RequestId};

/// What an S3 operation of the kit can fail with. Every variant that comes from a call keeps
/// the call's [`infermux_core::Error`] as its source: its request id, endpoint, attempts and
/// why retries stopped ([`S3Error::request_id`], [`S3Error::call_error`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// The bucket does not exist on the endpoint.
    #[error("bucket `{bucket}` does not exist")]
    NoSuchBucket {
        /// The bucket.
        bucket: String,
        /// The call's error.
        #[source]
        source: Error,
    },
    /// The object does not exist.
    #[error("object `{key}` does not exist in bucket `{bucket}`")]
    NoSuchKey {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The call's error.
        #[source]
        source: Error,
    },
    /// The endpoint refused the credentials (unknown access key, a signature that does not
    /// match, access denied).
    #[error("endpoint refused the credentials ({code})")]
    AccessDenied {
        /// The S3 error code (`InvalidAccessKeyId`, `SignatureDoesNotMatch`, `AccessDenied`).
        code: String,
        /// The call's error.
        #[source]
        source: Error,
    },
    /// An object key the kit refuses before any call (empty, longer than 1024 bytes, a control
    /// character, or a path that would leave the local folder).
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// The local file changed while it was being uploaded; the upload was aborted and no
    /// object is visible.
    #[error("{} changed during the upload; the upload was aborted", path.display())]
    SourceChanged {
        /// The file.
        path: PathBuf,
    },
    /// What arrived is not what was stored (a SHA-256 or a length that differs).
    #[error("checksum mismatch for `{key}`: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// The key.
        key: String,
        /// The checksum or length the object carries.
        expected: String,
        /// The one computed over what arrived.
        actual: String,
    },
    /// The object changed on the server during a ranged download (its ETag moved); the
    /// partial file was removed.
    #[error("object `{key}` changed during the download")]
    ObjectChanged {
        /// The key.
        key: String,
        /// The call's error.
        #[source]
        source: Error,
    },
    /// A multipart upload failed on its endpoint after its retries; it was aborted, and when
    /// the abort itself failed `upload_id` names what [`S3Kit::resume_upload`](crate::S3Kit::resume_upload)
    /// or a later abort can use.
    #[error("multipart upload of `{key}` failed on endpoint `{endpoint}`")]
    UploadFailed {
        /// The key.
        key: String,
        /// The endpoint the upload ran on.
        endpoint: String,
        /// The upload id, when the upload could not be aborted (still resumable).
        upload_id: Option<String>,
        /// The SHA-256 of the file the upload was sending (what a resume checks the file
        /// against).
        sha256: String,
        /// The call's error.
        #[source]
        source: Error,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The kit's configuration is invalid.
    #[error("invalid S3 configuration: {0}")]
    Config(String),
    /// Any other failure of a call (connect, timeout, server error, circuit open, no endpoint
    /// available before the deadline, …): its kind says which.
    #[error(transparent)]
    Call(Error),
}

impl S3Error {
    /// The call's error, when the failure came from a call.
    pub fn call_error(&self) -> Option<&Error> {
        match self {
            S3Error::NoSuchBucket { source, .. }
            | S3Error::NoSuchKey { source, .. }
            | S3Error::AccessDenied { source, .. }
            | S3Error::ObjectChanged { source, .. }
            | S3Error::UploadFailed { source, .. } => Some(source),
            S3Error::Call(e) => Some(e),
            _ => None,
        }
    }
    /// The request id of the call that failed, when the failure came from a call.
    pub fn request_id(&self) -> Option<RequestId> {
        self.call_error().and_then(Error::request_id)
    }
    /// The error kind of the call that failed ([`ErrorKind::Storage`] for local failures,
    /// [`ErrorKind::InvalidRequest`] for refused input, [`ErrorKind::Config`] for a bad config).
    pub fn kind(&self) -> ErrorKind {
        match self {
            S3Error::InvalidKey { .. } => ErrorKind::InvalidRequest,
            S3Error::Config(_) => ErrorKind::Config,
            S3Error::SourceChanged { .. }
            | S3Error::ChecksumMismatch { .. }
            | S3Error::Io { .. } => ErrorKind::Storage,
            _ => self.call_error().map_or(ErrorKind::Storage, Error::kind),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        S3Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Names a call's error by what it means for `bucket` and `key`.
    pub(crate) fn from_call(e: Error, bucket: &str, key: Option<&str>) -> Self {
        let code = e.provider_code().unwrap_or_default().to_owned();
        let forbidden = e.status() == Some(403);
        match (e.kind(), code.as_str()) {
            (ErrorKind::NotFound, "NoSuchBucket") => S3Error::NoSuchBucket {
                bucket: bucket.to_owned(),
                source: e,
            },
            (ErrorKind::NotFound, _) if key.is_some() => S3Error::NoSuchKey {
                bucket: bucket.to_owned(),
                key: key.unwrap_or_default().to_owned(),
                source: e,
            },
            (ErrorKind::Auth, _) | (_, "AccessDenied") => S3Error::AccessDenied {
                code: if code.is_empty() {
                    "AccessDenied".to_owned()
                } else {
                    code
                },
                source: e,
            },
            // a 403 whose code says it is not the credentials (the clock, an archived object,
            // a request too fast) is the call's own error, with its code; any other 403 — a
            // HEAD's has no body to name one, and `InvalidSecurity`, `AccountProblem`,
            // `AllAccessDisabled` are the account's — is a refusal
            _ if forbidden && !NOT_A_REFUSAL.contains(&code.as_str()) => S3Error::AccessDenied {
                code: if code.is_empty() {
                    "AccessDenied".to_owned()
                } else {
                    code
                },
                source: e,
            },
            _ => S3Error::Call(e),
        }
    }
}

/// The codes S3 sends with a 403 that are not a refusal of the credentials or of access.
const NOT_A_REFUSAL: [&str; 4] = [
    "RequestTimeTooSkewed",
    "InvalidObjectState",
    "RequestExpired",
    "ObjectLockConfigurationNotFoundError",
];

/// The ids the server gave its answer (` (request id …, host id …)`, or nothing): what its
/// operators ask for.
fn server_ids(r: &aws_sdk_s3::config::http::HttpResponse) -> String {
    let h = r.headers();
    let printable = |v: &str| {
        v.chars().all(|c| c.is_ascii_graphic() || c == ' ') && !v.is_empty() && v.len() <= 256
    };
    let id = h.get("x-amz-request-id").filter(|v| printable(v));
    let host = h.get("x-amz-id-2").filter(|v| printable(v));
    match (id, host) {
        (Some(i), Some(h)) => format!(" (request id {i}, host id {h})"),
        (Some(i), None) => format!(" (request id {i})"),
        (None, Some(h)) => format!(" (host id {h})"),
        (None, None) => String::new(),
    }
}

/// Maps an AWS SDK error onto the error every layer of infermux reads: status and S3 error
/// code decide the kind, the code is kept as the provider code, the SDK error as the source.
pub(crate) fn sdk_error<E>(op: &'static str, e: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match e {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let ids = server_ids(ctx.raw());
            let err = ctx.into_err();
            let code = err.code().map(str::to_owned);
            let kind = kind_of(status, code.as_deref());
            let message = match (&code, err.message()) {
                (Some(c), Some(m)) => format!("S3 {op}: {status} {c}: {m}{ids}"),
                (Some(c), None) => format!("S3 {op}: {status} {c}{ids}"),
                _ => format!("S3 {op}: HTTP {status}{ids}"),
            };
            let mut out = Error::new(kind, message)
                .with_status(status)
                .with_reached_server(true);
            if let Some(c) = code {
                out = out.with_provider_code(c);
            }
            out.with_source(err)
        }
        SdkError::TimeoutError(_) => Error::new(ErrorKind::Timeout, format!("S3 {op}: timed out")),
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Connect
            };
            let text = match d.as_connector_error() {
                Some(c) => format!("S3 {op}: connection failed: {}", chain(c)),
                None => format!("S3 {op}: the request could not be sent"),
            };
            Error::new(kind, text)
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            let ids = server_ids(r.raw());
            Error::new(
                ErrorKind::Decode,
                format!("S3 {op}: the response (HTTP {status}) could not be read{ids}"),
            )
            .with_status(status)
            .with_reached_server(true)
        }
        SdkError::ConstructionFailure(_) => Error::new(
            ErrorKind::InvalidRequest,
            format!("S3 {op}: the request could not be built"),
        )
        .with_reached_server(false),
        other => Error::new(ErrorKind::Storage, format!("S3 {op}: {}", chain(&other))),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The kind of an S3 answer by status and error code.
pub(crate) fn kind_of(status: u16, code: Option<&str>) -> ErrorKind {
    match (status, code) {
        (_, Some("NoSuchBucket" | "NoSuchKey" | "NoSuchUpload" | "NotFound")) | (404, _) => {
            ErrorKind::NotFound
        }
        // the credentials themselves: the endpoint can never serve with them
        (
            _,
            Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidToken"),
        )
        | (401, _) => ErrorKind::Auth,
        // a permission on one bucket or key: the endpoint still serves others
        (403, _) => ErrorKind::InvalidRequest,
        (_, Some("SlowDown" | "RequestLimitExceeded" | "Throttling")) | (429, _) => {
            ErrorKind::RateLimited
        }
        (_, Some("RequestTimeout")) | (408, _) => ErrorKind::Timeout,
        // by the code too: CompleteMultipartUpload and CopyObject can answer 200 with an
        // error inside, which AWS says to retry
        (_, Some("InternalError" | "ServiceUnavailable")) | (500..=599, _) => ErrorKind::Server,
        _ => ErrorKind::InvalidRequest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code decides where the status cannot: an error inside a 200 (CompleteMultipartUpload,
    /// CopyObject) is retried when S3 says to, and a 403 that names another code than a
    /// refusal of the credentials keeps it.
    #[test]
    fn codes_name_the_kind_whatever_the_status() {
        assert_eq!(kind_of(200, Some("InternalError")), ErrorKind::Server);
        assert_eq!(kind_of(200, Some("ServiceUnavailable")), ErrorKind::Server);
        assert_eq!(kind_of(200, Some("SlowDown")), ErrorKind::RateLimited);
        assert_eq!(
            kind_of(200, Some("MalformedXML")),
            ErrorKind::InvalidRequest
        );
        let skewed = Error::new(ErrorKind::InvalidRequest, "skewed")
            .with_status(403)
            .with_provider_code("RequestTimeTooSkewed");
        assert!(matches!(
            S3Error::from_call(skewed, "b", Some("k")),
            S3Error::Call(e) if e.provider_code() == Some("RequestTimeTooSkewed")
        ));
        let head = Error::new(ErrorKind::InvalidRequest, "head").with_status(403);
        assert!(matches!(
            S3Error::from_call(head, "b", Some("k")),
            S3Error::AccessDenied { code, .. } if code == "AccessDenied"
        ));
        let account = Error::new(ErrorKind::InvalidRequest, "account")
            .with_status(403)
            .with_provider_code("AllAccessDisabled");
        assert!(matches!(
            S3Error::from_call(account, "b", Some("k")),
            S3Error::AccessDenied { code, .. } if code == "AllAccessDisabled"
        ));
    }
}

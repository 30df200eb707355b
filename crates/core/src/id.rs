//! Identities: [`RequestId`] (sortable, unique, cheap) and [`EndpointId`].

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A request id: 128 bits, printed as 26 Crockford base32 characters like a ULID.
///
/// The high 48 bits are milliseconds since the Unix epoch, then 16 bits chosen at random per
/// process, then a 64-bit per-process counter: ids sort by creation time, never repeat within a
/// process, and cost one atomic increment and one clock read.
///
/// ```
/// use infermux_core::RequestId;
/// let a = RequestId::new();
/// let b = RequestId::new();
/// assert!(a < b);
/// assert_eq!(a.to_string().parse::<RequestId>().unwrap(), a);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(u128);

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn process_salt() -> u16 {
    static SALT: OnceLock<u16> = OnceLock::new();
    *SALT.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish() as u16
    })
}

impl RequestId {
    /// A fresh id.
    pub fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
            & 0xFFFF_FFFF_FFFF;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        RequestId(((millis as u128) << 80) | ((process_salt() as u128) << 64) | n as u128)
    }

    /// The id from its raw 128 bits.
    pub const fn from_u128(raw: u128) -> Self {
        RequestId(raw)
    }

    /// The raw 128 bits.
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// Milliseconds since the Unix epoch at creation.
    pub const fn timestamp_millis(self) -> u64 {
        (self.0 >> 80) as u64
    }
}

/// Formatting without an allocation (for the `x-request-id` header of every request).
impl RequestId {
    /// Writes the id's 26 characters (the same text as `Display`) into `buf` and returns them.
    ///
    /// ```
    /// use infermux_core::RequestId;
    /// let mut buf = [0u8; 26];
    /// for id in [RequestId::new(), RequestId::from_u128(0), RequestId::from_u128(u128::MAX)] {
    ///     assert_eq!(id.encode(&mut buf), id.to_string());
    /// }
    /// ```
    pub fn encode<'b>(&self, buf: &'b mut [u8; 26]) -> &'b str {
        // character i holds bits 125 - 5i.. (the first one only the top 3 bits)
        for (i, slot) in buf.iter_mut().enumerate() {
            *slot = ALPHABET[((self.0 >> (125 - 5 * i)) & 31) as usize];
        }
        // every byte comes from ALPHABET, so this never falls back
        std::str::from_utf8(buf).unwrap_or("")
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 26];
        let mut v = self.0;
        for slot in buf.iter_mut().rev() {
            *slot = ALPHABET[(v & 31) as usize];
            v >>= 5;
        }
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({self})")
    }
}

/// The error of parsing a [`RequestId`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRequestIdError;

impl fmt::Display for ParseRequestIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request id is 26 Crockford base32 characters")
    }
}

impl std::error::Error for ParseRequestIdError {}

impl FromStr for RequestId {
    type Err = ParseRequestIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 26 {
            return Err(ParseRequestIdError);
        }
        let mut v: u128 = 0;
        for (i, c) in s.bytes().enumerate() {
            let c = c.to_ascii_uppercase();
            let d = ALPHABET
                .iter()
                .position(|a| *a == c)
                .ok_or(ParseRequestIdError)? as u128;
            // the first character carries only 3 bits (26 * 5 = 130)
            if i == 0 && d > 7 {
                return Err(ParseRequestIdError);
            }
            v = (v << 5) | d;
        }
        Ok(RequestId(v))
    }
}

impl serde::Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RequestId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The name of one endpoint (a base URL with its key and limits). Cheap to clone.
///
/// ```
/// use infermux_core::EndpointId;
/// let id = EndpointId::new("openai-primary");
/// assert_eq!(id.as_str(), "openai-primary");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EndpointId(Arc<str>);

impl EndpointId {
    /// An endpoint id from a name.
    pub fn new(name: impl AsRef<str>) -> Self {
        EndpointId(Arc::from(name.as_ref()))
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EndpointId({})", self.0)
    }
}

impl From<&str> for EndpointId {
    fn from(s: &str) -> Self {
        EndpointId::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_sorted_within_a_thread() {
        let ids: Vec<RequestId> = (0..10_000).map(|_| RequestId::new()).collect();
        let set: HashSet<_> = ids.iter().copied().collect();
        assert_eq!(set.len(), ids.len());
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn display_parse_round_trip_and_order() {
        for raw in [
            0u128,
            1,
            u128::MAX,
            0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        ] {
            let id = RequestId::from_u128(raw);
            let s = id.to_string();
            assert_eq!(s.len(), 26);
            assert_eq!(s.parse::<RequestId>(), Ok(id));
        }
        let a = RequestId::from_u128(5);
        let b = RequestId::from_u128(1 << 100);
        assert!(a.to_string() < b.to_string());
        assert!("8ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<RequestId>().is_err());
        assert!("short".parse::<RequestId>().is_err());
    }

    #[test]
    fn timestamp_is_recent() {
        let id = RequestId::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now - id.timestamp_millis() < 60_000);
    }
}

//! Identities: [`RequestId`] (sortable, unique, cheap) and [`EndpointId`].

use std::cell::Cell;
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
/// process, then 24 bits numbering the thread that made the id (in the order threads first
/// make one) and a 40-bit counter of that thread: ids sort by creation time to the
/// millisecond (and strictly within a thread), never repeat within a process, and cost one
/// clock read and no shared write (a thread takes a new number after 2⁴⁰ ids).
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

/// Bits of the per-thread counter.
const SEQ_BITS: u32 = 40;
/// Bits of the thread number.
const THREAD_BITS: u32 = 24;

fn process_salt() -> u16 {
    static SALT: OnceLock<u16> = OnceLock::new();
    *SALT.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish() as u16
    })
}

/// The low 64 bits of this thread's next id: the thread's number and its counter. The shared
/// counter of thread numbers is touched once per thread (and once more
/// per 2⁴⁰ ids), never per id.
fn next_low_bits() -> u64 {
    static THREADS: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        /// The thread's number (shifted in place) and its next counter value; the counter
        /// starts spent, so the first id takes a number.
        static NEXT: Cell<(u64, u64)> = const { Cell::new((0, 1 << SEQ_BITS)) };
    }
    NEXT.with(|cell| {
        let (mut prefix, mut seq) = cell.get();
        if seq >> SEQ_BITS != 0 {
            let thread = THREADS.fetch_add(1, Ordering::Relaxed) & ((1 << THREAD_BITS) - 1);
            prefix = thread << SEQ_BITS;
            seq = 0;
        }
        cell.set((prefix, seq + 1));
        prefix | seq
    })
}

impl RequestId {
    /// A fresh id.
    pub fn new() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs().wrapping_mul(1000) + u64::from(d.subsec_millis()))
            .unwrap_or(0)
            & 0xFFFF_FFFF_FFFF;
        RequestId(
            ((millis as u128) << 80) | ((process_salt() as u128) << 64) | next_low_bits() as u128,
        )
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
    fn ids_of_different_threads_carry_distinct_thread_numbers_and_never_collide() {
        // each thread numbers its own ids (no shared counter per id): the 24 bits above the
        // 40-bit counter name the thread, so two threads' ids differ there and nowhere collide
        let per_thread: Vec<Vec<RequestId>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..5_000).map(|_| RequestId::new()).collect::<Vec<_>>()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let thread_of = |id: &RequestId| (id.as_u128() as u64) >> 40;
        let mut numbers = HashSet::new();
        for ids in &per_thread {
            let n = thread_of(&ids[0]);
            assert!(
                ids.iter().all(|id| thread_of(id) == n),
                "one number per thread"
            );
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "sorted within a thread"
            );
            numbers.insert(n);
        }
        assert_eq!(
            numbers.len(),
            per_thread.len(),
            "every thread its own number"
        );
        let all: HashSet<_> = per_thread.iter().flatten().copied().collect();
        assert_eq!(all.len(), 4 * 5_000);
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

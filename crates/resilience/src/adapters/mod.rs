//! Adapters that plug third-party crates into our traits (behind features, off by default).

#[cfg(feature = "backoff")]
pub mod backoff;
#[cfg(feature = "failsafe")]
pub mod failsafe;

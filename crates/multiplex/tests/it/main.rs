//! Integration tests of infermux-multiplex: keys cooled, removed and limited through the call
//! policy, admission (waiting, refusing at once, priorities, cancellation), TPM limits against
//! an auditor, and property tests of the strategies, the weighted shares, the ejection cap and
//! exactly-once resolution; endpoints taken out of service and put back; with feature `redis`, state shared
//! across pools and processes through a real Redis.

mod admission;
mod config;
mod keys;
mod props;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod streams;
mod stub;
mod tpm;

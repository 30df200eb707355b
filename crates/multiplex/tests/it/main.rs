//! Integration tests of infermux-multiplex: keys cooled, removed and limited through the call
//! policy, admission (waiting, refusing at once, priorities, cancellation), TPM limits against
//! an auditor, and property tests of the strategies, the weighted shares, the ejection cap and
//! exactly-once resolution.

mod admission;
mod config;
mod keys;
mod props;
mod stub;
mod tpm;

//! Integration tests of infermux-cache (one binary, one module per area).

mod verify;

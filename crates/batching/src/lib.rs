//! Client-side batching for infermux (being built: see issue 11).

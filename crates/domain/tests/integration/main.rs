//! The shared domain against the real PostgreSQL: the set-based ledger, the app's ledger functions, segment filters.
//!
//! One test binary per crate: each module below is one area, and they link once.

mod ledger_bulk;
mod ledger_functions;
mod messages;
mod segments;

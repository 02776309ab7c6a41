//! The engine's integration tests: DST exhaustively, runs on a fixed clock, several instances as processes.
//!
//! One test binary per crate: each module below is one area, and they link once.

mod common;
mod dst;
mod instances;
mod runs;

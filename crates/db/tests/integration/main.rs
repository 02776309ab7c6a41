//! db against the real PostgreSQL: the throwaway cluster, the migrator, TLS.
//!
//! One test binary per crate: each module below is one area, and they link once.

mod cluster;
mod migrate;
mod run_rows;
mod tls;

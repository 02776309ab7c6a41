//! The FCM transport and the dispatcher against the real PostgreSQL and the fake FCM over a socket.
//!
//! One test binary per crate: each module below is one area, and they link once.

mod dispatcher;
mod fcm;

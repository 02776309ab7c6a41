//! hattrick's scheduling engine. It knows nothing of badges or pushes: jobs plug into it.
//!
//! So far: the business [`clock`], [`schedule`]s (5-field cron read in a time zone) and the misfire
//! [`policy`] of a job.

pub mod clock;
pub mod policy;
pub mod schedule;

pub use clock::Clock;
pub use policy::MisfirePolicy;
pub use schedule::Schedule;

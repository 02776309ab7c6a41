//! hattrick's shared domain: what the jobs and the admin surface both write and read. SQL lives next to the logic
//! it serves; every function takes "now" from its caller (the engine's clock) and passes it to SQL as a parameter.
//!
//! - [`ledger`] grants XP and credits set-based, with idempotency keys, levels and level-up bonuses
//!   (docs/ledger.md);
//! - [`outbox`] writes pushes in the caller's transaction, with the texts of [`messages`] in the user's language;
//! - [`delivery`] delivers a selection of users at a [`delivery::DeliveryWindow`] of each user's own clock, in
//!   the zones of [`days`];
//! - [`campaign`] is a campaign as operators write it and its audience, over [`segment`] filters;
//!   [`experiment`] computes an experiment's read-out;
//! - [`conditions`] parses badge unlock conditions; [`unlocks`] pays badges just given;
//! - [`operator`] holds the operator's audited actions (grant or revoke a badge, adjust a balance);
//! - [`redrive`] sends failed pushes again and finds the failed runs to run again;
//! - [`budget`] holds the per-run limits on grants and pushes, shared by a run's batches;
//! - [`scratch`] creates the per-transaction tables a batch is staged in.

pub mod budget;
pub mod campaign;
pub mod conditions;
pub mod days;
pub mod delivery;
pub mod experiment;
pub mod ledger;
pub mod messages;
pub mod operator;
pub mod outbox;
pub mod redrive;
pub mod scratch;
pub mod segment;
pub mod unlocks;

pub use budget::{Budget, Spending};
pub use campaign::CampaignDraft;
pub use days::DayZones;
pub use delivery::DeliveryWindow;

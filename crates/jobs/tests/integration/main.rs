//! Every job against the real PostgreSQL, one module per job family.
//!
//! One test binary per crate: each module below is one area, and they link once.

mod badge_auto_unlock;
mod cleanup;
mod engagement;
mod partner_analytics;
mod referral_tiers;
mod scheduled_notifications;
mod streak_reset;

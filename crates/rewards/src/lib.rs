//! hattrick's domain: the jobs that reward and engage GoalGPT's users. SQL lives next to the logic it serves;
//! every job takes "now" from the engine's clock and passes it to SQL as a parameter.

pub mod days;
pub mod streak_reset;

pub use days::DayZones;
pub use streak_reset::StreakReset;

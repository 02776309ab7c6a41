//! `hattrick ledger check` and `hattrick ledger open`.

use std::process::ExitCode;

use crate::config::Settings;
use crate::startup;

/// `hattrick ledger ...`
#[derive(Debug, clap::Subcommand)]
pub enum LedgerCommand {
    /// Report users whose balances differ from their ledgers (the app wrote a balance without a ledger row).
    ///
    /// Exit code 0 when every balance matches its ledger, 1 when some drift.
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// How many drifted users to list.
        #[arg(long, default_value_t = 20)]
        sample: i64,
    },
    /// Write one opening-balance row per drifted user so every balance equals its ledger (run once at cut-over,
    /// after `ledger check`). Without --yes it only says what it would write.
    Open {
        /// Write the rows.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `hattrick ledger check` or `hattrick ledger open`.
pub async fn ledger(settings: &Settings, command: LedgerCommand) -> anyhow::Result<ExitCode> {
    let pool = startup::pool(settings).await?;
    startup::require_schema(&pool).await?;
    match command {
        LedgerCommand::Check { json, sample } => {
            let drift = domain::ledger::drift(&pool, sample).await?;
            if json {
                crate::outln!("{}", serde_json::to_string_pretty(&drift)?);
            } else {
                crate::outln!(
                    "credits: {} user(s) drift, balances exceed their ledgers by {} in total",
                    drift.credit_users,
                    drift.credit_difference
                );
                crate::outln!(
                    "xp: {} user(s) drift, XP exceeds the ledgers by {} in total",
                    drift.xp_users,
                    drift.xp_difference
                );
                for (user, ledger, balance, total) in &drift.sample {
                    crate::outln!("  {user}  {ledger}: balance {balance}, ledger {total}");
                }
            }
            Ok(if drift.credit_users + drift.xp_users == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        LedgerCommand::Open { yes } => {
            let drift = domain::ledger::drift(&pool, 0).await?;
            if !yes {
                crate::outln!(
                    "would write {} credit and {} XP opening-balance row(s); nothing written: add --yes to write them",
                    drift.credit_users,
                    drift.xp_users
                );
                return Ok(ExitCode::FAILURE);
            }
            let (credits, xp) = domain::ledger::open_balances(&pool, startup::clock_from_env()?.now()).await?;
            crate::outln!("wrote {credits} credit and {xp} XP opening-balance row(s)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

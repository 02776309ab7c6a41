//! `hattrick push test`: test pushes to operators' devices.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::config::Settings;
use crate::startup;

/// `hattrick push ...`
#[derive(Debug, Subcommand)]
pub enum PushCommand {
    /// Send a test push now to the given users' devices and print what happened to each.
    ///
    /// Test pushes ignore quiet hours, the daily cap and opt-out (they are for operators' own devices).
    Test(PushTestArgs),
}

/// Options of `hattrick push test`.
#[derive(Debug, Args)]
pub struct PushTestArgs {
    /// A recipient's user id (repeat for several).
    #[arg(long = "user", required = true)]
    pub users: Vec<Uuid>,
    /// Title (with --body), unless --campaign is given.
    #[arg(long, required_unless_present = "campaign")]
    pub title: Option<String>,
    /// Body.
    #[arg(long, required_unless_present = "campaign")]
    pub body: Option<String>,
    /// Send a campaign's texts (in each user's language) instead: a test send before it goes out.
    #[arg(long, conflicts_with_all = ["title", "body"])]
    pub campaign: Option<Uuid>,
}

/// Writes one `test` outbox row per user and sends them at once through the configured transport.
pub async fn push(settings: &Settings, command: PushCommand) -> anyhow::Result<ExitCode> {
    let PushCommand::Test(args) = command;
    let pool = startup::pool(settings).await?;
    startup::require_schema(&pool).await?;
    let now = startup::clock_from_env()?.now();
    let dispatcher = push::Dispatcher::new(
        pool.clone(),
        startup::transport(settings).await?,
        startup::dispatcher_settings(settings)?,
    );
    let test =
        push::test_send::TestPush { users: args.users, title: args.title, body: args.body, campaign: args.campaign };
    let problems = test.problems();
    if !problems.is_empty() {
        for problem in problems {
            eprintln!("error: {problem}");
        }
        return Ok(ExitCode::from(crate::commands::EXIT_USAGE));
    }
    let results = match push::test_send::send(&pool, &dispatcher, &test, now).await {
        Ok(results) => results,
        Err(push::test_send::TestPushError::NotFound(message)) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(crate::commands::EXIT_USAGE));
        }
        Err(push::test_send::TestPushError::Sql(e)) => return Err(e.into()),
    };
    let mut all_sent = true;
    for result in results {
        all_sent &= result.status == "sent";
        let error = result.last_error.map(|e| format!(", last error {e}")).unwrap_or_default();
        crate::outln!(
            "{}: {} ({} token(s) delivered, {} failed{error})",
            result.user,
            result.status,
            result.tokens_sent,
            result.tokens_failed
        );
    }
    Ok(if all_sent { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

//! `hattrick push test`: test pushes to operators' devices.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use uuid::Uuid;

use super::usage;
use crate::config::Settings;
use crate::startup;

/// `hattrick push ...`
#[derive(Debug, Subcommand)]
pub enum PushCommand {
    /// Send a test push now to the given users' devices and print what happened to each.
    ///
    /// Test pushes ignore quiet hours, the daily cap and opt-out (they are for operators' own devices). With
    /// --message, a catalogue message is rendered (in --locale, or each user's language) with its kind's example
    /// values and printed; without --user it is only printed.
    Test(PushTestArgs),
}

/// Options of `hattrick push test`.
#[derive(Debug, Args)]
pub struct PushTestArgs {
    /// A recipient's user id (repeat for several).
    #[arg(long = "user", required_unless_present = "message")]
    pub users: Vec<Uuid>,
    /// Title (with --body), unless --campaign or --message is given.
    #[arg(long, required_unless_present_any = ["campaign", "message"])]
    pub title: Option<String>,
    /// Body.
    #[arg(long, required_unless_present_any = ["campaign", "message"])]
    pub body: Option<String>,
    /// Send a campaign's texts (in each user's language) instead: a test send before it goes out.
    #[arg(long, conflicts_with_all = ["title", "body", "message"])]
    pub campaign: Option<Uuid>,
    /// Send a catalogue message (a push kind such as streak_warning; `hattrick messages list` shows them).
    #[arg(long, value_name = "KIND", conflicts_with_all = ["title", "body"])]
    pub message: Option<String>,
    /// With --message: render it in this locale (de, pt-BR, ...) instead of each user's, through the same
    /// fallbacks as a real push (the locale, its language, English, Turkish).
    #[arg(long, requires = "message")]
    pub locale: Option<String>,
}

/// Writes one `test` outbox row per user and sends them at once through the configured transport.
pub async fn push(settings: &Settings, command: PushCommand) -> anyhow::Result<ExitCode> {
    let PushCommand::Test(args) = command;
    let message = match &args.message {
        Some(kind) => match domain::messages::test_message(kind, args.locale.as_deref()) {
            Ok(message) => Some(message),
            Err(problems) => return Ok(usage(&problems)),
        },
        None => None,
    };
    let pool = startup::pool(settings).await?;
    startup::require_schema(&pool).await?;
    startup::require_catalogue(&pool).await?;
    let now = startup::clock_from_env()?.now();
    if let Some(message) = &message {
        let kind = domain::messages::kind(&message.kind).expect("checked by test_message");
        let locales = match &message.locale {
            Some(locale) => vec![locale.clone()],
            None => {
                sqlx::query_scalar!(
                    r#"SELECT DISTINCT hattrick_locale(locale_preference) AS "locale!" FROM customer_users
                   WHERE id = ANY($1) ORDER BY 1"#,
                    &args.users,
                )
                .fetch_all(&pool)
                .await?
            }
        };
        for locale in locales {
            let rendered = domain::messages::render(&pool, kind, &locale, &Default::default()).await?;
            let Some(rendered) = rendered else { anyhow::bail!("{} has no text: run `hattrick migrate`", kind.kind) };
            crate::outln!(
                "{} in {} (the {} text): {} | {}",
                kind.kind,
                rendered.locale,
                rendered.text_locale,
                rendered.title,
                rendered.body
            );
        }
        if args.users.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let dispatcher = push::Dispatcher::new(
        pool.clone(),
        startup::transport(settings).await?,
        startup::dispatcher_settings(settings)?,
    );
    let test = push::test_send::TestPush {
        users: args.users,
        title: args.title,
        body: args.body,
        campaign: args.campaign,
        message,
    };
    let problems = test.problems();
    if !problems.is_empty() {
        return Ok(usage(&problems));
    }
    let results = match push::test_send::send(&pool, &dispatcher, &test, now).await {
        Ok(results) => results,
        Err(push::test_send::TestPushError::NotFound(message)) => return Ok(usage(&[message])),
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

//! `hattrick`: the gamification automation engine of GoalGPT. See the README for what each command does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

use hattrick::commands;
use hattrick::config::{Settings, Sources};

/// jemalloc instead of the system allocator: the dispatcher allocates for every message it sends, and with glibc's
/// allocator a quarter of its time went to malloc and free (BENCHMARKS.md, "Push delivery").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// hattrick runs GoalGPT's gamification jobs (badges, referral rewards, push campaigns, reminders, partner
/// analytics, cleanup) on the app's PostgreSQL database.
#[derive(Debug, Parser)]
#[command(name = "hattrick", version = hattrick::VERSION, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML). Defaults to $HATTRICK_CONFIG; without either, built-in defaults and the
    /// environment are used.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or update hattrick's tables, columns, constraints and indexes on $DATABASE_URL.
    ///
    /// Safe on the app's live database: it only adds what is missing, builds indexes concurrently, adds
    /// constraints NOT VALID and validates them only when no row violates them. Running it twice changes nothing.
    Migrate(commands::migrate::MigrateArgs),
    /// Run the scheduler: claim due ticks, run jobs, until SIGTERM or SIGINT (then finish running work).
    ///
    /// Any number of instances may serve one database; each tick runs once. Never migrates.
    Serve(commands::serve::ServeArgs),
    /// List every job: schedule, zone, state, next three fire times (local and UTC), last run.
    Jobs(commands::jobs::JobsArgs),
    /// Run one job once now (trigger "manual") and print its report.
    ///
    /// Exit codes: 0 the job succeeded, 1 it failed, 2 unknown job, 3 the job is already running.
    Run(commands::run::RunCommandArgs),
    /// Compare balances with their ledgers, and write opening-balance rows at cut-over.
    #[command(subcommand)]
    Ledger(commands::ledger::LedgerCommand),
    /// Fill a migrated database with a realistic synthetic population (deterministic for a seed).
    Seed(commands::seed::SeedArgs),
    /// Send pushes by hand (test sends to operators' devices).
    #[command(subcommand)]
    Push(commands::push::PushCommand),
    /// Send failed pushes again, or run failed runs' jobs again, by id or by filter (recorded in the audit log).
    #[command(subcommand)]
    Redrive(commands::redrive::RedriveCommand),
    /// See and extend the push texts: list them, import a locale file, export one for translators, remove one.
    #[command(subcommand)]
    Messages(commands::messages::MessagesCommand),
    /// Serve a fake FCM (OAuth token endpoint and messages:send, HTTP/1.1 and h2c) for tests, demos and staging.
    ///
    /// Prints KEY=VALUE lines that point hattrick at it.
    FakeFcm(commands::fake_fcm::FakeFcmArgs),
    /// Print the effective configuration (defaults, file and environment merged; secrets redacted).
    Config,
    /// Show the whole product on one simulated business day, in under a minute, then clean up.
    ///
    /// Without DATABASE_URL it starts a throwaway PostgreSQL from the machine's binaries; with it, it creates a
    /// database of its own on that server. It seeds a population, starts a fake FCM, runs the scheduler, event
    /// runs, the dispatcher and an app simulator through Sunday 1 November 2026 on a fast clock, and prints what
    /// every job did.
    Demo(commands::demo::DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on standard output.
    ///
    /// For example `hattrick completions bash > /usr/share/bash-completion/completions/hattrick`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on standard output: `hattrick manpage | man -l -`.
    Manpage,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Neither needs configuration, a database or a runtime: they describe the command line itself.
    match &cli.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "hattrick", &mut script);
            hattrick::out!("{}", String::from_utf8_lossy(&script));
            return ExitCode::SUCCESS;
        }
        Command::Manpage => {
            let mut page = Vec::new();
            if let Err(error) = clap_mangen::Man::new(Cli::command()).render(&mut page) {
                eprintln!("error: rendering the manual page: {error}");
                return ExitCode::FAILURE;
            }
            hattrick::out!("{}", String::from_utf8_lossy(&page));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    // The demo prints its own story; its logs stay quiet unless asked for.
    init_tracing(if matches!(cli.command, Command::Demo(_)) { "error" } else { "warn,hattrick=info" });
    let settings = match Settings::load(&Sources::from_process(cli.config.clone())) {
        Ok(settings) => settings,
        Err(error) => {
            eprint!("{error}");
            return ExitCode::from(2);
        }
    };
    for deprecated in settings.deprecations() {
        tracing::warn!("configuration: {deprecated}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Migrate(args) => commands::migrate::migrate(&settings, args).await,
        Command::Serve(args) => commands::serve::serve(&settings, args).await,
        Command::Jobs(args) => commands::jobs::jobs(&settings, args).await,
        Command::Run(args) => commands::run::run(&settings, args).await,
        Command::Ledger(command) => commands::ledger::ledger(&settings, command).await,
        Command::Seed(args) => commands::seed::run(&settings, args).await,
        Command::Push(command) => commands::push::push(&settings, command).await,
        Command::Redrive(command) => commands::redrive::redrive(&settings, command).await,
        Command::Messages(command) => commands::messages::messages(&settings, command).await,
        Command::FakeFcm(args) => commands::fake_fcm::fake_fcm(args).await,
        Command::Demo(args) => commands::demo::run(&settings, args).await,
        Command::Config => {
            hattrick::out!("{}", settings.to_redacted_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { .. } | Command::Manpage => Ok(ExitCode::SUCCESS),
    }
}

fn init_tracing(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HATTRICK_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let json = std::env::var("HATTRICK_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

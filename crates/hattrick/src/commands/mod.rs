//! One module per command of the `hattrick` binary; `main.rs` parses the command line and calls them.

pub mod demo;
pub mod fake_fcm;
pub mod jobs;
pub mod ledger;
pub mod messages;
pub mod migrate;
pub mod push;
pub mod redrive;
pub mod run;
pub mod seed;
pub mod serve;

/// Exit code of `hattrick run` for an unknown job (and of usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `hattrick run` when the job is already running.
pub const EXIT_RUNNING: u8 = 3;

/// Prints each problem as an error and returns the usage exit code.
pub fn usage(problems: &[String]) -> std::process::ExitCode {
    for problem in problems {
        eprintln!("error: {problem}");
    }
    std::process::ExitCode::from(EXIT_USAGE)
}

/// The audit log's actor for the CLI: `cli:` and the operating-system user.
pub fn actor() -> String {
    format!("cli:{}", std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into()))
}

/// Waits for SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    signals().await;
}

/// A token cancelled at the first SIGTERM or SIGINT; the signals are registered now, so one that arrives while
/// the caller is still starting up is not lost.
pub fn stop_on_signal() -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    let on_signal = stop.clone();
    let signalled = signals();
    tokio::spawn(async move {
        signalled.await;
        tracing::info!("signal received: stopping");
        on_signal.cancel();
    });
    stop
}

/// Registers for SIGTERM and SIGINT now, and returns a future that completes at the first of them: a signal that
/// arrives before the future is first polled is not lost.
pub fn signals() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let registered = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        match registered {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

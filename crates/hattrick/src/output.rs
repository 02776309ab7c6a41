//! Standard output for the commands: a closed pipe (`hattrick jobs | head`) ends the process quietly with the
//! status a shell gives a process killed by SIGPIPE (141), as any Unix tool does, instead of a panic.

use std::fmt;
use std::io::{ErrorKind, Write};

/// The exit status of a process whose reader went away.
const BROKEN_PIPE_STATUS: i32 = 128 + 13;

/// Writes `args` to standard output.
pub fn write(args: fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_fmt(args).and_then(|()| stdout.flush());
    match written {
        Err(error) if error.kind() == ErrorKind::BrokenPipe => std::process::exit(BROKEN_PIPE_STATUS),
        Err(error) => {
            eprintln!("error: writing to standard output: {error}");
            std::process::exit(1);
        }
        Ok(()) => {}
    }
}

/// `println!` for the commands' output, see [`write`].
#[macro_export]
macro_rules! outln {
    () => { $crate::output::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` for the commands' output, see [`write`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*)) };
}

//! The only writer to stdout.

use std::io::{ErrorKind, Write};

use serde::Serialize;

use super::CommandError;

/// Write `text` to stdout. A closed pipe (`kubesurge plan | head`) is not
/// an error: the reader has what it wanted.
pub fn print(text: &str) -> Result<(), CommandError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(CommandError::Stdout(error)),
    }
}

/// `value` as the `-o json` documents are written: pretty, one final
/// newline. `what` names it in the error (`the plan`).
pub fn json<T: Serialize>(value: &T, what: &'static str) -> Result<String, CommandError> {
    let mut json = serde_json::to_string_pretty(value)
        .map_err(|source| CommandError::Json { what, source })?;
    json.push('\n');
    Ok(json)
}

/// Write a message line to stderr, ignoring failures: there is nowhere
/// left to report them.
pub fn eprint_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

//! `podsup events [-f]`: what the daemon did and why (LAST SEEN, TYPE, REASON, OBJECT,
//! MESSAGE, like `kubectl events`).

use std::process::ExitCode;

use super::paths::{Paths, client_failure};
use super::{CliResult, Failure};
use crate::api::{Client, Event, Op, Response};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep printing new events
    #[arg(short, long)]
    pub follow: bool,
    /// Print JSON lines instead of a table
    #[arg(short, long, value_name = "FORMAT", value_parser = ["json"])]
    pub output: Option<String>,
    #[command(flatten)]
    pub paths: Paths,
}

/// One event as a line; the message is cut to fit 80 columns.
pub fn compute_event_line(e: &Event, json: bool) -> String {
    if json {
        return format!("{}\n", serde_json::to_string(e).unwrap_or_default());
    }
    // 2026-11-25T03:17:43Z → 03:17:43
    let time = e.time.get(11..19).unwrap_or(&e.time);
    let head = format!("{time}  {:<7}  {:<15}  {}: ", e.type_, e.reason, e.object);
    let room = 80usize.saturating_sub(head.chars().count()).max(20);
    let msg: String = e.message.lines().next().unwrap_or("").chars().collect();
    let msg = if msg.chars().count() > room {
        let mut m: String = msg.chars().take(room - 1).collect();
        m.push('…');
        m
    } else {
        msg
    };
    format!("{head}{msg}\n")
}

pub fn run(args: Args) -> CliResult {
    let json = args.output.is_some();
    let mut c = Client::request(
        &args.paths.run,
        Op::Events {
            follow: args.follow,
        },
    )
    .map_err(client_failure)?;
    loop {
        match c.read().map_err(client_failure)? {
            Response::Event(e) => super::out(&compute_event_line(&e, json))?,
            Response::Done => return Ok(ExitCode::SUCCESS),
            Response::Error { message } => {
                return Err(Failure::User(format!("podsup events: {message}")));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fit_80_columns() {
        let e = Event {
            time: "2026-11-25T03:17:43Z".into(),
            object: "default/web".into(),
            type_: "Warning".into(),
            reason: "ManifestInvalid".into(),
            message: "x".repeat(200),
        };
        let l = compute_event_line(&e, false);
        assert!(l.starts_with("03:17:43  Warning  ManifestInvalid  default/web: xxx"));
        assert_eq!(l.trim_end().chars().count(), 80);
    }
}

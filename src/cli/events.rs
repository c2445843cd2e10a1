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

/// One event as text: `TIME TYPE REASON OBJECT: MESSAGE` on one line when it fits 80
/// columns, otherwise the message follows on indented lines wrapped at 80 (nothing cut:
/// a manifest error's file:line:col must stay readable).
pub fn compute_event_line(e: &Event, json: bool) -> String {
    if json {
        return format!("{}\n", serde_json::to_string(e).unwrap_or_default());
    }
    // 2026-11-25T03:17:43Z → 03:17:43
    let time = e.time.get(11..19).unwrap_or(&e.time);
    let head = format!("{time}  {:<7}  {:<15}  {}:", e.type_, e.reason, e.object);
    let one = format!("{head} {}", e.message);
    if !e.message.contains('\n') && one.chars().count() <= 80 {
        return format!("{one}\n");
    }
    let mut out = format!("{head}\n");
    for line in e.message.lines() {
        let chars: Vec<char> = line.chars().collect();
        for chunk in chars.chunks(76) {
            out.push_str("    ");
            out.extend(chunk);
            out.push('\n');
        }
    }
    out
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
        assert!(l.starts_with("03:17:43  Warning  ManifestInvalid  default/web:\n    xxx"));
        assert!(l.lines().all(|l| l.chars().count() <= 80));
        assert_eq!(l.matches('x').count(), 200);
        let short = Event {
            message: "ok".into(),
            ..e
        };
        assert_eq!(
            compute_event_line(&short, false),
            "03:17:43  Warning  ManifestInvalid  default/web: ok\n"
        );
    }
}

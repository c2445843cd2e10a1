//! `podsup status [POD] [-o wide|json|yaml] [-A] [-n NS]`: what runs, as `kubectl get pods`
//! shows it (kubectl's READY/STATUS/RESTARTS rules from `model::compute_pod_columns`), and
//! every manifest file that failed to load, with its error.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::paths::{Paths, client_failure};
use super::{CliResult, Failure};
use crate::api::{Client, Op, Problem, Response};
use crate::model::{PodSpec, PodStatus, compute_human_duration, compute_pod_columns};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this pod
    pub pod: Option<String>,
    /// Output format
    #[arg(short, long, value_name = "FORMAT", value_parser = ["wide", "json", "yaml"])]
    pub output: Option<String>,
    /// The namespace
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Pods of every namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub paths: Paths,
}

/// One row of the table: the cells as text.
pub fn compute_row(item: &Value, now: SystemTime, wide: bool, all_ns: bool) -> Vec<String> {
    let spec: PodSpec = serde_json::from_value(item["spec"].clone()).unwrap_or_default();
    let status: PodStatus = serde_json::from_value(item["status"].clone()).unwrap_or_default();
    let meta = &item["metadata"];
    let deleting = meta.get("deletionTimestamp").is_some();
    let cols = compute_pod_columns(&spec, &status, deleting, now);
    let age = meta["creationTimestamp"]
        .as_str()
        .and_then(|t| crate::model::Time(t.to_string()).to_system())
        .map(|t| compute_human_duration(now, t))
        .unwrap_or_else(|| "<unknown>".into());
    let mut row = Vec::new();
    if all_ns {
        row.push(meta["namespace"].as_str().unwrap_or("default").to_string());
    }
    row.push(meta["name"].as_str().unwrap_or("").to_string());
    row.extend([cols.ready, cols.status, cols.restarts, age]);
    if wide {
        row.push(
            item["status"]["podIP"]
                .as_str()
                .unwrap_or("<none>")
                .to_string(),
        );
        row.push(
            meta["annotations"][crate::daemon::status::SOURCE_ANNOTATION]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    row
}

/// Left-aligned columns, three spaces apart (kubectl's tabwriter settings). `status_col`
/// gets colour when `color`.
pub fn compute_table(
    header: &[&str],
    rows: &[Vec<String>],
    status_col: usize,
    color: bool,
) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>, is_header: bool| {
        let n = cells.len();
        let mut l = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            let text = if color && !is_header && i == status_col {
                let code = match c.as_str() {
                    "Running" | "Completed" => "32",
                    s if s.starts_with("Init:")
                        || s == "Pending"
                        || s == "PodInitializing"
                        || s == "ContainerCreating"
                        || s == "Terminating" =>
                    {
                        "33"
                    }
                    _ => "31",
                };
                format!("\x1b[{code}m{c}\x1b[0m")
            } else {
                c
            };
            l.push_str(&text);
            if i + 1 < n {
                l.push_str(&" ".repeat(pad + 3));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect(), true);
    for r in rows {
        line(r.clone(), false);
    }
    out
}

/// A small YAML emitter for JSON values (block style; strings as JSON double-quoted
/// scalars when they need quoting).
pub fn compute_yaml(v: &Value) -> String {
    let mut out = String::new();
    emit_yaml(v, 0, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./@".contains(c))
                && !s
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '.')
                && ![
                    "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~",
                ]
                .contains(&s.to_ascii_lowercase().as_str());
            if plain {
                s.clone()
            } else {
                serde_json::to_string(s).unwrap_or_default()
            }
        }
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

fn emit_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, val) in o {
                let key = scalar(&Value::String(k.clone()));
                match val {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        emit_yaml(val, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        emit_yaml(val, indent, out);
                    }
                    _ => out.push_str(&format!("{pad}{key}: {}\n", scalar(val))),
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                let mut sub = String::new();
                emit_yaml(item, indent + 2, &mut sub);
                let is_block = matches!(item, Value::Object(m) if !m.is_empty())
                    || matches!(item, Value::Array(x) if !x.is_empty());
                if is_block {
                    // "- " takes the place of the first line's indentation.
                    let rest = &sub[(indent + 2).min(sub.len())..];
                    out.push_str(&format!("{pad}- {rest}"));
                } else {
                    out.push_str(&format!("{pad}- {}\n", scalar(item)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

fn problem_text(p: &Problem) -> String {
    let mut s = match &p.pod {
        Some(pod) => format!("{}: {} ({})\n", p.reason, pod, p.file),
        None => format!("{}: {}\n", p.reason, p.file),
    };
    for l in p.message.lines() {
        s.push_str(&format!("  {l}\n"));
    }
    s
}

pub fn run(args: Args) -> CliResult {
    let mut c = Client::request(&args.paths.run, Op::Status).map_err(client_failure)?;
    let (items, problems) = match c.read().map_err(client_failure)? {
        Response::Status { items, problems } => (items, problems),
        Response::Error { message } => {
            return Err(Failure::User(format!("podsup status: {message}")));
        }
        other => {
            return Err(Failure::Internal(anyhow::anyhow!(
                "unexpected answer: {other:?}"
            )));
        }
    };
    let mut items: Vec<Value> = items
        .into_iter()
        .filter(|i| {
            (args.all_namespaces || i["metadata"]["namespace"] == args.namespace.as_str())
                && args
                    .pod
                    .as_ref()
                    .is_none_or(|p| i["metadata"]["name"] == p.as_str())
        })
        .collect();
    items.sort_by_key(|i| {
        (
            i["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            i["metadata"]["name"].as_str().unwrap_or("").to_string(),
        )
    });
    let problems: Vec<Problem> = problems
        .into_iter()
        .filter(|p| {
            args.pod.as_ref().is_none_or(|name| {
                p.pod
                    .as_ref()
                    .is_none_or(|k| k.ends_with(&format!("/{name}")))
            })
        })
        .collect();
    if let Some(name) = &args.pod
        && items.is_empty()
        && problems.is_empty()
    {
        return Err(Failure::User(format!(
            "podsup status: pod {}/{name} not found",
            args.namespace
        )));
    }
    match args.output.as_deref() {
        Some(fmt @ ("json" | "yaml")) => {
            let doc = if args.pod.is_some() && items.len() == 1 {
                items.remove(0)
            } else {
                json!({"apiVersion": "v1", "kind": "List", "items": items,
                       "problems": problems})
            };
            let text = if fmt == "json" {
                let mut t = serde_json::to_string_pretty(&doc).unwrap_or_default();
                t.push('\n');
                t
            } else {
                compute_yaml(&doc)
            };
            super::out(&text)?;
        }
        other => {
            let wide = other == Some("wide");
            let now = SystemTime::now();
            let mut header = Vec::new();
            if args.all_namespaces {
                header.push("NAMESPACE");
            }
            header.extend(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
            if wide {
                header.extend(["IP", "FILE"]);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| compute_row(i, now, wide, args.all_namespaces))
                .collect();
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let mut text = String::new();
            if rows.is_empty() {
                if problems.is_empty() {
                    text.push_str("No pods running.\n");
                }
            } else {
                text.push_str(&compute_table(
                    &header,
                    &rows,
                    usize::from(args.all_namespaces) + 2,
                    color,
                ));
            }
            for p in &problems {
                text.push_str(&problem_text(p));
            }
            super::out(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_aligned_like_kubectl() {
        let rows = vec![
            vec![
                "web".into(),
                "1/1".into(),
                "Running".into(),
                "0".into(),
                "5m".into(),
            ],
            vec![
                "database".into(),
                "0/2".into(),
                "Init:0/1".into(),
                "3 (2m ago)".into(),
                "1h".into(),
            ],
        ];
        let t = compute_table(
            &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            &rows,
            2,
            false,
        );
        assert_eq!(
            t,
            "NAME       READY   STATUS     RESTARTS     AGE\n\
             web        1/1     Running    0            5m\n\
             database   0/2     Init:0/1   3 (2m ago)   1h\n"
        );
    }

    #[test]
    fn yaml_of_a_pod_object() {
        let v = json!({"apiVersion": "v1", "metadata": {"name": "web", "labels": {"a": "1"}},
                       "spec": {"containers": [{"name": "c", "command": ["sh", "-c", "x: y"]}]},
                       "empty": [], "n": 3, "b": true});
        let y = compute_yaml(&v);
        assert_eq!(
            y,
            "apiVersion: v1\nb: true\nempty: []\nmetadata:\n  labels:\n    a: \"1\"\n  name: web\n\"n\": 3\nspec:\n  containers:\n  - command:\n    - sh\n    - \"-c\"\n    - \"x: y\"\n    name: c\n"
        );
    }
}

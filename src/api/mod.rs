//! The daemon's API: JSON lines over the Unix socket `--run/podsup.sock` (mode 0600, root).
//!
//! A client connects, writes one request line, and reads response lines until `done` or
//! `error` (a follow request ends when the client hangs up). Every line carries the protocol
//! version `v`; a daemon refuses a request whose version it does not speak. New verbs (exec
//! is next) are new `op` values. This module holds the types and the client side; it must
//! not know how the daemon answers.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The socket's file name under `--run`.
pub const SOCKET_NAME: &str = "podsup.sock";

pub fn socket_path(run: &Path) -> PathBuf {
    run.join(SOCKET_NAME)
}

/// One request line: `{"v":1,"op":"status"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// Every pod (Kubernetes Pod objects with status) and every file that failed to load.
    Status,
    /// The event list; with `follow`, then each new event as it happens.
    Events {
        #[serde(default)]
        follow: bool,
    },
    /// One container's log (CRI files under `--log-dir`), as text lines.
    Logs(LogsRequest),
    /// Restart one container, or every container of the pod.
    Restart {
        namespace: String,
        pod: String,
        #[serde(default)]
        container: Option<String>,
    },
    /// How to start a process in a running container (`podsup exec`): the daemon answers
    /// with the container's exec descriptor, or refuses when it is not running. Without
    /// `container`: kubectl's default (the `kubectl.kubernetes.io/default-container`
    /// annotation, else the first container).
    Exec {
        namespace: String,
        pod: String,
        #[serde(default)]
        container: Option<String>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogsRequest {
    pub namespace: String,
    pub pod: String,
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub follow: bool,
    #[serde(default)]
    pub tail: Option<usize>,
    #[serde(default)]
    pub previous: bool,
    #[serde(default)]
    pub timestamps: bool,
    /// Only lines of the last this many milliseconds.
    #[serde(default)]
    pub since_ms: Option<u64>,
}

/// One event of `podsup events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339.
    pub time: String,
    /// `namespace/name`, or the file name for a file-level event.
    pub object: String,
    /// `Normal` or `Warning`, as Kubernetes.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
}

/// A file that failed to load, or a pod that could not be started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The manifest file.
    pub file: String,
    /// The pod concerned, when the problem is one pod's.
    #[serde(default)]
    pub pod: Option<String>,
    pub reason: String,
    /// `file:line:col: path: message`, one per line.
    pub message: String,
}

/// One response line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "lowercase")]
pub enum Response {
    Status {
        /// Kubernetes Pod objects (`apiVersion`, `kind`, `metadata`, `spec`, `status`).
        items: Vec<serde_json::Value>,
        problems: Vec<Problem>,
    },
    Event(Event),
    /// A chunk of log text.
    Log {
        data: String,
    },
    /// Success with a message (restart).
    Ok {
        message: String,
    },
    /// The container to start a process in (`exec`), with kubectl's note when it was
    /// chosen by default among several.
    Exec {
        target: crate::container::exec::ExecTarget,
        #[serde(default)]
        note: Option<String>,
    },
    /// The end of a finite answer.
    Done,
    Error {
        message: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Line {
    pub v: u32,
    #[serde(flatten)]
    pub response: Response,
}

/// Why the CLI could not talk to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the podsup daemon at {path}: {err} (start it with `podsup daemon`, or pass the --run it uses)"
    )]
    Connect {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
    #[error("talk to the podsup daemon: {0}")]
    Io(#[from] std::io::Error),
    #[error("the podsup daemon answered something unreadable: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the podsup daemon closed the connection")]
    Closed,
    #[error("the podsup daemon speaks protocol {0}, this client {VERSION}")]
    Version(u32),
}

/// A connection on which one request was sent; read the answer with [`Client::read`].
pub struct Client {
    reader: BufReader<UnixStream>,
    line: String,
}

impl Client {
    pub fn request(run: &Path, op: Op) -> Result<Client, ClientError> {
        let path = socket_path(run);
        let mut stream = UnixStream::connect(&path).map_err(|err| ClientError::Connect {
            path: path.clone(),
            err,
        })?;
        let mut text = serde_json::to_string(&Request { v: VERSION, op })?;
        text.push('\n');
        stream.write_all(text.as_bytes())?;
        Ok(Client {
            reader: BufReader::new(stream),
            line: String::new(),
        })
    }

    /// The next response line.
    pub fn read(&mut self) -> Result<Response, ClientError> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(ClientError::Closed);
        }
        let line: Line = serde_json::from_str(&self.line)?;
        if line.v != VERSION {
            return Err(ClientError::Version(line.v));
        }
        Ok(line.response)
    }
}

/// Encodes one response line (with its newline).
pub fn encode(response: Response) -> String {
    let mut s = serde_json::to_string(&Line {
        v: VERSION,
        response,
    })
    .unwrap_or_else(|e| format!("{{\"v\":{VERSION},\"reply\":\"error\",\"message\":\"{e}\"}}"));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_versioned_json_lines() {
        let r = Request {
            v: VERSION,
            op: Op::Restart {
                namespace: "default".into(),
                pod: "web".into(),
                container: Some("app".into()),
            },
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"v":1,"op":"restart","namespace":"default","pod":"web","container":"app"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        let s: Request = serde_json::from_str(r#"{"v":1,"op":"status"}"#).unwrap();
        assert_eq!(s.op, Op::Status);
        assert!(serde_json::from_str::<Request>(r#"{"v":1,"op":"nope"}"#).is_err());
        let e: Request =
            serde_json::from_str(r#"{"v":1,"op":"exec","namespace":"default","pod":"web"}"#)
                .unwrap();
        assert_eq!(
            e.op,
            Op::Exec {
                namespace: "default".into(),
                pod: "web".into(),
                container: None
            }
        );
    }

    #[test]
    fn responses_carry_the_version() {
        assert_eq!(encode(Response::Done), "{\"v\":1,\"reply\":\"done\"}\n");
    }
}

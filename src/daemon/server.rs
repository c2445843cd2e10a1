//! The API socket: `--run/podsup.sock`, mode 0600, a thread per connection. A connection
//! reads the loop's published snapshot (status, events) or the log files, and hands
//! requests that change something (restart) to the loop.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use super::{Config, LoopRequest, Shared, safety};
use crate::api::{self, LogsRequest, Op, Request, Response};
use crate::container::exec::ExecTarget;
use crate::logs::{self, LogReader, ReadOptions};
use crate::model::PodKey;

/// Binds the socket (replacing a stale one), owner-only.
pub fn bind(run: &Path) -> anyhow::Result<UnixListener> {
    let path = api::socket_path(run);
    if UnixStream::connect(&path).is_ok() {
        return Err(super::Refused(format!(
            "another podsup daemon already serves {} (stop it first)",
            path.display()
        ))
        .into());
    }
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).with_context(|| format!("bind {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", path.display()))?;
    safety::check_path(&path).map_err(|why| super::Refused(format!("refusing to serve: {why}")))?;
    Ok(l)
}

/// Accepts connections on a thread of its own.
pub fn serve(listener: UnixListener, shared: Arc<Shared>, cfg: Config) {
    let r = std::thread::Builder::new()
        .name("podsup-api".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = shared.clone();
                let cfg = cfg.clone();
                let _ = std::thread::Builder::new()
                    .name("podsup-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle(conn, &shared, &cfg) {
                            log::debug!("API connection: {e}");
                        }
                    });
            }
        });
    if let Err(e) = r {
        log::error!("API thread: {e}");
    }
}

fn send(out: &mut UnixStream, r: Response) -> std::io::Result<()> {
    out.write_all(api::encode(r).as_bytes())
}

fn handle(conn: UnixStream, shared: &Shared, cfg: &Config) -> std::io::Result<()> {
    // Root only: the socket is 0600 in a root-owned directory (checked at bind).
    let mut out = conn.try_clone()?;
    let mut line = String::new();
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    BufReader::new(conn.try_clone()?).read_line(&mut line)?;
    let req: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            return send(
                &mut out,
                Response::Error {
                    message: format!("bad request: {e}"),
                },
            );
        }
    };
    if req.v != api::VERSION {
        return send(
            &mut out,
            Response::Error {
                message: format!(
                    "protocol version {} not supported (this daemon speaks {})",
                    req.v,
                    api::VERSION
                ),
            },
        );
    }
    match req.op {
        Op::Status => {
            let (views, problems) = {
                let s = shared.snapshot.lock().unwrap_or_else(|p| p.into_inner());
                (s.pods.clone(), s.problems.clone())
            };
            let now = SystemTime::now();
            let items = views
                .iter()
                .map(|v| {
                    let shim: Option<serde_json::Value> =
                        std::fs::read(v.run_dir.join("status.json"))
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok());
                    super::status::compute_pod_object(v, shim.as_ref(), now)
                })
                .collect();
            send(&mut out, Response::Status { items, problems })?;
            send(&mut out, Response::Done)
        }
        Op::Events { follow } => {
            let (list, mut seq) = shared.events.since(0, false);
            for e in list {
                send(&mut out, Response::Event(e))?;
            }
            if !follow {
                return send(&mut out, Response::Done);
            }
            loop {
                let (list, s) = shared.events.since(seq, true);
                seq = s;
                for e in list {
                    send(&mut out, Response::Event(e))?;
                }
            }
        }
        Op::Restart {
            namespace,
            pod,
            container,
        } => {
            let (tx, rx) = mpsc::channel();
            shared.send(LoopRequest::Restart {
                key: PodKey {
                    namespace,
                    name: pod,
                },
                container,
                reply: tx,
            });
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Ok(message)) => send(&mut out, Response::Ok { message }),
                Ok(Err(message)) => send(&mut out, Response::Error { message }),
                Err(_) => send(
                    &mut out,
                    Response::Error {
                        message: "the daemon did not answer".into(),
                    },
                ),
            }
        }
        Op::Logs(r) => logs_answer(&mut out, shared, cfg, r),
        Op::Exec {
            namespace,
            pod,
            container,
        } => {
            let key = PodKey {
                namespace,
                name: pod,
            };
            let answer = match find_view(shared, &key) {
                Some(view) => exec_answer(&view, container.as_deref()),
                None => Err(format!("pod {key} not found")),
            };
            send(
                &mut out,
                match answer {
                    Ok((target, note)) => Response::Exec { target, note },
                    Err(message) => Response::Error { message },
                },
            )
        }
    }
}

/// The pod `key` as the loop last published it, unless it is stopping.
fn find_view(shared: &Shared, key: &PodKey) -> Option<super::status::PodView> {
    let s = shared.snapshot.lock().unwrap_or_else(|p| p.into_inner());
    s.pods
        .iter()
        .find(|v| v.pod.key() == *key && !v.stopping)
        .cloned()
}

/// kubectl's annotation naming the container that `exec`, `logs` and `attach` default to.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// The exec descriptor of the container `podsup exec` asks for, and kubectl's
/// "Defaulted container" note when it chose among several; or why not (one line).
fn exec_answer(
    view: &super::status::PodView,
    container: Option<&str>,
) -> Result<(ExecTarget, Option<String>), String> {
    let key = view.pod.key();
    let spec = &view.pod.spec;
    let all: Vec<(bool, &str)> = spec
        .containers
        .iter()
        .map(|c| (false, c.name.as_str()))
        .chain(spec.init_containers.iter().map(|c| (true, c.name.as_str())))
        .collect();
    let listing = || {
        all.iter()
            .map(|(init, n)| {
                if *init {
                    format!("{n} (init)")
                } else {
                    n.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (name, note) = match container {
        Some(c) if all.iter().any(|(_, n)| *n == c) => (c.to_string(), None),
        Some(c) => {
            return Err(format!(
                "container {c:?} is not in pod {key} (it has {})",
                listing()
            ));
        }
        None => {
            let named = view
                .pod
                .metadata
                .annotations
                .get(DEFAULT_CONTAINER_ANNOTATION)
                .filter(|n| spec.containers.iter().any(|c| &c.name == *n));
            let first = spec.containers.first().map(|c| &c.name);
            let Some(name) = named.or(first).cloned() else {
                return Err(format!("pod {key} has no container"));
            };
            let note = (named.is_none() && spec.containers.len() > 1)
                .then(|| format!("Defaulted container {name:?} out of: {}", listing()));
            (name, note)
        }
    };
    let path = view
        .run_dir
        .join("containers")
        .join(&name)
        .join(crate::container::exec::DESCRIPTOR_NAME);
    match ExecTarget::read(&path) {
        Ok(t) if t.is_running() => Ok((t, note)),
        _ => {
            let state = std::fs::read(view.run_dir.join("status.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|shim| {
                    let (init, app) = super::status::compute_container_statuses(&shim);
                    init.into_iter()
                        .chain(app)
                        .find(|c| c.name == name)
                        .map(|c| compute_state_text(&c.state))
                });
            Err(format!(
                "cannot exec into container {name:?} of pod {key}: it is not running{}",
                state.map(|s| format!(" ({s})")).unwrap_or_default()
            ))
        }
    }
}

/// A container state in a few words: `terminated: Completed, exit code 0`,
/// `waiting: CrashLoopBackOff`. Pure.
fn compute_state_text(s: &crate::model::ContainerState) -> String {
    if let Some(t) = &s.terminated {
        format!(
            "terminated: {}, exit code {}",
            t.reason.as_deref().unwrap_or("Unknown"),
            t.exit_code
        )
    } else if let Some(w) = &s.waiting {
        format!("waiting: {}", w.reason.as_deref().unwrap_or("Unknown"))
    } else if s.running.is_some() {
        // Running by the last status, but no live descriptor: it has just ended, or its
        // shim is from a podsup without exec.
        "its status says running but its shim has not published it: it has just ended, or the pod was started by an older podsup (recreate the pod)".into()
    } else {
        "not started yet".into()
    }
}

/// A writer that sends what it gets as `log` lines.
struct LogOut<'a>(&'a mut UnixStream);

impl Write for LogOut<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        send(
            self.0,
            Response::Log {
                data: String::from_utf8_lossy(buf).into_owned(),
            },
        )?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs_answer(
    out: &mut UnixStream,
    shared: &Shared,
    cfg: &Config,
    r: LogsRequest,
) -> std::io::Result<()> {
    let err = |out: &mut UnixStream, message: String| send(out, Response::Error { message });
    let key = PodKey {
        namespace: r.namespace.clone(),
        name: r.pod.clone(),
    };
    let Some(view) = find_view(shared, &key) else {
        return err(out, format!("pod {key} not found"));
    };
    let names: Vec<String> = view
        .pod
        .spec
        .all_containers()
        .map(|(_, c)| c.name.clone())
        .collect();
    let container = match r.container {
        Some(c) if names.contains(&c) => c,
        Some(c) => {
            return err(
                out,
                format!(
                    "container {c:?} is not in pod {key} (it has {})",
                    names.join(", ")
                ),
            );
        }
        None => match view.pod.spec.containers.as_slice() {
            [one] => one.name.clone(),
            _ => {
                return err(
                    out,
                    format!(
                        "pod {key} has several containers: choose one with -c ({})",
                        names.join(", ")
                    ),
                );
            }
        },
    };
    let dir = logs::container_log_dir(
        &cfg.log_dir,
        &key.namespace,
        &key.name,
        &view.uid,
        &container,
    );
    let instances = logs::list_instances(&dir).unwrap_or_default();
    let Some(instance) = logs::compute_instance(&instances, r.previous) else {
        let what = if r.previous {
            "no previous instance"
        } else {
            "no log yet"
        };
        return err(out, format!("container {container:?} of pod {key}: {what}"));
    };
    let opts = ReadOptions {
        tail: r.tail,
        since: r
            .since_ms
            .map(|ms| SystemTime::now() - Duration::from_millis(ms)),
        timestamps: r.timestamps,
    };
    let mut reader = match LogReader::open(&dir, instance, opts) {
        Ok(x) => x,
        Err(e) => return err(out, e.to_string()),
    };
    // Following: woken by inotify on the container's log directory (writes, rotation) or
    // by the client hanging up; a 1 s timeout notices the pod going away (stopped or
    // recreated: its uid changes), which ends the follow.
    let notify = if r.follow {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok();
        if let Some(i) = &ino {
            let _ = i.add_watch(
                &dir,
                AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CLOSE_WRITE,
            );
        }
        ino
    } else {
        None
    };
    loop {
        if let Err(e) = reader.read_available(&mut LogOut(out)) {
            return err(out, e.to_string());
        }
        if !r.follow {
            return send(out, Response::Done);
        }
        let alive = {
            let s = shared.snapshot.lock().unwrap_or_else(|p| p.into_inner());
            s.pods.iter().any(|v| v.uid == view.uid && !v.stopping)
        };
        if !alive {
            return send(out, Response::Done);
        }
        if !wait_for_log(notify.as_ref(), out) {
            return Ok(());
        }
    }
}

/// Waits up to a second for the log to change; false when the client went away.
fn wait_for_log(notify: Option<&nix::sys::inotify::Inotify>, conn: &UnixStream) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let Some(ino) = notify else {
        std::thread::sleep(Duration::from_millis(200));
        return true;
    };
    let mut fds = [
        PollFd::new(ino.as_fd(), PollFlags::POLLIN),
        PollFd::new(conn.as_fd(), PollFlags::POLLIN),
    ];
    let _ = nix::poll::poll(&mut fds, PollTimeout::from(1000u16));
    let hangup = fds[1].revents().is_some_and(|r| !r.is_empty());
    while matches!(ino.read_events(), Ok(v) if !v.is_empty()) {}
    // The client sends nothing after its request: readable means it hung up.
    !hangup
}

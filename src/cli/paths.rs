//! The path flags of DESIGN.md, taken by every verb that talks to (or is) the daemon, after
//! the verb: `podsup status --run DIR`.

use std::path::PathBuf;

#[derive(Clone, Debug, clap::Args)]
pub struct Paths {
    /// Pod manifests to run
    #[arg(long, value_name = "DIR", default_value = "/etc/pods")]
    pub manifests: PathBuf,

    /// Images, volumes, persistent state
    #[arg(long, value_name = "DIR", default_value = "/var/lib/podsup")]
    pub root: PathBuf,

    /// Sockets and live state (the daemon's socket is DIR/podsup.sock)
    #[arg(long, value_name = "DIR", default_value = "/run/podsup")]
    pub run: PathBuf,

    /// Container logs (DIR/<namespace>_<pod>_<uid>/<container>/<restart>.log)
    #[arg(long, value_name = "DIR", default_value = "/var/log/pods")]
    pub log_dir: PathBuf,
}

/// The client's error as a one-line user failure.
pub fn client_failure(e: crate::api::ClientError) -> super::Failure {
    super::Failure::User(format!("podsup: {e}"))
}

//! `pause` and `resume`: freezing and thawing every process of a container through its
//! cgroup's freezer (v2 `cgroup.freeze`, v1 `freezer.state`; see cgroups/).
//!
//! A paused container reports `paused` (state.rs asks the cgroup). What the other commands do
//! with one follows runc 1.1.5: `kill` signals it (the signal waits until `resume`, except
//! that runc thaws after a SIGKILL so the kill happens), `kill --all` thaws it, `delete`
//! refuses without `--force`, and `exec` refuses (its process would freeze on joining the
//! cgroup).

use super::cgroups::Cgroup;
use super::container::{Error, Result, Runtime};
use super::state::{self, Saved, Status};

/// The container's cgroup, or the error runc gives for a container it cannot freeze.
fn cgroup(saved: &Saved, status: Status) -> Result<Cgroup> {
    let path = saved
        .cgroup_path
        .as_deref()
        .ok_or_else(|| Error::WrongStatus {
            id: saved.id.clone(),
            status,
            message: "the container has no cgroup",
        })?;
    Ok(Cgroup::open(path)?)
}

impl Runtime {
    /// Freezes every process of a running container. runc refuses any other status with
    /// "container not running" (a created one too: its init has not started the program).
    pub fn pause(&self, id: &str) -> Result<()> {
        let saved = state::load(&self.root, id)?;
        let status = state::status(&self.root, &saved);
        if status != Status::Running {
            return Err(Error::WrongStatus {
                id: id.into(),
                status,
                message: "container not running",
            });
        }
        Ok(cgroup(&saved, status)?.freeze()?)
    }

    /// Thaws a paused container; anything but a paused one is refused with runc's
    /// "container not paused".
    pub fn resume(&self, id: &str) -> Result<()> {
        let saved = state::load(&self.root, id)?;
        let status = state::status(&self.root, &saved);
        if status != Status::Paused {
            return Err(Error::WrongStatus {
                id: id.into(),
                status,
                message: "container not paused",
            });
        }
        Ok(cgroup(&saved, status)?.thaw()?)
    }
}

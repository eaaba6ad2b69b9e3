//! `events`: a container's resource usage and OOM kills as runc prints them, one JSON object
//! per line: `{"type":"stats","id":ID,"data":{...}}` (the data is cgroups::Detailed, runc's
//! stats shape) and `{"type":"oom","id":ID}`.
//!
//! With `--stats` one stats line is printed. Otherwise stats follow every interval (the first
//! after one interval, as runc's ticker) and an oom line whenever the kernel's OOM-kill count
//! of the cgroup grows, until the container stops.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cgroups::{Cgroup, Detailed};
use super::container::{Error, Result, Runtime};
use super::state::{self, Status};

/// How often the OOM counter and the init are looked at between stats. The counter is a
/// plain file on both hierarchies (v1 only offers an eventfd besides), so polling it is the
/// one way that works everywhere.
const POLL: Duration = Duration::from_millis(100);

#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    typ: &'static str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Detailed>,
}

fn emit(out: &mut dyn Write, event: &Event) -> Result<()> {
    let mut line = serde_json::to_vec(event).map_err(|e| Error::Init(e.to_string()))?;
    line.push(b'\n');
    out.write_all(&line)
        .and_then(|()| out.flush())
        .map_err(|source| Error::Sys {
            what: "write events".into(),
            source,
        })
}

fn stats_event(out: &mut dyn Write, id: &str, cgroup: &Cgroup) -> Result<()> {
    let data = cgroup.detailed_stats()?;
    emit(
        out,
        &Event {
            typ: "stats",
            id,
            data: Some(&data),
        },
    )
}

/// `runc events [--stats] [--interval D] ID`, writing to `out`.
pub fn run(
    rt: &Runtime,
    id: &str,
    stats_once: bool,
    interval: Duration,
    out: &mut dyn Write,
) -> Result<()> {
    if interval.is_zero() {
        return Err(Error::Sys {
            what: "events --interval".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "duration interval must be greater than 0",
            ),
        });
    }
    let saved = state::load(&rt.root, id)?;
    let status = state::status(&rt.root, &saved);
    if status == Status::Stopped {
        return Err(Error::WrongStatus {
            id: id.into(),
            status,
            message: "container is not running",
        });
    }
    let path = saved
        .cgroup_path
        .as_deref()
        .ok_or_else(|| Error::WrongStatus {
            id: id.into(),
            status,
            message: "the container has no cgroup",
        })?;
    let cgroup = Cgroup::open(path)?;
    if stats_once {
        return stats_event(out, id, &cgroup);
    }
    // Kills before we started watching are not news.
    let mut oom_kills = cgroup.stats()?.oom_kills;
    let mut next_stats = Instant::now() + interval;
    loop {
        let alive = state::init_alive(&saved);
        // Read even when the init is gone: the kill that ended it is the one to report.
        match cgroup.stats() {
            Ok(s) if s.oom_kills > oom_kills => {
                oom_kills = s.oom_kills;
                emit(
                    out,
                    &Event {
                        typ: "oom",
                        id,
                        data: None,
                    },
                )?;
            }
            Ok(_) => {}
            // The cgroup went away with the container (deleted meanwhile).
            Err(_) if !alive => return Ok(()),
            Err(e) => tracing::warn!("events: {e}"),
        }
        if !alive {
            return Ok(());
        }
        let now = Instant::now();
        if now >= next_stats {
            // As runc: a failed read is logged and the stream goes on.
            if let Err(e) = stats_event(out, id, &cgroup) {
                if let Error::Sys { .. } = e {
                    return Err(e);
                }
                tracing::warn!("events: {e}");
            }
            next_stats += interval;
            if next_stats < now {
                next_stats = now + interval;
            }
        }
        let until_stats = next_stats.saturating_duration_since(Instant::now());
        std::thread::sleep(until_stats.min(POLL));
    }
}

//! Reading container logs back out of the CRI files the shim writes, with the options of
//! `kubectl logs`: previous, tailLines, sinceSeconds/sinceTime, timestamps, limitBytes, follow
//! (across rotations, until the container ends).

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `kubectl logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<usize>,
    /// Only lines at or after this time (RFC 3339), from sinceTime or now - sinceSeconds.
    pub since: Option<k8s_openapi::jiff::Timestamp>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

impl Options {
    /// From the kubelet API's query parameters.
    pub fn from_query(query: &str) -> Result<Options, String> {
        let mut o = Options::default();
        for (k, v) in form_pairs(query) {
            let flag = || v.is_empty() || v == "true" || v == "1";
            match k.as_str() {
                "follow" => o.follow = flag(),
                "previous" => o.previous = flag(),
                "timestamps" => o.timestamps = flag(),
                "tailLines" => {
                    o.tail_lines = Some(v.parse().map_err(|_| format!("invalid tailLines {v:?}"))?)
                }
                "limitBytes" => {
                    o.limit_bytes =
                        Some(v.parse().map_err(|_| format!("invalid limitBytes {v:?}"))?)
                }
                "sinceSeconds" => {
                    let s: i64 = v
                        .parse()
                        .map_err(|_| format!("invalid sinceSeconds {v:?}"))?;
                    o.since = Some(
                        k8s_openapi::jiff::Timestamp::now()
                            - k8s_openapi::jiff::SignedDuration::from_secs(s),
                    );
                }
                "sinceTime" => {
                    o.since = Some(v.parse().map_err(|_| format!("invalid sinceTime {v:?}"))?)
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// Decodes `a=b&c=d` in order, keeping repeated keys (exec's `command=` comes once per
/// argument).
pub fn form_pairs(query: &str) -> Vec<(String, String)> {
    use crate::apiserver::encoding::percent_decode;
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The log file of a container's latest start (or the one before, for `previous`).
pub fn file_for(container_dir: &Path, previous: bool) -> Option<PathBuf> {
    let mut starts: Vec<u32> = std::fs::read_dir(container_dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    starts.sort();
    let n = if previous {
        *starts.iter().rev().nth(1)?
    } else {
        *starts.last()?
    };
    Some(container_dir.join(format!("{n}.log")))
}

/// One CRI line turned into what `kubectl logs` prints; pieces (P) are joined by the caller.
struct Entry {
    time: String,
    full: bool,
    text: String,
}

fn parse(line: &str) -> Option<Entry> {
    let mut p = line.splitn(4, ' ');
    let time = p.next()?.to_string();
    let _stream = p.next()?;
    let tag = p.next()?;
    Some(Entry {
        time,
        full: tag != "P",
        text: p.next().unwrap_or("").to_string(),
    })
}

/// Turns CRI lines into output lines, joining partial pieces; keeps state across calls.
#[derive(Default)]
struct Joiner {
    pending: String,
    first_time: Option<String>,
}

impl Joiner {
    fn push(&mut self, line: &str, opts: &Options, out: &mut Vec<String>) {
        let Some(e) = parse(line) else { return };
        if self.first_time.is_none() {
            self.first_time = Some(e.time.clone());
        }
        self.pending.push_str(&e.text);
        if !e.full {
            return;
        }
        let time = self.first_time.take().unwrap_or_default();
        let text = std::mem::take(&mut self.pending);
        if let Some(since) = opts.since {
            if time
                .parse::<k8s_openapi::jiff::Timestamp>()
                .is_ok_and(|t| t < since)
            {
                return;
            }
        }
        out.push(if opts.timestamps {
            format!("{time} {text}\n")
        } else {
            format!("{text}\n")
        });
    }
}

/// Everything the file (and its rotated predecessors) holds now, as output lines.
fn read_all(path: &Path, opts: &Options) -> (Vec<String>, u64) {
    let mut files = crate::shim::logs::rotated_files(path);
    files.push(path.to_path_buf());
    let mut j = Joiner::default();
    let mut out = Vec::new();
    let mut offset = 0;
    for f in files {
        let Ok(file) = std::fs::File::open(&f) else {
            continue;
        };
        let mut r = BufReader::new(file);
        let mut line = String::new();
        let mut pos = 0u64;
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if !line.ends_with('\n') {
                break;
            }
            pos += line.len() as u64;
            j.push(line.trim_end_matches('\n'), opts, &mut out);
            line.clear();
        }
        if f == path {
            offset = pos;
        }
    }
    (out, offset)
}

/// Sends what `kubectl logs` would print into `tx` (a dropped receiver stops it). With
/// `follow`, keeps reading while `running()` says the container runs, reopening the file when
/// it is rotated.
pub async fn stream(
    path: PathBuf,
    opts: Options,
    running: impl Fn() -> bool,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
) {
    let (mut lines, mut offset) = read_all(&path, &opts);
    if let Some(n) = opts.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let mut budget = opts.limit_bytes.unwrap_or(usize::MAX);
    // Cuts a line to what limitBytes leaves; None once nothing is left.
    let cut = |text: String, budget: &mut usize| -> Option<Vec<u8>> {
        if *budget == 0 {
            return None;
        }
        let mut b = text.into_bytes();
        b.truncate((*budget).min(b.len()));
        *budget -= b.len();
        Some(b)
    };
    for l in lines {
        let Some(b) = cut(l, &mut budget) else { return };
        if tx.send(b).await.is_err() {
            return;
        }
    }
    if !opts.follow {
        return;
    }
    let mut j = Joiner::default();
    let ino = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok()
    };
    let mut current = ino(&path);
    let mut partial = String::new();
    loop {
        let mut grew = false;
        let mut out = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&path) {
            let now = ino(&path);
            if now != current {
                // Rotated: the new file starts from its beginning.
                current = now;
                offset = 0;
            }
            let mut buf = String::new();
            if f.seek(SeekFrom::Start(offset)).is_ok()
                && f.read_to_string(&mut buf).is_ok()
                && !buf.is_empty()
            {
                grew = true;
                offset += buf.len() as u64;
                partial.push_str(&buf);
                while let Some(nl) = partial.find('\n') {
                    let line: String = partial.drain(..=nl).collect();
                    j.push(line.trim_end_matches('\n'), &opts, &mut out);
                }
            }
        }
        for l in out {
            let Some(b) = cut(l, &mut budget) else { return };
            if tx.send(b).await.is_err() {
                return;
            }
        }
        if !grew {
            if !running() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_partial_lines() {
        let o = Options::from_query(
            "follow=true&tailLines=2&timestamps=1&sinceTime=2026-01-01T00%3A00%3A00Z",
        )
        .unwrap();
        assert!(o.follow && o.timestamps);
        assert_eq!(o.tail_lines, Some(2));
        assert!(o.since.is_some());
        assert!(Options::from_query("tailLines=x").is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(
            &p,
            "2026-01-01T00:00:01.000000000Z stdout P hel\n2026-01-01T00:00:01.100000000Z stdout F lo\n2026-01-01T00:00:02.000000000Z stderr F two\n2025-01-01T00:00:00.000000000Z stdout F old\n",
        )
        .unwrap();
        let (lines, _) = read_all(&p, &Options::default());
        assert_eq!(lines, ["hello\n", "two\n", "old\n"]);
        let since = Options::from_query("sinceTime=2026-01-01T00:00:00Z&timestamps=true").unwrap();
        let (lines, _) = read_all(&p, &since);
        assert_eq!(
            lines,
            [
                "2026-01-01T00:00:01.000000000Z hello\n",
                "2026-01-01T00:00:02.000000000Z two\n"
            ]
        );
    }
}

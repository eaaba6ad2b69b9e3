//! The audit log file, rotated by size as kube-apiserver's (lumberjack) is: a line that would
//! take the file past `--audit-log-maxsize` first moves the file aside to
//! `<name>-<UTC time as 2006-01-02T15-04-05.000><ext>` beside it (`audit.log` becomes
//! `audit-2026-12-03T16-48-09.123.log`) and starts a new one; then backups beyond
//! `--audit-log-maxbackup` (0: keep all) or older than `--audit-log-maxage` days (0: no limit)
//! are removed. Lines are never split across files, and a line larger than the limit is still
//! written (alone in its file): an audit event is not dropped for being big.

use jiff::Timestamp;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// lumberjack's default when `--audit-log-maxsize` is 0, which kube-apiserver inherits.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_bytes: u64,
    /// 0: keep every backup.
    pub max_backups: usize,
    pub max_age: Option<Duration>,
}

pub struct RotatingFile {
    path: PathBuf,
    limits: Limits,
    file: Option<BufWriter<File>>,
    size: u64,
    /// Backups are named by time to the millisecond; two rotations within one millisecond
    /// would share a name (and the second would replace the first), so each backup gets a
    /// time strictly after the previous one's.
    last_backup: Option<Timestamp>,
}

impl RotatingFile {
    /// Opens (or creates) the file now, so a path that cannot be written fails at start.
    pub fn open(path: PathBuf, limits: Limits) -> io::Result<RotatingFile> {
        let mut f = RotatingFile {
            path,
            limits,
            file: None,
            size: 0,
            last_backup: None,
        };
        f.reopen()?;
        Ok(f)
    }

    /// Appends one whole line (the caller's bytes end in `\n`).
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.reopen()?;
        }
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.limits.max_bytes {
            self.rotate()?;
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(line)?;
        self.size += len;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    /// Appends to the file a previous run left, as lumberjack does.
    fn reopen(&mut self) -> io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // The log can hold request and response bodies (Secrets at RequestResponse).
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(BufWriter::new(file));
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        // Names carry milliseconds: compare at that precision.
        let now = Timestamp::now();
        let mut at = Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now);
        if let Some(last) = self.last_backup.filter(|l| at <= *l) {
            at = last + jiff::SignedDuration::from_millis(1);
        }
        self.last_backup = Some(at);
        std::fs::rename(&self.path, backup_path(&self.path, at))?;
        self.reopen()?;
        self.remove_old_backups(Timestamp::now());
        Ok(())
    }

    /// Best effort, as lumberjack's: a backup that cannot be removed stays.
    fn remove_old_backups(&self, now: Timestamp) {
        let mut backups = backups_of(&self.path);
        backups.sort_by_key(|b| std::cmp::Reverse(b.0));
        for (i, (at, path)) in backups.iter().enumerate() {
            let too_many = self.limits.max_backups > 0 && i >= self.limits.max_backups;
            let too_old = self.limits.max_age.is_some_and(|age| {
                let age = jiff::SignedDuration::try_from(age).unwrap_or(jiff::SignedDuration::MAX);
                now.duration_since(*at) > age
            });
            if too_many || too_old {
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::warn!(path = %path.display(), error = %e, "removing an old audit log");
                }
            }
        }
    }
}

/// `dir/audit.log` -> (`dir`, `audit`, `.log`).
fn split(path: &Path) -> (PathBuf, String, String) {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rfind('.').filter(|i| *i > 0) {
        Some(i) => (dir, name[..i].to_string(), name[i..].to_string()),
        None => (dir, name, String::new()),
    }
}

const TIME_FORMAT: &str = "%Y-%m-%dT%H-%M-%S";

pub fn backup_path(path: &Path, at: Timestamp) -> PathBuf {
    let (dir, stem, ext) = split(path);
    let time = format!(
        "{}.{:03}",
        at.strftime(TIME_FORMAT),
        at.subsec_millisecond()
    );
    dir.join(format!("{stem}-{time}{ext}"))
}

/// The backups beside `path`, with the times their names carry (other files are left alone).
pub fn backups_of(path: &Path) -> Vec<(Timestamp, PathBuf)> {
    let (dir, stem, ext) = split(path);
    let dir_to_read = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &dir
    };
    let Ok(entries) = std::fs::read_dir(dir_to_read) else {
        return Vec::new();
    };
    let prefix = format!("{stem}-");
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let time = name.strip_prefix(&prefix)?.strip_suffix(ext.as_str())?;
            Some((parse_time(time)?, dir.join(&name)))
        })
        .collect()
}

/// `2026-12-03T16-48-09.123` (UTC) back to a time.
fn parse_time(text: &str) -> Option<Timestamp> {
    let (date, clock) = text.split_once('T')?;
    if date.len() != 10 || clock.len() != 12 {
        return None;
    }
    format!("{date}T{}Z", clock.replacen('-', ":", 2))
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_bytes: u64, max_backups: usize) -> Limits {
        Limits {
            max_bytes,
            max_backups,
            max_age: None,
        }
    }

    #[test]
    fn backup_names_are_lumberjacks_and_parse_back() {
        let at: Timestamp = "2026-12-03T16:48:09.123456Z".parse().unwrap();
        let p = backup_path(Path::new("/var/log/audit.log"), at);
        assert_eq!(p, Path::new("/var/log/audit-2026-12-03T16-48-09.123.log"));
        assert_eq!(
            parse_time("2026-12-03T16-48-09.123"),
            Some("2026-12-03T16:48:09.123Z".parse().unwrap())
        );
        assert_eq!(parse_time("notatime"), None);
        assert_eq!(
            backup_path(Path::new("log"), at),
            Path::new("log-2026-12-03T16-48-09.123")
        );
    }

    #[test]
    fn rotates_by_size_keeping_whole_lines_and_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(dir.path().join("unrelated.txt"), "x").unwrap();
        let mut f = RotatingFile::open(path.clone(), limits(100, 2)).unwrap();
        let line = |i: usize| format!("{i:039}\n"); // 40 bytes
        for i in 0..10 {
            f.write_line(line(i).as_bytes()).unwrap();
        }
        f.flush().unwrap();
        // 2 lines per file: 5 files made, the 2 newest backups kept.
        let backups = backups_of(&path);
        assert_eq!(backups.len(), 2, "{backups:?}");
        let mut contents: Vec<(Timestamp, String)> = backups
            .iter()
            .map(|(t, p)| (*t, std::fs::read_to_string(p).unwrap()))
            .collect();
        contents.sort();
        assert_eq!(contents[0].1, line(4) + &line(5));
        assert_eq!(contents[1].1, line(6) + &line(7));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line(8) + &line(9));
        assert!(dir.path().join("unrelated.txt").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn appends_to_an_existing_file_and_writes_oversized_lines_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut f = RotatingFile::open(path.clone(), limits(10, 0)).unwrap();
        f.write_line(b"new\n").unwrap();
        f.write_line(b"a line longer than ten\n").unwrap();
        f.write_line(b"next\n").unwrap();
        f.flush().unwrap();
        let mut backups: Vec<String> = backups_of(&path)
            .iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap())
            .collect();
        backups.sort();
        assert_eq!(backups, vec!["a line longer than ten\n", "old\nnew\n"]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "next\n");
    }

    #[test]
    fn removes_backups_older_than_max_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let old = backup_path(&path, "2020-01-01T00:00:00Z".parse().unwrap());
        std::fs::write(&old, "old\n").unwrap();
        let mut f = RotatingFile::open(
            path.clone(),
            Limits {
                max_bytes: 5,
                max_backups: 0,
                max_age: Some(Duration::from_secs(86400)),
            },
        )
        .unwrap();
        f.write_line(b"1234\n").unwrap();
        f.write_line(b"5678\n").unwrap();
        assert!(!old.exists());
        assert_eq!(backups_of(&path).len(), 1);
    }
}

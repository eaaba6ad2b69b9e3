//! Container logs in the CRI format the kubelet and `kubectl logs` read: each line
//! `<RFC 3339 nano timestamp> <stdout|stderr> <F|P> <text>`, P marking a piece of a line longer
//! than the split size. The file is rotated by size: `0.log` becomes `0.log.<UTC time>` and a
//! new `0.log` starts; the oldest rotated files beyond the limit are deleted.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Lines longer than this are written in pieces marked P (as the CRI runtimes split them).
pub const MAX_LINE: usize = 16 * 1024;

/// Which of the container's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One container's log file and the unfinished line of each stream.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: usize,
    pending: [Vec<u8>; 2],
}

impl LogFile {
    /// Opens (appending to) `path`; `max_size` 0 never rotates.
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> std::io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Takes bytes read from one stream; writes every line they complete.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let i = stream as usize;
        let mut buf = std::mem::take(&mut self.pending[i]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            let mut line = &buf[start..start + nl];
            while line.len() > MAX_LINE {
                self.line(stream, &line[..MAX_LINE], false)?;
                line = &line[MAX_LINE..];
            }
            self.line(stream, line, true)?;
            start += nl + 1;
        }
        let mut rest = &buf[start..];
        while rest.len() >= MAX_LINE {
            self.line(stream, &rest[..MAX_LINE], false)?;
            rest = &rest[MAX_LINE..];
        }
        self.pending[i] = rest.to_vec();
        Ok(())
    }

    /// The stream ended: what is left of its last line is written as a full line.
    pub fn close(&mut self, stream: Stream) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.pending[stream as usize]);
        if !rest.is_empty() {
            self.line(stream, &rest, true)?;
        }
        Ok(())
    }

    fn line(&mut self, stream: Stream, text: &[u8], full: bool) -> std::io::Result<()> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mut out = Vec::with_capacity(text.len() + 48);
        out.extend_from_slice(now.as_bytes());
        out.push(b' ');
        out.extend_from_slice(stream.tag().as_bytes());
        out.extend_from_slice(if full { b" F " } else { b" P " });
        out.extend_from_slice(text);
        out.push(b'\n');
        // One write per line, so a reader never sees half of one.
        self.file.write_all(&out)?;
        self.size += out.len() as u64;
        if self.max_size > 0 && self.size >= self.max_size {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S%.6f");
        let rotated = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        std::fs::rename(&self.path, &rotated)?;
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        let mut old = rotated_files(&self.path);
        // The current file counts towards the limit, as the kubelet's containerLogMaxFiles.
        while old.len() + 1 > self.max_files {
            let _ = std::fs::remove_file(old.remove(0));
        }
        Ok(())
    }
}

/// The rotated files of `path`, oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut p = l.splitn(4, ' ');
                let ts = p.next().unwrap();
                assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
                (
                    p.next().unwrap().to_string(),
                    p.next().unwrap().to_string(),
                    p.next().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn lines_are_tagged_split_and_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let mut log = LogFile::open(&path, 0, 5).unwrap();
        log.write(Stream::Stdout, b"hel").unwrap();
        log.write(Stream::Stderr, b"oops\n").unwrap();
        log.write(Stream::Stdout, b"lo\nwor").unwrap();
        let long = vec![b'x'; MAX_LINE + 10];
        log.write(Stream::Stdout, &long).unwrap();
        log.write(Stream::Stdout, b"\n").unwrap();
        log.close(Stream::Stdout).unwrap();
        let got = lines(&path);
        assert_eq!(got[0], ("stderr".into(), "F".into(), "oops".into()));
        assert_eq!(got[1], ("stdout".into(), "F".into(), "hello".into()));
        assert_eq!(got[2].1, "P");
        assert_eq!(got[2].2.len(), MAX_LINE);
        assert!(got[2].2.starts_with("wor"));
        assert_eq!(got[3], ("stdout".into(), "F".into(), "x".repeat(13)));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn rotation_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = LogFile::open(&path, 200, 3).unwrap();
        for i in 0..40 {
            log.write(Stream::Stdout, format!("line {i:03}\n").as_bytes())
                .unwrap();
        }
        let rotated = rotated_files(&path);
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        let mut all = String::new();
        for p in rotated.iter().chain([&path]) {
            all.push_str(&std::fs::read_to_string(p).unwrap());
        }
        assert!(all.ends_with("line 039\n"), "{all}");
        assert!(!all.contains("line 000"), "the oldest went with its file");
    }
}

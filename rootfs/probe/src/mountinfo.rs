//! /proc/self/mountinfo, parsed: the probe's view of its mount table.

pub struct Mount {
    /// The directory inside the mounted filesystem that appears at `mountpoint`.
    pub root: String,
    pub mountpoint: String,
    /// Per-mount options (ro, nosuid, ...).
    pub options: String,
    /// Optional fields: propagation such as "shared:5" or "master:3"; empty when private.
    pub propagation: String,
    pub fstype: String,
    pub source: String,
    /// Per-superblock options; for cgroup v1 these name the controllers.
    pub super_options: String,
}

pub fn read() -> Vec<Mount> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split(' ').collect();
    let r: Vec<&str> = right.split(' ').collect();
    if l.len() < 6 || r.len() < 3 {
        return None;
    }
    Some(Mount {
        root: unescape(l[3]),
        mountpoint: unescape(l[4]),
        options: l[5].to_string(),
        propagation: l[6..].join(" "),
        fstype: r[0].to_string(),
        source: unescape(r[1]),
        super_options: r[2].to_string(),
    })
}

/// The kernel writes space, tab, newline and backslash in paths as octal escapes (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_a_line_with_propagation_and_escapes() {
        let m = super::parse_line(
            "36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(m.mountpoint, "/mnt 2");
        assert_eq!(m.root, "/mnt1");
        assert_eq!(m.propagation, "master:1");
        assert_eq!(m.fstype, "ext3");
        assert_eq!(m.super_options, "rw,errors=continue");
    }
}

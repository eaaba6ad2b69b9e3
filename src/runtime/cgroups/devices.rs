//! Device access: which device nodes a container may create (mknod) and open.
//!
//! Without this, a container holding CAP_MKNOD (in Docker's default set) could create a node
//! for the host's disk and read it. The effective rules are the spec's
//! `linux.resources.devices` followed by the devices every container needs (the list runc
//! adds too), on top of "deny everything"; later rules win.
//!
//! v1 writes them to devices.deny / devices.allow. v2 has no files for this: access is decided
//! by an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup, which
//! `program` generates from the same rules.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::{fs, Error, Result};

const ACCESS_MKNOD: u8 = 1;
const ACCESS_READ: u8 = 2;
const ACCESS_WRITE: u8 = 4;
const ACCESS_ALL: u8 = ACCESS_MKNOD | ACCESS_READ | ACCESS_WRITE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    All,
    Block,
    Char,
}

/// One rule; `None` for major or minor is the wildcard `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rule {
    pub allow: bool,
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// ACCESS_* bits.
    pub access: u8,
}

const fn allow(kind: Kind, major: Option<u32>, minor: Option<u32>, access: u8) -> Rule {
    Rule {
        allow: true,
        kind,
        major,
        minor,
        access,
    }
}

/// What every container may use whatever its spec says: creating any node (opening it is
/// another matter), /dev/null, zero, full, random, urandom, tty, console, ptmx, the ptys and
/// /dev/net/tun.
const DEFAULT_ALLOWED: &[Rule] = &[
    allow(Kind::Char, None, None, ACCESS_MKNOD),
    allow(Kind::Block, None, None, ACCESS_MKNOD),
    allow(Kind::Char, Some(1), Some(3), ACCESS_ALL),
    allow(Kind::Char, Some(1), Some(5), ACCESS_ALL),
    allow(Kind::Char, Some(1), Some(7), ACCESS_ALL),
    allow(Kind::Char, Some(1), Some(8), ACCESS_ALL),
    allow(Kind::Char, Some(1), Some(9), ACCESS_ALL),
    allow(Kind::Char, Some(5), Some(0), ACCESS_ALL),
    allow(Kind::Char, Some(5), Some(1), ACCESS_ALL),
    allow(Kind::Char, Some(5), Some(2), ACCESS_ALL),
    allow(Kind::Char, Some(136), None, ACCESS_ALL),
    allow(Kind::Char, Some(10), Some(200), ACCESS_ALL),
];

/// The effective rules: the spec's (validated) then the defaults.
pub(super) fn rules(spec: Option<&[LinuxDeviceCgroup]>) -> Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for (i, d) in spec.unwrap_or_default().iter().enumerate() {
        let field = |name: &str| format!("linux.resources.devices[{i}].{name}");
        let kind = match d.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => Kind::All,
            LinuxDeviceType::B => Kind::Block,
            LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
            // FIFOs are not devices: the device controller has nothing to say about them.
            LinuxDeviceType::P => continue,
        };
        let number = |v: Option<i64>, name: &str| -> Result<Option<u32>> {
            match v {
                None | Some(-1) => Ok(None),
                Some(n) => u32::try_from(n)
                    .map(Some)
                    .map_err(|_| Error::InvalidResource {
                        field: field(name),
                        reason: format!("{n} is not a device number"),
                    }),
            }
        };
        let access_str = d.access().as_deref().unwrap_or("");
        let mut access = 0;
        let mut unknown = String::new();
        for c in access_str.chars() {
            access |= match c {
                'r' => ACCESS_READ,
                'w' => ACCESS_WRITE,
                'm' => ACCESS_MKNOD,
                other => {
                    unknown.push(other);
                    0
                }
            };
        }
        // runc skips letters other than r, w and m (specs in the wild say "rwa"); so do we,
        // aloud. Nothing known at all is an error: the rule would silently mean "rwm".
        if !unknown.is_empty() {
            if access == 0 {
                return Err(Error::InvalidResource {
                    field: field("access"),
                    reason: format!("{access_str:?} has none of r, w and m"),
                });
            }
            crate::runtime::warn(&format!(
                "{}: {unknown:?} ignored (access is a combination of r, w and m)",
                field("access")
            ));
        }
        rules.push(Rule {
            allow: d.allow(),
            kind,
            major: number(d.major(), "major")?,
            minor: number(d.minor(), "minor")?,
            access: if access == 0 { ACCESS_ALL } else { access },
        });
    }
    rules.extend_from_slice(DEFAULT_ALLOWED);
    Ok(rules)
}

/// v1: start from "deny all", then write each rule in order (a later "deny a" resets again,
/// exactly as the rule list means).
pub(super) fn apply_v1(dir: &Path, rules: &[Rule]) -> Result<()> {
    fs::write(dir, "devices.deny", "a")?;
    for rule in rules {
        let file = if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        fs::write(dir, file, &v1_line(rule))?;
    }
    Ok(())
}

fn v1_line(rule: &Rule) -> String {
    let kind = match rule.kind {
        Kind::All => return "a".to_string(),
        Kind::Block => 'b',
        Kind::Char => 'c',
    };
    let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
    let mut access = String::new();
    for (bit, c) in [(ACCESS_READ, 'r'), (ACCESS_WRITE, 'w'), (ACCESS_MKNOD, 'm')] {
        if rule.access & bit != 0 {
            access.push(c);
        }
    }
    format!("{kind} {}:{} {access}", num(rule.major), num(rule.minor))
}

// eBPF encoding (linux/bpf.h, linux/bpf_common.h).
const BPF_LDX_MEM_W: u8 = 0x61;
const BPF_ALU64_MOV_X: u8 = 0xbf;
const BPF_ALU64_MOV_K: u8 = 0xb7;
const BPF_ALU64_AND_K: u8 = 0x57;
const BPF_ALU64_RSH_K: u8 = 0x77;
const BPF_JMP_JNE_K: u8 = 0x55;
const BPF_EXIT: u8 = 0x95;
/// bpf_cgroup_dev_ctx.access_type's low half: BPF_DEVCG_DEV_BLOCK / BPF_DEVCG_DEV_CHAR.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The device program. The context (struct bpf_cgroup_dev_ctx) is three u32: access_type =
/// access << 16 | type, major, minor. Rules are checked last to first and the first match
/// decides (the last rule wins, as in v1); no match denies. A rule matches when the kind, the
/// numbers it names and all the requested access bits match.
pub(super) fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(BPF_LDX_MEM_W, 2, 1, 0, 0),        // r2 = access_type
        insn(BPF_ALU64_MOV_X, 3, 2, 0, 0),      // r3 = r2
        insn(BPF_ALU64_AND_K, 3, 0, 0, 0xffff), // r3 = type
        insn(BPF_ALU64_RSH_K, 2, 0, 0, 16),     // r2 = access
        insn(BPF_LDX_MEM_W, 4, 1, 4, 0),        // r4 = major
        insn(BPF_LDX_MEM_W, 5, 1, 8, 0),        // r5 = minor
    ];
    for rule in rules.iter().rev() {
        // Each check jumps past the rest of this rule's block when it fails; the block is
        // built first so the distances are known.
        let mut checks: Vec<Vec<Insn>> = Vec::new();
        match rule.kind {
            Kind::All => {}
            Kind::Block => checks.push(vec![insn(BPF_JMP_JNE_K, 3, 0, 0, DEV_BLOCK)]),
            Kind::Char => checks.push(vec![insn(BPF_JMP_JNE_K, 3, 0, 0, DEV_CHAR)]),
        }
        if rule.access != ACCESS_ALL {
            checks.push(vec![
                insn(BPF_ALU64_MOV_X, 6, 2, 0, 0),
                insn(
                    BPF_ALU64_AND_K,
                    6,
                    0,
                    0,
                    i32::from(!rule.access & ACCESS_ALL),
                ),
                insn(BPF_JMP_JNE_K, 6, 0, 0, 0),
            ]);
        }
        if let Some(major) = rule.major {
            checks.push(vec![insn(BPF_JMP_JNE_K, 4, 0, 0, major as i32)]);
        }
        if let Some(minor) = rule.minor {
            checks.push(vec![insn(BPF_JMP_JNE_K, 5, 0, 0, minor as i32)]);
        }
        let verdict = [
            insn(BPF_ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow)),
            insn(BPF_EXIT, 0, 0, 0, 0),
        ];
        if checks.is_empty() {
            // A rule that matches everything decides every access: the kernel's verifier
            // rejects the unreachable instructions that would follow it.
            p.extend_from_slice(&verdict);
            return p;
        }
        let mut remaining: usize = checks.iter().map(Vec::len).sum::<usize>() + verdict.len();
        for check in checks {
            remaining -= check.len();
            let last = check.len() - 1;
            for (k, mut i) in check.into_iter().enumerate() {
                if k == last {
                    i.off = remaining as i16;
                }
                p.push(i);
            }
        }
        p.extend_from_slice(&verdict);
    }
    p.push(insn(BPF_ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(BPF_EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_F_ALLOW_OVERRIDE: u32 = 1;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// The leading fields of `union bpf_attr` for BPF_PROG_LOAD; the kernel takes a shorter
/// attr as long as what it omits would be zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

fn bpf_error(path: &Path, what: &str, log: &[u8]) -> Error {
    let source = std::io::Error::last_os_error();
    let log = String::from_utf8_lossy(log.split(|&b| b == 0).next().unwrap_or_default());
    let log = log.trim();
    Error::Io {
        op: if what == "load" {
            "load device program for"
        } else {
            "attach device program to"
        },
        path: path.to_path_buf(),
        source: if log.is_empty() {
            source
        } else {
            std::io::Error::new(source.kind(), format!("{source}: {log}"))
        },
    }
}

/// v2: loads the program and attaches it to the cgroup directory with BPF_F_ALLOW_OVERRIDE:
/// attaching again (an update) replaces the previous program, and a cgroup below (a container
/// under a pod's cgroup) may attach its own, which the kernel refuses under a program attached
/// with no flags.
pub(super) fn apply_v2(dir: &Path, rules: &[Rule]) -> Result<()> {
    let insns = program(rules);
    // Without a log first: the verifier's log of every instruction costs more than the load
    // itself. Only a refused program is loaded again, to explain why.
    let fd = match load(&insns, None) {
        Ok(fd) => fd,
        Err(_) => {
            let mut log = vec![0u8; 64 * 1024];
            match load(&insns, Some(&mut log)) {
                Ok(fd) => fd,
                Err(()) => return Err(bpf_error(dir, "load", &log)),
            }
        }
    };
    // SAFETY: bpf(BPF_PROG_LOAD) returned a new file descriptor that nothing else owns.
    let prog = unsafe { OwnedFd::from_raw_fd(fd) };
    let cgroup = std::fs::File::open(dir).map_err(|source| Error::Io {
        op: "open",
        path: dir.to_path_buf(),
        source,
    })?;
    let attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_OVERRIDE,
    };
    // SAFETY: attr is a valid bpf_attr prefix for BPF_PROG_ATTACH holding two open fds.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if rc < 0 {
        return Err(bpf_error(dir, "attach", &[]));
    }
    // The attachment holds its own reference: the program lives as long as the cgroup.
    Ok(())
}

/// bpf(BPF_PROG_LOAD) of a device program, with the verifier's log in `log` if given.
/// The error itself is left in errno for `bpf_error`.
fn load(insns: &[Insn], log: Option<&mut [u8]>) -> std::result::Result<RawFd, ()> {
    let license = c"Apache-2.0";
    let (log_level, log_size, log_buf) = match log {
        Some(l) => (1, l.len() as u32, l.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        ..Default::default()
    };
    // SAFETY: attr is a valid bpf_attr prefix whose pointers (insns, license, log) stay alive
    // for the call; the kernel writes at most log_size bytes into the log.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        Err(())
    } else {
        Ok(fd as RawFd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    /// Runs the device program the way the kernel would: Some(allowed).
    fn run(p: &[Insn], kind: i32, access: u8, major: u32, minor: u32) -> bool {
        let ctx = [((access as u32) << 16) | kind as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                BPF_LDX_MEM_W => r[dst] = ctx[i.off as usize / 4] as u64,
                BPF_ALU64_MOV_X => r[dst] = r[src],
                BPF_ALU64_MOV_K => r[dst] = i.imm as u64,
                BPF_ALU64_AND_K => r[dst] &= i.imm as u64,
                BPF_ALU64_RSH_K => r[dst] >>= i.imm,
                BPF_JMP_JNE_K => {
                    if r[dst] != i.imm as u64 {
                        pc += i.off as usize;
                    }
                }
                BPF_EXIT => return r[0] == 1,
                c => panic!("unknown opcode {c:#x}"),
            }
        }
    }

    /// Every instruction can be reached from the first, as the kernel's verifier demands.
    fn all_reachable(p: &[Insn]) -> bool {
        let mut seen = vec![false; p.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            if pc >= p.len() || seen[pc] {
                continue;
            }
            seen[pc] = true;
            match p[pc].code {
                BPF_EXIT => {}
                BPF_JMP_JNE_K => todo.extend([pc + 1, pc + 1 + p[pc].off as usize]),
                _ => todo.push(pc + 1),
            }
        }
        seen.into_iter().all(|s| s)
    }

    #[test]
    fn a_rule_matching_everything_ends_the_program() {
        // runc's default spec starts with deny-all: it is checked last, so nothing may follow it.
        let spec = vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap()];
        let p = program(&rules(Some(&spec)).unwrap());
        assert!(all_reachable(&p));
        assert!(run(&p, DEV_CHAR, ACCESS_READ, 1, 3));
        assert!(!run(&p, DEV_BLOCK, ACCESS_READ, 8, 0));
        assert!(all_reachable(&program(&rules(None).unwrap())));
    }

    #[test]
    fn defaults_allow_the_standard_devices_only() {
        let p = program(&rules(None).unwrap());
        let rw = ACCESS_READ | ACCESS_WRITE;
        assert!(run(&p, DEV_CHAR, rw, 1, 3)); // /dev/null
        assert!(run(&p, DEV_CHAR, rw, 136, 7)); // a pty
        assert!(run(&p, DEV_CHAR, ACCESS_MKNOD, 1, 1)); // mknod only
        assert!(run(&p, DEV_BLOCK, ACCESS_MKNOD, 8, 0));
        assert!(!run(&p, DEV_CHAR, ACCESS_READ, 1, 1)); // /dev/mem
        assert!(!run(&p, DEV_BLOCK, ACCESS_READ, 8, 0)); // a disk
        assert!(!run(&p, DEV_CHAR, ACCESS_READ | ACCESS_MKNOD, 1, 11)); // kmsg
        assert!(!run(&p, DEV_BLOCK, rw, 1, 3)); // block 1:3 is not /dev/null
    }

    #[test]
    fn spec_rules_apply_in_order() {
        let spec = vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::B)
                .major(7i64)
                .access("r")
                .build()
                .unwrap(),
        ];
        let r = rules(Some(&spec)).unwrap();
        let p = program(&r);
        assert!(run(&p, DEV_BLOCK, ACCESS_READ, 7, 3));
        assert!(!run(&p, DEV_BLOCK, ACCESS_READ | ACCESS_WRITE, 7, 3));
        assert_eq!(v1_line(&r[0]), "a");
        assert_eq!(v1_line(&r[1]), "b 7:* r");
        assert_eq!(v1_line(&r[4]), "c 1:3 rwm");
        // Everything allowed: a privileged container.
        let all = vec![LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .build()
            .unwrap()];
        assert!(run(
            &program(&rules(Some(&all)).unwrap()),
            DEV_BLOCK,
            ACCESS_READ,
            8,
            0
        ));

        // Unknown letters beside known ones are skipped, as runc skips them.
        let extra = vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(11)
            .access("rwa")
            .build()
            .unwrap()];
        assert_eq!(
            rules(Some(&extra)).unwrap()[0].access,
            ACCESS_READ | ACCESS_WRITE
        );
        let bad = vec![LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("xa")
            .build()
            .unwrap()];
        let err = rules(Some(&bad)).unwrap_err().to_string();
        assert!(
            err.starts_with("linux.resources.devices[0].access"),
            "{err}"
        );
    }
}

//! OCI `linux.seccomp` -> classic BPF for x86_64.
//!
//! The program, in order:
//! 1. architecture check: anything but AUDIT_ARCH_X86_64 (e.g. 32-bit `int 0x80` calls, whose
//!    numbers mean other syscalls) kills the process;
//! 2. x32 ABI calls (number with bit 30 set) fail with ENOSYS, as on kernels without x32;
//! 3. dispatch on the syscall number: syscalls whose first rule is unconditional jump straight
//!    to a shared `return action`; the others jump to their own block;
//! 4. syscalls newer than any the profile names fail with ENOSYS (so libc falls back to an
//!    older call instead of treating EPERM as fatal), then the default action;
//! 5. the blocks: each rule's argument checks in profile order, first match wins, and the
//!    default action if none matches.

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

use super::bpf::{Asm, Cmp, Label, Target, DATA_ARCH, DATA_ARGS, DATA_NR};
use super::{syscalls_x86_64, Error, Program};

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// How many unconditional syscalls share one `return`: their jumps must reach it within the
/// 255-instruction range of a conditional jump.
const GROUP: usize = 200;

/// One comparison of a syscall argument (64-bit, as libseccomp compares on 64-bit arches).
#[derive(Debug, Clone, Copy)]
struct Cond {
    index: u32,
    op: Op,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Eq(u64),
    Ne(u64),
    Lt(u64),
    Le(u64),
    Gt(u64),
    Ge(u64),
    /// (arg & mask) == value
    MaskedEq {
        mask: u64,
        value: u64,
    },
}

/// Conditions that must all hold, and the action when they do.
#[derive(Debug, Clone)]
struct Rule {
    all_of: Vec<Cond>,
    ret: u32,
}

fn invalid(field: String, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The SECCOMP_RET_* value of an action. `errno` is errnoRet (EPERM when absent, as runc).
fn action_value(
    action: LinuxSeccompAction,
    errno: Option<u32>,
    errno_field: &str,
) -> Result<u32, Error> {
    use LinuxSeccompAction::*;
    if errno.is_some() && !matches!(action, ScmpActErrno | ScmpActTrace) {
        return Err(invalid(
            errno_field.to_string(),
            "is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE",
        ));
    }
    let data = errno.unwrap_or(libc::EPERM as u32);
    if data > 0xffff {
        return Err(invalid(
            errno_field.to_string(),
            format!("{data} does not fit 16 bits"),
        ));
    }
    Ok(match action {
        ScmpActKill | ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        ScmpActTrap => libc::SECCOMP_RET_TRAP,
        ScmpActErrno => libc::SECCOMP_RET_ERRNO | data,
        ScmpActTrace => libc::SECCOMP_RET_TRACE | data,
        ScmpActLog => libc::SECCOMP_RET_LOG,
        ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        ScmpActNotify => libc::SECCOMP_RET_USER_NOTIF,
    })
}

/// Syscalls that may not be handed to a seccomp agent: between installing the filter and the
/// agent holding its listener, the init passes the listener to the runtime with sendmsg(2)
/// (and the sync channel may finish a message with write(2)); a notification then would wait
/// for an agent that can never get the listener. (runc refuses `write` for the same reason.)
const NOT_FOR_AGENT: [&str; 2] = ["write", "sendmsg"];

pub(super) fn compile(profile: &LinuxSeccomp) -> Result<Program, Error> {
    let default = action_value(
        profile.default_action(),
        profile.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    if profile.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(invalid(
            "linux.seccomp.defaultAction".into(),
            "SCMP_ACT_NOTIFY cannot be the default action (the runtime's own calls would wait for the agent)",
        ));
    }
    let agent = profile
        .listener_path()
        .as_ref()
        .is_some_and(|p| !p.as_os_str().is_empty());
    if let Some(flags) = profile.flags().as_ref().filter(|f| !f.is_empty()) {
        tracing::debug!(?flags, "linux.seccomp.flags are not applied");
    }

    let mut rules: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
    for (i, syscall) in profile.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let ret = action_value(
            syscall.action(),
            syscall.errno_ret(),
            &format!("{field}.errnoRet"),
        )?;
        if syscall.names().is_empty() {
            return Err(invalid(
                format!("{field}.names"),
                "must name at least one syscall",
            ));
        }
        if syscall.action() == LinuxSeccompAction::ScmpActNotify {
            if !agent {
                return Err(invalid(
                    format!("{field}.action"),
                    "SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath, the seccomp agent's socket",
                ));
            }
            if let Some(name) = syscall
                .names()
                .iter()
                .find(|n| NOT_FOR_AGENT.contains(&n.as_str()))
            {
                return Err(invalid(
                    format!("{field}.names"),
                    format!("SCMP_ACT_NOTIFY cannot be used for the {name} syscall (the runtime hands the agent its listener with it)"),
                ));
            }
        }
        let mut conds = Vec::new();
        for (j, arg) in syscall.args().iter().flatten().enumerate() {
            if arg.index() > 5 {
                return Err(invalid(
                    format!("{field}.args[{j}].index"),
                    format!("{} is not an argument index (0..=5)", arg.index()),
                ));
            }
            let v = arg.value();
            let op = match arg.op() {
                LinuxSeccompOperator::ScmpCmpEq => Op::Eq(v),
                LinuxSeccompOperator::ScmpCmpNe => Op::Ne(v),
                LinuxSeccompOperator::ScmpCmpLt => Op::Lt(v),
                LinuxSeccompOperator::ScmpCmpLe => Op::Le(v),
                LinuxSeccompOperator::ScmpCmpGt => Op::Gt(v),
                LinuxSeccompOperator::ScmpCmpGe => Op::Ge(v),
                // OCI (and libseccomp) put the mask in `value` and the expected bits in
                // `valueTwo`.
                LinuxSeccompOperator::ScmpCmpMaskedEq => Op::MaskedEq {
                    mask: v,
                    value: arg.value_two().unwrap_or(0),
                },
            };
            conds.push(Cond {
                index: arg.index() as u32,
                op,
            });
        }
        // Conditions on distinct arguments must all hold. Several conditions on the same
        // argument are alternatives, one rule each: that is what runc does, because "arg0 ==
        // 1 and arg0 == 2" could never match.
        let repeated = conds
            .iter()
            .enumerate()
            .any(|(a, c)| conds[..a].iter().any(|d| d.index == c.index));
        let alternatives: Vec<Vec<Cond>> = if repeated {
            conds.iter().map(|c| vec![*c]).collect()
        } else {
            vec![conds]
        };
        for name in syscall.names() {
            let Some(nr) = syscalls_x86_64::number(name) else {
                tracing::debug!(syscall = %name, "unknown to x86_64, skipped in seccomp profile");
                continue;
            };
            let entry = rules.entry(nr).or_default();
            for all_of in &alternatives {
                entry.push(Rule {
                    all_of: all_of.clone(),
                    ret,
                });
            }
        }
    }
    Ok(Program {
        filter: generate(default, &rules)?,
    })
}

fn generate(
    default: u32,
    rules: &BTreeMap<u32, Vec<Rule>>,
) -> Result<Vec<libc::sock_filter>, Error> {
    let mut asm = Asm::default();

    let arch_ok = asm.label();
    asm.load(DATA_ARCH);
    asm.jump(
        Cmp::Eq,
        AUDIT_ARCH_X86_64,
        Target::Label(arch_ok),
        Target::Next,
    );
    asm.ret(libc::SECCOMP_RET_KILL_PROCESS);
    asm.mark(arch_ok);

    let native = asm.label();
    asm.load(DATA_NR);
    asm.jump(
        Cmp::Ge,
        X32_SYSCALL_BIT,
        Target::Next,
        Target::Label(native),
    );
    asm.ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
    asm.mark(native);

    // Rules after an unconditional one can never match: drop them.
    let mut unconditional: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut conditional: Vec<(u32, Vec<&Rule>)> = Vec::new();
    for (&nr, list) in rules {
        let end = list
            .iter()
            .position(|r| r.all_of.is_empty())
            .map_or(list.len(), |p| p + 1);
        let list: Vec<&Rule> = list[..end].iter().collect();
        match list.as_slice() {
            [only] if only.all_of.is_empty() => {
                if only.ret != default {
                    unconditional.entry(only.ret).or_default().push(nr);
                }
            }
            _ => conditional.push((nr, list)),
        }
    }

    // The largest group (normally the allow list) first: most syscalls end there.
    let mut groups: Vec<(u32, Vec<u32>)> = unconditional.into_iter().collect();
    groups.sort_by_key(|(_, nrs)| std::cmp::Reverse(nrs.len()));
    for (ret, nrs) in &groups {
        for chunk in nrs.chunks(GROUP) {
            let hit = asm.label();
            let miss = asm.label();
            for &nr in chunk {
                asm.jump(Cmp::Eq, nr, Target::Label(hit), Target::Next);
            }
            asm.ja(miss);
            asm.mark(hit);
            asm.ret(*ret);
            asm.mark(miss);
        }
    }

    let mut blocks: Vec<(Label, &[&Rule])> = Vec::new();
    for (nr, list) in &conditional {
        let block = asm.label();
        let skip = asm.label();
        asm.jump(Cmp::Eq, *nr, Target::Next, Target::Label(skip));
        asm.ja(block);
        asm.mark(skip);
        blocks.push((block, list));
    }

    // Calls newer than the profile knows get ENOSYS, like runc does, so that e.g. glibc's
    // clone3 or fchmodat2 fall back to the old calls. Only when the default denies: a profile
    // that allows by default already lets them through.
    let denies = !matches!(default, libc::SECCOMP_RET_ALLOW | libc::SECCOMP_RET_LOG);
    if let (true, Some(&max)) = (denies, rules.keys().next_back()) {
        let known = asm.label();
        asm.jump(Cmp::Gt, max, Target::Next, Target::Label(known));
        asm.ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
        asm.mark(known);
    }
    asm.ret(default);

    for (block, list) in blocks {
        asm.mark(block);
        for rule in list {
            let fail = asm.label();
            for cond in &rule.all_of {
                emit_cond(&mut asm, cond, fail);
            }
            asm.ret(rule.ret);
            asm.mark(fail);
        }
        asm.ret(default);
    }
    asm.finish()
}

/// Emits a 64-bit comparison as two 32-bit ones (high word first), falling through when the
/// condition holds and jumping to `fail` otherwise.
fn emit_cond(asm: &mut Asm, cond: &Cond, fail: Label) {
    let lo = DATA_ARGS + 8 * cond.index;
    let hi = lo + 4;
    let split = |v: u64| ((v >> 32) as u32, v as u32);
    let fail = Target::Label(fail);
    let next = Target::Next;
    match cond.op {
        Op::Eq(v) => {
            let (vh, vl) = split(v);
            asm.load(hi);
            asm.jump(Cmp::Eq, vh, next, fail);
            asm.load(lo);
            asm.jump(Cmp::Eq, vl, next, fail);
        }
        Op::Ne(v) => {
            let (vh, vl) = split(v);
            let differs = asm.label();
            asm.load(hi);
            asm.jump(Cmp::Eq, vh, next, Target::Label(differs));
            asm.load(lo);
            asm.jump(Cmp::Eq, vl, fail, next);
            asm.mark(differs);
        }
        Op::MaskedEq { mask, value } => {
            let (mh, ml) = split(mask);
            let (vh, vl) = split(value);
            asm.load(hi);
            asm.and(mh);
            asm.jump(Cmp::Eq, vh, next, fail);
            asm.load(lo);
            asm.and(ml);
            asm.jump(Cmp::Eq, vl, next, fail);
        }
        Op::Gt(v) | Op::Ge(v) => {
            let (vh, vl) = split(v);
            let holds = asm.label();
            asm.load(hi);
            asm.jump(Cmp::Gt, vh, Target::Label(holds), next);
            asm.jump(Cmp::Eq, vh, next, fail);
            asm.load(lo);
            let cmp = if matches!(cond.op, Op::Gt(_)) {
                Cmp::Gt
            } else {
                Cmp::Ge
            };
            asm.jump(cmp, vl, next, fail);
            asm.mark(holds);
        }
        Op::Lt(v) | Op::Le(v) => {
            let (vh, vl) = split(v);
            let holds = asm.label();
            asm.load(hi);
            asm.jump(Cmp::Gt, vh, fail, next);
            asm.jump(Cmp::Eq, vh, next, Target::Label(holds));
            asm.load(lo);
            // lo < vl  <=>  !(lo >= vl);  lo <= vl  <=>  !(lo > vl)
            let cmp = if matches!(cond.op, Op::Lt(_)) {
                Cmp::Ge
            } else {
                Cmp::Gt
            };
            asm.jump(cmp, vl, fail, next);
            asm.mark(holds);
        }
    }
}

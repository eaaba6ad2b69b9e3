//! Unit tests: the generated BPF is run through a small interpreter (`bpf::run`) that follows
//! the kernel's semantics, so rules are checked call by call without installing anything.

use oci_spec::runtime::{
    Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscallBuilder,
};

use super::bpf::run;
use super::*;

const X86_64: u32 = 0xC000_003E;
const I386: u32 = 0x4000_0003;
const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

fn call(p: &Program, nr: i64, args: [u64; 6]) -> u32 {
    run(&p.filter, nr as u32, X86_64, args)
}

#[test]
fn default_profile_allows_ordinary_calls_and_denies_dangerous_ones() {
    let profile = default_profile();
    let unknown = unknown_syscalls(&profile);
    assert!(unknown.is_empty(), "names unknown to x86_64: {unknown:?}");
    let p = compile(&profile).unwrap();
    assert!(p.filter.len() < 1000, "{} instructions", p.filter.len());
    let none = [0; 6];
    for nr in [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_getpid,
        libc::SYS_execve,
        libc::SYS_futex,
        libc::SYS_exit_group,
        libc::SYS_chroot,
    ] {
        assert_eq!(call(&p, nr, none), ALLOW, "syscall {nr}");
    }
    for nr in [
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_bpf,
        libc::SYS_reboot,
        libc::SYS_kexec_load,
        libc::SYS_init_module,
        libc::SYS_swapon,
        libc::SYS_ptrace,
        libc::SYS_userfaultfd,
        libc::SYS_sethostname,
    ] {
        assert_eq!(call(&p, nr, none), EPERM, "syscall {nr}");
    }
    assert_eq!(call(&p, libc::SYS_clone3, none), ENOSYS);
    // clone: plain fork-like flags pass, any namespace flag is refused.
    let sigchld = libc::SIGCHLD as u64;
    assert_eq!(
        call(
            &p,
            libc::SYS_clone,
            [
                sigchld | libc::CLONE_VM as u64 | libc::CLONE_THREAD as u64,
                0,
                0,
                0,
                0,
                0
            ]
        ),
        ALLOW
    );
    for ns in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
    ] {
        assert_eq!(
            call(&p, libc::SYS_clone, [sigchld | ns as u64, 0, 0, 0, 0, 0]),
            EPERM,
            "flag {ns:#x}"
        );
    }
    // personality: only the harmless personas.
    assert_eq!(call(&p, libc::SYS_personality, [8, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        call(&p, libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        call(&p, libc::SYS_personality, [0x0040_0000, 0, 0, 0, 0, 0]),
        EPERM
    );
    // socket: anything but AF_VSOCK.
    assert_eq!(
        call(&p, libc::SYS_socket, [libc::AF_INET as u64, 1, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        call(&p, libc::SYS_socket, [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0]),
        EPERM
    );
    // Other ABIs and calls newer than the profile.
    assert_eq!(
        run(&p.filter, 20, I386, none),
        libc::SECCOMP_RET_KILL_PROCESS
    );
    assert_eq!(call(&p, 0x4000_0000 | libc::SYS_read, none), ENOSYS);
    assert_eq!(call(&p, 1000, none), ENOSYS);
}

#[test]
fn capabilities_unlock_their_calls() {
    let mut caps: oci_spec::runtime::Capabilities = DOCKER_DEFAULT_CAPS.iter().copied().collect();
    caps.insert(Capability::SysAdmin);
    caps.insert(Capability::SysPtrace);
    caps.remove(&Capability::SysChroot);
    let p = compile(&default_profile_for(&caps)).unwrap();
    let none = [0; 6];
    for nr in [
        libc::SYS_mount,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_clone3,
        libc::SYS_ptrace,
    ] {
        assert_eq!(call(&p, nr, none), ALLOW, "syscall {nr}");
    }
    assert_eq!(
        call(
            &p,
            libc::SYS_clone,
            [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]
        ),
        ALLOW
    );
    assert_eq!(call(&p, libc::SYS_chroot, none), EPERM);
    assert_eq!(call(&p, libc::SYS_keyctl, none), EPERM);
}

fn profile(
    default: LinuxSeccompAction,
    syscalls: Vec<oci_spec::runtime::LinuxSyscall>,
) -> LinuxSeccomp {
    LinuxSeccompBuilder::default()
        .default_action(default)
        .syscalls(syscalls)
        .build()
        .unwrap()
}

fn arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
) -> oci_spec::runtime::LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value)
        .value_two(value_two)
        .build()
        .unwrap()
}

fn syscall(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscallBuilder {
    LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(action)
}

#[test]
fn argument_comparisons_are_64_bit() {
    use LinuxSeccompOperator::*;
    let values: [u64; 9] = [
        0,
        1,
        41,
        42,
        43,
        0xffff_ffff,
        1 << 32,
        (1 << 32) + 42,
        u64::MAX,
    ];
    type Reference = fn(u64, u64) -> bool;
    let ops: [(LinuxSeccompOperator, Reference); 6] = [
        (ScmpCmpEq, |a, v| a == v),
        (ScmpCmpNe, |a, v| a != v),
        (ScmpCmpLt, |a, v| a < v),
        (ScmpCmpLe, |a, v| a <= v),
        (ScmpCmpGt, |a, v| a > v),
        (ScmpCmpGe, |a, v| a >= v),
    ];
    for (op, reference) in ops {
        for &v in &values {
            let p = compile(&profile(
                LinuxSeccompAction::ScmpActErrno,
                vec![syscall(&["getpid"], LinuxSeccompAction::ScmpActAllow)
                    .args(vec![arg(2, op, v, 0)])
                    .build()
                    .unwrap()],
            ))
            .unwrap();
            for &a in &values {
                let expected = if reference(a, v) { ALLOW } else { EPERM };
                assert_eq!(
                    call(&p, libc::SYS_getpid, [0, 0, a, 0, 0, 0]),
                    expected,
                    "{op:?} arg {a:#x} value {v:#x}"
                );
            }
        }
    }
    // MASKED_EQ: value is the mask, valueTwo the expected bits, over all 64 bits.
    let mask = 0xff00_0000_0000_00f0;
    let p = compile(&profile(
        LinuxSeccompAction::ScmpActAllow,
        vec![syscall(&["getpid"], LinuxSeccompAction::ScmpActErrno)
            .errno_ret(5u32)
            .args(vec![arg(0, ScmpCmpMaskedEq, mask, 0x1200_0000_0000_0030)])
            .build()
            .unwrap()],
    ))
    .unwrap();
    let eio = libc::SECCOMP_RET_ERRNO | 5;
    assert_eq!(
        call(&p, libc::SYS_getpid, [0x1234_5678_9abc_de3f, 0, 0, 0, 0, 0]),
        eio
    );
    assert_eq!(
        call(&p, libc::SYS_getpid, [0x1334_5678_9abc_de3f, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        call(&p, libc::SYS_getpid, [0x1234_5678_9abc_de4f, 0, 0, 0, 0, 0]),
        ALLOW
    );
}

#[test]
fn rules_combine_like_runc() {
    use LinuxSeccompOperator::*;
    // Distinct arguments: all must hold. Same argument twice: either may hold.
    let rules = profile(
        LinuxSeccompAction::ScmpActErrno,
        vec![
            syscall(&["kill"], LinuxSeccompAction::ScmpActAllow)
                .args(vec![arg(0, ScmpCmpEq, 1, 0), arg(1, ScmpCmpEq, 9, 0)])
                .build()
                .unwrap(),
            syscall(&["tkill"], LinuxSeccompAction::ScmpActAllow)
                .args(vec![arg(0, ScmpCmpEq, 1, 0), arg(0, ScmpCmpEq, 2, 0)])
                .build()
                .unwrap(),
            // First matching rule wins; the unconditional one catches the rest.
            syscall(&["getppid"], LinuxSeccompAction::ScmpActErrno)
                .errno_ret(7u32)
                .args(vec![arg(0, ScmpCmpEq, 3, 0)])
                .build()
                .unwrap(),
            syscall(&["getppid"], LinuxSeccompAction::ScmpActAllow)
                .build()
                .unwrap(),
            syscall(
                &["no_such_syscall", "gettid"],
                LinuxSeccompAction::ScmpActLog,
            )
            .build()
            .unwrap(),
        ],
    );
    let p = compile(&rules).unwrap();
    assert_eq!(call(&p, libc::SYS_kill, [1, 9, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&p, libc::SYS_kill, [1, 15, 0, 0, 0, 0]), EPERM);
    assert_eq!(call(&p, libc::SYS_tkill, [1, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&p, libc::SYS_tkill, [2, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&p, libc::SYS_tkill, [3, 0, 0, 0, 0, 0]), EPERM);
    assert_eq!(
        call(&p, libc::SYS_getppid, [3, 0, 0, 0, 0, 0]),
        libc::SECCOMP_RET_ERRNO | 7
    );
    assert_eq!(call(&p, libc::SYS_getppid, [4, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&p, libc::SYS_gettid, [0; 6]), libc::SECCOMP_RET_LOG);
    assert_eq!(
        unknown_syscalls(&rules),
        vec!["no_such_syscall".to_string()]
    );
}

fn error_field(p: LinuxSeccomp) -> String {
    match compile(&p) {
        Err(Error::Invalid { field, .. }) => field,
        other => panic!("expected an invalid-field error, got {other:?}"),
    }
}

#[test]
fn compile_errors_name_the_field() {
    use LinuxSeccompAction::*;
    let ok = || syscall(&["read"], ScmpActAllow).build().unwrap();
    let p = profile(
        ScmpActErrno,
        vec![
            ok(),
            ok(),
            ok(),
            syscall(&["mkdir"], ScmpActNotify).build().unwrap(),
        ],
    );
    // No agent to notify.
    assert_eq!(error_field(p), "linux.seccomp.syscalls[3].action");
    let p = profile(
        ScmpActErrno,
        vec![syscall(&["write"], ScmpActAllow)
            .errno_ret(1u32)
            .build()
            .unwrap()],
    );
    assert_eq!(error_field(p), "linux.seccomp.syscalls[0].errnoRet");
    let p = profile(
        ScmpActErrno,
        vec![
            ok(),
            syscall(&["write"], ScmpActAllow)
                .args(vec![arg(6, LinuxSeccompOperator::ScmpCmpEq, 0, 0)])
                .build()
                .unwrap(),
        ],
    );
    assert_eq!(error_field(p), "linux.seccomp.syscalls[1].args[0].index");
    let p = profile(
        ScmpActErrno,
        vec![syscall(&[], ScmpActAllow).build().unwrap()],
    );
    assert_eq!(error_field(p), "linux.seccomp.syscalls[0].names");
    let mut p = profile(ScmpActAllow, vec![]);
    p.set_default_errno_ret(Some(1));
    assert_eq!(error_field(p), "linux.seccomp.defaultErrnoRet");
    let mut p = profile(
        ScmpActAllow,
        vec![syscall(&["mkdir"], ScmpActNotify).build().unwrap()],
    );
    p.set_listener_path(Some("".into()));
    assert_eq!(error_field(p.clone()), "linux.seccomp.syscalls[0].action");
    p.set_listener_path(Some("/run/agent.sock".into()));
    assert!(compile(&p).unwrap().notifies());
    let mut p = profile(
        ScmpActAllow,
        vec![syscall(&["mkdir", "write"], ScmpActNotify).build().unwrap()],
    );
    p.set_listener_path(Some("/run/agent.sock".into()));
    assert_eq!(error_field(p), "linux.seccomp.syscalls[0].names");
    let mut p = profile(ScmpActNotify, vec![]);
    p.set_listener_path(Some("/run/agent.sock".into()));
    assert_eq!(error_field(p), "linux.seccomp.defaultAction");
    // A listener path without SCMP_ACT_NOTIFY rules is no error: there is nothing to hand over.
    let mut p = profile(ScmpActErrno, vec![ok()]);
    p.set_listener_path(Some("/run/agent.sock".into()));
    assert!(!compile(&p).unwrap().notifies());
}

#[test]
fn check_json_names_unknown_enum_values() {
    let json = serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["open"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["close"], "action": "SCMP_ACT_LOG"}
        ]
    });
    check_json(&json).unwrap();
    let mut bad = json.clone();
    bad["syscalls"][3]["action"] = "SCMP_ACT_FOO".into();
    let err = check_json(&bad).unwrap_err().to_string();
    assert!(
        err.starts_with("linux.seccomp.syscalls[3].action: "),
        "{err}"
    );
    let mut bad = json.clone();
    bad["syscalls"][1]["args"][0]["op"] = "SCMP_CMP_SIMILAR".into();
    let err = check_json(&bad).unwrap_err().to_string();
    assert!(
        err.starts_with("linux.seccomp.syscalls[1].args[0].op: "),
        "{err}"
    );
    let mut bad = json;
    bad["defaultAction"] = "DENY".into();
    assert!(check_json(&bad)
        .unwrap_err()
        .to_string()
        .starts_with("linux.seccomp.defaultAction: "));
}

//! The exec trampoline: a tiny static program, held in a sealed memfd, through which an init
//! that did *not* re-exec the runtime binary (`exe::Protection::InProcess`) execs the user's
//! program.
//!
//! Why it exists (CVE-2019-5736): at the moment of the final execve, `/proc/self/exe` is
//! whatever the init is running. If the container's program is a script starting with
//! `#!/proc/self/exe` (or is `/proc/self/exe` itself), the kernel runs *that* file as the
//! container's process, and from then on any process in the container can open it through
//! `/proc/<pid>/exe` and, once it has exited, write to it. An init forked from the CLI runs the
//! host's `nanokube` binary, so it must not be the one that execs: it execs this trampoline
//! from a sealed memfd first, and the trampoline execs the program. Re-running the trampoline
//! is harmless; writing to it fails (F_SEAL_WRITE).
//!
//! The program is 68 bytes of x86-64 code and a message, built here into a 237-byte ELF file:
//!
//! ```text
//! argv[0] = the program's path, argv[1..] = its argv; envp = its environment
//! if argc < 2: write(2, "nanokube: ..."); exit_group(127)   (a `#!/proc/self/exe` loop ends here)
//! execve(argv[0], &argv[1], envp)
//! write(2, "nanokube: ..."); exit_group(127)                 (only when execve failed)
//! ```
//!
//! Other architectures have no trampoline (`IMAGE` is `None`) and keep the re-exec'd init.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// Errors making the trampoline's memfd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// memfd_create, write or sealing failed.
    #[error("exec trampoline: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the image is loaded (a fixed, non-PIE address well above mmap_min_addr).
#[cfg(target_arch = "x86_64")]
const BASE: u64 = 0x40_0000;
#[cfg(target_arch = "x86_64")]
const ELF_HEADER: usize = 64;
#[cfg(target_arch = "x86_64")]
const PROGRAM_HEADER: usize = 56;
#[cfg(target_arch = "x86_64")]
const CODE_AT: usize = ELF_HEADER + PROGRAM_HEADER;
#[cfg(target_arch = "x86_64")]
const MESSAGE: &[u8] = b"nanokube: cannot execute the container's program\n";

/// The machine code. It finds its message rip-relative (the displacement is patched in once
/// the code's length is known), so only the entry point depends on `BASE`.
#[cfg(target_arch = "x86_64")]
fn code() -> Vec<u8> {
    let mut c: Vec<u8> = Vec::new();
    // mov rax, [rsp]            ; argc
    c.extend([0x48, 0x8b, 0x04, 0x24]);
    // cmp rax, 2
    c.extend([0x48, 0x83, 0xf8, 0x02]);
    // jb fail                    ; patched below
    c.extend([0x72, 0x00]);
    let jb_at = c.len() - 1;
    // mov rdi, [rsp+8]           ; argv[0]: the path
    c.extend([0x48, 0x8b, 0x7c, 0x24, 0x08]);
    // lea rsi, [rsp+16]          ; &argv[1]: the program's argv
    c.extend([0x48, 0x8d, 0x74, 0x24, 0x10]);
    // lea rdx, [rsp+rax*8+16]    ; envp, just past argv's NULL
    c.extend([0x48, 0x8d, 0x54, 0xc4, 0x10]);
    // mov eax, 59 (execve); syscall
    c.extend([0xb8, 59, 0, 0, 0, 0x0f, 0x05]);
    // fail:
    let fail = c.len();
    c[jb_at] = (fail - (jb_at + 1)) as u8;
    // mov edi, 2
    c.extend([0xbf, 2, 0, 0, 0]);
    // lea rsi, [rip+MSG]         ; patched below
    c.extend([0x48, 0x8d, 0x35, 0, 0, 0, 0]);
    let lea_end = c.len();
    // mov edx, len(MESSAGE)
    c.extend([0xba, MESSAGE.len() as u8, 0, 0, 0]);
    // mov eax, 1 (write); syscall
    c.extend([0xb8, 1, 0, 0, 0, 0x0f, 0x05]);
    // mov edi, 127; mov eax, 231 (exit_group); syscall
    c.extend([0xbf, 127, 0, 0, 0, 0xb8, 231, 0, 0, 0, 0x0f, 0x05]);
    let msg_at = c.len();
    c[lea_end - 4..lea_end].copy_from_slice(&((msg_at - lea_end) as i32).to_le_bytes());
    c.extend_from_slice(MESSAGE);
    c
}

/// The whole ELF file: header, one PT_LOAD segment mapping the file read+execute at `BASE`,
/// then the code.
#[cfg(target_arch = "x86_64")]
pub fn image() -> Option<Vec<u8>> {
    let code = code();
    let size = (CODE_AT + code.len()) as u64;
    let mut f = Vec::with_capacity(size as usize);
    // e_ident: magic, 64-bit, little-endian, version 1, System V ABI, padding.
    f.extend([0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    f.extend([0u8; 8]);
    f.extend(2u16.to_le_bytes()); // e_type: ET_EXEC
    f.extend(62u16.to_le_bytes()); // e_machine: EM_X86_64
    f.extend(1u32.to_le_bytes()); // e_version
    f.extend((BASE + CODE_AT as u64).to_le_bytes()); // e_entry
    f.extend((ELF_HEADER as u64).to_le_bytes()); // e_phoff
    f.extend(0u64.to_le_bytes()); // e_shoff: no sections
    f.extend(0u32.to_le_bytes()); // e_flags
    f.extend((ELF_HEADER as u16).to_le_bytes()); // e_ehsize
    f.extend((PROGRAM_HEADER as u16).to_le_bytes()); // e_phentsize
    f.extend(1u16.to_le_bytes()); // e_phnum
    f.extend([0u8; 6]); // e_shentsize, e_shnum, e_shstrndx
    f.extend(1u32.to_le_bytes()); // p_type: PT_LOAD
    f.extend(5u32.to_le_bytes()); // p_flags: R + X
    f.extend(0u64.to_le_bytes()); // p_offset
    f.extend(BASE.to_le_bytes()); // p_vaddr
    f.extend(BASE.to_le_bytes()); // p_paddr
    f.extend(size.to_le_bytes()); // p_filesz
    f.extend(size.to_le_bytes()); // p_memsz
    f.extend(0x1000u64.to_le_bytes()); // p_align
    f.extend(code);
    Some(f)
}

#[cfg(not(target_arch = "x86_64"))]
pub fn image() -> Option<Vec<u8>> {
    None
}

/// Whether this architecture has a trampoline.
pub fn supported() -> bool {
    cfg!(target_arch = "x86_64")
}

/// The sealed memfd holding the trampoline (close-on-exec; run it with
/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`), made once per process.
pub fn sealed() -> Result<RawFd, Error> {
    static FD: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = FD.get() {
        return Ok(fd.as_raw_fd());
    }
    let image = image().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::Unsupported, "not built for this arch")
    })?;
    let fd = super::exe::sealed_memfd(c"nanokube-exec", |fd| {
        std::io::Write::write_all(&mut std::fs::File::from(fd.try_clone()?), &image)
    })?;
    Ok(FD.get_or_init(|| fd).as_raw_fd())
}

/// execveat(2) of the trampoline, which execs `program` with `args` and `env`. Returns only
/// on failure (of the trampoline's own exec).
pub fn exec(
    trampoline: RawFd,
    program: &std::ffi::CStr,
    args: &[std::ffi::CString],
    env: &[std::ffi::CString],
) -> std::io::Error {
    let mut argv: Vec<*const libc::c_char> = Vec::with_capacity(args.len() + 2);
    argv.push(program.as_ptr());
    argv.extend(args.iter().map(|a| a.as_ptr()));
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: a valid fd, an empty path with AT_EMPTY_PATH, and null-terminated arrays of C
    // strings that outlive the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            trampoline,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    std::io::Error::last_os_error()
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// Runs the trampoline with argv `argv` (argv[0] = the program to exec).
    fn run(argv: &[&str]) -> std::process::Output {
        use std::os::unix::process::CommandExt;
        let fd = sealed().unwrap();
        let mut cmd = std::process::Command::new(format!("/proc/self/fd/{fd}"));
        if let Some((first, rest)) = argv.split_first() {
            cmd.arg0(first).args(rest);
        }
        cmd.env_clear()
            .env("TRAMPOLINE_TEST", "passed through")
            .output()
            .unwrap()
    }

    #[test]
    fn execs_its_first_argument_with_the_rest_as_argv_and_the_same_env() {
        // argv[0] seen by the program is the second argument, as execve(2) passes it.
        let out = run(&[
            "/bin/sh",
            "sh",
            "-c",
            "echo \"$0 $1 $TRAMPOLINE_TEST\"",
            "one",
        ]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "one  passed through\n"
        );
        let out = run(&["/bin/sh", "custom-argv0", "-c", "echo $0"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "custom-argv0\n");
    }

    #[test]
    fn a_failed_exec_or_missing_program_exits_127_with_a_message() {
        for args in [&["/nonexistent/program", "x"][..], &["/bin/sh"][..]] {
            let out = run(args);
            assert_eq!(out.status.code(), Some(127), "{args:?}: {out:?}");
            assert_eq!(out.status.signal(), None);
            assert_eq!(out.stderr, MESSAGE, "{args:?}");
        }
    }

    #[test]
    fn the_image_is_one_small_static_segment() {
        let image = image().unwrap();
        assert_eq!(image.len(), 237);
        assert_eq!(&image[..4], b"\x7fELF");
        // e_phnum 1, no interpreter: the kernel maps it and jumps to the entry, nothing else.
        assert_eq!(u16::from_le_bytes([image[56], image[57]]), 1);
        assert_eq!(
            u32::from_le_bytes(image[64..68].try_into().unwrap()),
            1,
            "PT_LOAD"
        );
    }

    #[test]
    fn the_memfd_is_sealed_against_writes() {
        use std::io::Write;
        let fd = sealed().unwrap();
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{fd}"))
            .and_then(|mut f| f.write_all(b"\x7fELF"));
        assert_eq!(w.unwrap_err().raw_os_error(), Some(libc::EPERM));
    }
}

//! A tiny assembler for classic BPF as seccomp uses it: instructions are appended in order,
//! jump targets are symbolic labels, and `finish` turns them into the relative offsets the
//! kernel wants (8-bit for conditional jumps, 32-bit for `ja`).

use super::Error;

// Instruction classes and fields (linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_AND: u16 = 0x50;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_JGE: u16 = 0x30;
const BPF_K: u16 = 0x00;

/// The kernel's limit on the length of one filter (BPF_MAXINSNS).
pub(super) const MAX_INSNS: usize = 4096;

/// Offsets into `struct seccomp_data` (linux/seccomp.h).
pub(super) const DATA_NR: u32 = 0;
pub(super) const DATA_ARCH: u32 = 4;
pub(super) const DATA_ARGS: u32 = 16;

/// Comparisons of the accumulator with a constant (all unsigned 32-bit in classic BPF).
#[derive(Debug, Clone, Copy)]
pub(super) enum Cmp {
    Eq,
    Gt,
    Ge,
}

/// Where a conditional jump goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// The instruction right after the jump.
    Next,
    Label(Label),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Label(usize);

#[derive(Debug)]
enum Insn {
    Plain {
        code: u16,
        k: u32,
    },
    Jump {
        cmp: Cmp,
        k: u32,
        jt: Target,
        jf: Target,
    },
    Ja(Label),
}

#[derive(Debug, Default)]
pub(super) struct Asm {
    insns: Vec<Insn>,
    /// Label -> index of the instruction it marks (None until marked).
    labels: Vec<Option<usize>>,
}

impl Asm {
    pub(super) fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `label` at the next instruction to be emitted.
    pub(super) fn mark(&mut self, label: Label) {
        self.labels[label.0] = Some(self.insns.len());
    }

    /// A = 32-bit word of seccomp_data at `offset`.
    pub(super) fn load(&mut self, offset: u32) {
        self.insns.push(Insn::Plain {
            code: BPF_LD | BPF_W | BPF_ABS,
            k: offset,
        });
    }

    /// A &= k.
    pub(super) fn and(&mut self, k: u32) {
        self.insns.push(Insn::Plain {
            code: BPF_ALU | BPF_AND | BPF_K,
            k,
        });
    }

    /// if (A cmp k) goto jt else goto jf.
    pub(super) fn jump(&mut self, cmp: Cmp, k: u32, jt: Target, jf: Target) {
        self.insns.push(Insn::Jump { cmp, k, jt, jf });
    }

    /// goto label (any distance).
    pub(super) fn ja(&mut self, label: Label) {
        self.insns.push(Insn::Ja(label));
    }

    /// return k (a SECCOMP_RET_* value).
    pub(super) fn ret(&mut self, k: u32) {
        self.insns.push(Insn::Plain {
            code: BPF_RET | BPF_K,
            k,
        });
    }

    /// Resolves labels into offsets. Conditional jumps only reach 255 instructions ahead; the
    /// code generator keeps them short (far targets go through `ja`), so a longer one is a bug
    /// in the generator or an absurdly long rule, reported rather than truncated.
    pub(super) fn finish(self) -> Result<Vec<libc::sock_filter>, Error> {
        if self.insns.len() > MAX_INSNS {
            return Err(Error::TooLarge(self.insns.len()));
        }
        let resolve = |pc: usize, label: Label| -> Result<u32, Error> {
            let at = self.labels[label.0].expect("every label is marked before finish");
            assert!(at > pc, "BPF jumps only go forward");
            Ok((at - pc - 1) as u32)
        };
        let short = |pc: usize, target: Target| -> Result<u8, Error> {
            match target {
                Target::Next => Ok(0),
                Target::Label(l) => {
                    let off = resolve(pc, l)?;
                    u8::try_from(off).map_err(|_| Error::JumpTooFar(off as usize))
                }
            }
        };
        let mut out = Vec::with_capacity(self.insns.len());
        for (pc, insn) in self.insns.iter().enumerate() {
            let filter = match *insn {
                Insn::Plain { code, k } => libc::sock_filter {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                },
                Insn::Jump { cmp, k, jt, jf } => libc::sock_filter {
                    code: BPF_JMP
                        | BPF_K
                        | match cmp {
                            Cmp::Eq => BPF_JEQ,
                            Cmp::Gt => BPF_JGT,
                            Cmp::Ge => BPF_JGE,
                        },
                    jt: short(pc, jt)?,
                    jf: short(pc, jf)?,
                    k,
                },
                Insn::Ja(label) => libc::sock_filter {
                    code: BPF_JMP | BPF_JA,
                    jt: 0,
                    jf: 0,
                    k: resolve(pc, label)?,
                },
            };
            out.push(filter);
        }
        Ok(out)
    }
}

/// Runs a program on one seccomp_data the way the kernel would, for unit tests: returns the
/// SECCOMP_RET_* value.
#[cfg(test)]
pub(super) fn run(filter: &[libc::sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u32; 16];
    data[0] = nr;
    data[1] = arch;
    for (i, a) in args.iter().enumerate() {
        data[4 + 2 * i] = *a as u32;
        data[5 + 2 * i] = (*a >> 32) as u32;
    }
    let mut acc = 0u32;
    let mut pc = 0usize;
    loop {
        let f = filter[pc];
        let class = f.code & 0x07;
        pc += 1;
        match class {
            c if c == BPF_LD => acc = data[(f.k / 4) as usize],
            c if c == BPF_ALU => acc &= f.k,
            c if c == BPF_RET => return f.k,
            c if c == BPF_JMP => {
                let op = f.code & 0xf0;
                if op == BPF_JA {
                    pc += f.k as usize;
                    continue;
                }
                let taken = match op {
                    o if o == BPF_JEQ => acc == f.k,
                    o if o == BPF_JGT => acc > f.k,
                    o if o == BPF_JGE => acc >= f.k,
                    _ => panic!("unknown jump {op:#x}"),
                };
                pc += if taken { f.jt } else { f.jf } as usize;
            }
            _ => panic!("unknown class {class:#x}"),
        }
    }
}

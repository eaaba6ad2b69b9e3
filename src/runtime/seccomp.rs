//! seccomp: compile linux.seccomp from the spec (or the default profile) into a BPF program.

//! Link settings for the `nanokube` binary.
//!
//! Packed relative relocations (DT_RELR, glibc >= 2.36, binutils >= 2.38): the binary is
//! position-independent, and its ~35,000 relative relocations otherwise take an 850 KB table
//! that the dynamic loader reads on every start. Packed, the table is a few KB. The runtime
//! CLI starts once per container operation, so its start-up is on every container's path
//! (docs/runtime.md, "Speed").
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

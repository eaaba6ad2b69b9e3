//! The layering rules of docs/README.md, checked on the source text: `unsafe` is allowed only in
//! the modules that meet the kernel directly, and the synchronous layers (runtime, network, shim)
//! know nothing of tokio or the API side (so they run in a shim, an init or a test without a
//! cluster).

use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The files that may say `allow(unsafe_code)` (lib.rs denies it everywhere else).
const UNSAFE_ALLOWED: &[&str] = &["runtime/mod.rs", "image/unpack.rs", "network/mod.rs"];

/// What the runtime must not name: async, API types, API-side modules.
const RUNTIME_FORBIDDEN: &[&str] = &[
    "tokio",
    "k8s_openapi",
    "kube::",
    "crate::apiserver",
    "crate::store",
    "crate::agent",
    "crate::server",
    "crate::image",
    "hyper",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(SRC).unwrap().display().to_string()
}

/// Code lines only: comments may talk about tokio or unsafe freely.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_start()))
        .filter(|(_, l)| !l.starts_with("//"))
}

#[test]
fn unsafe_code_is_allowed_only_where_the_kernel_is_met() {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).unwrap();
    assert!(
        code_lines(&lib).any(|(_, l)| l == "#![deny(unsafe_code)]"),
        "src/lib.rs must deny unsafe_code for the crate"
    );
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    assert!(
        files.len() > 50,
        "found only {} files under {SRC}",
        files.len()
    );
    let mut offenders = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in code_lines(&text) {
            let allows =
                line.contains("allow(unsafe_code)") || line.contains("expect(unsafe_code)");
            if allows && !UNSAFE_ALLOWED.contains(&relative(f).as_str()) {
                offenders.push(format!("src/{}:{n}: {line}", relative(f)));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unsafe_code allowed outside {UNSAFE_ALLOWED:?}:\n{}",
        offenders.join("\n")
    );
}

/// The synchronous layers: the runtime, pod networking and the per-pod shim.
const SYNC_LAYERS: &[&str] = &["runtime", "network", "shim"];

#[test]
fn the_sync_layers_know_nothing_of_tokio_or_the_api() {
    let mut files = Vec::new();
    for layer in SYNC_LAYERS {
        let before = files.len();
        rust_files(&Path::new(SRC).join(layer), &mut files);
        assert!(
            files.len() > before + 2,
            "found only {} files in src/{layer}",
            files.len() - before
        );
    }
    let mut offenders = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in code_lines(&text) {
            for word in RUNTIME_FORBIDDEN {
                if line.contains(word) {
                    offenders.push(format!("src/{}:{n}: {line}", relative(f)));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "a synchronous layer ({SYNC_LAYERS:?}) names {RUNTIME_FORBIDDEN:?}:\n{}",
        offenders.join("\n")
    );
}

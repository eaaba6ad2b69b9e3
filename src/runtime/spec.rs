//! Reading and checking an OCI bundle: config.json parsed into `oci_spec` types, then the
//! semantic checks that the types cannot express. Every error names the JSON field path, so a
//! user can find the line to fix without reading our code.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Errors found in a bundle before anything is created.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle directory or its config.json could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// config.json is not valid JSON or a field has the wrong type; `field` is its path.
    #[error("config.json: {field}: {message}")]
    Parse { field: String, message: String },
    /// A field parsed but its value cannot be used.
    #[error("config.json: {field}: {message}")]
    Invalid { field: String, message: String },
    /// root.path does not name a directory.
    #[error("rootfs {0} does not exist or is not a directory")]
    MissingRootfs(PathBuf),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Parses `bundle/config.json`.
pub fn load(bundle: &Path) -> Result<Spec, Error> {
    parse(&read(bundle)?)
}

/// The bundle's config.json text.
pub fn read(bundle: &Path) -> Result<Vec<u8>, Error> {
    let path = bundle.join("config.json");
    std::fs::read(&path).map_err(|source| Error::Read { path, source })
}

/// Parses config.json text, reporting the path of the field that failed. Capability names
/// this runtime does not know are dropped with a warning on stderr, as runc does (a spec
/// written for a newer kernel still runs).
pub fn parse(text: &[u8]) -> Result<Spec, Error> {
    let (spec, unknown) = parse_lenient(text)?;
    if !unknown.is_empty() {
        super::warn(&unknown_caps_warning(&unknown));
    }
    Ok(spec)
}

/// runc's words for dropped capability names.
pub fn unknown_caps_warning(names: &[String]) -> String {
    format!(
        "ignoring unknown or unavailable capabilities: [{}]",
        names.join(" ")
    )
}

/// `parse` without the warning: the spec and the unknown capability names it dropped
/// (sorted, each once).
pub fn parse_lenient(text: &[u8]) -> Result<(Spec, Vec<String>), Error> {
    // The path-tracking decoder runs only to explain an error: it roughly doubles the code a
    // good document has to go through, which shows in a container's start time.
    if let Ok(spec) = serde_json::from_slice(text) {
        return Ok((spec, Vec::new()));
    }
    if let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(text) {
        let unknown = drop_unknown_caps(&mut doc);
        if !unknown.is_empty() {
            return match serde_path_to_error::deserialize::<_, Spec>(doc) {
                Ok(spec) => Ok((spec, unknown)),
                Err(e) => Err(parse_error(e)),
            };
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize::<_, Spec>(de)
        .map(|spec| (spec, Vec::new()))
        .map_err(parse_error)
}

fn parse_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> Error {
    let field = e.path().to_string();
    let inner = e.into_inner();
    // serde_json appends " at line L column C"; keep it, it helps find the spot.
    Error::Parse {
        field: if field == "." {
            "(document)".into()
        } else {
            field
        },
        message: inner.to_string(),
    }
}

/// Removes from process.capabilities.* the names that are not a capability this runtime
/// knows, spelled as runc spells them ("CAP_" and upper case); returns them sorted, once each.
/// Other mistakes (a number instead of a name) stay for the typed decoder to report.
fn drop_unknown_caps(doc: &mut serde_json::Value) -> Vec<String> {
    let mut unknown = std::collections::BTreeSet::new();
    let Some(sets) = doc
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    else {
        return Vec::new();
    };
    for set in [
        "bounding",
        "effective",
        "inheritable",
        "permitted",
        "ambient",
    ] {
        let Some(list) = sets.get_mut(set).and_then(|l| l.as_array_mut()) else {
            continue;
        };
        list.retain(|v| {
            let Some(name) = v.as_str() else { return true };
            let known = name.starts_with("CAP_")
                && name == name.to_ascii_uppercase()
                && serde_json::from_value::<oci_spec::runtime::Capability>(v.clone()).is_ok();
            if !known {
                unknown.insert(name.to_string());
            }
            known
        });
    }
    unknown.into_iter().collect()
}

/// A new user namespace needs both id maps and a mount namespace (the init enters it after
/// pivot_root, see init.rs); joining one by path is not supported.
fn validate_user_namespace(
    spec: &Spec,
    i: usize,
    ns: &oci_spec::runtime::LinuxNamespace,
) -> Result<(), Error> {
    if ns.path().is_some() {
        return Err(invalid(
            format!("linux.namespaces[{i}].path"),
            "joining a user namespace by path is not supported",
        ));
    }
    let linux = spec.linux().as_ref().expect("has namespaces");
    let has_mount = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Mount && n.path().is_none());
    if !has_mount {
        return Err(invalid(
            format!("linux.namespaces[{i}]"),
            "a user namespace needs a new mount namespace",
        ));
    }
    for (field, maps) in [
        ("linux.uidMappings", linux.uid_mappings()),
        ("linux.gidMappings", linux.gid_mappings()),
    ] {
        let maps = maps.as_deref().unwrap_or_default();
        if maps.is_empty() {
            return Err(invalid(
                field,
                "a new user namespace needs at least one mapping",
            ));
        }
        if let Some(j) = maps.iter().position(|m| m.size() == 0) {
            return Err(invalid(
                format!("{field}[{j}].size"),
                "must be greater than zero",
            ));
        }
    }
    Ok(())
}

/// Hook paths must be absolute (they are not looked up on a PATH) and timeouts positive.
fn validate_hooks(spec: &Spec) -> Result<(), Error> {
    let Some(h) = spec.hooks() else {
        return Ok(());
    };
    let stages = [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
        ("poststart", h.poststart()),
        ("poststop", h.poststop()),
    ];
    for (stage, hooks) in stages {
        for (i, hook) in hooks.iter().flatten().enumerate() {
            if !hook.path().is_absolute() {
                return Err(invalid(
                    format!("hooks.{stage}[{i}].path"),
                    "must be an absolute path",
                ));
            }
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(invalid(
                    format!("hooks.{stage}[{i}].timeout"),
                    "must be greater than zero",
                ));
            }
        }
    }
    Ok(())
}

/// The rootfs directory of a spec, made absolute against the bundle.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> PathBuf {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    }
}

/// Semantic checks the runtime relies on later (after clone(2) there is no good way to report).
pub fn validate(spec: &Spec, bundle: &Path) -> Result<(), Error> {
    if spec.root().is_none() {
        return Err(invalid("root", "must be set"));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "must be set"))?;
    match process.args() {
        Some(args) if !args.is_empty() => {
            if args[0].is_empty() {
                return Err(invalid("process.args[0]", "must not be empty"));
            }
        }
        _ => return Err(invalid("process.args", "must not be empty")),
    }
    if !process.cwd().is_absolute() {
        return Err(invalid("process.cwd", "must be an absolute path"));
    }
    if let Some(env) = process.env() {
        for (i, e) in env.iter().enumerate() {
            if !e.contains('=') {
                return Err(invalid(format!("process.env[{i}]"), "must be NAME=VALUE"));
            }
            if e.starts_with('=') {
                return Err(invalid(
                    format!("process.env[{i}]"),
                    "the variable's name must not be empty",
                ));
            }
        }
    }
    if let Some(rlimits) = process.rlimits() {
        for (i, r) in rlimits.iter().enumerate() {
            if r.soft() > r.hard() {
                return Err(invalid(
                    format!("process.rlimits[{i}]"),
                    "soft limit exceeds hard limit",
                ));
            }
        }
    }
    if let Some(mounts) = spec.mounts() {
        for (i, m) in mounts.iter().enumerate() {
            if !m.destination().is_absolute() {
                // runc 1.1 takes it from the root, with this warning.
                super::warn(&format!(
                    "mount destination {} is not absolute. Support for non-absolute mount \
                     destinations will be removed in a future release.",
                    m.destination().display()
                ));
            }
            // Checked as it will be mounted: ".." taken, clamped at the root.
            let dest = &crate::runtime::mounts::clean_dest(m.destination());
            let under_proc = dest.starts_with("/proc");
            let is_proc = m.typ().as_deref() == Some("proc") && dest == Path::new("/proc");
            // CVE-2019-16884: a volume over /proc could fake /proc/self/attr and similar files.
            if under_proc && !is_proc {
                return Err(invalid(
                    format!("mounts[{i}].destination"),
                    "mounts over or under /proc are refused",
                ));
            }
            let typ = m.typ().as_deref().unwrap_or("");
            let binding = m
                .options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
            if (typ == "bind" || binding) && m.source().is_none() {
                return Err(invalid(
                    format!("mounts[{i}].source"),
                    "a bind mount needs a source",
                ));
            }
        }
    }
    validate_hooks(spec)?;
    if let Some(linux) = spec.linux() {
        if let Some(namespaces) = linux.namespaces() {
            let mut seen = Vec::new();
            for (i, ns) in namespaces.iter().enumerate() {
                if seen.contains(&ns.typ()) {
                    return Err(invalid(
                        format!("linux.namespaces[{i}].type"),
                        "namespace listed twice",
                    ));
                }
                seen.push(ns.typ());
                if let Some(p) = ns.path() {
                    if !p.is_absolute() {
                        return Err(invalid(
                            format!("linux.namespaces[{i}].path"),
                            "must be an absolute path",
                        ));
                    }
                }
                if ns.typ() == LinuxNamespaceType::Time {
                    return Err(invalid(
                        format!("linux.namespaces[{i}].type"),
                        "time namespaces are not supported",
                    ));
                }
            }
            if let Some(i) = namespaces
                .iter()
                .position(|n| n.typ() == LinuxNamespaceType::User)
            {
                validate_user_namespace(spec, i, &namespaces[i])?;
            }
        }
        if let Some(sysctl) = linux.sysctl() {
            for key in sysctl.keys() {
                if key.is_empty() || key.contains("..") || key.starts_with('/') {
                    return Err(invalid(format!("linux.sysctl.{key}"), "invalid key"));
                }
            }
        }
        for (field, list) in [
            ("linux.maskedPaths", linux.masked_paths()),
            ("linux.readonlyPaths", linux.readonly_paths()),
        ] {
            if let Some(list) = list {
                for (i, p) in list.iter().enumerate() {
                    if !p.starts_with('/') {
                        return Err(invalid(format!("{field}[{i}]"), "must be an absolute path"));
                    }
                }
            }
        }
        if let Some(prop) = linux.rootfs_propagation() {
            if !prop.is_empty() && crate::runtime::mounts::propagation_flag(prop).is_none() {
                return Err(invalid(
                    "linux.rootfsPropagation",
                    format!("unknown propagation {prop:?}"),
                ));
            }
        }
    }
    if let Some(ann) = spec.annotations() {
        if let Some(overlay) = ann.get(crate::runtime::mounts::OVERLAY_ANNOTATION) {
            crate::runtime::mounts::Overlay::parse(overlay).map_err(|m| {
                invalid(
                    format!("annotations.{}", crate::runtime::mounts::OVERLAY_ANNOTATION),
                    m,
                )
            })?;
        }
    }
    let rootfs = rootfs_path(spec, bundle);
    if !rootfs.is_dir() {
        return Err(Error::MissingRootfs(rootfs));
    }
    Ok(())
}

/// The host id that `id` inside a new user namespace stands for, through the spec's
/// uidMappings or gidMappings; None when no range holds it.
pub fn host_id(maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>, id: u32) -> Option<u32> {
    maps.iter()
        .flatten()
        .find(|m| id >= m.container_id() && id - m.container_id() < m.size())
        .map(|m| m.host_id() + (id - m.container_id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_names_the_field() {
        let err = parse(
            br#"{"ociVersion":"1.0.2","process":{"args":"sh","cwd":"/","user":{"uid":0,"gid":0}}}"#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("config.json: process.args:"), "{text}");
    }

    #[test]
    fn empty_args_names_the_field() {
        let spec = parse(br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":[],"cwd":"/","user":{"uid":0,"gid":0}}}"#)
            .unwrap();
        let err = validate(&spec, Path::new("/nonexistent")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.json: process.args: must not be empty"
        );
    }

    #[test]
    fn mount_over_proc_is_refused() {
        let spec = parse(br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
            "mounts":[{"destination":"/proc","type":"bind","source":"/tmp","options":["bind"]}]}"#)
            .unwrap();
        let err = validate(&spec, Path::new("/nonexistent")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("config.json: mounts[0].destination"));
    }

    #[test]
    fn unknown_capabilities_are_dropped_with_runc_s_warning() {
        let text = br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0},
            "capabilities":{"bounding":["CAP_CHOWN","CAP_BOGUS","bogus"],"effective":["CAP_BOGUS","CAP_KILL"]}}}"#;
        let (spec, unknown) = parse_lenient(text).unwrap();
        assert_eq!(unknown, vec!["CAP_BOGUS".to_string(), "bogus".to_string()]);
        assert_eq!(
            unknown_caps_warning(&unknown),
            "ignoring unknown or unavailable capabilities: [CAP_BOGUS bogus]"
        );
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 1);
        assert_eq!(caps.effective().as_ref().unwrap().len(), 1);
        // A real type error still names its field.
        let text = br#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","user":{"uid":"x","gid":0},
            "capabilities":{"bounding":["CAP_BOGUS"]}}}"#;
        let err = parse_lenient(text).unwrap_err().to_string();
        assert!(err.starts_with("config.json: process.user.uid:"), "{err}");
    }

    #[test]
    fn mount_destinations_are_checked_as_cleaned() {
        let spec = parse(br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
            "mounts":[{"destination":"/a/../proc/sys","type":"tmpfs","source":"tmpfs"}]}"#)
            .unwrap();
        let err = validate(&spec, Path::new("/nonexistent")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.json: mounts[0].destination: mounts over or under /proc are refused"
        );
        let spec = parse(br#"{"ociVersion":"1.0.2","root":{"path":"/"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0},"env":["=x"]}}"#)
            .unwrap();
        let err = validate(&spec, Path::new("/")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.json: process.env[0]: the variable's name must not be empty"
        );
    }

    #[test]
    fn missing_rootfs_is_one_line() {
        let spec = parse(br#"{"ociVersion":"1.0.2","root":{"path":"/nonexistent-rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}}"#)
            .unwrap();
        let err = validate(&spec, Path::new("/")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rootfs /nonexistent-rootfs does not exist or is not a directory"
        );
    }
}

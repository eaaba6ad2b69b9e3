//! Test helpers shared by tests/images*.rs: building layers, OCI layouts, OCI and `docker save`
//! archives by hand (independently of the code under test), and running a local registry.
#![allow(dead_code)]

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn nanokube() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nanokube"))
}

/// Runs a command, returning stdout; panics with its stderr if it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail, returning stderr.
pub fn run_err(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        !out.status.success(),
        "{cmd:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// A layer tar under construction.
pub struct LayerBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> Self {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Complete);
        LayerBuilder { b }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    /// Writes a header with its name bytes as given, bypassing the tar crate's path checks, so
    /// tests can build the hostile entries a real attacker would.
    pub fn raw(
        &mut self,
        name: &str,
        mut h: tar::Header,
        link: Option<&str>,
        data: &[u8],
    ) -> &mut Self {
        {
            let old = h.as_old_mut();
            old.name.fill(0);
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                old.linkname.fill(0);
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = Self::header(tar::EntryType::Directory, mode, 0);
        self.raw(name, h, None, &[])
    }

    pub fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        let h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.raw(name, h, None, data)
    }

    pub fn file_owned(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.raw(name, h, None, data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.raw(name, h, Some(target), &[])
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.raw(name, h, Some(target), &[])
    }

    pub fn device(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let mut h = Self::header(kind, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.raw(name, h, None, &[])
    }

    /// A file carrying xattrs in PAX `SCHILY.xattr.` records.
    pub fn file_with_xattrs(
        &mut self,
        name: &str,
        data: &[u8],
        xattrs: &[(&str, &[u8])],
    ) -> &mut Self {
        let exts: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.b
            .append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
        self.file(name, data, 0o644)
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn compress(tar: &[u8], c: Compression) -> (Vec<u8>, &'static str) {
    match c {
        Compression::None => (tar.to_vec(), "application/vnd.oci.image.layer.v1.tar"),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            (
                e.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Compression::Zstd => (
            zstd::encode_all(tar, 3).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    }
}

/// An OCI image layout directory being written.
pub struct Layout {
    pub dir: PathBuf,
    entries: Vec<Value>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        }
    }

    pub fn blob(&self, bytes: &[u8]) -> String {
        let d = sha256(bytes);
        fs::write(self.dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        d
    }

    /// Writes an image's layers, config and manifest; returns the manifest's descriptor.
    pub fn image(&self, layers: &[(Vec<u8>, Compression)], arch: &str, config: Value) -> Value {
        let mut diff_ids = Vec::new();
        let mut descs = Vec::new();
        for (tar, c) in layers {
            diff_ids.push(sha256(tar));
            let (blob, media_type) = compress(tar, *c);
            let digest = self.blob(&blob);
            descs.push(json!({"mediaType": media_type, "digest": digest, "size": blob.len()}));
        }
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let config_digest = self.blob(&config_bytes);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
            "layers": descs,
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let digest = self.blob(&bytes);
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": bytes.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })
    }

    /// Writes an index over the given manifest descriptors; returns its descriptor.
    pub fn index(&self, manifests: Vec<Value>) -> Value {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        let digest = self.blob(&bytes);
        json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": bytes.len()})
    }

    /// Adds a top-level entry to index.json, named as skopeo names them (ref.name = the tag).
    pub fn tag(&mut self, mut desc: Value, ref_name: &str) -> &mut Self {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": ref_name});
        self.entries.push(desc);
        self
    }

    pub fn finish(&self) {
        let index = json!({"schemaVersion": 2, "manifests": self.entries});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

/// Packs a directory into a tar archive (an OCI archive when it holds a layout).
pub fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// Writes a legacy `docker save` archive (manifest.json, <id>.json, <layer-id>/layer.tar) for
/// one image; the second layer is a symlink to the first's tar when `dup_layer`, as Docker writes
/// repeated layers.
pub fn docker_save(
    out: &Path,
    repo_tag: &str,
    layers: &[Vec<u8>],
    config: Value,
    dup_layer: bool,
) -> String {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_id = sha256(&config_bytes)[7..].to_string();
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    fn add(b: &mut tar::Builder<fs::File>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    }
    add(&mut b, &format!("{config_id}.json"), &config_bytes);
    let mut layer_paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let id = format!("{:064x}", i + 1);
        if dup_layer && i > 0 && layers[i] == layers[0] {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(
                &mut h,
                format!("{id}/layer.tar"),
                format!("../{:064x}/layer.tar", 1),
            )
            .unwrap();
        } else {
            add(&mut b, &format!("{id}/layer.tar"), l);
        }
        layer_paths.push(format!("{id}/layer.tar"));
    }
    let manifest = json!([{"Config": format!("{config_id}.json"), "RepoTags": [repo_tag], "Layers": layer_paths}]);
    add(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.finish().unwrap();
    config_id
}

/// A docker-registry process on 127.0.0.1, stopped (and its storage removed) when dropped,
/// including when the test panics.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// How to run a test registry.
#[derive(Default)]
pub struct RegistryOpts {
    /// A bcrypt htpasswd file's content: require basic auth.
    pub htpasswd: Option<String>,
    /// (cert PEM, key PEM): serve HTTPS.
    pub tls: Option<(String, String)>,
    /// Log every request (to count downloads).
    pub access_log: bool,
    /// More top-level YAML (for example a token `auth:` section).
    pub extra_config: Option<String>,
}

impl Registry {
    /// Starts a registry on a free port. The port is free when the kernel hands it out but could
    /// be taken before the registry binds it, so a registry that exits at start is retried on
    /// another port.
    pub fn start(opts: RegistryOpts) -> Registry {
        for _ in 0..5 {
            if let Some(reg) = Registry::try_start(&opts, free_port()) {
                return reg;
            }
        }
        panic!("docker-registry failed to start 5 times");
    }

    fn try_start(opts: &RegistryOpts, port: u16) -> Option<Registry> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: {}\n  accesslog:\n    disabled: {}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            if opts.access_log { "info" } else { "error" },
            !opts.access_log,
            dir.path().join("data").display()
        );
        if let Some((cert, key)) = &opts.tls {
            fs::write(dir.path().join("cert.pem"), cert).unwrap();
            fs::write(dir.path().join("key.pem"), key).unwrap();
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("cert.pem").display(),
                dir.path().join("key.pem").display()
            ));
        }
        if let Some(htpasswd) = &opts.htpasswd {
            fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: nanokube-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        if let Some(extra) = &opts.extra_config {
            config.push_str(extra);
        }
        fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let mut reg = Registry { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if reg.child.try_wait().unwrap().is_some() {
                // Most likely the port was taken meanwhile; the log says.
                eprintln!("docker-registry exited at start: {}", reg.log());
                return None;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                // Someone answers; make sure it is ours and not a neighbour on a reused port.
                std::thread::sleep(Duration::from_millis(100));
                if reg.child.try_wait().unwrap().is_none() {
                    return Some(reg);
                }
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The file the registry stores a blob in (to corrupt it behind its back).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Pushes an OCI layout's tag (or all platforms of an index with `all`) with skopeo.
    pub fn push(&self, layout: &Path, tag: &str, dest: &str, creds: Option<&str>, all: bool) {
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if all {
            cmd.arg("--all");
        }
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()));
        cmd.arg(format!("docker://{}/{dest}", self.host()));
        run_ok(&mut cmd);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port the kernel just handed out on 127.0.0.1, released for the registry to take.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An overlay mount of the given lower dirs, unmounted when dropped.
pub struct Overlay {
    pub target: PathBuf,
}

impl Overlay {
    pub fn mount(lower_dirs: &[PathBuf], target: &Path) -> Overlay {
        fs::create_dir_all(target).unwrap();
        let lower = lower_dirs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        // A single lower dir is not a valid read-only overlay; two are needed at least, so a
        // one-layer image gets an empty dir below it.
        let lower = if lower_dirs.len() == 1 {
            let empty = target.with_extension("empty");
            fs::create_dir_all(&empty).unwrap();
            format!("{lower}:{}", empty.display())
        } else {
            lower
        };
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(format!("lowerdir={lower}").as_str()),
        )
        .expect("mount overlay");
        Overlay {
            target: target.to_path_buf(),
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
    }
}

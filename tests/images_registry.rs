//! Pulls from a real registry (Debian's docker-registry) on 127.0.0.1, fed by skopeo: by tag and
//! digest, basic auth required/missing/wrong, a multi-arch index, a corrupt blob, TLS with a
//! custom CA, a mirror from registries.yaml (with rewrites), concurrent pulls sharing one
//! download, and a download resumed with a Range request after its connection broke.
//! Run as root: `cargo test --test images_registry`.

mod images_util;

use images_util::*;
use nanokube::image;
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};

const HTPASSWD: &str = "nanokube:$2y$05$66S09WZGY5yEPZQKcUAkFOZBgrJcXwDFVod3HJVnzAJ5uCqpslgWe\n";
const USER: &str = "nanokube";
const PASSWORD: &str = "s3cret-pass";

/// A data dir and a registries.yaml path (absent unless written) for one test.
struct Node {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    registries: PathBuf,
}

impl Node {
    fn new() -> Node {
        let tmp = tempfile::tempdir().unwrap();
        Node {
            data: tmp.path().join("data"),
            registries: tmp.path().join("registries.yaml"),
            _tmp: tmp,
        }
    }

    fn image(&self, args: &[&str]) -> std::process::Command {
        let mut c = nanokube();
        c.arg("image")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--registries-config")
            .arg(&self.registries)
            .args(args);
        c
    }

    fn pull(&self, reference: &str) -> String {
        run_ok(&mut self.image(&["pull", reference]))
    }

    fn pull_err(&self, reference: &str) -> String {
        run_err(&mut self.image(&["pull", reference]))
    }

    fn store(&self) -> image::Store {
        image::Store::open(&self.data).unwrap()
    }

    fn assert_nothing_stored(&self) {
        let store = self.store();
        assert!(store.images().unwrap().is_empty(), "no image may be named");
        assert_eq!(
            fs::read_dir(store.root().join("snapshots"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    }
}

/// A three-layer image (gzip, zstd, plain) in an OCI layout, tagged `tag`; returns the layout
/// dir and the manifest descriptor.
fn three_layer_layout(dir: &Path, tag: &str) -> (PathBuf, serde_json::Value) {
    let mut layout = Layout::new(dir);
    let mut a = LayerBuilder::new();
    a.dir("etc/", 0o755)
        .file("etc/base", b"base\n", 0o644)
        .file("etc/gone", b"x", 0o644);
    let mut b = LayerBuilder::new();
    b.file("etc/.wh.gone", b"", 0o644)
        .file("usr/share/b", &[7u8; 100_000], 0o644);
    let mut c = LayerBuilder::new();
    c.file("top", b"top\n", 0o755);
    let desc = layout.image(
        &[
            (a.finish(), Compression::Gzip),
            (b.finish(), Compression::Zstd),
            (c.finish(), Compression::None),
        ],
        "amd64",
        json!({"Cmd": ["/top"], "Env": ["X=1"]}),
    );
    layout.tag(desc.clone(), tag).finish();
    (layout.dir.clone(), desc)
}

#[test]
fn pull_by_tag_and_by_digest() {
    let reg = Registry::start(RegistryOpts::default());
    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = three_layer_layout(&tmp.path().join("layout"), "v1");
    reg.push(&layout, "v1", "test/app:v1", None, false);
    let node = Node::new();

    let reference = format!("{}/test/app:v1", reg.host());
    let out = node.pull(&reference);
    let digest = desc["digest"].as_str().unwrap();
    assert!(out.contains(&reference) && out.contains(digest), "{out}");
    let ls = run_ok(&mut node.image(&["ls"]));
    assert!(ls.contains(&reference) && ls.contains(digest), "{ls}");

    let img = image::prepare(&node.data, &reference).unwrap();
    assert_eq!(img.config.cmd, Some(vec!["/top".to_string()]));
    assert_eq!(img.lower_dirs.len(), 3);
    let merged = Overlay::mount(&img.lower_dirs, &tmp.path().join("merged"));
    assert_eq!(
        fs::read_to_string(merged.target.join("etc/base")).unwrap(),
        "base\n"
    );
    assert!(!merged.target.join("etc/gone").exists());
    assert_eq!(
        fs::read(merged.target.join("usr/share/b")).unwrap().len(),
        100_000
    );
    drop(merged);

    // By digest: a new name for the same content, with nothing downloaded again.
    let by_digest = format!("{}/test/app@{digest}", reg.host());
    node.pull(&by_digest);
    let names: Vec<String> = node.store().images().unwrap().into_keys().collect();
    assert_eq!(names, vec![reference.clone(), by_digest.clone()]);
    assert_eq!(
        image::prepare(&node.data, &by_digest).unwrap().lower_dirs,
        img.lower_dirs
    );

    // A digest the registry does not have, and a tag it does not have.
    let missing = format!("{}/test/app@sha256:{}", reg.host(), "0".repeat(64));
    let err = node.pull_err(&missing);
    assert!(
        err.contains("404") && err.contains("MANIFEST_UNKNOWN"),
        "{err}"
    );
    let err = node.pull_err(&format!("{}/test/app:nope", reg.host()));
    assert!(err.contains("404"), "{err}");
}

#[test]
fn pull_with_basic_auth() {
    let reg = Registry::start(RegistryOpts {
        htpasswd: Some(HTPASSWD.to_string()),
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _) = three_layer_layout(&tmp.path().join("layout"), "v1");
    reg.push(
        &layout,
        "v1",
        "private/app:v1",
        Some(&format!("{USER}:{PASSWORD}")),
        false,
    );
    let reference = format!("{}/private/app:v1", reg.host());
    let node = Node::new();

    let err = node.pull_err(&reference);
    assert!(
        err.contains("requires authentication") && err.contains(&reg.host()),
        "{err}"
    );
    node.assert_nothing_stored();

    fs::write(
        &node.registries,
        format!(
            "configs:\n  \"{}\":\n    auth:\n      username: {USER}\n      password: wrong\n",
            reg.host()
        ),
    )
    .unwrap();
    let err = node.pull_err(&reference);
    assert!(err.contains("rejected the credentials"), "{err}");
    node.assert_nothing_stored();

    fs::write(
        &node.registries,
        format!(
            "configs:\n  \"{}\":\n    auth:\n      username: {USER}\n      password: {PASSWORD}\n",
            reg.host()
        ),
    )
    .unwrap();
    node.pull(&reference);
    assert!(image::prepare(&node.data, &reference).is_ok());
}

#[test]
fn pull_multi_arch_index_picks_amd64() {
    let reg = Registry::start(RegistryOpts::default());
    let tmp = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let mut a = LayerBuilder::new();
    a.file("arch", b"amd64\n", 0o644);
    let mut b = LayerBuilder::new();
    b.file("arch", b"arm64\n", 0o644);
    let arm_tar = b.finish();
    let amd = layout.image(&[(a.finish(), Compression::Gzip)], "amd64", json!({}));
    let arm = layout.image(&[(arm_tar.clone(), Compression::Gzip)], "arm64", json!({}));
    let index = layout.index(vec![arm.clone(), amd.clone()]);
    layout.tag(index.clone(), "multi").finish();
    reg.push(&layout.dir, "multi", "test/multi:v1", None, true);

    let node = Node::new();
    let reference = format!("{}/test/multi:v1", reg.host());
    node.pull(&reference);
    let rec = image::find(&node.store(), &reference).unwrap();
    assert_eq!(rec.digest.to_string(), index["digest"].as_str().unwrap());
    assert_eq!(rec.manifest.to_string(), amd["digest"].as_str().unwrap());
    let img = image::prepare(&node.data, &reference).unwrap();
    assert_eq!(
        fs::read_to_string(img.lower_dirs[0].join("arch")).unwrap(),
        "amd64\n"
    );
    // Nothing of the arm64 image was fetched.
    let arm_manifest = arm["digest"].as_str().unwrap();
    assert!(!node
        .store()
        .root()
        .join("blobs/sha256")
        .join(&arm_manifest[7..])
        .exists());
}

#[test]
fn corrupt_blob_is_refused_and_nothing_stored() {
    let reg = Registry::start(RegistryOpts::default());
    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = three_layer_layout(&tmp.path().join("layout"), "v1");
    reg.push(&layout, "v1", "test/corrupt:v1", None, false);
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            layout
                .join("blobs/sha256")
                .join(&desc["digest"].as_str().unwrap()[7..]),
        )
        .unwrap(),
    )
    .unwrap();
    // Flip one byte of the last (uncompressed) layer in the registry's storage: same size,
    // different content.
    let layer = manifest["layers"][2]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let file = reg.blob_file(&layer);
    let mut bytes = fs::read(&file).unwrap();
    let pos = bytes.windows(4).position(|w| w == b"top\n").unwrap();
    bytes[pos] = b'T';
    fs::write(&file, bytes).unwrap();

    let node = Node::new();
    let err = node.pull_err(&format!("{}/test/corrupt:v1", reg.host()));
    assert!(
        err.contains(&layer) && err.contains("does not match its digest"),
        "{err}"
    );
    assert!(!node
        .store()
        .root()
        .join("blobs/sha256")
        .join(&layer[7..])
        .exists());
    assert!(node.store().images().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(node.store().root().join("tmp"))
            .unwrap()
            .count(),
        0
    );
}

fn test_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[test]
fn pull_over_tls_with_custom_ca() {
    let (ca, cert, key) = test_ca();
    let reg = Registry::start(RegistryOpts {
        tls: Some((cert, key)),
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _) = three_layer_layout(&tmp.path().join("layout"), "v1");
    reg.push(&layout, "v1", "secure/app:v1", None, false);
    let reference = format!("{}/secure/app:v1", reg.host());
    let ca_file = tmp.path().join("ca.pem");
    fs::write(&ca_file, ca).unwrap();

    let node = Node::new();
    // Configured for TLS but without the CA: the certificate is not trusted.
    fs::write(
        &node.registries,
        format!(
            "configs:\n  \"{}\":\n    tls:\n      insecure_skip_verify: false\n",
            reg.host()
        ),
    )
    .unwrap();
    let err = node.pull_err(&reference);
    assert!(
        err.contains("TLS handshake") && err.contains("UnknownIssuer"),
        "{err}"
    );

    fs::write(
        &node.registries,
        format!(
            "configs:\n  \"{}\":\n    tls:\n      ca_file: {}\n",
            reg.host(),
            ca_file.display()
        ),
    )
    .unwrap();
    node.pull(&reference);
    assert!(image::prepare(&node.data, &reference).is_ok());

    let node = Node::new();
    fs::write(
        &node.registries,
        format!(
            "configs:\n  \"{}\":\n    tls:\n      insecure_skip_verify: true\n",
            reg.host()
        ),
    )
    .unwrap();
    node.pull(&reference);
}

#[test]
fn pull_through_mirror_endpoint() {
    let reg = Registry::start(RegistryOpts::default());
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _) = three_layer_layout(&tmp.path().join("layout"), "v1");
    reg.push(&layout, "v1", "team/app:v1", None, false);
    let node = Node::new();
    // The image is named after a registry that does not listen (port 1 on loopback, so nothing
    // leaves the host even if the mirror were skipped); the mirror serves it.
    fs::write(
        &node.registries,
        format!(
            "mirrors:\n  \"localhost:1\":\n    endpoint:\n      - \"http://{}\"\n",
            reg.host()
        ),
    )
    .unwrap();
    node.pull("localhost:1/team/app:v1");
    assert!(image::prepare(&node.data, "localhost:1/team/app:v1").is_ok());

    // A mirror that knows the repository by another name (registries.yaml `rewrite`, as in
    // k3s) is asked for that name; the image keeps the name it was pulled by.
    reg.push(&layout, "v1", "cache/team/app:v2", None, false);
    fs::write(
        &node.registries,
        format!(
            "mirrors:\n  \"localhost:1\":\n    endpoint:\n      - \"http://{}\"\n    \
             rewrite:\n      \"^team/(.*)$\": \"cache/team/$1\"\n",
            reg.host()
        ),
    )
    .unwrap();
    node.pull("localhost:1/team/app:v2");
    assert!(image::prepare(&node.data, "localhost:1/team/app:v2").is_ok());
    // A pattern that does not compile is a clear error, not a silent pass-through.
    fs::write(
        &node.registries,
        "mirrors:\n  docker.io:\n    rewrite:\n      \"(unclosed\": \"x\"\n",
    )
    .unwrap();
    let err = node.pull_err("localhost:1/team/app:v2");
    assert!(
        err.contains("registries.yaml: mirrors.docker.io.rewrite: \"(unclosed\""),
        "{err}"
    );

    // Without the mirror the registry itself is tried, and the error says where.
    let node = Node::new();
    let err = node.pull_err("localhost:1/team/app:v1");
    assert!(err.contains("connecting to localhost:1"), "{err}");
}

#[test]
fn concurrent_pulls_share_one_download() {
    let reg = Registry::start(RegistryOpts {
        access_log: true,
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&tmp.path().join("layout"));
    // Incompressible data, so the download takes long enough for the pulls to overlap.
    let mut big = vec![0u8; 24 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mut l = LayerBuilder::new();
    l.file("big", &big, 0o644);
    let desc = layout.image(&[(l.finish(), Compression::Gzip)], "amd64", json!({}));
    layout.tag(desc.clone(), "big").finish();
    reg.push(&layout.dir, "big", "test/big:v1", None, false);
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            layout
                .dir
                .join("blobs/sha256")
                .join(&desc["digest"].as_str().unwrap()[7..]),
        )
        .unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let before = reg
        .log()
        .matches(&format!("GET /v2/test/big/blobs/{layer}"))
        .count();

    let node = Node::new();
    let reference = format!("{}/test/big:v1", reg.host());
    let children: Vec<_> = (0..3)
        .map(|_| {
            node.image(&["pull", &reference])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    // In-process concurrency too: threads of one process.
    let node2 = Node::new();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(image::pull::pull(
                    &node2.data,
                    &reference,
                    &Default::default(),
                ))
                .unwrap();
            });
        }
    });
    let gets = reg
        .log()
        .matches(&format!("GET /v2/test/big/blobs/{layer}"))
        .count()
        - before;
    assert_eq!(
        gets,
        2,
        "one download per store, not one per pull:\n{}",
        reg.log()
    );
    for n in [&node, &node2] {
        let img = image::prepare(&n.data, &reference).unwrap();
        assert_eq!(
            fs::metadata(img.lower_dirs[0].join("big")).unwrap().len(),
            big.len() as u64
        );
    }
}

/// Pushes `name` (tag v1): a small gzip layer and an 8 MiB uncompressed one holding the file
/// `big`, whose content it returns.
fn push_big_image(reg: &Registry, tmp: &Path, name: &str) -> Vec<u8> {
    let mut layout = Layout::new(&tmp.join("layout"));
    let mut small = LayerBuilder::new();
    small.file("small", b"small layer\n", 0o644);
    let mut big = LayerBuilder::new();
    let data: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    big.file("big", &data, 0o644);
    let desc = layout.image(
        &[
            (small.finish(), Compression::Gzip),
            (big.finish(), Compression::None),
        ],
        "amd64",
        json!({}),
    );
    layout.tag(desc, "v1").finish();
    reg.push(&layout.dir, "v1", name, None, false);
    data
}

/// What the test proxy does once a connection's answer passes its byte limit.
enum PastLimit {
    /// Stops passing bytes until the flag is set, so a large blob download hangs midway.
    Stall(std::sync::Arc<std::sync::atomic::AtomicBool>),
    /// Cuts that connection (the first one only), so a download breaks midway once.
    CutOnce,
}

/// A loopback TCP proxy to the registry at `upstream` that applies `past` to any connection
/// whose answer passes `limit` bytes, and keeps every request's head (to see a Range header).
fn proxy(
    upstream: u16,
    limit: usize,
    past: PastLimit,
) -> (u16, std::sync::Arc<std::sync::Mutex<String>>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(String::new()));
    let log = requests.clone();
    let past = Arc::new(past);
    let cut = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let log = log.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = c_read.read(&mut buf) {
                    if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    log.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
            let (mut s_read, mut c_write) = (server, client);
            let (past, cut) = (past.clone(), cut.clone());
            std::thread::spawn(move || {
                let mut passed = 0;
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = s_read.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if passed + n > limit {
                        match &*past {
                            PastLimit::Stall(stop) => {
                                while !stop.load(Ordering::Relaxed) {
                                    std::thread::sleep(std::time::Duration::from_millis(20));
                                }
                                break;
                            }
                            PastLimit::CutOnce if !cut.swap(true, Ordering::Relaxed) => {
                                let _ = c_write.write_all(&buf[..limit - passed]);
                                let _ = c_write.shutdown(Shutdown::Both);
                                let _ = s_read.shutdown(Shutdown::Both);
                                break;
                            }
                            PastLimit::CutOnce => {}
                        }
                    }
                    passed += n;
                    if c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, requests)
}

/// Where the Range request the proxy saw starts (the test fails if there was none).
fn range_start(requests: &std::sync::Mutex<String>) -> u64 {
    let heads = requests.lock().unwrap().to_lowercase();
    let range = heads
        .lines()
        .find(|l| l.starts_with("range: bytes="))
        .unwrap_or_else(|| panic!("no Range request was sent:\n{heads}"));
    range["range: bytes=".len()..]
        .trim()
        .trim_end_matches('-')
        .parse()
        .unwrap()
}

/// A connection that breaks in the middle of a blob: the pull asks for the rest with a Range
/// request, keeps what it had, and the image is complete and verified.
#[test]
fn broken_download_resumes_with_a_range_request() {
    let reg = Registry::start(RegistryOpts::default());
    let tmp = tempfile::tempdir().unwrap();
    let data = push_big_image(&reg, tmp.path(), "test/resume:v1");
    let (port, requests) = proxy(reg.port, 1 << 20, PastLimit::CutOnce);
    let node = Node::new();
    let reference = format!("127.0.0.1:{port}/test/resume:v1");
    node.pull(&reference);
    assert!(range_start(&requests) > 0);
    let img = image::prepare(&node.data, &reference).unwrap();
    assert_eq!(fs::read(img.lower_dirs[0].join("big")).unwrap(), data);
}

/// Partial files a killed pull left complete but unnamed: the next pull checks them, names a
/// good one without asking the registry for it, and drops a corrupt one for a fresh download.
#[test]
fn complete_partial_blobs_are_checked_then_kept_or_dropped() {
    let reg = Registry::start(RegistryOpts::default());
    let tmp = tempfile::tempdir().unwrap();
    let (layout, manifest) = three_layer_layout(&tmp.path().join("layout"), "v1");
    reg.push(&layout, "v1", "team/partials:v1", None, false);
    // Layers and config (the manifest is fetched by tag, not as a blob).
    let manifest_hex = manifest["digest"].as_str().unwrap();
    let mut blobs: Vec<(u64, String)> = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.metadata().unwrap().len(),
                e.file_name().to_string_lossy().into_owned(),
            )
        })
        .filter(|(_, hex)| !manifest_hex.ends_with(hex.as_str()))
        .collect();
    blobs.sort();
    let (good, bad) = (&blobs[blobs.len() - 1].1, &blobs[blobs.len() - 2].1);
    let node = Node::new();
    let tmp_dir = node.data.join("agent/images/tmp");
    fs::create_dir_all(&tmp_dir).unwrap();
    let blob = |hex: &str| layout.join("blobs/sha256").join(hex);
    fs::copy(blob(good), tmp_dir.join(format!("partial-{good}"))).unwrap();
    let len = fs::metadata(blob(bad)).unwrap().len() as usize;
    fs::write(tmp_dir.join(format!("partial-{bad}")), vec![0u8; len]).unwrap();

    let (port, requests) = proxy(reg.port, 1 << 40, PastLimit::CutOnce);
    let reference = format!("127.0.0.1:{port}/team/partials:v1");
    node.pull(&reference);
    let heads = requests.lock().unwrap().clone();
    assert!(
        !heads.contains(good.as_str()),
        "asked again for a blob it had:\n{heads}"
    );
    assert!(
        heads.contains(bad.as_str()),
        "kept a corrupt blob:\n{heads}"
    );
    assert!(!heads.to_lowercase().contains("range:"), "{heads}");
    assert!(image::prepare(&node.data, &reference).is_ok());
    assert!(fs::read_dir(&tmp_dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("partial-")));
}

#[test]
fn interrupted_pull_leaves_no_image_and_resumes() {
    let reg = Registry::start(RegistryOpts::default());
    let tmp = tempfile::tempdir().unwrap();
    let data = push_big_image(&reg, tmp.path(), "test/interrupted:v1");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (proxy_port, _) = proxy(reg.port, 1 << 20, PastLimit::Stall(stop.clone()));

    let node = Node::new();
    // Through the proxy the image's registry is the proxy: same repository, same content.
    let via_proxy = format!("127.0.0.1:{proxy_port}/test/interrupted:v1");
    let mut child = node
        .image(&["pull", "--quiet", &via_proxy])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the big layer is partly written (only it grows past 256 KiB), then kill the
    // pull.
    let tmp_dir = node.data.join("agent/images/tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let partial = fs::read_dir(&tmp_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .any(|e| e.metadata().is_ok_and(|m| m.len() >= 256 << 10))
            })
            .unwrap_or(false);
        if partial {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pull never started writing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before being interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let store = node.store();
    assert!(
        store.images().unwrap().is_empty(),
        "an interrupted pull names nothing"
    );
    assert!(
        fs::read_dir(&tmp_dir).unwrap().count() > 0,
        "the partial download is only in tmp/"
    );

    // Pulling again (through a proxy that only watches) asks for the rest of the partial
    // blob, not all of it; complete blobs are reused, and prune clears what is left in tmp/.
    let (watch_port, requests) = proxy(reg.port, 1 << 40, PastLimit::CutOnce);
    let again = format!("127.0.0.1:{watch_port}/test/interrupted:v1");
    node.pull(&again);
    assert!(range_start(&requests) > 0);
    let partials = fs::read_dir(&tmp_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("partial-"))
        .count();
    assert_eq!(partials, 0, "the resumed blob left its partial file");
    run_ok(&mut node.image(&["prune"]));
    assert_eq!(fs::read_dir(&tmp_dir).unwrap().count(), 0);
    let img = image::prepare(&node.data, &again).unwrap();
    assert_eq!(fs::read(img.lower_dirs[0].join("big")).unwrap(), data);
}

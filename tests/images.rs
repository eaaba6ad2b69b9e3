//! Image store tests without a registry: imports (OCI archive, OCI layout, docker save, the
//! default rootfs image, air-gap tarballs), unpacking for overlay, escape attempts, ls/rm/prune.
//! Run as root (device nodes, trusted.* xattrs, overlay mounts): `cargo test --test images`.

mod images_util;

use images_util::*;
use nanokube::image;
use serde_json::json;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let c_name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and buf is a live buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// Three layers in the three compressions, exercising every entry type and the OCI whiteouts.
fn rich_layers() -> Vec<(Vec<u8>, Compression)> {
    let mut l1 = LayerBuilder::new();
    l1.dir("etc/", 0o755)
        .file("etc/hostname", b"base\n", 0o644)
        .file("etc/removed", b"gone in layer 2\n", 0o644)
        .dir("data/", 0o755)
        .file("data/old", b"hidden by the opaque dir\n", 0o644)
        .file_owned(
            "bin/tool",
            b"#!/bin/sh\necho tool\n",
            0o4755,
            1000,
            1001,
            1_500_000_000,
        )
        .hardlink("bin/tool-link", "bin/tool")
        .symlink("bin/sh-link", "/bin/tool")
        .device("dev/null-copy", tar::EntryType::Char, 1, 3)
        .device("dev/fifo", tar::EntryType::Fifo, 0, 0)
        .file_with_xattrs("etc/xattr-file", b"x", &[("user.nanokube", b"hello")]);
    let mut l2 = LayerBuilder::new();
    l2.file("etc/.wh.removed", b"", 0o644)
        .dir("data/", 0o700)
        .file("data/.wh..wh..opq", b"", 0o644)
        .file("data/new", b"layer 2\n", 0o600)
        .file("etc/hostname", b"layer2\n", 0o644);
    let mut l3 = LayerBuilder::new();
    l3.file(
        "/abs/path",
        b"absolute paths land inside the snapshot\n",
        0o644,
    )
    .file("./etc/motd", b"top\n", 0o644);
    vec![
        (l1.finish(), Compression::Gzip),
        (l2.finish(), Compression::Zstd),
        (l3.finish(), Compression::None),
    ]
}

fn image_config() -> serde_json::Value {
    json!({
        "Entrypoint": ["/bin/tool"],
        "Cmd": ["--flag"],
        "Env": ["PATH=/bin", "A=b"],
        "WorkingDir": "/data",
        "User": "1000:1001",
        "ExposedPorts": {"8080/tcp": {}},
    })
}

#[test]
fn oci_archive_unpacks_into_overlay_lower_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let desc = layout.image(&rich_layers(), "amd64", image_config());
    layout.tag(desc, "example.test/rich:v1").finish();
    let archive = tmp.path().join("rich.oci.tar");
    tar_dir(&layout.dir, &archive);

    let data = tmp.path().join("data");
    let out = run_ok(
        nanokube()
            .arg("image")
            .arg("--data-dir")
            .arg(&data)
            .arg("import")
            .arg(&archive),
    );
    assert!(out.contains("imported example.test/rich:v1"), "{out}");

    let img = image::prepare(&data, "example.test/rich:v1").unwrap();
    assert_eq!(img.config.entrypoint, Some(vec!["/bin/tool".to_string()]));
    assert_eq!(img.config.cmd, Some(vec!["--flag".to_string()]));
    assert_eq!(
        img.config.env,
        Some(vec!["PATH=/bin".to_string(), "A=b".to_string()])
    );
    assert_eq!(img.config.working_dir.as_deref(), Some("/data"));
    assert_eq!(img.config.user.as_deref(), Some("1000:1001"));
    assert!(img
        .config
        .exposed_ports
        .as_ref()
        .unwrap()
        .contains_key("8080/tcp"));
    assert_eq!(img.lower_dirs.len(), 3);
    let [top, mid, base] = [&img.lower_dirs[0], &img.lower_dirs[1], &img.lower_dirs[2]];
    for d in &img.lower_dirs {
        assert!(d.starts_with(data.join("agent/images/snapshots")), "{d:?}");
    }

    // The base layer: ownership, modes (set-id bit kept after chown), mtimes, links, devices, xattrs.
    let tool = fs::metadata(base.join("bin/tool")).unwrap();
    assert_eq!((tool.uid(), tool.gid()), (1000, 1001));
    assert_eq!(tool.mode() & 0o7777, 0o4755);
    assert_eq!(tool.mtime(), 1_500_000_000);
    assert_eq!(
        tool.ino(),
        fs::metadata(base.join("bin/tool-link")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(base.join("bin/sh-link")).unwrap(),
        PathBuf::from("/bin/tool")
    );
    let dev = fs::symlink_metadata(base.join("dev/null-copy")).unwrap();
    assert!(dev.file_type().is_char_device());
    assert_eq!(dev.rdev(), libc::makedev(1, 3));
    assert!(fs::symlink_metadata(base.join("dev/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        getxattr(&base.join("etc/xattr-file"), "user.nanokube").as_deref(),
        Some(&b"hello"[..])
    );

    // Layer 2: whiteout as a 0:0 char device, opaque dir as the overlay xattr.
    let wh = fs::symlink_metadata(mid.join("etc/removed")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!mid.join("etc/.wh.removed").exists());
    assert_eq!(
        getxattr(&mid.join("data"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!mid.join("data/.wh..wh..opq").exists());

    // Layer 3: the absolute path was taken relative to the snapshot.
    assert!(top.join("abs/path").is_file());

    // Stacked by overlayfs, the lower dirs give the image's file system.
    let merged = Overlay::mount(&img.lower_dirs, &tmp.path().join("merged"));
    let m = &merged.target;
    assert_eq!(
        fs::read_to_string(m.join("etc/hostname")).unwrap(),
        "layer2\n"
    );
    assert_eq!(fs::read_to_string(m.join("etc/motd")).unwrap(), "top\n");
    assert!(
        !m.join("etc/removed").exists(),
        "whiteout hides the lower file"
    );
    assert!(
        !m.join("data/old").exists(),
        "opaque dir hides the lower dir's content"
    );
    assert_eq!(fs::read_to_string(m.join("data/new")).unwrap(), "layer 2\n");
    assert_eq!(fs::metadata(m.join("data")).unwrap().mode() & 0o7777, 0o700);
    assert!(m.join("bin/tool").is_file());
    drop(merged);

    // Preparing again reuses the snapshots.
    let again = image::prepare(&data, "example.test/rich:v1").unwrap();
    assert_eq!(again.lower_dirs, img.lower_dirs);
}

#[test]
fn docker_save_archive_imports_and_rm_collects_its_content() {
    let tmp = tempfile::tempdir().unwrap();
    let mut l1 = LayerBuilder::new();
    l1.file("hello.txt", b"hello from docker save\n", 0o644);
    let layer = l1.finish();
    let mut l2 = LayerBuilder::new();
    l2.file("second.txt", b"2\n", 0o644);
    let archive = tmp.path().join("save.tar");
    docker_save(
        &archive,
        "saved/app:1.0",
        &[layer.clone(), l2.finish(), layer],
        json!({"Cmd": ["/hello"]}),
        true,
    );
    let data = tmp.path().join("data");
    let nk = |args: &[&str]| {
        let mut c = nanokube();
        c.arg("image").arg("--data-dir").arg(&data).args(args);
        c
    };
    run_ok(&mut nk(&["import", archive.to_str().unwrap()]));
    let ls = run_ok(&mut nk(&["ls"]));
    assert!(ls.contains("docker.io/saved/app:1.0"), "{ls}");
    let inspect: serde_json::Value =
        serde_json::from_str(&run_ok(&mut nk(&["inspect", "saved/app:1.0"]))).unwrap();
    assert_eq!(inspect["config"]["Cmd"], json!(["/hello"]));
    let lowers = inspect["lowerDirs"].as_array().unwrap();
    assert_eq!(lowers.len(), 3);
    assert!(Path::new(lowers[2].as_str().unwrap())
        .join("hello.txt")
        .is_file());
    assert!(Path::new(lowers[0].as_str().unwrap())
        .join("hello.txt")
        .is_file());

    let blobs = || {
        fs::read_dir(data.join("agent/images/blobs/sha256"))
            .unwrap()
            .count()
    };
    let snaps = || {
        fs::read_dir(data.join("agent/images/snapshots"))
            .unwrap()
            .count()
    };
    assert!(blobs() > 0 && snaps() == 3);
    let err = run_err(&mut nk(&["rm", "saved/app:2.0"]));
    assert!(
        err.contains("docker.io/saved/app:2.0") && err.contains("not in the image store"),
        "{err}"
    );
    run_ok(&mut nk(&["rm", "saved/app:1.0"]));
    assert_eq!(run_ok(&mut nk(&["ls", "-q"])), "");
    assert_eq!(
        (blobs(), snaps()),
        (0, 0),
        "rm collects the content only that image used"
    );
}

#[test]
fn default_rootfs_image_imports() {
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/out/nanokube-busybox.oci.tar");
    if !archive.exists() {
        eprintln!(
            "SKIP: {} not built (run rootfs/build.sh)",
            archive.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    run_ok(
        nanokube()
            .arg("image")
            .arg("--data-dir")
            .arg(&data)
            .arg("import")
            .arg(&archive),
    );
    let img = image::prepare(&data, "nanokube/busybox:latest").unwrap();
    let merged = Overlay::mount(&img.lower_dirs, &tmp.path().join("merged"));
    assert!(merged.target.join("bin/busybox").is_file());
    assert!(fs::symlink_metadata(merged.target.join("bin/sh")).is_ok());
}

#[test]
fn airgap_tarballs_import_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let images_dir = data.join("agent/images");
    fs::create_dir_all(&images_dir).unwrap();
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let mut l = LayerBuilder::new();
    l.file("airgap", b"1", 0o644);
    let desc = layout.image(&[(l.finish(), Compression::Gzip)], "amd64", json!({}));
    layout.tag(desc, "registry.local:5000/airgap:v1").finish();
    tar_dir(&layout.dir, &images_dir.join("airgap.tar"));
    fs::write(images_dir.join("notes.txt"), "not an image").unwrap();
    fs::write(images_dir.join("broken.tar"), "not a tar").unwrap();

    let first = image::import_dir_tarballs(&data).unwrap();
    assert_eq!(
        first.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["registry.local:5000/airgap:v1"]
    );
    assert!(image::prepare(&data, "registry.local:5000/airgap:v1").is_ok());
    // Unchanged: nothing to do. (The broken file is retried, and fails again, each time.)
    assert!(image::import_dir_tarballs(&data).unwrap().is_empty());
    // A changed file is imported again.
    let mut layout = Layout::new(&tmp.path().join("layout2"));
    let mut l = LayerBuilder::new();
    l.file("airgap", b"2", 0o644);
    let desc = layout.image(&[(l.finish(), Compression::None)], "amd64", json!({}));
    layout.tag(desc, "registry.local:5000/airgap:v2").finish();
    tar_dir(&layout.dir, &images_dir.join("airgap.tar"));
    let second = image::import_dir_tarballs(&data).unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].name, "registry.local:5000/airgap:v2");
}

#[test]
fn oci_layout_dir_with_index_picks_host_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let mut a = LayerBuilder::new();
    a.file("arch", b"amd64", 0o644);
    let mut b = LayerBuilder::new();
    b.file("arch", b"arm64", 0o644);
    let amd = layout.image(&[(a.finish(), Compression::Gzip)], "amd64", json!({}));
    let arm = layout.image(&[(b.finish(), Compression::Gzip)], "arm64", json!({}));
    let index = layout.index(vec![arm, amd.clone()]);
    layout.tag(index.clone(), "example.test/multi:v1").finish();
    let data = tmp.path().join("data");
    run_ok(
        nanokube()
            .arg("image")
            .arg("--data-dir")
            .arg(&data)
            .arg("import")
            .arg(&layout.dir),
    );
    let img = image::prepare(&data, "example.test/multi:v1").unwrap();
    assert_eq!(img.digest.to_string(), index["digest"].as_str().unwrap());
    assert_eq!(
        fs::read_to_string(img.lower_dirs[0].join("arch")).unwrap(),
        "amd64"
    );
    // By digest too: the index digest and the platform manifest digest both find it.
    for d in [
        index["digest"].as_str().unwrap(),
        amd["digest"].as_str().unwrap(),
    ] {
        assert!(image::prepare(&data, &format!("example.test/multi@{d}")).is_ok());
    }
}

/// Imports a one-layer image built from `layer` and returns the result and the data dir.
fn import_layer(tmp: &Path, layer: Vec<u8>) -> (std::process::Output, PathBuf) {
    let mut layout = Layout::new(&tmp.join("layout"));
    let desc = layout.image(&[(layer, Compression::Gzip)], "amd64", json!({}));
    layout.tag(desc, "example.test/evil:v1").finish();
    let data = tmp.join("data");
    let out = nanokube()
        .arg("image")
        .arg("--data-dir")
        .arg(&data)
        .arg("import")
        .arg(&layout.dir)
        .output()
        .unwrap();
    (out, data)
}

fn assert_refused(out: &std::process::Output, data: &Path, reason: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "import of an escaping layer succeeded"
    );
    assert!(err.contains(reason), "{err}");
    let store = image::Store::open(data).unwrap();
    assert!(
        store.images().unwrap().is_empty(),
        "the image must not be named"
    );
    assert_eq!(
        fs::read_dir(data.join("agent/images/snapshots"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        fs::read_dir(data.join("agent/images/tmp")).unwrap().count(),
        0
    );
}

#[test]
fn layer_with_dotdot_cannot_escape() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    // From <data>/agent/images/tmp/<snap>/fs, six levels up is tmp itself.
    let mut l = LayerBuilder::new();
    l.file("ok", b"", 0o644)
        .file("../../../../../../outside/pwned", b"escaped", 0o644);
    let (out, data) = import_layer(tmp.path(), l.finish());
    assert_refused(&out, &data, "contains '..'");
    assert!(!outside.join("pwned").exists());
}

#[test]
fn layer_through_symlink_cannot_escape() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let mut l = LayerBuilder::new();
    l.symlink("link", outside.to_str().unwrap())
        .file("link/pwned", b"escaped", 0o644);
    let (out, data) = import_layer(tmp.path(), l.finish());
    assert_refused(&out, &data, "goes through a symlink");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);

    // A relative symlink climbing out, then a directory entry and a hard link through it.
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let mut l = LayerBuilder::new();
    l.symlink("up", "../../../../../../../outside")
        .dir("up/newdir/", 0o755);
    let (out, data) = import_layer(tmp.path(), l.finish());
    assert_refused(&out, &data, "goes through a symlink");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn hard_links_cannot_reach_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret");
    fs::write(&secret, "host secret").unwrap();
    let mut l = LayerBuilder::new();
    l.hardlink("stolen", "../../../../../../secret");
    let (out, data) = import_layer(tmp.path(), l.finish());
    assert_refused(&out, &data, "contains '..'");

    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "host secret").unwrap();
    let mut l = LayerBuilder::new();
    l.symlink("link", outside.to_str().unwrap())
        .hardlink("stolen", "link/secret");
    let (out, data) = import_layer(tmp.path(), l.finish());
    assert_refused(&out, &data, "goes through a symlink");
    assert_eq!(fs::metadata(outside.join("secret")).unwrap().nlink(), 1);
}

#[test]
fn layer_cannot_set_overlay_xattrs_or_whiteout_dotdot() {
    let tmp = tempfile::tempdir().unwrap();
    let mut l = LayerBuilder::new();
    l.file_with_xattrs(
        "f",
        b"",
        &[("trusted.overlay.redirect", b"/etc"), ("user.ok", b"1")],
    );
    let (out, data) = import_layer(tmp.path(), l.finish());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::prepare(&data, "example.test/evil:v1").unwrap();
    let f = img.lower_dirs[0].join("f");
    assert_eq!(getxattr(&f, "trusted.overlay.redirect"), None);
    assert_eq!(getxattr(&f, "user.ok").as_deref(), Some(&b"1"[..]));

    let tmp = tempfile::tempdir().unwrap();
    let mut l = LayerBuilder::new();
    l.file("dir/.wh...", b"", 0o644);
    let (out, data) = import_layer(tmp.path(), l.finish());
    assert_refused(&out, &data, "whiteout of an invalid name");
}

#[test]
fn corrupt_blob_in_archive_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let mut l = LayerBuilder::new();
    l.file("a", b"original", 0o644);
    let desc = layout.image(&[(l.finish(), Compression::None)], "amd64", json!({}));
    layout.tag(desc, "example.test/corrupt:v1").finish();
    // Flip the layer's content after its digest was recorded.
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            layout
                .dir
                .join("blobs/sha256")
                .join(&desc_digest(&layout.dir)[7..]),
        )
        .unwrap(),
    )
    .unwrap();
    let layer_digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let layer_path = layout.dir.join("blobs/sha256").join(&layer_digest[7..]);
    let mut bytes = fs::read(&layer_path).unwrap();
    let pos = bytes.windows(8).position(|w| w == b"original").unwrap();
    bytes[pos] = b'O';
    fs::write(&layer_path, bytes).unwrap();
    let archive = tmp.path().join("corrupt.tar");
    tar_dir(&layout.dir, &archive);
    let data = tmp.path().join("data");
    let err = run_err(
        nanokube()
            .arg("image")
            .arg("--data-dir")
            .arg(&data)
            .arg("import")
            .arg(&archive),
    );
    assert!(
        err.contains(&layer_digest) && err.contains("does not match"),
        "{err}"
    );
    assert!(!data
        .join("agent/images/blobs/sha256")
        .join(&layer_digest[7..])
        .exists());
    assert!(image::Store::open(&data)
        .unwrap()
        .images()
        .unwrap()
        .is_empty());
}

fn desc_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn concurrent_prepares_share_one_unpack() {
    let tmp = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&tmp.path().join("layout"));
    let mut l = LayerBuilder::new();
    for i in 0..200 {
        l.file(&format!("f{i}"), &vec![i as u8; 4096], 0o644);
    }
    let desc = layout.image(&[(l.finish(), Compression::Gzip)], "amd64", json!({}));
    layout.tag(desc, "example.test/conc:v1").finish();
    let data = tmp.path().join("data");
    image::import::import_paths(&data, &[layout.dir.clone()]).unwrap();
    // Drop the snapshot so that the threads race to recreate it.
    let snaps = data.join("agent/images/snapshots");
    for e in fs::read_dir(&snaps).unwrap() {
        fs::remove_dir_all(e.unwrap().path()).unwrap();
    }
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    image::prepare(&data, "example.test/conc:v1")
                        .unwrap()
                        .lower_dirs
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(fs::read_dir(&results[0][0]).unwrap().count(), 200);
    assert_eq!(fs::read_dir(&snaps).unwrap().count(), 1);
    assert_eq!(
        fs::read_dir(data.join("agent/images/tmp")).unwrap().count(),
        0
    );
}

/// Docker 25+ `docker save`: an OCI layout whose index.json names the image with containerd's
/// annotation (ref.name holds only the tag), plus a manifest.json for older tools.
#[test]
fn docker25_save_archive_uses_the_containerd_name() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(&tmp.path().join("layout"));
    let mut l = LayerBuilder::new();
    l.file("etc/os-release", b"ID=test\n", 0o644);
    let mut desc = layout.image(
        &[(l.finish(), Compression::None)],
        "amd64",
        json!({"Cmd": ["sh"]}),
    );
    desc["annotations"] = json!({
        "io.containerd.image.name": "docker.io/library/modern:1.0",
        "org.opencontainers.image.ref.name": "1.0",
    });
    let index = json!({"schemaVersion": 2, "manifests": [desc]});
    fs::write(
        layout.dir.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
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
    let save = json!([{
        "Config": format!("blobs/sha256/{}", &manifest["config"]["digest"].as_str().unwrap()[7..]),
        "RepoTags": ["modern:1.0"],
        "Layers": [format!("blobs/sha256/{}", &manifest["layers"][0]["digest"].as_str().unwrap()[7..])],
    }]);
    fs::write(
        layout.dir.join("manifest.json"),
        serde_json::to_vec(&save).unwrap(),
    )
    .unwrap();
    let archive = tmp.path().join("modern.tar");
    tar_dir(&layout.dir, &archive);
    let data = tmp.path().join("data");
    let out = run_ok(
        nanokube()
            .arg("image")
            .arg("--data-dir")
            .arg(&data)
            .arg("import")
            .arg(&archive),
    );
    assert!(
        out.contains("imported docker.io/library/modern:1.0"),
        "{out}"
    );
    let img = image::prepare(&data, "modern:1.0").unwrap();
    assert_eq!(img.digest.to_string(), desc["digest"].as_str().unwrap());
    assert_eq!(
        fs::read_to_string(img.lower_dirs[0].join("etc/os-release")).unwrap(),
        "ID=test\n"
    );
}

#[test]
fn a_lease_keeps_a_running_containers_layers_through_rm_and_prune_until_released() {
    let tmp = tempfile::tempdir().unwrap();
    let mut l1 = LayerBuilder::new();
    l1.file("in-use.txt", b"used by a container\n", 0o644);
    let archive = tmp.path().join("save.tar");
    docker_save(
        &archive,
        "leased/app:1",
        &[l1.finish()],
        json!({"Cmd": ["/x"]}),
        true,
    );
    let mut l2 = LayerBuilder::new();
    l2.file("idle.txt", b"nobody runs this\n", 0o644);
    let idle = tmp.path().join("idle.tar");
    docker_save(
        &idle,
        "idle/app:1",
        &[l2.finish()],
        json!({"Cmd": ["/y"]}),
        true,
    );
    let data = tmp.path().join("data");
    let nk = |args: &[&str]| {
        let mut c = nanokube();
        c.arg("image").arg("--data-dir").arg(&data).args(args);
        c
    };
    run_ok(&mut nk(&[
        "import",
        archive.to_str().unwrap(),
        idle.to_str().unwrap(),
    ]));
    let prepared = nanokube::image::prepare(&data, "leased/app:1").unwrap();
    nanokube::image::lease(&data, "pod-uid_web", &prepared).unwrap();
    let store = nanokube::image::store::Store::open(&data).unwrap();
    let unused: Vec<String> = nanokube::image::gc::unused(&store, 0)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(
        unused,
        ["docker.io/idle/app:1"],
        "a leased image is never a GC candidate"
    );

    run_ok(&mut nk(&["rm", "leased/app:1", "idle/app:1"]));
    run_ok(&mut nk(&["prune"]));
    assert_eq!(run_ok(&mut nk(&["ls", "-q"])), "");
    assert!(
        prepared.lower_dirs[0].join("in-use.txt").is_file(),
        "the running container's layer survives rm and prune"
    );
    let snaps = || {
        fs::read_dir(data.join("agent/images/snapshots"))
            .unwrap()
            .count()
    };
    assert_eq!(snaps(), 1, "only the leased image's snapshot is left");

    assert_eq!(nanokube::image::release(&data, "pod-uid_").unwrap(), 1);
    run_ok(&mut nk(&["prune"]));
    assert_eq!(snaps(), 0, "released, it is collected");
    assert!(!prepared.lower_dirs[0].exists());
    let err = nanokube::image::lease(&data, "pod-uid_web", &prepared).unwrap_err();
    assert!(
        err.to_string()
            .contains("the image's layers were collected"),
        "{err}"
    );
}

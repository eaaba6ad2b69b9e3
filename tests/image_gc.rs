//! The kubelet's image GC and image leases on a real node: with the thresholds at 0, every
//! image no container uses (and none used for the minimum age) is removed, and the image of a
//! running pod is kept until the pod is gone.
//!
//! Run as root: `cargo test --test image_gc`.

mod images_util;
mod node_support;

use images_util::{docker_save, LayerBuilder};
use node_support::{Cluster, IMAGE, NANOKUBE};
use std::time::Duration;

fn images(c: &Cluster) -> String {
    let out = std::process::Command::new(NANOKUBE)
        .args(["image", "--data-dir"])
        .arg(c.data_dir())
        .args(["ls", "-q"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn image_gc_removes_unused_images_and_keeps_those_of_running_pods() {
    let c = Cluster::start_with(&[
        "--image-gc-high-threshold",
        "0",
        "--image-gc-low-threshold",
        "0",
        "--image-gc-period",
        "1s",
        // Long enough for the pod to take its lease on the image imported at start.
        "--minimum-image-ttl-duration",
        "8s",
    ]);
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: keeper\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n"
    ));
    c.wait_phase("keeper", "Running");
    // An image nobody runs, imported after the pod started.
    let tmp = tempfile::tempdir().unwrap();
    let mut layer = LayerBuilder::new();
    layer.file("idle.txt", b"idle\n", 0o644);
    let archive = tmp.path().join("idle.tar");
    docker_save(
        &archive,
        "idle/app:1",
        &[layer.finish()],
        serde_json::json!({"Cmd": ["/x"]}),
        true,
    );
    let out = std::process::Command::new(NANOKUBE)
        .args(["image", "--data-dir"])
        .arg(c.data_dir())
        .arg("import")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        images(&c).contains("idle/app"),
        "younger than the minimum age, it stays"
    );
    c.wait_for(
        "image GC to remove the idle image",
        Duration::from_secs(30),
        |c| !images(c).contains("idle/app"),
    );
    // Several more GC rounds: the running pod's image stays, and the pod keeps running.
    std::thread::sleep(Duration::from_secs(3));
    assert!(images(&c).contains("nanokube/busybox"), "{}", images(&c));
    assert_eq!(
        c.ok(&["exec", "keeper", "--", "echo", "alive"]).trim(),
        "alive"
    );
    let leases = c.data_dir().join("agent/images/leases");
    assert_eq!(
        std::fs::read_dir(&leases).unwrap().count(),
        1,
        "one lease: the pod's container"
    );
    // A container with no lease (one started by an agent from before leases) is still safe:
    // its pod names the image.
    for e in std::fs::read_dir(&leases).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(images(&c).contains("nanokube/busybox"), "{}", images(&c));

    c.ok(&["delete", "pod", "keeper", "--wait=true"]);
    c.wait_for(
        "the released image collected",
        Duration::from_secs(30),
        |c| images(c).trim().is_empty(),
    );
    assert_eq!(
        std::fs::read_dir(&leases).unwrap().count(),
        0,
        "the pod's lease went with it"
    );
    // The name goes first, then the collection that follows removes the layers.
    let snaps = c.data_dir().join("agent/images/snapshots");
    c.wait_for("its layers collected too", Duration::from_secs(10), |_| {
        std::fs::read_dir(&snaps).unwrap().count() == 0
    });
}

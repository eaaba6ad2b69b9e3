//! Egress masquerade: traffic from pods to anything outside the cluster's pod range leaves with
//! the node's address, so replies find their way back. One nftables table of nanokube's own,
//! replaced whole in one atomic `nft -f -` transaction, and deleted by `nanokube killall`.

use std::io::Write;
use std::process::{Command, Stdio};

use super::{Cidr, Error};

/// The table's name; nothing else of the host's ruleset is touched.
pub const TABLE: &str = "nanokube-nat";

/// The ruleset text for `cluster` (the whole pod range, not just this node's).
pub fn ruleset(cluster: Cidr) -> String {
    format!(
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {cluster} ip daddr != {cluster} masquerade\n  }}\n}}\n"
    )
}

/// Runs one nft transaction from `input`.
pub(crate) fn nft(input: &str) -> Result<(), Error> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::io("run nft"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .map_err(Error::io("write to nft"))?;
    let out = child
        .wait_with_output()
        .map_err(Error::io("wait for nft"))?;
    if !out.status.success() {
        return Err(Error::Netlink(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Installs (or replaces) the masquerade rule for `cluster`.
pub fn ensure(cluster: Cidr) -> Result<(), Error> {
    nft(&ruleset(cluster))
}

/// Removes the table (nothing if it is not there).
pub fn remove() -> Result<(), Error> {
    nft(&format!("table ip {TABLE}\ndelete table ip {TABLE}\n"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_table_is_replaced_whole() {
        let text = super::ruleset("10.42.0.0/16".parse().unwrap());
        // Declaring then deleting makes the transaction work whether or not the table exists.
        assert!(text.starts_with("table ip nanokube-nat\ndelete table ip nanokube-nat\n"));
        assert!(text.contains("ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 masquerade"));
    }
}

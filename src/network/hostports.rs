//! hostPort: a container port published on the node's own addresses (what CNI's portmap
//! plugin does). One nftables table of nanokube's own holds a DNAT rule per mapping, for
//! packets arriving (prerouting) and sent from the node itself (output); the table is rebuilt
//! whole, in one `nft -f -` transaction, whenever the set of mappings changes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::Error;

pub const TABLE: &str = "nanokube-hostports";

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mapping {
    /// tcp or udp.
    pub protocol: String,
    pub host_port: u16,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
}

/// The table for `mappings`.
pub fn ruleset(mappings: &BTreeSet<Mapping>) -> String {
    let mut rules = String::new();
    for m in mappings {
        rules.push_str(&format!(
            "    fib daddr type local {p} dport {hp} dnat to {ip}:{cp}\n",
            p = m.protocol,
            hp = m.host_port,
            ip = m.pod_ip,
            cp = m.container_port
        ));
    }
    format!(
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    jump ports\n  }}\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    jump ports\n  }}\n  chain ports {{\n{rules}  }}\n}}\n"
    )
}

/// Installs exactly `mappings`.
pub fn apply(mappings: &BTreeSet<Mapping>) -> Result<(), Error> {
    super::masquerade::nft(&ruleset(mappings))
}

/// Removes the table.
pub fn remove() -> Result<(), Error> {
    super::masquerade::nft(&format!("table ip {TABLE}\ndelete table ip {TABLE}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_per_mapping() {
        let mut m = BTreeSet::new();
        m.insert(Mapping {
            protocol: "tcp".into(),
            host_port: 8080,
            pod_ip: "10.42.0.5".parse().unwrap(),
            container_port: 80,
        });
        let text = ruleset(&m);
        assert!(
            text.contains("fib daddr type local tcp dport 8080 dnat to 10.42.0.5:80"),
            "{text}"
        );
        assert!(ruleset(&BTreeSet::new()).contains("chain ports {\n  }"));
    }
}

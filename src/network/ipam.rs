//! Address management for one node's pod range, kept on disk so that it survives the agent: one
//! file per address in use, named by the address and holding its owner. A file is created with
//! O_EXCL, so no address is ever handed out twice, even by two agents racing after a crash; an
//! address whose owner no longer exists is found by [`Ipam::owners`] and released by the caller.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::{Cidr, Error};

/// The addresses of one range.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    range: Cidr,
}

const LAST: &str = "last_reserved_ip";

impl Ipam {
    /// The store for `range` under `dir` (made if missing).
    pub fn open(dir: &Path, range: Cidr) -> Result<Ipam, Error> {
        let dir = dir.join(range.to_string().replace('/', "-"));
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("ipam dir {}", dir.display())))?;
        Ok(Ipam { dir, range })
    }

    /// The address held by `owner`, allocating the next free one if it holds none.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr, Error> {
        if let Some(ip) = self.owned_by(owner)? {
            return Ok(ip);
        }
        let (first, last) = self.range.hosts();
        // The gateway (the first host address) belongs to the bridge.
        let (first, last) = (u32::from(first) + 1, u32::from(last));
        let start = std::fs::read_to_string(self.dir.join(LAST))
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .filter(|n| (first..=last).contains(n))
            .map_or(first, |n| if n == last { first } else { n + 1 });
        let count = last - first + 1;
        for i in 0..count {
            let n = first + (start - first + i) % count;
            let ip = Ipv4Addr::from(n);
            let path = self.dir.join(ip.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(owner.as_bytes())
                        .and_then(|_| f.sync_all())
                        .map_err(Error::io(format!("ipam {}", path.display())))?;
                    let _ = std::fs::write(self.dir.join(LAST), ip.to_string());
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(format!("ipam {}", path.display()))(e)),
            }
        }
        Err(Error::Exhausted(self.range.to_string()))
    }

    fn owned_by(&self, owner: &str) -> Result<Option<Ipv4Addr>, Error> {
        Ok(self
            .owners()?
            .into_iter()
            .find_map(|(ip, o)| (o == owner).then_some(ip)))
    }

    /// Releases whatever `owner` holds (nothing is not an error).
    pub fn release(&self, owner: &str) -> Result<(), Error> {
        for (ip, o) in self.owners()? {
            if o == owner {
                let path = self.dir.join(ip.to_string());
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("ipam {}", path.display()))(e)),
                }
            }
        }
        Ok(())
    }

    /// Every address in use and its owner ("" for a file a crash left half-written).
    pub fn owners(&self) -> Result<BTreeMap<Ipv4Addr, String>, Error> {
        let mut out = BTreeMap::new();
        let entries = std::fs::read_dir(&self.dir).map_err(Error::io("ipam list"))?;
        for e in entries.flatten() {
            let name = e.file_name();
            if let Ok(ip) = name.to_string_lossy().parse::<Ipv4Addr>() {
                let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
                out.insert(ip, owner);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_each_address_once_and_reuses_released_ones_last() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), "10.42.3.0/29".parse().unwrap()).unwrap();
        // .0 network, .1 gateway, .7 broadcast: .2 to .6 are the pods'.
        let ips: Vec<_> = (0..5)
            .map(|i| ipam.allocate(&format!("pod{i}")).unwrap())
            .collect();
        assert_eq!(ips.first().unwrap().to_string(), "10.42.3.2");
        assert_eq!(ips.last().unwrap().to_string(), "10.42.3.6");
        assert_eq!(
            ipam.allocate("pod3").unwrap(),
            ips[3],
            "same owner, same address"
        );
        assert!(matches!(ipam.allocate("pod9"), Err(Error::Exhausted(_))));
        ipam.release("pod1").unwrap();
        assert_eq!(ipam.allocate("pod9").unwrap(), ips[1]);
        // A second handle on the same directory (a restarted agent) sees the same owners.
        let again = Ipam::open(dir.path(), "10.42.3.0/29".parse().unwrap()).unwrap();
        assert_eq!(again.owners().unwrap().len(), 5);
        assert_eq!(again.owners().unwrap()[&ips[1]], "pod9");
    }
}

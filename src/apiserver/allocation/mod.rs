//! Values an object holds outside its own key, taken in the store before the object is written:
//! a Service's cluster IPs and node ports (`service.rs`, upstream's rules; `ranges.rs`, the
//! ranges and their messages). Each value taken is a key of its own, created with
//! `Store::create`, so two concurrent writes can never take the same one (the store refuses the
//! second create) and what is taken survives a restart.
//!
//! - a cluster IP is a networking.k8s.io/v1 `IPAddress` object named by the address (the
//!   record kube-apiserver keeps since 1.33), so `kubectl get ipaddresses` lists them;
//! - a node port is `/registry/ranges/servicenodeports/<port>` naming its service.
//!
//! The request path (`resources.rs`, `deletes.rs`) asks the kind's `Strategy::allocator` on
//! create and main-resource updates, before validation (as kube-apiserver allocates before it
//! validates): the returned `Taken` is reverted when the write does not happen and committed
//! (values the update gave up are freed) when it does; a delete frees everything held.

pub mod ranges;
pub mod service;

use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::status::ApiError;
use crate::store::{self, Store};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::sync::OnceLock;

pub use ranges::{IpRange, PortRange};

/// Implemented by kinds whose objects hold values outside their key (`Strategy::allocator`).
pub trait Allocator: Send + Sync {
    /// Takes what `obj` needs that `old` (on update) did not hold, writing the values chosen
    /// into `obj`. A refusal is the Status to answer; nothing stays taken then.
    fn allocate<'a>(
        &'a self,
        store: &'a dyn Store,
        obj: &'a mut Value,
        old: Option<&'a Value>,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<Taken, ApiError>>;

    /// The keys `obj` holds, freed once it is deleted.
    fn held(&self, obj: &Value) -> Vec<Record>;
}

/// The configured ranges: `--service-cidr` and `--service-node-port-range`, reserving
/// `--cluster-dns`.
#[derive(Debug, Clone)]
pub struct Ranges {
    pub ips: IpRange,
    pub ports: PortRange,
}

impl Default for Ranges {
    /// k3s's defaults: 10.43.0.0/16 with 10.43.0.10 for DNS, ports 30000-32767.
    fn default() -> Ranges {
        Ranges {
            ips: IpRange::new("10.43.0.0/16", &[std::net::Ipv4Addr::new(10, 43, 0, 10)])
                .expect("the default range is valid"),
            ports: PortRange {
                first: 30000,
                last: 32767,
            },
        }
    }
}

static RANGES: OnceLock<Ranges> = OnceLock::new();

/// Sets the server's ranges, once, before it serves (`nanokube server` does it from its flags);
/// a process that never does (in-process test servers) uses `Ranges::default()`.
pub fn install(ranges: Ranges) {
    let _ = RANGES.set(ranges);
}

pub fn ranges() -> &'static Ranges {
    RANGES.get_or_init(Ranges::default)
}

/// Who holds a value: the object's namespace and name, written into its record and checked
/// before the record is removed, so one object never frees another's value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
}

impl Owner {
    pub fn of(obj: &Value) -> Owner {
        let m = &obj["metadata"];
        Owner {
            namespace: m["namespace"].as_str().unwrap_or_default().into(),
            name: m["name"].as_str().unwrap_or_default().into(),
        }
    }

    fn matches(&self, record: &Value) -> bool {
        let r = &record["spec"]["parentRef"];
        r["namespace"].as_str().unwrap_or_default() == self.namespace
            && r["name"].as_str() == Some(&self.name)
    }
}

/// One value held outside an object, kept as a record of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// An IPAddress object named by the address.
    ClusterIp(std::net::Ipv4Addr),
    /// A node port (or health-check node port), under `/registry/ranges/servicenodeports/`.
    NodePort(u16),
}

impl Record {
    pub fn key(&self) -> String {
        match self {
            Record::ClusterIp(ip) => format!("/registry/networking.k8s.io/ipaddresses/{ip}"),
            Record::NodePort(port) => format!("/registry/ranges/servicenodeports/{port}"),
        }
    }

    /// The stored record: an IPAddress for addresses; node ports get the same `spec.parentRef`
    /// and creationTimestamp so both are read the same way.
    fn content(&self, owner: &Owner) -> Value {
        let parent = json!({"group": "", "resource": "services",
            "namespace": owner.namespace, "name": owner.name});
        let now = crate::apiserver::resources::now_rfc3339();
        match self {
            Record::ClusterIp(ip) => json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IPAddress",
                "metadata": {
                    "name": ip.to_string(),
                    "uid": uuid::Uuid::new_v4().to_string(),
                    "creationTimestamp": now,
                    "labels": {
                        "ipaddress.kubernetes.io/ip-family": "IPv4",
                        "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
                    },
                },
                "spec": {"parentRef": parent},
            }),
            Record::NodePort(_) => json!({
                "metadata": {"creationTimestamp": now},
                "spec": {"parentRef": parent},
            }),
        }
    }
}

/// What one allocation took, and what the write gives up if it happens.
#[derive(Debug, Default)]
#[must_use = "a Taken is committed or reverted"]
pub struct Taken {
    owner: Owner,
    dry_run: bool,
    /// Created for this write: removed again if it does not happen.
    new: Vec<Record>,
    /// Held before this write and not after: removed once it has happened.
    freed: Vec<Record>,
}

impl Taken {
    pub fn new(owner: Owner, dry_run: bool) -> Taken {
        Taken {
            owner,
            dry_run,
            ..Default::default()
        }
    }

    /// Takes `record` for the owner: false if someone holds it already. A dry run only looks.
    pub async fn take(&mut self, store: &dyn Store, record: Record) -> Result<bool, ApiError> {
        if self.new.contains(&record) {
            return Ok(false);
        }
        let key = record.key();
        if self.dry_run {
            let free = store.get(&key).await?.is_none();
            if free {
                self.new.push(record);
            }
            return Ok(free);
        }
        let value = crate::apiserver::encoding::to_stored(&record.content(&self.owner));
        match store.create(&key, value).await {
            Ok(_) => {
                self.new.push(record);
                Ok(true)
            }
            Err(store::Error::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Marks a value held before as given up by this write.
    pub fn free(&mut self, record: Record) {
        if !self.freed.contains(&record) {
            self.freed.push(record);
        }
    }

    /// The write happened: what it gave up is freed.
    pub async fn commit(self, store: &dyn Store) {
        if !self.dry_run {
            release(store, &self.owner, &self.freed).await;
        }
    }

    /// The write did not happen: what it took is freed.
    pub async fn revert(self, store: &dyn Store) {
        if !self.dry_run {
            release(store, &self.owner, &self.new).await;
        }
    }
}

/// Removes the records of `keys` that `owner` holds. Failures are logged: a record left behind
/// only keeps its value unused.
pub async fn release(store: &dyn Store, owner: &Owner, records: &[Record]) {
    for record in records {
        let key = &record.key();
        let result = async {
            let Some(kv) = store.get(key).await? else {
                return Ok(());
            };
            let record: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            if !owner.matches(&record) {
                return Ok(());
            }
            match store.delete(key, Some(kv.mod_revision)).await {
                Ok(_) | Err(store::Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(key = %key, error = %e, "releasing an allocated value");
        }
    }
}

/// What the kind's allocator takes for one write (nothing for kinds without one).
pub async fn allocate(
    info: &ResourceInfo,
    store: &dyn Store,
    obj: &mut Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Result<Option<Taken>, ApiError> {
    match info.strategy.allocator() {
        Some(a) => Ok(Some(a.allocate(store, obj, old, dry_run).await?)),
        None => Ok(None),
    }
}

/// Ends a write's allocation: committed when the object was written, reverted otherwise.
pub async fn settle(taken: Option<Taken>, store: &dyn Store, written: bool) {
    match taken {
        Some(t) if written => t.commit(store).await,
        Some(t) => t.revert(store).await,
        None => {}
    }
}

/// Frees what a deleted object held.
pub async fn free_held(info: &ResourceInfo, store: &dyn Store, obj: &Value) {
    if let Some(a) = info.strategy.allocator() {
        release(store, &Owner::of(obj), &a.held(obj)).await;
    }
}

/// Records younger than this may be a create in flight on another server: repair leaves them.
const REPAIR_MIN_AGE: chrono::Duration = chrono::Duration::seconds(10);

/// At start, before serving: removes the records of Services that do not exist or no longer
/// hold the value, as upstream's repair controllers do. They are left by a server stopped
/// between taking a value and writing its Service, or made by hand. Returns how many went.
pub async fn repair(store: &dyn Store, services: &ResourceInfo) -> Result<usize, ApiError> {
    let Some(allocator) = services.strategy.allocator() else {
        return Ok(0);
    };
    let now = chrono::Utc::now();
    let mut removed = 0;
    for prefix in [
        "/registry/networking.k8s.io/ipaddresses/",
        "/registry/ranges/servicenodeports/",
    ] {
        let page = store.list(prefix, None, 0, None).await?;
        for kv in page.items {
            let record: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            let parent = &record["spec"]["parentRef"];
            let created = record["metadata"]["creationTimestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            let old_enough =
                created.is_some_and(|t| now - t.with_timezone(&chrono::Utc) > REPAIR_MIN_AGE);
            if parent["resource"] != "services" || !old_enough {
                continue;
            }
            let ns = parent["namespace"].as_str().unwrap_or_default();
            let name = parent["name"].as_str().unwrap_or_default();
            let held = match store.get(&services.key(Some(ns), name)).await? {
                Some(svc) => {
                    let svc: Value = serde_json::from_slice(&svc.value).unwrap_or_default();
                    allocator.held(&svc).iter().any(|r| r.key() == kv.key)
                }
                None => false,
            };
            if !held {
                match store.delete(&kv.key, Some(kv.mod_revision)).await {
                    Ok(_) => {
                        tracing::info!(record = %kv.key, service = %format!("{ns}/{name}"), "released a value no service holds");
                        removed += 1;
                    }
                    Err(store::Error::NotFound(_) | store::Error::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(removed)
}

//! The owner graph, pure: one node per object seen by the metadata watchers (or named as an
//! owner by one), its ownerReferences and the reverse edges, its dependents. Every change
//! returns the work it calls for, as upstream's GraphBuilder feeds attemptToDelete and
//! attemptToOrphan; what the work does (live reads, deletes, patches) is `super::worker`'s.

use std::collections::{BTreeMap, BTreeSet};

/// The finalizers of the propagation policies (as `src/apiserver/deletes.rs` writes them).
pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

pub type Uid = String;

/// Where an object is: what a live read needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinates {
    pub api_version: String,
    pub kind: String,
    /// The dependent's namespace for an owner only known by reference: the owner is in it if
    /// its kind is namespaced (an ownerReference cannot point to another namespace).
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: Uid,
    /// blockOwnerDeletion: a foreground delete of the owner waits for this dependent.
    pub block: bool,
}

/// One object as a watcher reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub uid: Uid,
    pub at: Coordinates,
    /// The watched resource it came from (`group/plural`), to find what a relist no longer
    /// shows.
    pub resource: String,
    pub owners: Vec<OwnerRef>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Observed {
    fn has(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub at: Coordinates,
    /// None for a virtual node: an owner named by a dependent but not (yet) seen itself.
    pub resource: Option<String>,
    pub owners: Vec<OwnerRef>,
    pub dependents: BTreeSet<Uid>,
    /// Being deleted in foreground: deletionTimestamp and the foregroundDeletion finalizer.
    pub deleting_dependents: bool,
    /// Being deleted with Orphan: deletionTimestamp and the orphan finalizer.
    pub orphaning: bool,
}

impl Node {
    pub fn is_virtual(&self) -> bool {
        self.resource.is_none()
    }
}

/// What the worker is to do for a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Work {
    /// Look at the object: collect it if its owners are gone, finish its foreground delete,
    /// or (virtual) check whether it exists at all.
    Delete(Uid),
    /// Take the references to it off its dependents, then its orphan finalizer.
    Orphan(Uid),
}

#[derive(Debug, Default)]
pub struct Graph {
    nodes: BTreeMap<Uid, Node>,
}

impl Graph {
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The dependents whose reference to `uid` blocks its foreground deletion.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<Uid> {
        let Some(n) = self.nodes.get(uid) else {
            return Vec::new();
        };
        n.dependents
            .iter()
            .filter(|d| {
                self.nodes
                    .get(*d)
                    .is_some_and(|d| d.owners.iter().any(|o| o.uid == uid && o.block))
            })
            .cloned()
            .collect()
    }

    /// The real nodes a watcher of `resource` reported.
    pub fn uids_of(&self, resource: &str) -> Vec<Uid> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.resource.as_deref() == Some(resource))
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// An object was added or changed.
    pub fn observe(&mut self, o: Observed) -> Vec<Work> {
        let mut work = Vec::new();
        let old = self.nodes.get(&o.uid).cloned();
        let (old_owners, was_deleting_dependents, was_orphaning) = match &old {
            Some(n) if !n.is_virtual() => (n.owners.clone(), n.deleting_dependents, n.orphaning),
            _ => (Vec::new(), false, false),
        };
        let deleting_dependents = o.deleting && o.has(FOREGROUND);
        let orphaning = o.deleting && o.has(ORPHAN);
        let node = Node {
            at: o.at.clone(),
            resource: Some(o.resource.clone()),
            owners: o.owners.clone(),
            dependents: old.map(|n| n.dependents).unwrap_or_default(),
            // Once deleting its dependents, a node stays so (upstream marks it once).
            deleting_dependents: deleting_dependents || was_deleting_dependents,
            orphaning,
        };
        self.nodes.insert(o.uid.clone(), node);

        // References added: link to the owner, making a virtual node the worker checks.
        for r in &o.owners {
            if old_owners.iter().any(|x| x.uid == r.uid) {
                continue;
            }
            let owner = self.nodes.entry(r.uid.clone()).or_insert_with(|| {
                work.push(Work::Delete(r.uid.clone()));
                Node {
                    at: Coordinates {
                        api_version: r.api_version.clone(),
                        kind: r.kind.clone(),
                        namespace: o.at.namespace.clone(),
                        name: r.name.clone(),
                    },
                    resource: None,
                    owners: Vec::new(),
                    dependents: BTreeSet::new(),
                    deleting_dependents: false,
                    orphaning: false,
                }
            });
            owner.dependents.insert(o.uid.clone());
            // A dependent appearing under an owner already deleting its dependents is one more
            // for it to delete.
            if owner.deleting_dependents {
                work.push(Work::Delete(o.uid.clone()));
            }
        }
        // References removed or no longer blocking: an owner waiting in foreground may be done.
        for r in &old_owners {
            let now = o.owners.iter().find(|x| x.uid == r.uid);
            if now.is_none() {
                self.unlink(&r.uid, &o.uid, &mut work);
            } else if r.block && now.is_some_and(|x| !x.block) {
                self.wake_if_waiting(&r.uid, &mut work);
            }
        }

        if orphaning && !was_orphaning {
            work.push(Work::Orphan(o.uid.clone()));
        } else if deleting_dependents && !was_deleting_dependents {
            let deps = self.nodes[&o.uid].dependents.iter().cloned();
            work.extend(deps.map(Work::Delete));
            work.push(Work::Delete(o.uid.clone()));
        }
        work
    }

    /// An object is gone (a watch's delete, a relist without it, or a live read that found
    /// an owner absent): its dependents are looked at, and owners waiting for it may finish.
    pub fn remove(&mut self, uid: &str) -> Vec<Work> {
        let mut work = Vec::new();
        let Some(node) = self.nodes.remove(uid) else {
            return work;
        };
        for r in &node.owners {
            self.unlink(&r.uid, uid, &mut work);
        }
        work.extend(node.dependents.iter().cloned().map(Work::Delete));
        work
    }

    fn unlink(&mut self, owner: &str, dependent: &str, work: &mut Vec<Work>) {
        let Some(o) = self.nodes.get_mut(owner) else {
            return;
        };
        o.dependents.remove(dependent);
        if o.is_virtual() && o.dependents.is_empty() {
            self.nodes.remove(owner);
            return;
        }
        self.wake_if_waiting(owner, work);
    }

    fn wake_if_waiting(&self, owner: &str, work: &mut Vec<Work>) {
        if self.nodes.get(owner).is_some_and(|o| o.deleting_dependents) {
            work.push(Work::Delete(owner.to_string()));
        }
    }
}

/// How a dependent's owner stands, from a live read (upstream's classifyReferences).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists with the referenced uid and is not being deleted in foreground.
    Solid,
    /// Not found, or found with another uid.
    Dangling,
    /// Exists and is deleting its dependents in foreground.
    Waiting,
}

/// What to do with a dependent not itself being deleted, given its owners' states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: no owners, or only solid ones.
    Keep,
    /// A live owner keeps it: drop the references to the gone and the waiting owners.
    DropReferences(Vec<Uid>),
    /// Collect it, with this propagation policy. `unblock` first turns its
    /// blockOwnerDeletion references off (a dependent of its own is deleting in foreground
    /// too, which could otherwise wait in a cycle).
    Delete { policy: Policy, unblock: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Background,
    Foreground,
    Orphan,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Background => "Background",
            Policy::Foreground => "Foreground",
            Policy::Orphan => "Orphan",
        }
    }
}

/// Upstream's attemptToDeleteItem once the owners are classified. `finalizers` are the
/// dependent's own; `dependents` whether the graph knows dependents of it, and
/// `dependent_deleting_dependents` whether one of those is deleting in foreground.
pub fn verdict(
    owners: &[(OwnerRef, OwnerState)],
    finalizers: &[String],
    has_dependents: bool,
    dependent_deleting_dependents: bool,
) -> Verdict {
    if owners.is_empty() {
        return Verdict::Keep;
    }
    let of = |s: OwnerState| {
        owners
            .iter()
            .filter(move |(_, x)| *x == s)
            .map(|(r, _)| r.uid.clone())
    };
    let solid = of(OwnerState::Solid).count();
    let waiting: Vec<Uid> = of(OwnerState::Waiting).collect();
    if solid > 0 {
        let drop: Vec<Uid> = of(OwnerState::Dangling).chain(waiting).collect();
        return if drop.is_empty() {
            Verdict::Keep
        } else {
            Verdict::DropReferences(drop)
        };
    }
    if !waiting.is_empty() && has_dependents {
        return Verdict::Delete {
            policy: Policy::Foreground,
            unblock: dependent_deleting_dependents,
        };
    }
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    let policy = if has(ORPHAN) {
        Policy::Orphan
    } else if has(FOREGROUND) {
        Policy::Foreground
    } else {
        Policy::Background
    };
    Verdict::Delete {
        policy,
        unblock: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(kind: &str, name: &str) -> Coordinates {
        Coordinates {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: Some("ns".into()),
            name: name.into(),
        }
    }

    fn owner(uid: &str, block: bool) -> OwnerRef {
        OwnerRef {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            block,
        }
    }

    fn obj(uid: &str, owners: Vec<OwnerRef>) -> Observed {
        Observed {
            uid: uid.into(),
            at: at("Pod", uid),
            resource: "/pods".into(),
            owners,
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    fn deleting(mut o: Observed, finalizer: &str) -> Observed {
        o.deleting = true;
        o.finalizers = vec![finalizer.into()];
        o
    }

    #[test]
    fn an_unseen_owner_becomes_a_virtual_node_to_check() {
        let mut g = Graph::default();
        let work = g.observe(obj("p1", vec![owner("rs1", true)]));
        assert_eq!(work, vec![Work::Delete("rs1".into())]);
        let rs = g.node("rs1").unwrap();
        assert!(rs.is_virtual());
        assert_eq!(rs.at.namespace.as_deref(), Some("ns"));
        assert_eq!(rs.dependents.iter().collect::<Vec<_>>(), ["p1"]);
        // A second dependent of the same owner does not check it again.
        assert!(g.observe(obj("p2", vec![owner("rs1", true)])).is_empty());
        // Seeing the owner makes the node real and keeps its dependents.
        assert!(g.observe(obj("rs1", vec![])).is_empty());
        assert!(!g.node("rs1").unwrap().is_virtual());
        assert_eq!(g.node("rs1").unwrap().dependents.len(), 2);
    }

    #[test]
    fn a_removed_owner_sends_its_dependents_to_the_worker() {
        let mut g = Graph::default();
        g.observe(obj("rs1", vec![]));
        g.observe(obj("p1", vec![owner("rs1", true)]));
        g.observe(obj("p2", vec![owner("rs1", false)]));
        let work = g.remove("rs1");
        assert_eq!(
            work,
            vec![Work::Delete("p1".into()), Work::Delete("p2".into())]
        );
        assert!(g.node("rs1").is_none());
        // The dependents' last reference to a virtual owner takes the virtual node away too.
        g.observe(obj("p3", vec![owner("gone", true)]));
        assert!(g.node("gone").is_some());
        g.remove("p3");
        assert!(g.node("gone").is_none());
    }

    #[test]
    fn a_foreground_delete_looks_at_every_dependent_then_waits_for_the_blocking_ones() {
        let mut g = Graph::default();
        g.observe(obj("rs1", vec![]));
        g.observe(obj("p1", vec![owner("rs1", true)]));
        g.observe(obj("p2", vec![owner("rs1", false)]));
        let work = g.observe(deleting(obj("rs1", vec![]), FOREGROUND));
        assert_eq!(
            work,
            vec![
                Work::Delete("p1".into()),
                Work::Delete("p2".into()),
                Work::Delete("rs1".into())
            ]
        );
        assert_eq!(g.blocking_dependents("rs1"), vec!["p1".to_string()]);
        // The same state seen again is no new work.
        assert!(g
            .observe(deleting(obj("rs1", vec![]), FOREGROUND))
            .is_empty());
        // The blocking dependent going wakes the owner; so does a reference turned
        // non-blocking, and one dropped.
        assert_eq!(g.remove("p1"), vec![Work::Delete("rs1".into())]);
        assert!(g.blocking_dependents("rs1").is_empty());
        g.observe(obj("p4", vec![owner("rs1", true)]));
        assert_eq!(
            g.observe(obj("p4", vec![owner("rs1", false)])),
            vec![Work::Delete("rs1".into())]
        );
        assert_eq!(
            g.observe(obj("p4", vec![])),
            vec![Work::Delete("rs1".into())]
        );
        // A dependent appearing under it is one more to delete.
        assert_eq!(
            g.observe(obj("p5", vec![owner("rs1", true)])),
            vec![Work::Delete("p5".into())]
        );
    }

    #[test]
    fn the_orphan_finalizer_asks_for_orphaning_once() {
        let mut g = Graph::default();
        g.observe(obj("d1", vec![]));
        let work = g.observe(deleting(obj("d1", vec![]), ORPHAN));
        assert_eq!(work, vec![Work::Orphan("d1".into())]);
        assert!(g.observe(deleting(obj("d1", vec![]), ORPHAN)).is_empty());
        // First seen already orphaning, as after a restart: the same work.
        let mut g = Graph::default();
        assert_eq!(
            g.observe(deleting(obj("d1", vec![]), ORPHAN)),
            vec![Work::Orphan("d1".into())]
        );
    }

    #[test]
    fn a_restart_resumes_a_foreground_delete() {
        let mut g = Graph::default();
        // The relist may show the dependent before its owner.
        g.observe(obj("p1", vec![owner("rs1", true)]));
        let work = g.observe(deleting(obj("rs1", vec![]), FOREGROUND));
        assert!(work.contains(&Work::Delete("p1".into())));
        assert!(work.contains(&Work::Delete("rs1".into())));
    }

    #[test]
    fn owners_decide_the_verdict() {
        use OwnerState::*;
        let (a, b) = (owner("a", true), owner("b", true));
        assert_eq!(verdict(&[], &[], false, false), Verdict::Keep);
        assert_eq!(
            verdict(&[(a.clone(), Solid)], &[], false, false),
            Verdict::Keep
        );
        assert_eq!(
            verdict(
                &[(a.clone(), Solid), (b.clone(), Dangling)],
                &[],
                false,
                false
            ),
            Verdict::DropReferences(vec!["b".into()])
        );
        assert_eq!(
            verdict(
                &[(a.clone(), Solid), (b.clone(), Waiting)],
                &[],
                true,
                false
            ),
            Verdict::DropReferences(vec!["b".into()])
        );
        let delete = |policy| Verdict::Delete {
            policy,
            unblock: false,
        };
        assert_eq!(
            verdict(&[(a.clone(), Dangling)], &[], false, false),
            delete(Policy::Background)
        );
        assert_eq!(
            verdict(&[(a.clone(), Dangling)], &[ORPHAN.into()], false, false),
            delete(Policy::Orphan)
        );
        // Waiting owners: a dependent with dependents of its own goes in foreground too.
        assert_eq!(
            verdict(&[(a.clone(), Waiting)], &[], false, false),
            delete(Policy::Background)
        );
        assert_eq!(
            verdict(
                &[(a.clone(), Waiting), (b.clone(), Dangling)],
                &[],
                true,
                false
            ),
            delete(Policy::Foreground)
        );
        assert_eq!(
            verdict(&[(a, Waiting)], &[], true, true),
            Verdict::Delete {
                policy: Policy::Foreground,
                unblock: true
            }
        );
    }
}

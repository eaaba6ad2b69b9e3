//! The rollout arithmetic: maxSurge and maxUnavailable resolved against the replica count
//! (surge rounds up, unavailability down, and both zero means one may be unavailable, as
//! upstream's ResolveFenceposts), and the proportional split of a scale change across sets.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// GetScaledValueFromIntOrPercent: an int as is, "N%" of `total` rounded up or down. A value
/// the API server's validation would have refused counts as 0.
pub fn scaled(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let Some(pct) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let x = pct * i64::from(total);
            let v = if round_up {
                (x + 99).div_euclid(100)
            } else {
                x.div_euclid(100)
            };
            v as i32
        }
    }
}

/// (surge, unavailable) for `desired` replicas.
pub fn fenceposts(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let s = scaled(surge, desired, true);
    let u = scaled(unavailable, desired, false);
    if s == 0 && u == 0 {
        (0, 1)
    } else {
        (s, u)
    }
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn is_rolling(d: &Deployment) -> bool {
    strategy_type(d) == "RollingUpdate"
}

pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

fn deployment_fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
}

/// MaxSurge: 0 unless rolling.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    deployment_fenceposts(d).0
}

/// MaxUnavailable: 0 unless rolling with replicas, never more than the replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let n = replicas(d);
    if !is_rolling(d) || n == 0 {
        return 0;
    }
    deployment_fenceposts(d).1.min(n)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

pub fn desired_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, DESIRED_REPLICAS)
}

/// NewRSNewReplicas for a rolling update: grow the new set as far as the surge allows, never
/// past the desired count.
pub fn new_rs_replicas(d: &Deployment, all: &[&ReplicaSet], new: &ReplicaSet) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let desired = replicas(d);
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = desired + max_surge(d);
    if current >= max_total {
        return rs_replicas(new);
    }
    let up = (max_total - current).min(desired - rs_replicas(new));
    rs_replicas(new) + up
}

/// getReplicaSetFraction: the change that keeps this set's share of the deployment when the
/// deployment's size (plus surge) changes from what the set's max-replicas annotation recorded.
pub fn fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let now = replicas(d) + max_surge(d);
    let before = annotation(rs, MAX_REPLICAS)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if before == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(now) / f64::from(before);
    // integer.RoundToInt32: halves away from zero.
    size.round() as i32 - rs_replicas(rs)
}

/// getProportion: this set's part of `to_add`, of which `added` is handed out already.
pub fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let f = fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        f.min(allowed)
    } else {
        f.max(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn percentages_round_as_upstream() {
        assert_eq!(scaled(Some(&pct("25%")), 10, true), 3);
        assert_eq!(scaled(Some(&pct("25%")), 10, false), 2);
        assert_eq!(scaled(Some(&pct("25%")), 3, true), 1);
        assert_eq!(scaled(Some(&pct("25%")), 3, false), 0);
        assert_eq!(scaled(Some(&pct("100%")), 7, false), 7);
        assert_eq!(scaled(Some(&IntOrString::Int(2)), 7, false), 2);
        assert_eq!(scaled(Some(&pct("x")), 7, false), 0);
    }

    #[test]
    fn fenceposts_never_both_zero() {
        // The default 25%/25% on 3 replicas: one extra, none missing.
        assert_eq!(fenceposts(Some(&pct("25%")), Some(&pct("25%")), 3), (1, 0));
        // 0% and 10% of 5: neither allows anything, so one may be unavailable.
        assert_eq!(fenceposts(Some(&pct("0%")), Some(&pct("10%")), 5), (0, 1));
        assert_eq!(
            fenceposts(Some(&IntOrString::Int(1)), Some(&IntOrString::Int(0)), 3),
            (1, 0)
        );
    }

    fn rs(replicas: i32, max: Option<i32>) -> ReplicaSet {
        let mut r = ReplicaSet::default();
        r.spec.get_or_insert_default().replicas = Some(replicas);
        if let Some(m) = max {
            r.metadata.annotations = Some([(MAX_REPLICAS.to_string(), m.to_string())].into());
        }
        r
    }

    fn deploy(replicas: i32, surge: i32, unavailable: i32) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "spec": {"replicas": replicas, "selector": {},
                     "template": {},
                     "strategy": {"type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}
        }))
        .unwrap()
    }

    #[test]
    fn surge_grows_the_new_set_within_bounds() {
        let d = deploy(3, 1, 0);
        let old = rs(3, None);
        let new = rs(0, None);
        assert_eq!(new_rs_replicas(&d, &[&old, &new], &new), 1);
        let new = rs(1, None);
        assert_eq!(new_rs_replicas(&d, &[&old, &new], &new), 1);
        let old = rs(2, None);
        assert_eq!(new_rs_replicas(&d, &[&old, &new], &new), 2);
    }

    #[test]
    fn unavailable_is_capped_by_replicas() {
        assert_eq!(max_unavailable(&deploy(2, 0, 5)), 2);
        assert_eq!(max_unavailable(&deploy(0, 0, 5)), 0);
        assert_eq!(max_surge(&deploy(4, 2, 0)), 2);
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        // 10 -> 20 replicas (surge 0): two sets of 6 and 4 recorded at max 10 double.
        let d = deploy(20, 0, 1);
        let a = rs(6, Some(10));
        let b = rs(4, Some(10));
        assert_eq!(proportion(&a, &d, 10, 0), 6);
        assert_eq!(proportion(&b, &d, 10, 6), 4);
        // Halving: 10 -> 5.
        let d = deploy(5, 0, 1);
        assert_eq!(proportion(&a, &d, -5, 0), -3);
        assert_eq!(proportion(&b, &d, -5, -3), -2);
    }
}

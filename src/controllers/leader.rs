//! Leader election through a coordination.k8s.io Lease, as client-go's leaderelection does it,
//! so that several servers can run the same controllers and only one acts. The holder renews
//! the Lease every `retry`; the others try to take it every `retry` and may once it has not
//! been renewed for `leaseDurationSeconds`. A holder that cannot renew for `renew_deadline`
//! stops its components (upstream's process exits instead; here the server stays up and goes
//! back to waiting).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Election {
    /// The Lease's name in kube-system: `kube-controller-manager`, `kube-scheduler`.
    pub name: String,
    /// This candidate: `<host>_<random>` as upstream.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

impl Election {
    /// Upstream's defaults (15 s, 10 s, 2 s) for the lease called `name`.
    pub fn new(name: &str) -> Election {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "nanokube".into());
        Election {
            name: name.into(),
            identity: format!("{host}_{}", uuid::Uuid::new_v4()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// Whether `me` may write itself into the Lease now: it is free, ours, or expired.
pub fn may_take(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> bool {
    let Some(spec) = spec else { return true };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return true;
    }
    let Some(renewed) = spec.renew_time.as_ref() else {
        return true;
    };
    let duration = spec.lease_duration_seconds.unwrap_or(0).max(0) as u64;
    renewed.0 + Duration::from_secs(duration) < now
}

/// One attempt to take or renew the Lease; true if we hold it afterwards.
async fn try_hold(api: &Api<Lease>, e: &Election) -> kube::Result<bool> {
    let now = Timestamp::now();
    let spec = |old: Option<&LeaseSpec>| {
        let ours = old.and_then(|s| s.holder_identity.as_deref()) == Some(e.identity.as_str());
        LeaseSpec {
            holder_identity: Some(e.identity.clone()),
            lease_duration_seconds: Some(e.lease_duration.as_secs() as i32),
            acquire_time: if ours {
                old.and_then(|s| s.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(
                old.and_then(|s| s.lease_transitions).unwrap_or(0)
                    + i32::from(!ours && old.is_some()),
            ),
            ..Default::default()
        }
    };
    match api.get_opt(&e.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(e.name.clone()),
                    ..Default::default()
                },
                spec: Some(spec(None)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(err) => Err(err),
            }
        }
        Some(mut lease) => {
            if !may_take(lease.spec.as_ref(), &e.identity, now) {
                return Ok(false);
            }
            lease.spec = Some(spec(lease.spec.as_ref()));
            // The resourceVersion we read makes this a compare-and-swap: of two candidates
            // taking an expired lease at once, one gets 409.
            match api.replace(&e.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(err) => Err(err),
            }
        }
    }
}

/// Runs `start()`'s future while this process holds the Lease; stops it when leadership is
/// lost, and waits to lead again. Never returns.
pub async fn run<F, Fut>(client: kube::Client, e: Election, start: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, "kube-system");
    loop {
        // Follower: try every retry period.
        loop {
            match try_hold(&api, &e).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(err) => tracing::debug!(lease = %e.name, error = %err, "leader election"),
            }
            tokio::time::sleep(e.retry).await;
        }
        tracing::info!(lease = %e.name, identity = %e.identity, "became leader");
        let work = tokio::spawn(start());
        // Leader: renew every retry period; give up after renew_deadline without success.
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(e.retry).await;
            match try_hold(&api, &e).await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => break,
                Err(err) => {
                    tracing::warn!(lease = %e.name, error = %err, "renewing the leader lease");
                    if renewed.elapsed() > e.renew_deadline {
                        break;
                    }
                }
            }
        }
        tracing::warn!(lease = %e.name, "leadership lost: stopping");
        work.abort();
        let _ = work.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_taken_when_free_ours_or_expired() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert!(may_take(None, "me", now));
        assert!(may_take(Some(&spec("", 990, 15)), "me", now));
        assert!(may_take(Some(&spec("me", 999, 15)), "me", now));
        assert!(!may_take(Some(&spec("other", 990, 15)), "me", now));
        assert!(may_take(Some(&spec("other", 980, 15)), "me", now));
    }
}

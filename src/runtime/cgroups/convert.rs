//! Value conversions between the OCI spec (which speaks cgroup v1) and cgroup v2.

use super::{Error, Result};

/// v1 `cpu.shares` range and the v2 `cpu.weight` range.
const SHARES_MIN: u64 = 2;
const SHARES_MAX: u64 = 262_144;
const WEIGHT_MIN: u64 = 1;
const WEIGHT_MAX: u64 = 10_000;

/// Maps v1 cpu shares [2, 262144] linearly onto v2 cpu weight [1, 10000], the mapping runc
/// (1.1) and crun use, so the same spec gives the same weight under every runtime:
/// `weight = 1 + (shares - 2) * 9999 / 262142`. 0 means "not set" and stays 0.
/// The default 1024 shares becomes weight 39, not v2's default 100: that is a property of the
/// linear map that every runtime shares, so we keep it.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(SHARES_MIN, SHARES_MAX);
    WEIGHT_MIN + (shares - SHARES_MIN) * (WEIGHT_MAX - WEIGHT_MIN) / (SHARES_MAX - SHARES_MIN)
}

/// The inverse of [`shares_to_weight`] (rounding up, so converting back gives the same
/// weight): used to report a v2 weight in the v1 unit the spec uses.
pub fn weight_to_shares(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    let weight = weight.clamp(WEIGHT_MIN, WEIGHT_MAX);
    let span_w = WEIGHT_MAX - WEIGHT_MIN;
    let span_s = SHARES_MAX - SHARES_MIN;
    SHARES_MIN + ((weight - WEIGHT_MIN) * span_s).div_ceil(span_w)
}

/// v1 blkio weight range [10, 1000] onto v2 io.weight [1, 10000], linearly as runc converts
/// (used when the kernel has no io.bfq.weight, which takes the v1 value as it is).
pub fn blkio_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight).clamp(10, 1000);
    1 + (w - 10) * 9999 / 990
}

/// The v2 `memory.max` / `pids.max` form of a limit: negative means unlimited ("max").
pub(super) fn v2_limit(value: i64) -> String {
    if value < 0 {
        "max".to_string()
    } else {
        value.to_string()
    }
}

/// OCI `memory.swap` is the v1 "memory+swap" total; v2's `memory.swap.max` counts swap alone.
/// Returns the value for memory.swap.max, or None to leave it alone.
/// - swap -1: unlimited swap;
/// - swap unset (or 0) with memory unlimited (-1): swap unlimited too, as v1 would behave;
/// - otherwise swap must be >= the memory limit and the difference is the swap allowance.
pub(super) fn v2_swap(swap: Option<i64>, limit: Option<i64>) -> Result<Option<String>> {
    let invalid = |reason: &str| Error::InvalidResource {
        field: "linux.resources.memory.swap".to_string(),
        reason: reason.to_string(),
    };
    match (swap, limit) {
        (None | Some(0), Some(-1)) => Ok(Some("max".to_string())),
        (None | Some(0), _) => Ok(None),
        (Some(s), _) if s < 0 => Ok(Some("max".to_string())),
        (Some(_), None | Some(0)) => Err(invalid("a swap limit needs a memory limit")),
        (Some(_), Some(l)) if l < 0 => Err(invalid("a swap limit needs a memory limit")),
        (Some(s), Some(l)) if s < l => Err(invalid(&format!(
            "memory+swap ({s}) must not be below the memory limit ({l})"
        ))),
        (Some(s), Some(l)) => Ok(Some((s - l).to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_weight_round_trip() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
        for w in [1, 39, 100, 5000, 10_000] {
            assert_eq!(shares_to_weight(weight_to_shares(w)), w, "weight {w}");
        }
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
    }

    #[test]
    fn blkio_weight_to_io_weight() {
        assert_eq!(blkio_to_io_weight(0), 0);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    #[test]
    fn swap_conversion() {
        assert_eq!(v2_swap(None, Some(100)).unwrap(), None);
        assert_eq!(v2_swap(None, Some(-1)).unwrap().as_deref(), Some("max"));
        assert_eq!(
            v2_swap(Some(-1), Some(100)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(v2_swap(Some(100), Some(100)).unwrap().as_deref(), Some("0"));
        assert_eq!(
            v2_swap(Some(300), Some(100)).unwrap().as_deref(),
            Some("200")
        );
        assert!(v2_swap(Some(50), Some(100)).is_err());
        assert!(v2_swap(Some(50), None).is_err());
    }
}

//! cgroups: v2 (unified) first, v1 / hybrid as the fallback.

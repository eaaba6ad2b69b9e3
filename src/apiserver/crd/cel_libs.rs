//! The CEL libraries Kubernetes adds to the standard ones, for CRD rules and admission
//! policies: lists (`isSorted`, `sum`, `min`, `max`), regex (`find`, `findAll`), URLs (`url`,
//! `isURL` and their getters), IP addresses and CIDRs (`ip`, `isIP`, `cidr`, `isCIDR`, ...) and
//! resource quantities (`quantity`, `isQuantity`, comparison and arithmetic). Names, results
//! and error texts follow k8s.io/apiserver/pkg/cel/library.
//!
//! IPs, CIDRs, URLs and quantities are opaque values: they can be compared for equality and
//! passed to their own functions, as upstream's types are.

use cel::extractors::{Arguments, This};
use cel::objects::{Key, Map, Opaque};
use cel::{Context, ExecutionError, FunctionContext, Value};
use std::net::IpAddr;
use std::sync::Arc;

fn fail(ftx: &FunctionContext, msg: impl Into<String>) -> ExecutionError {
    ftx.error(msg.into())
}

/// The opaque value of type `T` behind `v`, or a type error naming `want`.
fn opaque<'a, T: Opaque>(
    ftx: &FunctionContext,
    v: &'a Value,
    want: &str,
) -> Result<&'a T, ExecutionError> {
    match v {
        Value::Opaque(o) => o
            .downcast_ref::<T>()
            .ok_or_else(|| fail(ftx, format!("expected {want}"))),
        _ => Err(fail(ftx, format!("expected {want}"))),
    }
}

// ---- lists ----

fn numbers(ftx: &FunctionContext, list: &[Value]) -> Result<Vec<f64>, ExecutionError> {
    list.iter()
        .map(|v| match v {
            Value::Int(i) => Ok(*i as f64),
            Value::UInt(u) => Ok(*u as f64),
            Value::Float(f) => Ok(*f),
            _ => Err(fail(ftx, "expected a list of numbers")),
        })
        .collect()
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::UInt(x), Value::UInt(y)) => Some(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Bytes(x), Value::Bytes(y)) => Some(x.cmp(y)),
        (Value::Opaque(_), Value::Opaque(_)) => {
            Some(quantity_of(a)?.nanos.cmp(&quantity_of(b)?.nanos))
        }
        _ => None,
    }
}

fn is_sorted(ftx: &FunctionContext, list: &[Value]) -> Result<bool, ExecutionError> {
    for w in list.windows(2) {
        match compare(&w[0], &w[1]) {
            Some(std::cmp::Ordering::Greater) => return Ok(false),
            Some(_) => {}
            None => return Err(fail(ftx, "isSorted: elements are not comparable")),
        }
    }
    Ok(true)
}

fn sum(ftx: &FunctionContext, list: &[Value]) -> Result<Value, ExecutionError> {
    match list.first() {
        None => Ok(Value::Int(0)),
        Some(Value::Int(_)) => list
            .iter()
            .try_fold(0i64, |acc, v| match v {
                Value::Int(i) => acc
                    .checked_add(*i)
                    .ok_or_else(|| fail(ftx, "integer overflow")),
                _ => Err(fail(ftx, "sum: mixed element types")),
            })
            .map(Value::Int),
        Some(Value::UInt(_)) => list
            .iter()
            .try_fold(0u64, |acc, v| match v {
                Value::UInt(i) => acc
                    .checked_add(*i)
                    .ok_or_else(|| fail(ftx, "integer overflow")),
                _ => Err(fail(ftx, "sum: mixed element types")),
            })
            .map(Value::UInt),
        Some(_) => Ok(Value::Float(numbers(ftx, list)?.iter().sum())),
    }
}

fn extreme(
    ftx: &FunctionContext,
    list: &[Value],
    want: std::cmp::Ordering,
    name: &str,
) -> Result<Value, ExecutionError> {
    let mut best = list
        .first()
        .ok_or_else(|| fail(ftx, format!("{name} called on empty list")))?;
    for v in &list[1..] {
        match compare(v, best) {
            Some(o) if o == want => best = v,
            Some(_) => {}
            None => return Err(fail(ftx, format!("{name}: elements are not comparable"))),
        }
    }
    Ok(best.clone())
}

// ---- regex ----

fn regex(ftx: &FunctionContext, re: &str) -> Result<regex::Regex, ExecutionError> {
    regex::Regex::new(re).map_err(|e| fail(ftx, format!("invalid regex: {e}")))
}

// ---- IP and CIDR ----

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

impl Opaque for Ip {
    fn runtime_type_name(&self) -> &str {
        "net.IP"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl Opaque for Cidr {
    fn runtime_type_name(&self) -> &str {
        "net.CIDR"
    }
}

/// An address as upstream's `ip()` takes one: no zone, no IPv4-mapped IPv6 form.
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    if s.contains('%') {
        return Err(format!("IP address with zone value is not allowed: {s}"));
    }
    let ip: IpAddr = s
        .parse()
        .map_err(|_| format!("IP Address {s:?} parse error during conversion from string: ParseAddr({s:?}): unable to parse IP"))?;
    if let IpAddr::V6(v6) = ip {
        if v6.to_ipv4_mapped().is_some() {
            return Err(format!("IPv4-mapped IPv6 address is not allowed: {s}"));
        }
    }
    Ok(ip)
}

fn bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((u32::from(v) & m).into())
        }
        IpAddr::V6(v) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((u128::from(v) & m).into())
        }
    }
}

pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let bad = || {
        format!("network address {s:?} parse error during conversion from string: netip.ParsePrefix({s:?}): bad prefix")
    };
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let ip = parse_ip(a).map_err(|_| bad())?;
    if p.is_empty() || p.starts_with('+') || (p.len() > 1 && p.starts_with('0')) {
        return Err(bad());
    }
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    if prefix > bits(ip) {
        return Err(bad());
    }
    Ok(Cidr { ip, prefix })
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.ip.is_ipv4() && masked(ip, self.prefix) == masked(self.ip, self.prefix)
    }
}

fn ip_of(ftx: &FunctionContext, v: &Value) -> Result<IpAddr, ExecutionError> {
    match v {
        Value::String(s) => parse_ip(s).map_err(|e| fail(ftx, e)),
        v => Ok(opaque::<Ip>(ftx, v, "ip")?.0),
    }
}

fn cidr_of(ftx: &FunctionContext, v: &Value) -> Result<Cidr, ExecutionError> {
    match v {
        Value::String(s) => parse_cidr(s).map_err(|e| fail(ftx, e)),
        v => Ok(opaque::<Cidr>(ftx, v, "cidr")?.clone()),
    }
}

// ---- URLs ----

/// A URL as Go's url.ParseRequestURI reads one: an absolute URI or an absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub path: String,
    pub query: String,
}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        "net.URL"
    }
}

pub fn parse_url(s: &str) -> Result<Url, String> {
    let bad =
        |why: &str| format!("URL parse error during conversion from string: parse {s:?}: {why}");
    if s.is_empty() || s.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return Err(bad("invalid URI for request"));
    }
    let (rest, query) = match s.split_once('?') {
        Some((r, q)) => (r, q.to_string()),
        None => (s, String::new()),
    };
    if rest.starts_with('/') {
        return Ok(Url {
            scheme: String::new(),
            host: String::new(),
            path: rest.to_string(),
            query,
        });
    }
    let (scheme, after) = rest
        .split_once(':')
        .ok_or_else(|| bad("invalid URI for request"))?;
    let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return Err(bad("missing protocol scheme"));
    }
    let Some(after) = after.strip_prefix("//") else {
        if after.starts_with('/') {
            return Ok(Url {
                scheme: scheme.to_ascii_lowercase(),
                host: String::new(),
                path: after.to_string(),
                query,
            });
        }
        return Err(bad("invalid URI for request"));
    };
    let (authority, path) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    let host = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    if let Some((_, port)) = split_port(host) {
        if !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad(&format!(
                "invalid port {:?} after host",
                format!(":{port}")
            )));
        }
    }
    Ok(Url {
        scheme: scheme.to_ascii_lowercase(),
        host: host.to_string(),
        path: path.to_string(),
        query,
    })
}

/// `host` split into hostname and port (the port without its colon), brackets of an IPv6
/// literal removed.
fn split_port(host: &str) -> Option<(&str, &str)> {
    if let Some(inner) = host.strip_prefix('[') {
        let (h, rest) = inner.split_once(']')?;
        return rest.strip_prefix(':').map(|p| (h, p));
    }
    host.rsplit_once(':')
}

fn hostname(host: &str) -> &str {
    match split_port(host) {
        Some((h, _)) => h,
        None => host.trim_start_matches('[').trim_end_matches(']'),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            // Bytes, not a str slice: the two after '%' may start a multi-byte character.
            b'%' if i + 2 < bytes.len() => match std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(())
            {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn url_of(ftx: &FunctionContext, v: &Value) -> Result<Url, ExecutionError> {
    Ok(opaque::<Url>(ftx, v, "url")?.clone())
}

// ---- quantities ----

/// A resource quantity held exactly, in billionths: every quantity Kubernetes writes (down to
/// `1n`, up to exa with binary suffixes) fits, and comparisons and sums stay exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    pub nanos: i128,
}

impl Opaque for Quantity {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.Quantity"
    }
}

const NANO: i128 = 1_000_000_000;

/// Parses a quantity as resource.ParseQuantity does: a signed decimal number and one suffix
/// (n u m "" k M G T P E, Ki..Ei, or an exponent eN).
pub fn parse_quantity(s: &str) -> Result<Quantity, String> {
    let bad = || {
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".to_string()
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(s.len());
    let (mut num, suffix) = s.split_at(split);
    let negative = num.starts_with('-');
    num = num.strip_prefix(['+', '-']).unwrap_or(num);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    // The value as digits / 10^scale, then the suffix.
    let digits: String = format!("{int}{frac}");
    let mut value: i128 = digits.trim_start_matches('0').parse().unwrap_or(0);
    if digits.len() > 30 {
        return Err(bad());
    }
    let mut scale = frac.len() as i32;
    let (binary, exp10): (u32, i32) = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        e if e.starts_with(['e', 'E']) => {
            let n: i32 = e[1..].parse().map_err(|_| bad())?;
            // Far beyond any quantity i128 nanos can hold either way; keeps the sums below
            // from overflowing.
            if n.abs() > 100 {
                return Err("quantity exponent out of range".into());
            }
            (0, n)
        }
        _ => return Err(bad()),
    };
    value = value
        .checked_mul(1i128 << binary)
        .ok_or_else(|| "quantity too large".to_string())?;
    scale -= exp10 + 9;
    // nanos = value * 10^-scale; what lies below a nano rounds up, as Kubernetes rounds.
    let nanos = if scale <= 0 {
        (0..-scale)
            .try_fold(value, |v, _| v.checked_mul(10))
            .ok_or_else(|| "quantity too large".to_string())?
    } else if scale > 38 {
        i128::from(value != 0)
    } else {
        let d = 10i128.pow(scale as u32);
        value / d + i128::from(value % d != 0)
    };
    Ok(Quantity {
        nanos: if negative { -nanos } else { nanos },
    })
}

fn quantity_of(v: &Value) -> Option<&Quantity> {
    match v {
        Value::Opaque(o) => o.downcast_ref::<Quantity>(),
        _ => None,
    }
}

fn quantity_arg(ftx: &FunctionContext, v: &Value) -> Result<i128, ExecutionError> {
    match v {
        Value::Int(i) => Ok(*i as i128 * NANO),
        v => Ok(opaque::<Quantity>(ftx, v, "quantity")?.nanos),
    }
}

fn q(nanos: i128) -> Value {
    Value::Opaque(Arc::new(Quantity { nanos }))
}

/// Adds the libraries' functions to `ctx`.
pub fn install(ctx: &mut Context) {
    // Lists.
    let _ = ctx.add_function(
        "isSorted",
        |ftx: &FunctionContext, This(l): This<Arc<Vec<Value>>>| is_sorted(ftx, &l),
    );
    let _ = ctx.add_function(
        "sum",
        |ftx: &FunctionContext, This(l): This<Arc<Vec<Value>>>| sum(ftx, &l),
    );
    let _ = ctx.add_function(
        "min",
        |ftx: &FunctionContext, This(l): This<Arc<Vec<Value>>>| {
            extreme(ftx, &l, std::cmp::Ordering::Less, "min")
        },
    );
    let _ = ctx.add_function(
        "max",
        |ftx: &FunctionContext, This(l): This<Arc<Vec<Value>>>| {
            extreme(ftx, &l, std::cmp::Ordering::Greater, "max")
        },
    );
    // Regex.
    let _ = ctx.add_function(
        "find",
        |ftx: &FunctionContext,
         This(s): This<Arc<String>>,
         re: Arc<String>|
         -> Result<Value, ExecutionError> {
            let found = regex(ftx, &re)?
                .find(&s)
                .map(|m| m.as_str().to_string())
                .unwrap_or_default();
            Ok(Value::String(Arc::new(found)))
        },
    );
    let _ = ctx.add_function(
        "findAll",
        |ftx: &FunctionContext,
         This(s): This<cel::Value>,
         Arguments(args): Arguments|
         -> Result<Value, ExecutionError> {
            let Value::String(s) = s else {
                return Err(fail(ftx, "findAll: expected a string"));
            };
            let (re, limit) = match args.as_slice() {
                [Value::String(re)] => (re.clone(), -1),
                [Value::String(re), Value::Int(n)] => (re.clone(), *n),
                _ => return Err(fail(ftx, "findAll(regex) or findAll(regex, int)")),
            };
            let all: Vec<Value> = regex(ftx, &re)?
                .find_iter(&s)
                .take(if limit < 0 {
                    usize::MAX
                } else {
                    limit as usize
                })
                .map(|m| Value::String(Arc::new(m.as_str().to_string())))
                .collect();
            Ok(Value::List(Arc::new(all)))
        },
    );
    // IPs.
    let _ = ctx.add_function("isIP", |s: Arc<String>| parse_ip(&s).is_ok());
    let _ = ctx.add_function(
        "ip",
        |ftx: &FunctionContext, s: Arc<String>| -> Result<Value, ExecutionError> {
            Ok(Value::Opaque(Arc::new(Ip(
                parse_ip(&s).map_err(|e| fail(ftx, e))?
            ))))
        },
    );
    let _ = ctx.add_function(
        "ip.isCanonical",
        |ftx: &FunctionContext, s: Arc<String>| -> Result<bool, ExecutionError> {
            let ip = parse_ip(&s).map_err(|e| fail(ftx, e))?;
            Ok(ip.to_string() == *s)
        },
    );
    let _ = ctx.add_function(
        "family",
        |ftx: &FunctionContext, This(v): This<Value>| -> Result<Value, ExecutionError> {
            Ok(Value::Int(if ip_of(ftx, &v)?.is_ipv4() { 4 } else { 6 }))
        },
    );
    for (name, test) in [
        (
            "isUnspecified",
            (|ip: IpAddr| ip.is_unspecified()) as fn(IpAddr) -> bool,
        ),
        ("isLoopback", |ip: IpAddr| ip.is_loopback()),
        ("isLinkLocalMulticast", |ip: IpAddr| match ip {
            IpAddr::V4(v) => v.octets()[..3] == [224, 0, 0],
            IpAddr::V6(v) => v.segments()[0] & 0xff0f == 0xff02,
        }),
        ("isLinkLocalUnicast", |ip: IpAddr| match ip {
            IpAddr::V4(v) => v.is_link_local(),
            IpAddr::V6(v) => v.segments()[0] & 0xffc0 == 0xfe80,
        }),
        ("isGlobalUnicast", |ip: IpAddr| match ip {
            IpAddr::V4(v) => {
                !(v.is_unspecified()
                    || v.is_loopback()
                    || v.is_link_local()
                    || v.is_multicast()
                    || v.is_broadcast())
            }
            IpAddr::V6(v) => {
                !(v.is_unspecified()
                    || v.is_loopback()
                    || v.is_multicast()
                    || v.segments()[0] & 0xffc0 == 0xfe80)
            }
        }),
    ] {
        let _ = ctx.add_function(
            name,
            move |ftx: &FunctionContext, This(v): This<Value>| -> Result<bool, ExecutionError> {
                Ok(test(ip_of(ftx, &v)?))
            },
        );
    }
    // CIDRs.
    let _ = ctx.add_function("isCIDR", |s: Arc<String>| parse_cidr(&s).is_ok());
    let _ = ctx.add_function(
        "cidr",
        |ftx: &FunctionContext, s: Arc<String>| -> Result<Value, ExecutionError> {
            Ok(Value::Opaque(Arc::new(
                parse_cidr(&s).map_err(|e| fail(ftx, e))?,
            )))
        },
    );
    let _ = ctx.add_function(
        "containsIP",
        |ftx: &FunctionContext, This(c): This<Value>, ip: Value| -> Result<bool, ExecutionError> {
            Ok(cidr_of(ftx, &c)?.contains(ip_of(ftx, &ip)?))
        },
    );
    let _ = ctx.add_function(
        "containsCIDR",
        |ftx: &FunctionContext,
         This(c): This<Value>,
         other: Value|
         -> Result<bool, ExecutionError> {
            let (c, o) = (cidr_of(ftx, &c)?, cidr_of(ftx, &other)?);
            Ok(o.prefix >= c.prefix && c.contains(o.ip))
        },
    );
    let _ = ctx.add_function(
        "prefixLength",
        |ftx: &FunctionContext, This(c): This<Value>| -> Result<i64, ExecutionError> {
            Ok(i64::from(cidr_of(ftx, &c)?.prefix))
        },
    );
    let _ = ctx.add_function(
        "masked",
        |ftx: &FunctionContext, This(c): This<Value>| -> Result<Value, ExecutionError> {
            let c = cidr_of(ftx, &c)?;
            Ok(Value::Opaque(Arc::new(Cidr {
                ip: masked(c.ip, c.prefix),
                prefix: c.prefix,
            })))
        },
    );
    // URLs.
    let _ = ctx.add_function("isURL", |s: Arc<String>| parse_url(&s).is_ok());
    let _ = ctx.add_function(
        "url",
        |ftx: &FunctionContext, s: Arc<String>| -> Result<Value, ExecutionError> {
            Ok(Value::Opaque(Arc::new(
                parse_url(&s).map_err(|e| fail(ftx, e))?,
            )))
        },
    );
    for (name, get) in [
        (
            "getScheme",
            (|u: &Url| u.scheme.clone()) as fn(&Url) -> String,
        ),
        ("getHost", |u: &Url| u.host.clone()),
        ("getHostname", |u: &Url| hostname(&u.host).to_string()),
        ("getPort", |u: &Url| {
            split_port(&u.host)
                .map(|(_, p)| p.to_string())
                .unwrap_or_default()
        }),
        ("getEscapedPath", |u: &Url| u.path.clone()),
    ] {
        let _ = ctx.add_function(
            name,
            move |ftx: &FunctionContext, This(u): This<Value>| -> Result<Value, ExecutionError> {
                Ok(Value::String(Arc::new(get(&url_of(ftx, &u)?))))
            },
        );
    }
    let _ = ctx.add_function(
        "getQuery",
        |ftx: &FunctionContext, This(u): This<Value>| -> Result<Value, ExecutionError> {
            let u = url_of(ftx, &u)?;
            let mut m: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
            for pair in u.query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                m.entry(percent_decode(k))
                    .or_default()
                    .push(Value::String(Arc::new(percent_decode(v))));
            }
            let map: std::collections::HashMap<Key, Value> = m
                .into_iter()
                .map(|(k, v)| (Key::String(Arc::new(k)), Value::List(Arc::new(v))))
                .collect();
            Ok(Value::Map(Map { map: Arc::new(map) }))
        },
    );
    // Quantities.
    let _ = ctx.add_function("isQuantity", |s: Arc<String>| parse_quantity(&s).is_ok());
    let _ = ctx.add_function(
        "quantity",
        |ftx: &FunctionContext, s: Arc<String>| -> Result<Value, ExecutionError> {
            Ok(q(parse_quantity(&s).map_err(|e| fail(ftx, e))?.nanos))
        },
    );
    let _ = ctx.add_function(
        "isInteger",
        |ftx: &FunctionContext, This(v): This<Value>| -> Result<bool, ExecutionError> {
            let n = quantity_arg(ftx, &v)?;
            Ok(n % NANO == 0 && i64::try_from(n / NANO).is_ok())
        },
    );
    let _ = ctx.add_function(
        "asInteger",
        |ftx: &FunctionContext, This(v): This<Value>| -> Result<i64, ExecutionError> {
            let n = quantity_arg(ftx, &v)?;
            if n % NANO != 0 {
                return Err(fail(ftx, "cannot convert value to integer"));
            }
            i64::try_from(n / NANO).map_err(|_| fail(ftx, "cannot convert value to integer"))
        },
    );
    let _ = ctx.add_function(
        "asApproximateFloat",
        |ftx: &FunctionContext, This(v): This<Value>| -> Result<f64, ExecutionError> {
            Ok(quantity_arg(ftx, &v)? as f64 / NANO as f64)
        },
    );
    let _ = ctx.add_function(
        "sign",
        |ftx: &FunctionContext, This(v): This<Value>| -> Result<i64, ExecutionError> {
            Ok(quantity_arg(ftx, &v)?.signum() as i64)
        },
    );
    let _ = ctx.add_function(
        "compareTo",
        |ftx: &FunctionContext, This(a): This<Value>, b: Value| -> Result<i64, ExecutionError> {
            Ok(quantity_arg(ftx, &a)?.cmp(&quantity_arg(ftx, &b)?) as i64)
        },
    );
    let _ = ctx.add_function(
        "isGreaterThan",
        |ftx: &FunctionContext, This(a): This<Value>, b: Value| -> Result<bool, ExecutionError> {
            Ok(quantity_arg(ftx, &a)? > quantity_arg(ftx, &b)?)
        },
    );
    let _ = ctx.add_function(
        "isLessThan",
        |ftx: &FunctionContext, This(a): This<Value>, b: Value| -> Result<bool, ExecutionError> {
            Ok(quantity_arg(ftx, &a)? < quantity_arg(ftx, &b)?)
        },
    );
    let _ = ctx.add_function(
        "add",
        |ftx: &FunctionContext, This(a): This<Value>, b: Value| -> Result<Value, ExecutionError> {
            quantity_arg(ftx, &a)?
                .checked_add(quantity_arg(ftx, &b)?)
                .map(q)
                .ok_or_else(|| fail(ftx, "quantity overflow"))
        },
    );
    let _ = ctx.add_function(
        "sub",
        |ftx: &FunctionContext, This(a): This<Value>, b: Value| -> Result<Value, ExecutionError> {
            quantity_arg(ftx, &a)?
                .checked_sub(quantity_arg(ftx, &b)?)
                .map(q)
                .ok_or_else(|| fail(ftx, "quantity overflow"))
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::crd::cel::eval;

    #[test]
    fn quantities_are_exact_and_round_up_below_a_nano() {
        let n = |s: &str| parse_quantity(s).unwrap().nanos;
        assert_eq!(n("1.5Gi"), 1_610_612_736 * NANO);
        assert_eq!(n("100m"), 100_000_000);
        assert_eq!(n("1e3"), 1000 * NANO);
        assert_eq!(n("1E-3"), 1_000_000);
        assert_eq!(n("-2k"), -2000 * NANO);
        assert_eq!(n("+.5"), NANO / 2);
        assert_eq!(n("1e-10"), 1, "below a nano rounds up");
        assert_eq!(n("8Ei"), 8 * (1i128 << 60) * NANO);
        assert!(parse_quantity("1e2147483647").is_err());
        for bad in ["", "Gi", ".", "1.2.3", "1 Gi", "1Gib", "1kk", "--1", "0x10"] {
            assert!(parse_quantity(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_arguments_are_evaluation_errors_that_say_why() {
        let err = |rule: &str| eval(rule, &[]).unwrap_err();
        assert!(err("quantity('five')").contains("quantities must match the regular expression"));
        assert!(err("ip('10.0.0.300')").contains("parse error during conversion from string"));
        assert!(err("ip('::ffff:1.2.3.4')").contains("IPv4-mapped IPv6 address is not allowed"));
        assert!(err("cidr('10.0.0.0/40')").contains("bad prefix"));
        assert!(err("url('no scheme here')").contains("URL parse error"));
        assert!(err("[].min()").contains("min called on empty list"));
        assert!(err("'a'.find('(')").contains("invalid regex"));
        assert!(err("quantity('1.5').asInteger()").contains("cannot convert value to integer"));
        // A multi-byte character right after '%' is kept, not a panic.
        assert_eq!(
            eval(
                "url('https://h/?q=%a\u{e9}').getQuery()['q'][0].size() > 0",
                &[]
            ),
            Ok(cel::Value::Bool(true))
        );
    }
}

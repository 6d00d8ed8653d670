//! Allowed sources: the addresses and ranges a policy admits, parsed and validated.
//!
//! An allowed source is an IPv4 or IPv6 address (meaning a `/32` or `/128`), a CIDR
//! range, or an address range `first-last` of one family (`198.51.100.10-198.51.100.20`,
//! which need not fall on CIDR boundaries; [`AllowedSource::to_cidrs`] gives the
//! smallest set of CIDR blocks covering it). The match-all check refuses a source that
//! admits every address (`0.0.0.0/0`, `::/0`, a range over every address), and
//! [`parse_sources`] refuses a list whose sources **together** cover every IPv4 or every
//! IPv6 address, however they are split (`0.0.0.0/1` and `128.0.0.0/1`, overlapping
//! prefixes, ranges): see [`check_coverage`].
//! Parsing trims white space and refuses, each with its own [`SourceError`]
//! variant, everything the product refuses: malformed input, DNS host names, match-all
//! ranges, ranges with host bits set and zone ids. A list of sources must not be empty.
//!
//! Blocked sources (the addresses a rule refuses inside its allowed ones) are the same
//! type with the same rules, but a list of them may be empty and may not block every
//! address of a family: see [`parse_blocked_sources`].
//!
//! IPv4-mapped IPv6 (`::ffff:a.b.c.d`, and ranges inside `::ffff:0:0/96` with a prefix of
//! at least 96) is normalized to IPv4, in sources here and in client addresses through
//! [`normalize_ip`], so a dual-stack socket can never slip past a rule written for IPv4.
//!
//! # Example
//!
//! ```
//! use tower_ip_allowlist::source::{AllowedSource, SourceError};
//!
//! let office: AllowedSource = " 198.51.100.0/24 ".parse()?;
//! assert_eq!(office.to_string(), "198.51.100.0/24");
//! assert!(office.contains("198.51.100.7".parse()?));
//! // An IPv4-mapped client address is the same client.
//! assert!(office.contains("::ffff:198.51.100.7".parse()?));
//!
//! let err = "198.51.100.7/24".parse::<AllowedSource>().unwrap_err();
//! assert!(matches!(err, SourceError::HostBitsSet { .. }));
//! assert!(err.to_string().contains("198.51.100.0/24"));
//!
//! let err = "vpn.example.com".parse::<AllowedSource>().unwrap_err();
//! assert!(matches!(err, SourceError::Hostname { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// One validated allowed source: a single address, a CIDR network, or a range of
/// addresses written `first-last`, IPv4-mapped IPv6 already folded into IPv4.
///
/// Displays in canonical form: a single address as `a.b.c.d` or `x::y`, a network as
/// `network/prefix`, a range as `first-last`. See the [module docs](self) for the rules
/// and an example.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllowedSource {
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Net(IpNet),
    /// `first < last`, both of one family.
    Range(IpAddr, IpAddr),
}

impl AllowedSource {
    /// The first and the last address this source admits (the same address for a
    /// single one).
    #[must_use]
    pub fn bounds(&self) -> (IpAddr, IpAddr) {
        match self.kind {
            Kind::Net(net) => (net.network(), net.broadcast()),
            Kind::Range(first, last) => (first, last),
        }
    }

    /// The smallest set of CIDR networks covering exactly what this source admits: the
    /// network itself, or the blocks an address range decomposes into.
    #[must_use]
    pub fn to_cidrs(&self) -> Vec<IpNet> {
        match self.kind {
            Kind::Net(net) => vec![net],
            Kind::Range(IpAddr::V4(first), IpAddr::V4(last)) => {
                ipnet::Ipv4Subnets::new(first, last, 0)
                    .map(IpNet::V4)
                    .collect()
            }
            Kind::Range(IpAddr::V6(first), IpAddr::V6(last)) => {
                ipnet::Ipv6Subnets::new(first, last, 0)
                    .map(IpNet::V6)
                    .collect()
            }
            // Mixed families are refused when the range is built.
            Kind::Range(..) => Vec::new(),
        }
    }

    /// Whether `addr` is inside this source, after [`normalize_ip`].
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = normalize_ip(addr);
        match self.kind {
            Kind::Net(net) => net.contains(&addr),
            Kind::Range(first, last) => {
                first.is_ipv4() == addr.is_ipv4() && first <= addr && addr <= last
            }
        }
    }

    /// Validates a network built in code with the same rules as parsed text: no match-all
    /// range and no host bits set. IPv4-mapped IPv6 is folded into IPv4.
    ///
    /// # Errors
    ///
    /// [`SourceError::MatchAll`] or [`SourceError::HostBitsSet`].
    pub fn from_net(net: IpNet) -> Result<Self, SourceError> {
        let net = normalize_net(net);
        if net.prefix_len() == 0 {
            return Err(SourceError::MatchAll {
                input: net.to_string(),
            });
        }
        if net.trunc() != net {
            return Err(SourceError::HostBitsSet {
                input: net.to_string(),
                network: net.trunc().to_string(),
            });
        }
        Ok(Self {
            kind: Kind::Net(net),
        })
    }

    /// Validates the range `first..=last`: both of one family (IPv4-mapped IPv6 folded
    /// into IPv4), `first` not after `last`, and not every address. A range of one
    /// address is that address.
    ///
    /// # Errors
    ///
    /// [`SourceError::InvalidRange`] or [`SourceError::MatchAll`].
    pub fn from_range(first: IpAddr, last: IpAddr) -> Result<Self, SourceError> {
        let (first, last) = (normalize_ip(first), normalize_ip(last));
        let input = || format!("{first}-{last}");
        if first.is_ipv4() != last.is_ipv4() {
            return Err(SourceError::InvalidRange {
                input: input(),
                reason: "its two ends are of different families (IPv4 and IPv6)",
            });
        }
        if first > last {
            return Err(SourceError::InvalidRange {
                input: input(),
                reason: "its first address comes after its last",
            });
        }
        if first == last {
            return Ok(Self::from(first));
        }
        let everything = match (first, last) {
            (IpAddr::V4(first), IpAddr::V4(last)) => {
                admits_every_v4(vec![(u32::from(first).into(), u32::from(last).into())])
            }
            (IpAddr::V6(first), IpAddr::V6(last)) => {
                admits_every_v6(vec![(first.into(), last.into())])
            }
            _ => false,
        };
        if everything {
            return Err(SourceError::MatchAll { input: input() });
        }
        Ok(Self {
            kind: Kind::Range(first, last),
        })
    }
}

impl From<IpAddr> for AllowedSource {
    /// A single address: always valid.
    fn from(addr: IpAddr) -> Self {
        Self {
            kind: Kind::Net(IpNet::from(normalize_ip(addr))),
        }
    }
}

impl FromStr for AllowedSource {
    type Err = SourceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        if text.is_empty() {
            return Err(SourceError::Malformed {
                input: shown(input),
            });
        }
        if text.contains('%') {
            return Err(SourceError::ZoneId { input: shown(text) });
        }
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Ok(Self::from(addr));
        }
        if let Some(range) = parse_range(text) {
            return range;
        }
        match parse_cidr(text) {
            Some(net) => Self::from_net(net).map_err(|err| err.with_input(text)),
            None if looks_like_hostname(text) => Err(SourceError::Hostname {
                input: text.to_owned(),
            }),
            None => Err(SourceError::Malformed { input: shown(text) }),
        }
    }
}

/// The input as an error message shows it: whole up to 64 characters, cut beyond, so
/// a hostile megabyte-long entry is not echoed back.
fn shown(input: &str) -> String {
    const MAX: usize = 64;
    match input.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &input[..end]),
        None => input.to_owned(),
    }
}

/// `first-last`, if one side at least is an address (a host name such as
/// `my-host.example.com` has a dash too, and is not a range).
fn parse_range(text: &str) -> Option<Result<AllowedSource, SourceError>> {
    let (first, last) = text.split_once('-')?;
    let (first, last) = (
        first.trim().parse::<IpAddr>(),
        last.trim().parse::<IpAddr>(),
    );
    match (first, last) {
        (Ok(first), Ok(last)) => Some(AllowedSource::from_range(first, last).map_err(
            |err| match err {
                SourceError::InvalidRange { reason, .. } => SourceError::InvalidRange {
                    input: shown(text),
                    reason,
                },
                other => other.with_input(text),
            },
        )),
        (Err(_), Err(_)) => None,
        _ => Some(Err(SourceError::InvalidRange {
            input: shown(text),
            reason: "one of its ends is not an IP address",
        })),
    }
}

impl fmt::Display for AllowedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Net(net) if net.prefix_len() == net.max_prefix_len() => net.addr().fmt(f),
            Kind::Net(net) => net.fmt(f),
            Kind::Range(first, last) => write!(f, "{first}-{last}"),
        }
    }
}

impl fmt::Debug for AllowedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AllowedSource({self})")
    }
}

/// Parses `addr/prefix` without accepting anything `ipnet` would be lenient about
/// (a prefix longer than the family allows is refused there already).
fn parse_cidr(text: &str) -> Option<IpNet> {
    let (addr, prefix) = text.split_once('/')?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 3 {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Ipv4Net::new(v4, prefix).ok().map(IpNet::V4),
        IpAddr::V6(v6) => Ipv6Net::new(v6, prefix).ok().map(IpNet::V6),
    }
}

/// A DNS name: dot-separated labels of letters, digits and hyphens, with at least one
/// letter somewhere (so `1.2.3` stays "malformed", not "hostname").
fn looks_like_hostname(text: &str) -> bool {
    let name = text.strip_suffix('.').unwrap_or(text);
    !name.is_empty()
        && name.len() <= 253
        && name.bytes().any(|b| b.is_ascii_alphabetic())
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Folds an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) into the IPv4 address it carries;
/// every other address is returned as it is.
///
/// The layer applies this to every client address, and sources are stored folded, so
/// a rule for `198.51.100.0/24` admits a dual-stack peer seen as `::ffff:198.51.100.7`.
#[must_use]
#[inline]
pub fn normalize_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// Folds an IPv6 network inside `::ffff:0:0/96` with a prefix of at least 96 into IPv4.
fn normalize_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// Parses a whole list of sources, as a policy or a site list holds them, and refuses a
/// list that admits everyone ([`check_coverage`]).
///
/// # Errors
///
/// [`SourceListError`] naming the index of the first bad entry, or with no index
/// [`SourceError::Empty`] when the list has no entries and
/// [`SourceError::CoversEverything`] when its sources together cover a whole family.
pub fn parse_sources<I, S>(inputs: I) -> Result<Vec<AllowedSource>, SourceListError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let sources = parse_each(inputs)?;
    check_coverage(&sources).map_err(|error| SourceListError { index: None, error })?;
    Ok(sources)
}

/// Parses a list of blocked sources, as a policy or a list holds them beside its
/// allowed sources: the same syntax and rules for each entry, but the list may be empty
/// (nothing blocked), and it may not block every address of a family
/// ([`check_blocked_coverage`]).
///
/// ```
/// use tower_ip_allowlist::source::{parse_blocked_sources, SourceError};
///
/// assert!(parse_blocked_sources(Vec::<String>::new())?.is_empty());
/// assert_eq!(parse_blocked_sources(["198.51.100.66"])?.len(), 1);
/// let err = parse_blocked_sources(["0.0.0.0/1", "128.0.0.0/1"]).unwrap_err();
/// assert!(matches!(err.error, SourceError::BlocksEverything { family: "IPv4" }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`SourceListError`] naming the index of the first bad entry, or with no index
/// [`SourceError::BlocksEverything`] when the sources together cover a whole family.
pub fn parse_blocked_sources<I, S>(inputs: I) -> Result<Vec<AllowedSource>, SourceListError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let sources = parse_all(inputs)?;
    check_blocked_coverage(&sources).map_err(|error| SourceListError { index: None, error })?;
    Ok(sources)
}

/// [`check_coverage`] for blocked sources: a list that blocks every IPv4 or every IPv6
/// address would refuse everyone its rule applies to, which is what removing the rule's
/// allowed sources says more plainly.
///
/// # Errors
///
/// [`SourceError::BlocksEverything`] naming the family.
pub fn check_blocked_coverage(sources: &[AllowedSource]) -> Result<(), SourceError> {
    check_coverage(sources).map_err(|error| match error {
        SourceError::CoversEverything { family } => SourceError::BlocksEverything { family },
        other => other,
    })
}

/// Parses each entry of a non-empty list, without the coverage check: what was stored
/// before that check existed must still load.
pub(crate) fn parse_each<I, S>(inputs: I) -> Result<Vec<AllowedSource>, SourceListError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let sources = parse_all(inputs)?;
    if sources.is_empty() {
        return Err(SourceListError {
            index: None,
            error: SourceError::Empty,
        });
    }
    Ok(sources)
}

/// Parses each entry of a list, which may be empty, naming the first bad one.
pub(crate) fn parse_all<I, S>(inputs: I) -> Result<Vec<AllowedSource>, SourceListError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    inputs
        .into_iter()
        .enumerate()
        .map(|(index, text)| {
            text.as_ref()
                .parse::<AllowedSource>()
                .map_err(|error| SourceListError {
                    index: Some(index),
                    error,
                })
        })
        .collect()
}

/// Refuses sources that together admit every IPv4 or every IPv6 address, whatever the
/// split: two halves, overlapping prefixes, ranges, or a range that leaves out one
/// address plus that address. Sorts the bounds of each family and merges them, so it
/// costs `O(n log n)` for `n` sources.
///
/// # Errors
///
/// [`SourceError::CoversEverything`] naming the family.
pub fn check_coverage(sources: &[AllowedSource]) -> Result<(), SourceError> {
    let mut v4: Vec<(u128, u128)> = Vec::new();
    let mut v6: Vec<(u128, u128)> = Vec::new();
    for source in sources {
        match source.bounds() {
            (IpAddr::V4(first), IpAddr::V4(last)) => {
                v4.push((u32::from(first).into(), u32::from(last).into()));
            }
            (IpAddr::V6(first), IpAddr::V6(last)) => v6.push((first.into(), last.into())),
            _ => {}
        }
    }
    if admits_every_v4(v4) {
        return Err(SourceError::CoversEverything { family: "IPv4" });
    }
    if admits_every_v6(v6) {
        return Err(SourceError::CoversEverything { family: "IPv6" });
    }
    Ok(())
}

/// Whether IPv4 intervals admit every address a client can have: all of them but
/// `0.0.0.0`, which is never a client's.
fn admits_every_v4(mut intervals: Vec<(u128, u128)>) -> bool {
    intervals.push((0, 0));
    covers(intervals, u32::MAX.into())
}

/// Whether IPv6 intervals admit every address a client can have: all of them but `::`
/// and the IPv4-mapped `::ffff:0:0/96`, which is folded into IPv4 before any rule sees
/// it.
fn admits_every_v6(mut intervals: Vec<(u128, u128)>) -> bool {
    const MAPPED: (u128, u128) = (0xffff_0000_0000, 0xffff_ffff_ffff);
    intervals.push((0, 0));
    intervals.push(MAPPED);
    covers(intervals, u128::MAX)
}

/// Whether the inclusive intervals cover `0..=max` with no gap.
fn covers(mut intervals: Vec<(u128, u128)>, max: u128) -> bool {
    intervals.sort_unstable();
    // `next` is the first address not yet covered.
    let mut next: u128 = 0;
    for (first, last) in intervals {
        if first > next {
            return false;
        }
        if last >= next {
            if last == max {
                return true;
            }
            next = last + 1;
        }
    }
    false
}

/// Why a text is not a valid allowed source.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceError {
    /// Neither an IP address nor a CIDR range.
    Malformed {
        /// The text as given.
        input: String,
    },
    /// A DNS host name: only addresses and ranges are supported.
    Hostname {
        /// The text as given.
        input: String,
    },
    /// `0.0.0.0/0` or `::/0` (or an IPv4-mapped equivalent): it would admit everyone.
    MatchAll {
        /// The text as given.
        input: String,
    },
    /// The range has bits set after the prefix, such as `198.51.100.7/24`.
    HostBitsSet {
        /// The text as given.
        input: String,
        /// The network the range most likely meant, such as `198.51.100.0/24`.
        network: String,
    },
    /// An IPv6 zone id such as `fe80::1%eth0`: zones are local to one host.
    ZoneId {
        /// The text as given.
        input: String,
    },
    /// An address range `first-last` that is not valid: mixed families, reversed, or
    /// an end that is not an address.
    InvalidRange {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The list of sources is empty.
    Empty,
    /// The sources of a list together cover every address of a family, such as
    /// `0.0.0.0/1` and `128.0.0.0/1`: the list would admit everyone.
    CoversEverything {
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// The blocked sources of a rule together cover every address of a family: the rule
    /// would refuse everyone it applies to.
    BlocksEverything {
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
}

impl SourceError {
    /// The machine-readable code the admin API reports for this error.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed { .. } | Self::ZoneId { .. } | Self::InvalidRange { .. } => {
                "invalidSource"
            }
            Self::Hostname { .. } => "hostnameNotAllowed",
            Self::MatchAll { .. }
            | Self::CoversEverything { .. }
            | Self::BlocksEverything { .. } => "matchAllNotAllowed",
            Self::HostBitsSet { .. } => "hostBitsSet",
            Self::Empty => "emptyAllowedSources",
        }
    }

    fn with_input(self, text: &str) -> Self {
        let input = text.to_owned();
        match self {
            Self::MatchAll { .. } => Self::MatchAll { input },
            Self::HostBitsSet { network, .. } => Self::HostBitsSet { input, network },
            other => other,
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { input } => write!(
                f,
                "`{input}` is not an IP address or CIDR range: use a form such as 203.0.113.10, 198.51.100.0/24 or 2001:db8::/48"
            ),
            Self::Hostname { input } => write!(
                f,
                "`{input}` looks like a host name, and host names are not supported: use the address or CIDR range"
            ),
            Self::MatchAll { input } => write!(
                f,
                "`{input}` matches every address, which would make the list pointless: list the networks that should have access"
            ),
            Self::HostBitsSet { input, network } => write!(
                f,
                "`{input}` has host bits set after the prefix: did you mean `{network}`?"
            ),
            Self::ZoneId { input } => write!(
                f,
                "`{input}` has an IPv6 zone id, which only means something on one host: remove the `%zone` part"
            ),
            Self::InvalidRange { input, reason } => write!(
                f,
                "`{input}` is not a valid address range: {reason}; write it as `198.51.100.10-198.51.100.20`"
            ),
            Self::Empty => write!(
                f,
                "the list of allowed sources is empty: give at least one address or CIDR range"
            ),
            Self::CoversEverything { family } => write!(
                f,
                "the allowed sources together cover every {family} address, which would make the list pointless: list the networks that should have access"
            ),
            Self::BlocksEverything { family } => write!(
                f,
                "the blocked sources together cover every {family} address, which would refuse everyone the rule applies to: list only the networks to refuse"
            ),
        }
    }
}

impl std::error::Error for SourceError {}

/// A [`SourceError`] in a list, with the position of the offending entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceListError {
    /// Zero-based position of the bad entry; `None` when the list itself is wrong (empty).
    pub index: Option<usize>,
    /// What is wrong with it.
    pub error: SourceError,
}

impl fmt::Display for SourceListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(index) => write!(f, "allowed source {index}: {}", self.error),
            None => self.error.fmt(f),
        }
    }
}

impl std::error::Error for SourceListError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        name: &'static str,
        input: &'static str,
        want: Result<&'static str, &'static str>,
    }

    #[test]
    #[rustfmt::skip]
    fn parse_table() {
        let cases = [
            Case { name: "v4 address", input: "203.0.113.10", want: Ok("203.0.113.10") },
            Case { name: "v4 /32 is an address", input: "203.0.113.10/32", want: Ok("203.0.113.10") },
            Case { name: "v4 range", input: "198.51.100.0/24", want: Ok("198.51.100.0/24") },
            Case { name: "v6 range", input: "2001:db8:abcd::/48", want: Ok("2001:db8:abcd::/48") },
            Case { name: "v6 /128", input: "2001:db8::1/128", want: Ok("2001:db8::1") },
            Case { name: "white space trimmed", input: "\t 203.0.113.10 \n", want: Ok("203.0.113.10") },
            Case { name: "v4-mapped address folded", input: "::ffff:203.0.113.10", want: Ok("203.0.113.10") },
            Case { name: "v4-mapped range folded", input: "::ffff:198.51.100.0/120", want: Ok("198.51.100.0/24") },
            Case { name: "v4-mapped /128 folded", input: "::ffff:198.51.100.1/128", want: Ok("198.51.100.1") },
            Case { name: "v6 /1", input: "8000::/1", want: Ok("8000::/1") },
            Case { name: "v4 /31", input: "192.0.2.0/31", want: Ok("192.0.2.0/31") },
            Case { name: "v4 range", input: "198.51.100.10 - 198.51.100.20", want: Ok("198.51.100.10-198.51.100.20") },
            Case { name: "v6 range", input: "2001:db8::1-2001:db8::ff", want: Ok("2001:db8::1-2001:db8::ff") },
            Case { name: "range of one", input: "192.0.2.1-192.0.2.1", want: Ok("192.0.2.1") },
            Case { name: "v4-mapped range folded", input: "::ffff:192.0.2.1-::ffff:192.0.2.9", want: Ok("192.0.2.1-192.0.2.9") },
            Case { name: "reversed range", input: "192.0.2.9-192.0.2.1", want: Err("invalidSource") },
            Case { name: "mixed range", input: "192.0.2.1-2001:db8::1", want: Err("invalidSource") },
            Case { name: "half range", input: "192.0.2.1-x", want: Err("invalidSource") },
            Case { name: "open range", input: "192.0.2.1-", want: Err("invalidSource") },
            Case { name: "everything range", input: "0.0.0.0-255.255.255.255", want: Err("matchAllNotAllowed") },
            Case { name: "every client address", input: "0.0.0.1-255.255.255.255", want: Err("matchAllNotAllowed") },
            Case { name: "every v6 address but ::", input: "::1-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", want: Err("matchAllNotAllowed") },
            Case { name: "every v6 address but ::1", input: "::2-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", want: Ok("::2-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") },
            Case { name: "dashed host name", input: "my-vpn.example.com", want: Err("hostnameNotAllowed") },
            Case { name: "v4 match-all", input: "0.0.0.0/0", want: Err("matchAllNotAllowed") },
            Case { name: "v6 match-all", input: "::/0", want: Err("matchAllNotAllowed") },
            Case { name: "v4-mapped match-all", input: "::ffff:0:0/96", want: Err("matchAllNotAllowed") },
            Case { name: "host bits", input: "198.51.100.7/24", want: Err("hostBitsSet") },
            Case { name: "v6 host bits", input: "2001:db8::1/64", want: Err("hostBitsSet") },
            Case { name: "hostname", input: "vpn.example.com", want: Err("hostnameNotAllowed") },
            Case { name: "single label hostname", input: "localhost", want: Err("hostnameNotAllowed") },
            Case { name: "zone id", input: "fe80::1%eth0", want: Err("invalidSource") },
            Case { name: "empty", input: "   ", want: Err("invalidSource") },
            Case { name: "garbage", input: "1.2.3", want: Err("invalidSource") },
            Case { name: "prefix too long", input: "10.0.0.0/33", want: Err("invalidSource") },
            Case { name: "signed prefix", input: "10.0.0.0/+8", want: Err("invalidSource") },
            Case { name: "empty prefix", input: "10.0.0.0/", want: Err("invalidSource") },
            Case { name: "address with port", input: "203.0.113.10:80", want: Err("invalidSource") },
            Case { name: "leading zeros refused", input: "010.0.0.1", want: Err("invalidSource") },
            Case { name: "url", input: "http://203.0.113.10/", want: Err("invalidSource") },
        ];
        for case in cases {
            let got = case
                .input
                .parse::<AllowedSource>()
                .map(|s| s.to_string())
                .map_err(|e| e.code());
            assert_eq!(got, case.want.map(str::to_owned), "{}", case.name);
        }
    }

    #[test]
    fn host_bits_names_the_network() {
        let err = "198.51.100.7/24".parse::<AllowedSource>().unwrap_err();
        assert_eq!(
            err,
            SourceError::HostBitsSet {
                input: "198.51.100.7/24".into(),
                network: "198.51.100.0/24".into()
            }
        );
        assert!(err.to_string().contains("did you mean `198.51.100.0/24`"));
    }

    #[test]
    fn hostname_message_says_unsupported() {
        let err = "office.example.com".parse::<AllowedSource>().unwrap_err();
        assert!(err.to_string().contains("host names are not supported"));
    }

    #[test]
    fn list_errors_name_the_index() {
        let err = parse_sources(["203.0.113.10", "198.51.100.0/24", "nope!"]).unwrap_err();
        assert_eq!(err.index, Some(2));
        assert_eq!(err.error.code(), "invalidSource");
        let err = parse_sources(Vec::<String>::new()).unwrap_err();
        assert_eq!(err.index, None);
        assert_eq!(err.error, SourceError::Empty);
    }

    #[test]
    fn mapped_clients_match_v4_sources() {
        let src: AllowedSource = "198.51.100.0/24".parse().unwrap();
        assert!(src.contains("::ffff:198.51.100.200".parse().unwrap()));
        assert!(!src.contains("::ffff:198.51.101.1".parse().unwrap()));
        // The IPv4-compatible (deprecated) form is not a mapped address.
        assert!(!src.contains("::198.51.100.200".parse().unwrap()));
    }

    #[test]
    fn from_net_validates() {
        let net: IpNet = "10.0.0.1/8".parse().unwrap();
        assert!(matches!(
            AllowedSource::from_net(net),
            Err(SourceError::HostBitsSet { .. })
        ));
        let net: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(matches!(
            AllowedSource::from_net(net),
            Err(SourceError::MatchAll { .. })
        ));
    }

    #[test]
    fn long_input_is_not_echoed_whole() {
        let input = "x".repeat(1 << 20);
        let err = input.parse::<AllowedSource>().unwrap_err();
        assert!(err.to_string().len() < 300, "{}", err.to_string().len());
        let err = "é".repeat(100).parse::<AllowedSource>().unwrap_err();
        assert!(err.to_string().contains(&format!("{}...", "é".repeat(64))));
    }

    #[test]
    fn ranges_decompose_into_minimal_cidrs() {
        let range: AllowedSource = "198.51.100.10-198.51.100.20".parse().unwrap();
        let cidrs: Vec<String> = range.to_cidrs().iter().map(ToString::to_string).collect();
        assert_eq!(
            cidrs,
            [
                "198.51.100.10/31",
                "198.51.100.12/30",
                "198.51.100.16/30",
                "198.51.100.20/32"
            ]
        );
        assert!(range.contains("198.51.100.10".parse().unwrap()));
        assert!(range.contains("::ffff:198.51.100.20".parse().unwrap()));
        assert!(!range.contains("198.51.100.21".parse().unwrap()));
        assert!(!range.contains("198.51.100.9".parse().unwrap()));
        assert!(!range.contains("2001:db8::1".parse().unwrap()));
        let aligned: AllowedSource = "10.0.0.0-10.0.255.255".parse().unwrap();
        assert_eq!(
            aligned.to_cidrs(),
            vec!["10.0.0.0/16".parse::<IpNet>().unwrap()]
        );
        let err = "192.0.2.9-192.0.2.1".parse::<AllowedSource>().unwrap_err();
        assert!(err.to_string().contains("comes after"), "{err}");
    }

    #[test]
    #[rustfmt::skip]
    fn unions_that_cover_a_family_are_refused() {
        let cases: [(&str, &[&str], Option<&str>); 14] = [
            ("two halves", &["0.0.0.0/1", "128.0.0.0/1"], Some("IPv4")),
            ("halves in any order", &["128.0.0.0/1", "0.0.0.0/1"], Some("IPv4")),
            ("range missing one address, plus it", &["0.0.0.2-255.255.255.255", "0.0.0.1"], Some("IPv4")),
            ("range missing the last address, plus it", &["0.0.0.0-255.255.255.254", "255.255.255.255"], Some("IPv4")),
            ("overlapping prefixes", &["0.0.0.0/2", "0.0.0.0/1", "64.0.0.0/2", "100.0.0.0/8", "128.0.0.0/1"], Some("IPv4")),
            ("mapped halves", &["::ffff:0.0.0.0/97", "::ffff:128.0.0.0/97"], Some("IPv4")),
            ("v6 halves", &["::/1", "8000::/1"], Some("IPv6")),
            ("v6 range and an address", &["::2-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::1"], Some("IPv6")),
            ("one address short", &["0.0.0.0/1", "128.0.0.0-255.255.255.254"], None),
            // Addresses no client has do not count as a gap: 0.0.0.0, ::, and IPv4-mapped
            // IPv6 (folded into IPv4 before any rule sees it). From a review.
            ("all but 0.0.0.0, in two", &["0.0.0.1-9.255.255.255", "10.0.0.0-255.255.255.255"], Some("IPv4")),
            ("all of v6 but the mapped block", &["::-::fffe:ffff:ffff", "::1:0:0:0-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"], Some("IPv6")),
            ("a gap in the middle", &["0.0.0.0-9.255.255.255", "10.0.0.1-255.255.255.255"], None),
            ("both families, each half", &["0.0.0.0/1", "::/1"], None),
            ("ordinary list", &["198.51.100.0/24", "2001:db8::/32"], None),
        ];
        for (name, sources, want) in cases {
            let parsed = parse_each(sources.iter()).unwrap();
            let got = check_coverage(&parsed).err();
            assert_eq!(got, want.map(|family| SourceError::CoversEverything { family }), "{name}");
            let err = parse_sources(sources.iter()).err();
            assert_eq!(err.map(|e| (e.index, e.error.code())), want.map(|_| (None, "matchAllNotAllowed")), "{name}");
        }
        let err = parse_sources(["0.0.0.0/1", "128.0.0.0/1"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the allowed sources together cover every IPv4 address, which would make the list pointless: list the networks that should have access"
        );
    }
}

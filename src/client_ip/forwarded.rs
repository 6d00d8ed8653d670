//! Parsers for `X-Forwarded-For`, `Forwarded` (RFC 7239) and single-address headers
//! (`X-Real-IP`, `CF-Connecting-IP`, ...), walking a chain from the right (the nearest
//! hop) without collecting it.
//!
//! Work and memory are bounded whatever the header's size: the walk examines at most
//! the number of elements its caller allows, each at most [`MAX_ELEMENT`] bytes long,
//! and allocates only to describe an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::{GetAll, ValueIter};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::ClientIpError;
use crate::source::normalize_ip;

/// The longest list element read: an address with a port is under 50 bytes, a
/// `Forwarded` element with `by`, `host` and `proto` a few hundred. A longer element
/// makes the client unknown, so nothing is scanned past it.
pub(super) const MAX_ELEMENT: usize = 512;

/// Longest entry text kept in an error, so a hostile header cannot flood the logs.
const MAX_SHOWN: usize = 64;

pub(super) fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

/// How a header's elements are delimited.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Syntax {
    /// `X-Forwarded-For`: plain comma-separated nodes.
    Plain,
    /// `Forwarded`: commas inside quoted strings do not separate elements.
    Quoted,
}

/// The non-empty elements of every line of a list header, from the last element of the
/// last line to the first of the first, as RFC 9110 combines repeated field lines. Empty
/// elements (`a,,b`) are skipped, as RFC 9110 asks, but still spend the budget, so a
/// header of a million commas costs no more than any other.
pub(super) struct Elements<'h> {
    lines: std::iter::Rev<ValueIter<'h, HeaderValue>>,
    /// What is left of the current line, not yet walked.
    rest: &'h [u8],
    syntax: Syntax,
    header: &'h HeaderName,
    /// How many more elements, empty or not, may be examined.
    budget: usize,
    /// Set once an error is returned: the walk ends there.
    done: bool,
}

/// Why the walk stopped before the first element of the header.
pub(super) enum Stop {
    /// The budget ran out with elements left to examine.
    Budget,
    /// An element could not be delimited: too long or an unterminated quote.
    Error(ClientIpError),
}

impl<'h> Elements<'h> {
    pub(super) fn new(
        lines: GetAll<'h, HeaderValue>,
        header: &'h HeaderName,
        syntax: Syntax,
        budget: usize,
    ) -> Self {
        Self {
            lines: lines.into_iter().rev(),
            rest: &[],
            syntax,
            header,
            budget,
            done: false,
        }
    }

    /// The next non-empty element to the left, trimmed of white space.
    pub(super) fn next_element(&mut self) -> Option<Result<&'h [u8], Stop>> {
        if self.done {
            return None;
        }
        loop {
            if self.rest.is_empty() {
                self.rest = self.lines.next()?.as_bytes();
                // An empty line is one empty element.
            }
            if self.budget == 0 {
                self.done = true;
                return Some(Err(Stop::Budget));
            }
            self.budget -= 1;
            match split_last(self.rest, self.syntax) {
                Ok((rest, element)) => {
                    self.rest = rest;
                    let element = element.trim_ascii();
                    if !element.is_empty() {
                        return Some(Ok(element));
                    }
                }
                Err(tail) => {
                    self.done = true;
                    return Some(Err(Stop::Error(ClientIpError::MalformedEntry {
                        header: self.header.clone(),
                        entry: shown(tail),
                    })));
                }
            }
        }
    }
}

/// Splits the last element off `line`: what is left before its comma (empty when it was
/// the first element), and the element. An element longer than [`MAX_ELEMENT`], or one
/// whose quotes do not balance, is an error carrying the text looked at.
fn split_last(line: &[u8], syntax: Syntax) -> Result<(&[u8], &[u8]), &[u8]> {
    let floor = line.len().saturating_sub(MAX_ELEMENT + 1);
    let mut quoted = false;
    for i in (floor..line.len()).rev() {
        match line[i] {
            b'"' if syntax == Syntax::Quoted && !escaped(&line[floor..], i - floor) => {
                quoted = !quoted;
            }
            b',' if !quoted => return Ok((&line[..i], &line[i + 1..])),
            _ => {}
        }
    }
    if line.len() <= MAX_ELEMENT && !quoted {
        Ok((&[], line))
    } else {
        Err(&line[floor..])
    }
}

/// Whether the quote at `at` is escaped: preceded by an odd run of backslashes.
fn escaped(line: &[u8], at: usize) -> bool {
    line[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// The one address of a single-address header (`X-Real-IP`, `CF-Connecting-IP`): one
/// line holding one node. The caller has seen that the header is there.
pub(super) fn single(headers: &HeaderMap, header: &HeaderName) -> Result<IpAddr, ClientIpError> {
    let mut lines = headers.get_all(header).iter();
    let value = match (lines.next(), lines.next()) {
        (Some(value), None) => value,
        (None, _) => return node(header, b""),
        (Some(_), Some(_)) => {
            return Err(ClientIpError::RepeatedHeader {
                header: header.clone(),
            })
        }
    };
    let text = value.as_bytes().trim_ascii();
    if text.len() > MAX_ELEMENT || text.contains(&b',') {
        return Err(ClientIpError::MalformedEntry {
            header: header.clone(),
            entry: shown(text),
        });
    }
    node(header, text)
}

/// A node as `X-Forwarded-For` and single-address headers write it: `192.0.2.1`,
/// `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:80`.
pub(super) fn node(header: &HeaderName, bytes: &[u8]) -> Result<IpAddr, ClientIpError> {
    parse_node(bytes, false)
        .filter(|addr| !normalize_ip(*addr).is_unspecified())
        .ok_or_else(|| ClientIpError::MalformedEntry {
            header: header.clone(),
            entry: shown(bytes),
        })
}

/// The address of a node; `obfuscated_port` allows `_port` (RFC 7239).
fn parse_node(bytes: &[u8], obfuscated_port: bool) -> Option<IpAddr> {
    let text = std::str::from_utf8(bytes).ok()?;
    let port_ok = |port: &str| is_port(port) || (obfuscated_port && is_obfuscated(port));
    if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let ok = after.is_empty() || after.strip_prefix(':').is_some_and(port_ok);
        return ok.then(|| v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6))?;
    }
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(addr);
    }
    let (v4, port) = text.split_once(':')?;
    port_ok(port).then(|| v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4))?
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// An obfuscated identifier (RFC 7239 section 6.3): `_` then letters, digits, `.`, `_`, `-`.
fn is_obfuscated(text: &str) -> bool {
    text.len() > 1
        && text.starts_with('_')
        && text[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// The address in one `Forwarded` element's `for=` parameter.
///
/// The element is parsed strictly (RFC 7239 section 4, with RFC 9110's quoted strings):
/// `name=value` pairs separated by `;` (white space around `;` tolerated), names
/// case-insensitive tokens, values tokens or quoted strings with `\` escapes and
/// nothing after the closing quote, `for` exactly once. Unquoted values may also hold
/// `:`, `[` and `]`, as proxies commonly write `for=[2001:db8::1]:80` unquoted; the node
/// is then parsed as strictly either way. `unknown` and obfuscated identifiers
/// (`_hidden`) are not addresses.
pub(super) fn forwarded_for(header: &HeaderName, element: &[u8]) -> Result<IpAddr, ClientIpError> {
    let malformed = || ClientIpError::MalformedEntry {
        header: header.clone(),
        entry: shown(element),
    };
    let mut node: Option<Value<'_>> = None;
    let mut rest = element;
    loop {
        let (name, value, after) = pair(rest).ok_or_else(malformed)?;
        if name.eq_ignore_ascii_case(b"for") {
            if node.is_some() {
                return Err(malformed());
            }
            node = Some(value);
        }
        let after = after.trim_ascii_start();
        match after.split_first() {
            None => break,
            Some((b';', tail)) => rest = tail.trim_ascii_start(),
            Some(_) => return Err(malformed()),
        }
    }
    let node = node.ok_or_else(malformed)?;
    let text = node.unescaped();
    if text.eq_ignore_ascii_case(b"unknown") || text.starts_with(b"_") {
        return Err(ClientIpError::ObfuscatedEntry {
            entry: shown(&text),
        });
    }
    parse_node(&text, true)
        .filter(|addr| !normalize_ip(*addr).is_unspecified())
        .ok_or_else(malformed)
}

/// A parameter value: a token, or a quoted string still holding its escapes.
enum Value<'a> {
    Token(&'a [u8]),
    Quoted(&'a [u8]),
}

impl Value<'_> {
    fn unescaped(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Value::Token(bytes) => (*bytes).into(),
            Value::Quoted(bytes) if !bytes.contains(&b'\\') => (*bytes).into(),
            Value::Quoted(bytes) => {
                let mut out = Vec::with_capacity(bytes.len());
                let mut iter = bytes.iter();
                while let Some(&b) = iter.next() {
                    // `quoted` guarantees a character after every backslash.
                    out.push(if b == b'\\' {
                        *iter.next().unwrap_or(&b)
                    } else {
                        b
                    });
                }
                out.into()
            }
        }
    }
}

/// One `name=value` pair at the start of `input`, and what follows it.
fn pair(input: &[u8]) -> Option<(&[u8], Value<'_>, &[u8])> {
    let name_len = input.iter().take_while(|&&b| is_tchar(b)).count();
    let (name, rest) = input.split_at(name_len);
    let rest = rest.strip_prefix(b"=")?;
    if name.is_empty() {
        return None;
    }
    if let Some(body) = rest.strip_prefix(b"\"") {
        let (value, after) = quoted(body)?;
        return Some((name, Value::Quoted(value), after));
    }
    let len = rest
        .iter()
        .take_while(|&&b| is_tchar(b) || matches!(b, b':' | b'[' | b']'))
        .count();
    if len == 0 {
        return None;
    }
    let (value, after) = rest.split_at(len);
    Some((name, Value::Token(value), after))
}

/// The body of a quoted string whose opening quote is already consumed, up to its
/// closing quote, and what follows. Escapes are kept; a backslash must escape a visible
/// character or white space.
fn quoted(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => return Some((&body[..i], &body[i + 1..])),
            b'\\' => {
                let next = *body.get(i + 1)?;
                if !(next == b'\t' || (0x20..0x7f).contains(&next)) {
                    return None;
                }
                i += 2;
            }
            b if b == b'\t' || (0x20..0x7f).contains(&b) => i += 1,
            _ => return None,
        }
    }
    None
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use http::header::FORWARDED;

    use super::*;

    static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

    fn headers(name: &HeaderName, values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name, HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    /// Every element of the header, right to left, as text (`!` prefixes a stop).
    fn walk(name: &HeaderName, values: &[&[u8]], syntax: Syntax, budget: usize) -> Vec<String> {
        let map = headers(name, values);
        let mut elements = Elements::new(map.get_all(name), name, syntax, budget);
        let mut out = Vec::new();
        while let Some(element) = elements.next_element() {
            out.push(match element {
                Ok(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                Err(Stop::Budget) => "!budget".to_owned(),
                Err(Stop::Error(err)) => format!("!{err:?}"),
            });
        }
        out
    }

    #[test]
    fn elements_right_to_left_across_lines() {
        let got = walk(
            &X_FORWARDED_FOR,
            &[b"203.0.113.1, 198.51.100.2", b"192.0.2.3"],
            Syntax::Plain,
            16,
        );
        assert_eq!(got, ["192.0.2.3", "198.51.100.2", "203.0.113.1"]);
        // Empty elements are skipped, an empty line too.
        let got = walk(
            &X_FORWARDED_FOR,
            &[b"a,, b", b"", b" ,c"],
            Syntax::Plain,
            16,
        );
        assert_eq!(got, ["c", "b", "a"]);
    }

    #[test]
    fn the_budget_bounds_the_walk_empty_elements_included() {
        let commas = vec![b','; 300_000];
        let got = walk(
            &X_FORWARDED_FOR,
            &[&commas, b"192.0.2.1"],
            Syntax::Plain,
            16,
        );
        assert_eq!(got, ["192.0.2.1", "!budget"]);
        let got = walk(&X_FORWARDED_FOR, &[b"a,b,c"], Syntax::Plain, 2);
        assert_eq!(got, ["c", "b", "!budget"]);
        let got = walk(&X_FORWARDED_FOR, &[b"a,b,c"], Syntax::Plain, 3);
        assert_eq!(got, ["c", "b", "a"]);
    }

    #[test]
    fn an_overlong_element_ends_the_walk() {
        let long = [
            b"192.0.2.1,".as_slice(),
            &vec![b'x'; 100_000],
            b", 192.0.2.2",
        ]
        .concat();
        let got = walk(&X_FORWARDED_FOR, &[&long], Syntax::Plain, 16);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], "192.0.2.2");
        assert!(got[1].starts_with("!MalformedEntry"), "{got:?}");
        // Exactly MAX_ELEMENT bytes is still an element.
        let edge = vec![b'y'; MAX_ELEMENT];
        assert_eq!(
            walk(&X_FORWARDED_FOR, &[&edge], Syntax::Plain, 16)[0].len(),
            MAX_ELEMENT
        );
    }

    #[test]
    fn quoted_commas_do_not_split() {
        let got = walk(
            &FORWARDED,
            &[br#"for="192.0.2.1";ext="a,b;c\"d", for="198.51.100.2""#],
            Syntax::Quoted,
            16,
        );
        assert_eq!(
            got,
            [r#"for="198.51.100.2""#, r#"for="192.0.2.1";ext="a,b;c\"d""#]
        );
        // An escaped backslash before a quote: the quote is real.
        let got = walk(&FORWARDED, &[br#"a="x\\", b=1"#], Syntax::Quoted, 16);
        assert_eq!(got, ["b=1", r#"a="x\\""#]);
        // Unbalanced on the left: the right-hand element is still read, then the walk ends.
        let got = walk(
            &FORWARDED,
            &[br#"For="1.1.1.1, For=2.2.2.2"#],
            Syntax::Quoted,
            16,
        );
        assert_eq!(got[0], "For=2.2.2.2");
        assert!(got[1].starts_with("!MalformedEntry"), "{got:?}");
    }

    fn for_of(element: &str) -> Result<String, String> {
        forwarded_for(&FORWARDED, element.as_bytes())
            .map(|addr| addr.to_string())
            .map_err(|err| format!("{err:?}"))
    }

    /// Elements from realclientip-go's `Test_parseForwardedListItem` and
    /// `Test_forwardedHeaderRFCDeviations` (github.com/realclientip/realclientip-go, 0BSD),
    /// with the RFC 7239 outcome its comments call correct where it deviates.
    #[test]
    #[rustfmt::skip]
    fn forwarded_elements_realclientip_vectors() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"For="[2607:f8b0:4004:83f::200e]:4711""#, Some("2607:f8b0:4004:83f::200e")),
            (r#"fOR="[2607:f8b0:4004:83f::200e]""#, Some("2607:f8b0:4004:83f::200e")),
            (r#"for="2607:f8b0:4004:83f::200e""#, Some("2607:f8b0:4004:83f::200e")),
            ("FOR=[2607:f8b0:4004:83f::200e]", Some("2607:f8b0:4004:83f::200e")),
            ("For=[2607:f8b0:4004:83f::200e]:4711", Some("2607:f8b0:4004:83f::200e")),
            // Zones are local to one host: not an address a rule can name.
            (r#"For="[fe80::abcd%zone]:4711""#, None),
            (r#"For="fe80::abcd%zone""#, None),
            ("FoR=192.0.2.60:4711", Some("192.0.2.60")),
            ("for=192.0.2.60", Some("192.0.2.60")),
            (r#"for="192.0.2.60""#, Some("192.0.2.60")),
            (r#"for="192.0.2.60:4823""#, Some("192.0.2.60")),
            ("for=192.0.2.999", None),
            (r#"for="2607:f8b0:4004:83f::999999""#, None),
            (r#"for="_test""#, None),
            ("for=", None),
            ("by=1.1.1.1; for=2.2.2.2;host=myhost; proto=https", Some("2.2.2.2")),
            ("by=1::1;host=myhost;for=2::2;proto=https", Some("2::2")),
            ("by=1::1;host=myhost;proto=https;for=2.2.2.2", Some("2.2.2.2")),
            (r#"for="[::ffff:188.0.2.128]""#, Some("::ffff:188.0.2.128")),
            (r#"for="[::ffff:188.0.2.128]:49428""#, Some("::ffff:188.0.2.128")),
            (r#"for="[64:ff9b::188.0.2.128]""#, Some("64:ff9b::bc00:280")),
            ("for=127.0.0.1", Some("127.0.0.1")),
            (r#"for="[::1]""#, Some("::1")),
            (r#"for="1.1.1.1"#, None),
            (r#"for="::1]""#, None),
            (r#"for="[0:0:0:0:0:ffff:bc15:0006"]"#, None),
            ("ads\u{1}jkl&#*(383fdljk", None),
            // Quoted pairs are unescaped, and only inside quoted strings.
            (r"for=1.1.1.\1", None),
            (r#"For="3.3.3.\3""#, Some("3.3.3.3")),
            // No white space around `=`.
            ("for= 1.1.1.1", None),
            ("For =1.1.1.1", None),
            // Duplicate `for`, and invalid characters in another parameter, invalidate the element.
            ("For=1.1.1.1;For=2.2.2.2", None),
            ("For=1.1.1.1;@!=x", None),
            // IPv4 in brackets is not a node.
            (r#"For="[1.1.1.1]""#, None),
            // Text after a closing quote is not glued onto the value.
            (r#"for="192.0.2.1"5"#, None),
            (r#"for="192.0.2.1" 5"#, None),
            (r#"for="192.0.2.1" ; proto=https"#, Some("192.0.2.1")),
            ("for=192.0.2.1\"5", None),
            ("for=0.0.0.0", None),
            (r#"for="[::ffff:0.0.0.0]:80""#, None),
            (r#"for="[::]""#, None),
            ("proto=https", None),
            ("for=192.0.2.1;garbage", None),
        ];
        for (element, want) in cases {
            assert_eq!(for_of(element).ok().as_deref(), *want, "{element}");
        }
        assert!(for_of("for=unknown").unwrap_err().starts_with("ObfuscatedEntry"));
        assert!(for_of("for=_hidden").unwrap_err().starts_with("ObfuscatedEntry"));
        assert_eq!(for_of("for=198.51.100.17:_port").unwrap(), "198.51.100.17");
    }

    #[test]
    fn nodes() {
        for (text, want) in [
            ("192.0.2.1", Some("192.0.2.1")),
            ("192.0.2.1:8080", Some("192.0.2.1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("[2001:db8::1]443", None),
            ("192.0.2.1:", None),
            ("192.0.2.1:123456", None),
            ("192.0.2.1:_obf", None),
            ("", None),
            ("unknown", None),
            ("example.com", None),
            ("[192.0.2.1]", None),
            ("fe80::1%eth0", None),
            ("0.0.0.0", None),
            ("::", None),
            // From a review: the IPv4-mapped unspecified address is unspecified too.
            ("::ffff:0.0.0.0", None),
            ("[::ffff:0.0.0.0]:80", None),
        ] {
            assert_eq!(
                node(&X_FORWARDED_FOR, text.as_bytes())
                    .ok()
                    .map(|a| a.to_string())
                    .as_deref(),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn single_address_headers() {
        let name = HeaderName::from_static("x-real-ip");
        let one = |values: &[&[u8]]| single(&headers(&name, values), &name);
        assert_eq!(one(&[b" 192.0.2.1 "]).unwrap().to_string(), "192.0.2.1");
        assert_eq!(
            one(&[b"[2001:db8::1]:80"]).unwrap().to_string(),
            "2001:db8::1"
        );
        assert!(matches!(
            one(&[b"192.0.2.1", b"192.0.2.2"]),
            Err(ClientIpError::RepeatedHeader { .. })
        ));
        assert!(matches!(
            one(&[b"192.0.2.1, 192.0.2.2"]),
            Err(ClientIpError::MalformedEntry { .. })
        ));
        assert!(matches!(
            one(&[&vec![b'1'; 10_000]]),
            Err(ClientIpError::MalformedEntry { .. })
        ));
    }

    #[test]
    fn long_entries_are_cut_in_errors() {
        let entry = vec![b'x'; 400];
        let Err(ClientIpError::MalformedEntry { entry, .. }) = node(&X_FORWARDED_FOR, &entry)
        else {
            panic!("expected a malformed entry");
        };
        assert!(entry.chars().count() <= MAX_SHOWN + 1);
    }
}

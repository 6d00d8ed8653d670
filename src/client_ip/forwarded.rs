//! Parsers for `X-Forwarded-For`, `Forwarded` (RFC 7239) and `X-Real-IP`, each giving
//! the entries of the chain from right (nearest hop) to left.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::HeaderName;
use http::HeaderMap;

use super::ClientIpError;

/// Longest entry text kept in an error, so a hostile header cannot flood the logs.
const MAX_SHOWN: usize = 64;

fn shown(text: &str) -> String {
    match text.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Every line of `name`, as text, in order. A value that is not visible ASCII is an error.
fn lines<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Vec<&'h str>, ClientIpError> {
    headers
        .get_all(HeaderName::from_static(name))
        .iter()
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ClientIpError::InvalidHeaderValue { header: name })
        })
        .collect()
}

/// A node as `X-Forwarded-For` and `X-Real-IP` write it: `192.0.2.1`, `192.0.2.1:80`,
/// `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:80`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok.then(|| v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6))?;
    }
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(addr);
    }
    let (v4, port) = text.split_once(':')?;
    is_port(port).then(|| v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4))?
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// `X-Forwarded-For`: all lines joined in order, entries right to left.
pub(super) fn x_forwarded_for(
    headers: &HeaderMap,
) -> Result<Vec<Result<IpAddr, ClientIpError>>, ClientIpError> {
    const NAME: &str = "x-forwarded-for";
    let lines = lines(headers, NAME)?;
    Ok(lines
        .iter()
        .rev()
        .flat_map(|line| line.rsplit(','))
        .map(|entry| {
            parse_node(entry).ok_or_else(|| ClientIpError::MalformedEntry {
                header: NAME,
                entry: shown(entry.trim()),
            })
        })
        .collect())
}

/// `X-Real-IP`: exactly one line holding one address.
pub(super) fn x_real_ip(
    headers: &HeaderMap,
) -> Result<Vec<Result<IpAddr, ClientIpError>>, ClientIpError> {
    const NAME: &str = "x-real-ip";
    let lines = lines(headers, NAME)?;
    match lines.as_slice() {
        [] => Ok(Vec::new()),
        [value] => Ok(vec![parse_node(value).ok_or_else(|| {
            ClientIpError::MalformedEntry {
                header: NAME,
                entry: shown(value.trim()),
            }
        })]),
        _ => Err(ClientIpError::RepeatedHeader { header: NAME }),
    }
}

/// `Forwarded`: all lines joined in order, the `for=` of each element right to left.
pub(super) fn forwarded(
    headers: &HeaderMap,
) -> Result<Vec<Result<IpAddr, ClientIpError>>, ClientIpError> {
    let lines = lines(headers, "forwarded")?;
    let mut entries = Vec::new();
    for line in lines {
        entries.extend(
            elements(line)
                .into_iter()
                .map(|element| element_for(&element)),
        );
    }
    entries.reverse();
    Ok(entries)
}

/// One element's pairs, split outside quoted strings, quotes and escapes removed.
type Element = Vec<(String, String)>;

/// Splits a `Forwarded` line into elements (`,`) of pairs (`;`) of `name=value`,
/// honouring quoted strings and their `\` escapes. A pair without `=` keeps an empty
/// name so that the element is reported as malformed.
fn elements(line: &str) -> Vec<Element> {
    let mut elements = Vec::new();
    let mut element: Element = Vec::new();
    let (mut name, mut value) = (String::new(), String::new());
    let (mut in_value, mut quoted, mut escaped, mut bad) = (false, false, false, false);
    let finish_pair = |element: &mut Element,
                       name: &mut String,
                       value: &mut String,
                       in_value: &mut bool,
                       bad: &mut bool| {
        let n = name.trim().to_ascii_lowercase();
        if !n.is_empty() || !value.is_empty() || *bad {
            let n = if *in_value && !*bad { n } else { String::new() };
            element.push((n, value.trim().to_owned()));
        }
        name.clear();
        value.clear();
        *in_value = false;
        *bad = false;
    };
    for c in line.chars() {
        if quoted {
            match (escaped, c) {
                (true, _) => {
                    value.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                (false, _) => value.push(c),
            }
            continue;
        }
        match c {
            '"' if in_value && value.trim().is_empty() => quoted = true,
            '"' => bad = true,
            '=' if !in_value => in_value = true,
            ';' => finish_pair(&mut element, &mut name, &mut value, &mut in_value, &mut bad),
            ',' => {
                finish_pair(&mut element, &mut name, &mut value, &mut in_value, &mut bad);
                elements.push(std::mem::take(&mut element));
            }
            _ if in_value => value.push(c),
            _ => name.push(c),
        }
    }
    if quoted {
        bad = true;
    }
    finish_pair(&mut element, &mut name, &mut value, &mut in_value, &mut bad);
    elements.push(element);
    elements
}

/// The address in an element's `for=`.
fn element_for(element: &Element) -> Result<IpAddr, ClientIpError> {
    const NAME: &str = "forwarded";
    let describe = || {
        shown(
            &element
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(";"),
        )
    };
    if element.iter().any(|(name, _)| name.is_empty()) {
        return Err(ClientIpError::MalformedEntry {
            header: NAME,
            entry: describe(),
        });
    }
    let mut fors = element.iter().filter(|(name, _)| name == "for");
    let (Some((_, node)), None) = (fors.next(), fors.next()) else {
        return Err(ClientIpError::MalformedEntry {
            header: NAME,
            entry: describe(),
        });
    };
    if node.eq_ignore_ascii_case("unknown") || node.starts_with('_') {
        return Err(ClientIpError::ObfuscatedEntry { entry: shown(node) });
    }
    parse_forwarded_node(node).ok_or_else(|| ClientIpError::MalformedEntry {
        header: NAME,
        entry: shown(node),
    })
}

/// A `Forwarded` node: IPv4 with optional port, or bracketed IPv6 with optional port.
/// The port may be obfuscated (`_abc`). A bare IPv6 address (not bracketed) is accepted
/// leniently: some proxies write it so, and it is unambiguous without a port.
fn parse_forwarded_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| is_port(p) || is_obfuscated(p));
        return port_ok.then(|| v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6))?;
    }
    if let Ok(addr) = node.parse::<IpAddr>() {
        return Some(addr);
    }
    let (v4, port) = node.split_once(':')?;
    (is_port(port) || is_obfuscated(port)).then(|| v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4))?
}

fn is_obfuscated(text: &str) -> bool {
    text.len() > 1
        && text.starts_with('_')
        && text[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn ok(entries: Vec<Result<IpAddr, ClientIpError>>) -> Vec<String> {
        entries
            .into_iter()
            .map(|e| match e {
                Ok(addr) => addr.to_string(),
                Err(err) => format!("ERR {err:?}"),
            })
            .collect()
    }

    #[test]
    fn nodes() {
        for (text, want) in [
            ("192.0.2.1", Some("192.0.2.1")),
            (" 192.0.2.1 ", Some("192.0.2.1")),
            ("192.0.2.1:8080", Some("192.0.2.1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("[2001:db8::1]443", None),
            ("192.0.2.1:", None),
            ("192.0.2.1:123456", None),
            ("", None),
            ("unknown", None),
            ("example.com", None),
            ("[192.0.2.1]", None),
            ("fe80::1%eth0", None),
        ] {
            assert_eq!(
                parse_node(text).map(|a| a.to_string()).as_deref(),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn xff_lines_joined_right_to_left() {
        let h = headers(
            "x-forwarded-for",
            &["203.0.113.1, 198.51.100.2", "192.0.2.3"],
        );
        assert_eq!(
            ok(x_forwarded_for(&h).unwrap()),
            ["192.0.2.3", "198.51.100.2", "203.0.113.1"]
        );
        let h = headers("x-forwarded-for", &["203.0.113.1,,192.0.2.3"]);
        let got = ok(x_forwarded_for(&h).unwrap());
        assert_eq!(got[0], "192.0.2.3");
        assert!(got[1].starts_with("ERR MalformedEntry"));
    }

    #[test]
    fn xff_non_ascii_is_an_error() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"192.0.2.1, \xff").unwrap(),
        );
        assert_eq!(
            x_forwarded_for(&h).unwrap_err(),
            ClientIpError::InvalidHeaderValue {
                header: "x-forwarded-for"
            }
        );
    }

    #[test]
    fn xff_huge_header() {
        let value = vec!["192.0.2.1"; 10_000].join(",");
        let h = headers("x-forwarded-for", &[&value]);
        assert_eq!(x_forwarded_for(&h).unwrap().len(), 10_000);
    }

    #[test]
    fn real_ip_once() {
        assert_eq!(
            ok(x_real_ip(&headers("x-real-ip", &["192.0.2.1"])).unwrap()),
            ["192.0.2.1"]
        );
        assert!(x_real_ip(&headers("x-real-ip", &[])).unwrap().is_empty());
        assert_eq!(
            x_real_ip(&headers("x-real-ip", &["192.0.2.1", "192.0.2.2"])).unwrap_err(),
            ClientIpError::RepeatedHeader {
                header: "x-real-ip"
            }
        );
        assert!(
            ok(x_real_ip(&headers("x-real-ip", &["192.0.2.1, 192.0.2.2"])).unwrap())[0]
                .starts_with("ERR")
        );
    }

    #[test]
    fn forwarded_elements() {
        let h = headers(
            "forwarded",
            &[
                r#"for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https"#,
                r#"FOR=198.51.100.17:_port;by=203.0.113.60, for="_hidden", for=unknown"#,
            ],
        );
        let got = ok(forwarded(&h).unwrap());
        assert!(got[0].starts_with("ERR ObfuscatedEntry"), "{got:?}");
        assert!(got[1].starts_with("ERR ObfuscatedEntry"), "{got:?}");
        assert_eq!(
            &got[2..],
            ["198.51.100.17", "2001:db8:cafe::17", "192.0.2.43"]
        );
    }

    #[test]
    fn forwarded_quoting() {
        // Commas and semicolons inside quotes do not split; escapes are honoured.
        let h = headers(
            "forwarded",
            &[r#"for="192.0.2.1";ext="a,b;c\"d", for="198.51.100.2""#],
        );
        assert_eq!(ok(forwarded(&h).unwrap()), ["198.51.100.2", "192.0.2.1"]);
        // Unterminated quote: malformed.
        let h = headers("forwarded", &[r#"for="192.0.2.1"#]);
        assert!(ok(forwarded(&h).unwrap())[0].starts_with("ERR MalformedEntry"));
        // No for= in an element, two for= in one, garbage pair: malformed.
        for bad in [
            "proto=https",
            "for=192.0.2.1;for=192.0.2.2",
            "for=192.0.2.1;garbage",
            "for=192.0.2.1 x\"y",
        ] {
            let h = headers("forwarded", &[bad]);
            assert!(
                ok(forwarded(&h).unwrap())[0].starts_with("ERR MalformedEntry"),
                "{bad}"
            );
        }
        // Bracketed IPv6 without quotes is accepted leniently, a bare one too.
        let h = headers("forwarded", &["for=[2001:db8::1], for=2001:db8::2"]);
        assert_eq!(ok(forwarded(&h).unwrap()), ["2001:db8::2", "2001:db8::1"]);
    }

    #[test]
    fn long_entries_are_cut_in_errors() {
        let entry = "x".repeat(10_000);
        let h = headers("x-forwarded-for", &[&entry]);
        let Err(ClientIpError::MalformedEntry { entry, .. }) =
            x_forwarded_for(&h).unwrap().remove(0)
        else {
            panic!("expected a malformed entry");
        };
        assert!(entry.chars().count() <= MAX_SHOWN + 1);
    }
}

//! The client address in an RFC 7239 `Forwarded` header: the `for=` parameter
//! of the rightmost element, the one the nearest proxy (ours) wrote.
//!
//! ```text
//! Forwarded: for=192.0.2.60;proto=http;by=203.0.113.43
//! Forwarded: for="[2001:db8:cafe::17]:4711", for=198.51.100.17
//! ```
//!
//! Only the last element of the last `Forwarded` line is read. Everything to its
//! left was written by the client or by proxies we do not run, so it is never
//! parsed as an element: the element is found by scanning the line from the
//! right, which is exact for a well-formed last element whatever precedes it (an
//! unclosed quote, a stray backslash, a client's own bogus `for=`). The element
//! itself is then parsed strictly; anything malformed in it gives `None`, and the
//! caller falls back to the TCP peer.
//!
//! Accepted `for=` values: an IPv4 address, with or without a port
//! (`192.0.2.60`, `"192.0.2.60:4711"`); an IPv6 address in brackets, with or
//! without a port (`"[2001:db8::1]"`, `"[2001:db8::1]:4711"`), as the RFC writes
//! it. Leniencies, because proxies write them: a value need not be quoted when it
//! holds `:`, `[` or `]`, and an IPv6 address without a port need not be in
//! brackets (`for="2001:db8::1"`). `unknown` and obfuscated identifiers
//! (`_hidden`, RFC 7239 section 6.3) name no address: `None`.
//!
//! Nothing here allocates or panics, whatever the bytes: the only indexing is
//! bounded by the loops, and the one copy (unescaping a quoted value) goes into a
//! fixed buffer and gives up when it is full.

use std::net::{IpAddr, Ipv6Addr};

use http::{HeaderMap, HeaderName};

const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Longest `for=` value (after unescaping) that can name an address: a bracketed
/// IPv6 address with an IPv4 tail and a port, `[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535`,
/// is 54 bytes. Longer values are obfuscated identifiers or garbage.
const MAX_NODE_LEN: usize = 64;

/// The address in the `for=` parameter of the last element of the last
/// `Forwarded` header line, or `None` when that element is malformed, has no
/// `for=`, or names no address.
pub(super) fn rightmost_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let line = headers.get_all(FORWARDED).iter().next_back()?;
    rightmost_for(line.as_bytes())
}

/// [`rightmost_forwarded_for`] on one header line's bytes.
pub(super) fn rightmost_for(line: &[u8]) -> Option<IpAddr> {
    node_ip(for_value(last_element(line)?)?)
}

/// The last non-empty element of a comma-separated line, trimmed, found from the
/// right: a comma separates elements unless it is inside a quoted string. Empty
/// elements (`a, , b,`) are skipped, as RFC 9110 section 5.6.1 asks of list
/// recipients.
///
/// Scanning from the right, a `"` preceded by an odd number of backslashes is an
/// escaped quote (only valid inside a quoted string); any other `"` opens or
/// closes one. For a well-formed last element this finds exactly its start,
/// whatever bytes precede it.
fn last_element(line: &[u8]) -> Option<&[u8]> {
    let mut end = line.len();
    let mut quoted = false;
    let mut i = line.len();
    while i > 0 {
        i -= 1;
        match line[i] {
            b'"' => {
                let escaped = preceding_backslashes(&line[..i]) % 2 == 1;
                match (quoted, escaped) {
                    (true, true) => {}
                    (_, false) => quoted = !quoted,
                    // An escaped quote outside a quoted string: malformed.
                    (false, true) => return None,
                }
            }
            b',' if !quoted => {
                let element = line[i + 1..end].trim_ascii();
                if !element.is_empty() {
                    return Some(element);
                }
                end = i;
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    let element = line[..end].trim_ascii();
    (!element.is_empty()).then_some(element)
}

/// How many backslashes `bytes` ends with.
fn preceding_backslashes(bytes: &[u8]) -> usize {
    bytes.iter().rev().take_while(|&&b| b == b'\\').count()
}

/// The raw value (still quoted, if it was) of the one `for` parameter of an
/// element: `forwarded-pair *( ";" forwarded-pair )`, a pair being
/// `token "=" ( token / quoted-string )`, with optional whitespace around the
/// pairs and empty pairs allowed. Parameter names are case-insensitive. `None`
/// when the element is malformed, has no `for`, or has two (RFC 7239 section 4:
/// a parameter must not occur more than once per element).
fn for_value(element: &[u8]) -> Option<&[u8]> {
    let mut found = None;
    let mut i = 0;
    loop {
        i = skip_ows(element, i);
        match element.get(i) {
            None => return found,
            Some(b';') => {
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        let name_start = i;
        while element.get(i).is_some_and(|&b| is_tchar(b)) {
            i += 1;
        }
        let name = &element[name_start..i];
        if name.is_empty() || element.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        let value_start = i;
        if element.get(i) == Some(&b'"') {
            i = quoted_string_end(element, i)?;
        } else {
            while element.get(i).is_some_and(|&b| is_value_char(b)) {
                i += 1;
            }
        }
        let value = &element[value_start..i];
        if value.is_empty() {
            return None;
        }
        if name.eq_ignore_ascii_case(b"for") {
            if found.is_some() {
                return None;
            }
            found = Some(value);
        }
        i = skip_ows(element, i);
        match element.get(i) {
            None => return found,
            Some(b';') => i += 1,
            Some(_) => return None,
        }
    }
}

/// The index just past the quoted string that opens at `start` (a `"`), or
/// `None` when it is not closed or holds a control character.
fn quoted_string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match *bytes.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                let escaped = *bytes.get(i + 1)?;
                if is_ctl(escaped) {
                    return None;
                }
                i += 2;
            }
            b if is_ctl(b) => return None,
            _ => i += 1,
        }
    }
}

/// The address a `for=` value names, if it names one.
fn node_ip(value: &[u8]) -> Option<IpAddr> {
    let mut buf = [0u8; MAX_NODE_LEN];
    let node = match value.strip_prefix(b"\"") {
        Some(inner) => {
            // `quoted_string_end` checked the quotes: unescape `\x` to `x`.
            let inner = inner.strip_suffix(b"\"")?;
            let mut len = 0;
            let mut bytes = inner.iter();
            while let Some(&b) = bytes.next() {
                let b = if b == b'\\' { *bytes.next()? } else { b };
                *buf.get_mut(len)? = b;
                len += 1;
            }
            &buf[..len]
        }
        None => value,
    };
    parse_node(node)
}

/// `node = nodename [ ":" node-port ]` of RFC 7239 section 6, where nodename is
/// `IPv4address`, `"[" IPv6address "]"`, `"unknown"` or an obfuscated
/// identifier; also a bare IPv6 address without a port.
fn parse_node(node: &[u8]) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        let (v6, after) = (&rest[..close], &rest[close + 1..]);
        if !after.is_empty() && !after.strip_prefix(b":").is_some_and(is_port) {
            return None;
        }
        let v6: Ipv6Addr = std::str::from_utf8(v6).ok()?.parse().ok()?;
        return Some(IpAddr::V6(v6));
    }
    let colons = node.iter().filter(|&&b| b == b':').count();
    match colons {
        0 => ipv4(node),
        1 => {
            let colon = node.iter().position(|&b| b == b':')?;
            if !is_port(&node[colon + 1..]) {
                return None;
            }
            ipv4(&node[..colon])
        }
        // Unbracketed, so no port: the whole of it is the address.
        _ => Some(IpAddr::V6(std::str::from_utf8(node).ok()?.parse().ok()?)),
    }
}

/// An IPv4 address and nothing else: no whitespace, not `unknown`, not
/// `_obfuscated`.
fn ipv4(bytes: &[u8]) -> Option<IpAddr> {
    super::parse_ipv4(bytes).map(IpAddr::V4)
}

/// `node-port = port / obfport`: 1 to 5 digits, or `_` and at least one of
/// letters, digits, `.`, `_`, `-`.
fn is_port(port: &[u8]) -> bool {
    match port.strip_prefix(b"_") {
        Some(obf) => {
            !obf.is_empty()
                && obf
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => (1..=5).contains(&port.len()) && port.iter().all(u8::is_ascii_digit),
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A byte of an unquoted value: a `tchar`, or `:`, `[`, `]`, which the RFC
/// wants quoted but proxies sometimes write bare.
fn is_value_char(b: u8) -> bool {
    is_tchar(b) || matches!(b, b':' | b'[' | b']')
}

fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

fn skip_ows(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn rightmost(line: &str) -> Option<IpAddr> {
        rightmost_for(line.as_bytes())
    }

    #[test]
    fn the_rfc_examples() {
        // RFC 7239 sections 4 and 7.
        assert_eq!(rightmost(r#"for="_gazonk""#), None);
        assert_eq!(
            rightmost(r#"For="[2001:db8:cafe::17]:4711""#),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            rightmost("for=192.0.2.60;proto=http;by=203.0.113.43"),
            ip("192.0.2.60")
        );
        assert_eq!(
            rightmost("for=192.0.2.43, for=198.51.100.17"),
            ip("198.51.100.17")
        );
        assert_eq!(
            rightmost(r#"for=192.0.2.43, for="[2001:db8:cafe::17]""#),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(rightmost("for=192.0.2.43, for=unknown"), None);
        assert_eq!(rightmost("for=unknown, for=192.0.2.43"), ip("192.0.2.43"));
        assert_eq!(
            rightmost(r#"for=192.0.2.43,for="[2001:db8:cafe::17]",for=unknown"#),
            None
        );
    }

    #[test]
    fn addresses_ports_and_quoting() {
        for (line, want) in [
            ("for=192.0.2.60", ip("192.0.2.60")),
            (r#"for="192.0.2.60""#, ip("192.0.2.60")),
            (r#"for="192.0.2.60:4711""#, ip("192.0.2.60")),
            ("for=192.0.2.60:4711", ip("192.0.2.60")),
            (r#"for="192.0.2.60:_port""#, ip("192.0.2.60")),
            (r#"for="[2001:db8::1]""#, ip("2001:db8::1")),
            (r#"for="[2001:db8::1]:4711""#, ip("2001:db8::1")),
            (r#"for="[2001:db8::1]:_p.x-y""#, ip("2001:db8::1")),
            ("for=[2001:db8::1]:4711", ip("2001:db8::1")),
            (r#"for="2001:db8::1""#, ip("2001:db8::1")),
            (r#"for="[::ffff:1.2.3.4]:80""#, ip("::ffff:1.2.3.4")),
            // Escapes inside the quoted string.
            (r#"for="\[2001:db8::1\]:4\711""#, ip("2001:db8::1")),
            (r#"for="192.0.2.\60""#, ip("192.0.2.60")),
            // Other parameters, in any order and case, with whitespace and empty pairs.
            (
                r#"proto=https; FOR=192.0.2.60 ;by="[::1]";host="a;b,c""#,
                ip("192.0.2.60"),
            ),
            (";;for=192.0.2.60;;", ip("192.0.2.60")),
            ("  for=192.0.2.60  ", ip("192.0.2.60")),
            // Empty list elements are skipped.
            ("for=192.0.2.60, ,", ip("192.0.2.60")),
            (",,for=192.0.2.60", ip("192.0.2.60")),
            // Names no address.
            ("for=unknown", None),
            ("for=UNKNOWN", None),
            (r#"for="unknown:4711""#, None),
            ("for=_hidden", None),
            (r#"for="_hidden:80""#, None),
            (r#"for="[_hidden]""#, None),
            // Malformed.
            ("", None),
            (",", None),
            ("for=", None),
            (r#"for="""#, None),
            ("for", None),
            ("=192.0.2.60", None),
            ("proto=http", None),
            ("for=192.0.2.60;for=192.0.2.61", None),
            ("for =192.0.2.60", None),
            ("for= 192.0.2.60", None),
            ("for=192.0.2.60 x", None),
            ("for=192.0.2.60;garbage", None),
            (r#"for="192.0.2.60"#, None),
            (r#"for=192.0.2.60""#, None),
            (r#"for=\"192.0.2.60""#, None),
            ("for=192.0.2.60:", None),
            ("for=192.0.2.60:123456", None),
            ("for=192.0.2.60:80:80", None),
            ("for=192.0.2.60:http", None),
            ("for=192.0.2.60:_", None),
            (r#"for="[2001:db8::1]:""#, None),
            (r#"for="[2001:db8::1]4711""#, None),
            (r#"for="[2001:db8::1""#, None),
            (r#"for="[192.0.2.60]""#, None),
            (r#"for="2001:db8::1:4711:1:2:3:4:5""#, None),
            (r#"for="fe80::1%eth0""#, None),
            ("for=192.0.2.256", None),
            ("for=0192.0.2.6", None),
            ("for=192.0.2.60/24", None),
            (r#"for=" 192.0.2.60""#, None),
            (r#"for="192.0.2.60 :80""#, None),
            ("for=[::1]]", None),
            (r#"for="192.0.2.60\"#, None),
        ] {
            assert_eq!(rightmost(line), want, "{line:?}");
        }
    }

    /// Whatever the client put to the left (on the same line, as a proxy that
    /// appends writes it), the element our proxy appended is the one read.
    #[test]
    fn what_the_client_sent_cannot_hide_or_replace_our_element() {
        let hostile = [
            r#"for=""#,
            r#"for="1.1.1.1"#,
            r#"""#,
            r#"\"#,
            r#"\""#,
            r#"for=1.1.1.1\"#,
            r#"for="\"#,
            r#"for="a,b""#,
            r#"for="1.1.1.1", for="#,
            ";;;==",
            "for=1.1.1.1;for=2.2.2.2",
            "\u{e9}\u{0}\t",
            "for=[",
            "garbage garbage",
        ];
        let appended = [
            ("for=203.0.113.7", ip("203.0.113.7")),
            (r#"for="[2001:db8::7]:4711";proto=https"#, ip("2001:db8::7")),
            (r#"host="x,\"y\"";for=203.0.113.7"#, ip("203.0.113.7")),
            ("for=unknown", None),
        ];
        for prefix in hostile {
            for (ours, want) in appended {
                for sep in [",", ", ", " ,\t"] {
                    let line = format!("{prefix}{sep}{ours}");
                    assert_eq!(rightmost(&line), want, "{line:?}");
                }
            }
        }
    }

    /// The header read is the last line; earlier lines are the client's.
    #[test]
    fn the_last_header_line_counts() {
        let mut headers = HeaderMap::new();
        assert_eq!(rightmost_forwarded_for(&headers), None);
        headers.append(FORWARDED, r#"for="1.1.1.1"#.parse().unwrap());
        headers.append(FORWARDED, "for=203.0.113.7".parse().unwrap());
        assert_eq!(rightmost_forwarded_for(&headers), ip("203.0.113.7"));
        headers.append(FORWARDED, "proto=http".parse().unwrap());
        assert_eq!(rightmost_forwarded_for(&headers), None);
        let mut headers = HeaderMap::new();
        headers.append(
            FORWARDED,
            http::HeaderValue::from_bytes(b"for=\xff\xfe").unwrap(),
        );
        assert_eq!(rightmost_forwarded_for(&headers), None);
    }

    /// Every line of up to 5 bytes over the bytes that matter (and a sample of
    /// those extended to 6), lines of generated bytes, and long runs of one
    /// byte: no panic, and an address only from a `for=` parameter.
    #[test]
    fn never_panics_on_hostile_input() {
        let alphabet = b"\"\\,;=:[]f_r1. \xff";
        let mut frontier = vec![Vec::new()];
        for _ in 0..6 {
            let mut next = Vec::with_capacity(frontier.len() * alphabet.len());
            for s in &frontier {
                for &c in alphabet {
                    let mut t = s.clone();
                    t.push(c);
                    let _ = rightmost_for(&t);
                    let mut with_for = b"for=".to_vec();
                    with_for.extend_from_slice(&t);
                    let _ = rightmost_for(&with_for);
                    next.push(t);
                }
            }
            // Keep the generation bounded: extend only a sample of the longer ones.
            frontier = if next.len() > 100_000 {
                next.into_iter().step_by(7).collect()
            } else {
                next
            };
        }

        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next_byte = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let pick = (state >> 32) as usize;
            if pick.is_multiple_of(4) {
                (state >> 8) as u8
            } else {
                b"\"\\,;=:[]for_0123456789abcdef. \t"[pick % 31]
            }
        };
        for len in [1, 2, 5, 17, 64, 65, 200, 4096] {
            for _ in 0..2_000 {
                let line: Vec<u8> = (0..len).map(|_| next_byte()).collect();
                if let Some(found) = rightmost_for(&line) {
                    // Only a `for=` parameter names an address.
                    let lower = line.to_ascii_lowercase();
                    assert!(
                        lower.windows(4).any(|w| w == b"for="),
                        "{line:?} gave {found}"
                    );
                }
            }
        }
        // Very long runs of the bytes the scanner counts or nests.
        for b in [b'\\', b'"', b',', b';', b'['] {
            let line = vec![b; 1 << 16];
            assert_eq!(rightmost_for(&line), None);
            let mut line = line;
            line.extend_from_slice(b",for=203.0.113.7");
            assert_eq!(rightmost_for(&line), ip("203.0.113.7"));
        }
    }
}

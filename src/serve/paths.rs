//! Paths as the web server takes them: raw bytes, percent-encoded in the query
//! string (names need not be UTF-8), checked so that no request reaches
//! outside a snapshot's tree.

use std::collections::HashMap;

use percent_encoding::{percent_decode_str, percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Longest path a request may name (Linux's PATH_MAX).
const MAX_PATH: usize = 4096;
/// Longest component (NAME_MAX).
const MAX_NAME: usize = 255;

/// The query string's fields, each percent-decoded to bytes (a repeated field
/// keeps its last value). `+` is a plus sign: the page encodes spaces as %20.
pub fn query(q: &str) -> HashMap<String, Vec<u8>> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k =
                String::from_utf8_lossy(&percent_decode_str(k).collect::<Vec<u8>>()).into_owned();
            (k, percent_decode_str(v).collect())
        })
        .collect()
}

/// A path inside a snapshot, `/`-separated, as its components. Empty
/// components (`a//b`, a leading `/`) are skipped; `.`, `..`, NUL, and
/// over-long names or paths are refused, so the result only ever walks down.
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>, String> {
    if path.len() > MAX_PATH {
        return Err(format!("the path is longer than {MAX_PATH} bytes"));
    }
    if path.contains(&0) {
        return Err("a path cannot contain NUL".into());
    }
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
        if c == b"." || c == b".." {
            return Err("`.` and `..` are not allowed in paths".into());
        }
        if c.len() > MAX_NAME {
            return Err(format!("a name is longer than {MAX_NAME} bytes"));
        }
        out.push(c);
    }
    Ok(out)
}

/// Bytes kept as they are when encoding a name for a URL (RFC 3986's
/// unreserved characters), like JavaScript's `encodeURIComponent`.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A name as the page puts it in a URL: every byte outside the unreserved
/// set percent-encoded, so non-UTF-8 names survive the round trip.
pub fn encode(name: &[u8]) -> String {
    percent_encode(name, KEEP).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_only_down() {
        assert_eq!(components(b"/a//b/").unwrap(), vec![&b"a"[..], b"b"]);
        assert!(components(b"").unwrap().is_empty());
        for bad in [&b"a/../b"[..], b"..", b"./a", b"a\0b"] {
            assert!(components(bad).is_err(), "{bad:?}");
        }
        assert!(components(&[b'x'; 256]).is_err());
        assert!(components(&[b'x'; 4097]).is_err());
    }

    #[test]
    fn names_round_trip_through_urls() {
        for name in [
            &b"plain.txt"[..],
            b"sp ace+plus&amp=",
            b"\xff\xfe bad utf8",
            b"new\nline",
            "ünï".as_bytes(),
        ] {
            let q = format!("path={}", encode(name));
            assert_eq!(query(&q)["path"], name, "{name:?}");
        }
        // An encoded slash is a separator once decoded: it cannot smuggle `..`.
        let q = query("path=a%2F..%2Fb");
        assert!(components(&q["path"]).is_err());
    }
}

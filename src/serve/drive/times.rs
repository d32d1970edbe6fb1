//! The times WebDAV clients ask for: rclone's and ownCloud's `X-OC-Mtime`
//! header on a `PUT`, and in a `PROPPATCH` Windows' `Win32LastModifiedTime`
//! (and `Win32LastAccessTime`) or RFC 4918's `getlastmodified`. dav-server
//! answers the Windows properties "200 OK" and `getlastmodified` "403"
//! without applying either, so the drive reads them from the request, takes
//! `getlastmodified` out of what dav-server sees, and applies the times
//! itself once dav-server has accepted the rest of the `PROPPATCH`.

use std::time::UNIX_EPOCH;

use axum::http::HeaderMap;
use xmltree::{Element, XMLNode};

const DAV: &str = "DAV:";
const MS: &str = "urn:schemas-microsoft-com:";

/// The modification time in `X-OC-Mtime` (seconds since the epoch, as
/// rclone and ownCloud clients send it), in nanoseconds.
pub fn oc_mtime(headers: &HeaderMap) -> Option<i64> {
    let v = headers.get("x-oc-mtime")?.to_str().ok()?.trim();
    let secs: f64 = v.parse().ok()?;
    (secs.is_finite() && secs.abs() < 1e11).then(|| (secs * 1e9).round() as i64)
}

/// Times a `PROPPATCH` sets, in nanoseconds since the epoch.
#[derive(Debug, Default, PartialEq)]
pub struct Asked {
    pub mtime: Option<i64>,
    pub atime: Option<i64>,
    /// `DAV:getlastmodified` was among them (and was taken out of the body
    /// dav-server gets, so its answer must be added to the response).
    pub getlastmodified: bool,
}

/// Reads a `PROPPATCH` body: the times it sets, and the body to hand on
/// (the same bytes unless `getlastmodified` had to be taken out). `None`
/// when it sets no time or is not XML dav-server would take: then it goes
/// on unchanged and dav-server answers it.
pub fn read_proppatch(body: &[u8]) -> Option<(Asked, Option<Vec<u8>>)> {
    let mut root = Element::parse(body).ok()?;
    if root.name != "propertyupdate" || root.namespace.as_deref() != Some(DAV) {
        return None;
    }
    let mut asked = Asked::default();
    for set in children_mut(&mut root).filter(|e| is(e, DAV, "set")) {
        for prop in children_mut(set).filter(|e| is(e, DAV, "prop")) {
            prop.children.retain(|n| {
                let Some(e) = n.as_element() else {
                    return true;
                };
                let t = e.get_text().and_then(|t| http_time(&t));
                if is(e, MS, "Win32LastModifiedTime") {
                    asked.mtime = t.or(asked.mtime);
                } else if is(e, MS, "Win32LastAccessTime") {
                    asked.atime = t.or(asked.atime);
                } else if is(e, DAV, "getlastmodified") && t.is_some() {
                    asked.mtime = t;
                    asked.getlastmodified = true;
                    return false;
                }
                true
            });
        }
    }
    if asked.mtime.is_none() && asked.atime.is_none() {
        return None;
    }
    let rewritten = if asked.getlastmodified {
        let mut out = Vec::new();
        root.write(&mut out).ok()?;
        Some(out)
    } else {
        None
    };
    Some((asked, rewritten))
}

fn children_mut(e: &mut Element) -> impl Iterator<Item = &mut Element> {
    e.children.iter_mut().filter_map(XMLNode::as_mut_element)
}

fn is(e: &Element, ns: &str, name: &str) -> bool {
    e.name == name && e.namespace.as_deref() == Some(ns)
}

/// An HTTP date (RFC 1123, as both properties carry it) in nanoseconds.
fn http_time(s: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    let ns = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).ok()?,
        Err(e) => -i64::try_from(e.duration().as_nanos()).ok()?,
    };
    Some(ns)
}

/// Whether every property in dav-server's `PROPPATCH` answer was set.
pub fn all_set(answer: &str) -> bool {
    answer
        .split("<D:status>")
        .skip(1)
        .all(|s| s.starts_with("HTTP/1.1 200"))
}

/// dav-server's answer with `getlastmodified`'s own status added (200 when
/// the rest was set and the time applied, 424 when something else failed).
pub fn with_getlastmodified(answer: &str, status: &str) -> String {
    let propstat = format!(
        "<D:propstat><D:prop><D:getlastmodified/></D:prop><D:status>HTTP/1.1 {status}</D:status></D:propstat>"
    );
    match answer.rfind("</D:response>") {
        Some(at) => format!("{}{propstat}{}", &answer[..at], &answer[at..]),
        None => answer.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIN: &str = r#"<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop><Z:Win32CreationTime>Mon, 02 Jan 2006 15:04:05 GMT</Z:Win32CreationTime><Z:Win32LastAccessTime>Tue, 03 Jan 2006 15:04:05 GMT</Z:Win32LastAccessTime><Z:Win32LastModifiedTime>Mon, 02 Jan 2006 15:04:05 GMT</Z:Win32LastModifiedTime><Z:Win32FileAttributes>00000020</Z:Win32FileAttributes></D:prop></D:set></D:propertyupdate>"#;

    #[test]
    fn windows_times_are_read_and_the_body_goes_on_unchanged() {
        let (asked, body) = read_proppatch(WIN.as_bytes()).unwrap();
        assert_eq!(asked.mtime, Some(1_136_214_245_000_000_000));
        assert_eq!(asked.atime, Some(1_136_300_645_000_000_000));
        assert!(!asked.getlastmodified);
        assert_eq!(body, None);
    }

    #[test]
    fn getlastmodified_is_taken_out_and_the_rest_kept() {
        let req = r#"<propertyupdate xmlns="DAV:"><set><prop><getlastmodified>Sun, 06 Nov 1994 08:49:37 GMT</getlastmodified><x:color xmlns:x="urn:x">red</x:color></prop></set></propertyupdate>"#;
        let (asked, body) = read_proppatch(req.as_bytes()).unwrap();
        assert_eq!(asked.mtime, Some(784_111_777_000_000_000));
        assert!(asked.getlastmodified);
        let body = String::from_utf8(body.unwrap()).unwrap();
        assert!(!body.contains("getlastmodified"), "{body}");
        assert!(body.contains("red") && body.contains("urn:x"), "{body}");
    }

    #[test]
    fn no_time_bad_dates_and_non_xml_pass_through() {
        let other = r#"<propertyupdate xmlns="DAV:"><set><prop><x:color xmlns:x="urn:x">red</x:color></prop></set></propertyupdate>"#;
        assert_eq!(read_proppatch(other.as_bytes()), None);
        let bad = r#"<propertyupdate xmlns="DAV:"><set><prop><getlastmodified>yesterday</getlastmodified></prop></set></propertyupdate>"#;
        assert_eq!(read_proppatch(bad.as_bytes()), None);
        let removal = r#"<propertyupdate xmlns="DAV:"><remove><prop><getlastmodified/></prop></remove></propertyupdate>"#;
        assert_eq!(read_proppatch(removal.as_bytes()), None);
        assert_eq!(read_proppatch(b"\xff\xfe not xml"), None);
        assert_eq!(read_proppatch(b""), None);
    }

    #[test]
    fn answers_are_read_and_completed() {
        let ok = "<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/a</D:href><D:propstat><D:prop><x:c/></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>";
        assert!(all_set(ok));
        assert!(!all_set(&ok.replace("200 OK", "403 Forbidden")));
        let done = with_getlastmodified(ok, "200 OK");
        assert!(done.ends_with("<D:getlastmodified/></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"), "{done}");
    }

    #[test]
    fn oc_mtime_reads_seconds_with_fractions() {
        let mut h = HeaderMap::new();
        h.insert("x-oc-mtime", "1320966671.5".parse().unwrap());
        assert_eq!(oc_mtime(&h), Some(1_320_966_671_500_000_000));
        h.insert("x-oc-mtime", "inf".parse().unwrap());
        assert_eq!(oc_mtime(&h), None);
    }
}

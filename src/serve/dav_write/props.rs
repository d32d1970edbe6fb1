//! WebDAV dead properties (`PROPPATCH`) as xattrs of the writable
//! namespace, so they are in the snapshot: `user.dav:{namespace}name`, whose
//! value is the property's XML element as the client sent it.

use axum::http::StatusCode;
use dav_server::fs::{DavProp, FsResult as DavFsResult};

use super::{dav_error, DavWritable};
use crate::format::tree::Xattr;

/// Dead properties per resource, together (names and values): they live in
/// the namespace's memory and in every snapshot.
const MAX_PROPS_BYTES: usize = 64 << 10;
/// The xattr prefix of a dead property; its name is `{namespace}name`.
pub(super) const PROP_PREFIX: &[u8] = b"user.dav:";

/// The xattr name of a dead property: `user.dav:{namespace}name`.
pub(super) fn prop_key(p: &DavProp) -> Vec<u8> {
    let mut k = PROP_PREFIX.to_vec();
    k.push(b'{');
    k.extend_from_slice(p.namespace.as_deref().unwrap_or("").as_bytes());
    k.push(b'}');
    k.extend_from_slice(p.name.as_bytes());
    k
}

/// The property an xattr holds, if it holds one.
pub(super) fn prop_of(xattr_name: &[u8]) -> Option<DavProp> {
    let rest = std::str::from_utf8(xattr_name.strip_prefix(PROP_PREFIX)?).ok()?;
    let (ns, name) = rest.strip_prefix('{')?.split_once('}')?;
    Some(DavProp {
        name: name.to_string(),
        prefix: None,
        namespace: (!ns.is_empty()).then(|| ns.to_string()),
        xml: None,
    })
}

impl DavWritable {
    pub(super) fn patch(
        &self,
        path: &[u8],
        patch: Vec<(bool, DavProp)>,
    ) -> DavFsResult<Vec<(StatusCode, DavProp)>> {
        let ino = self.ino(path)?;
        let mut out = Vec::with_capacity(patch.len());
        let strip = |p: &DavProp| DavProp {
            xml: None,
            ..p.clone()
        };
        self.fs
            .set_xattrs(ino, |xs| {
                let mut next: Vec<Xattr> = xs.clone();
                for (set, p) in &patch {
                    let key = prop_key(p);
                    next.retain(|x| x.name != key);
                    if *set {
                        next.push(Xattr {
                            name: key,
                            value: p.xml.clone().unwrap_or_default(),
                        });
                    }
                }
                let used: usize = next
                    .iter()
                    .filter(|x| x.name.starts_with(PROP_PREFIX))
                    .map(|x| x.name.len() + x.value.len())
                    .sum();
                let too_long = patch.iter().any(|(_, p)| prop_key(p).len() > 255);
                // All or nothing, as PROPPATCH is.
                let status = if used > MAX_PROPS_BYTES {
                    StatusCode::INSUFFICIENT_STORAGE
                } else if too_long {
                    StatusCode::FORBIDDEN
                } else {
                    *xs = next;
                    StatusCode::OK
                };
                out = patch.iter().map(|(_, p)| (status, strip(p))).collect();
                Ok(())
            })
            .map_err(dav_error)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_property_names_round_trip_through_xattrs() {
        let p = DavProp {
            name: "prop0".into(),
            prefix: Some("x".into()),
            namespace: Some("http://example.com/neon/litmus/".into()),
            xml: None,
        };
        let k = prop_key(&p);
        assert_eq!(
            k,
            b"user.dav:{http://example.com/neon/litmus/}prop0".to_vec()
        );
        let back = prop_of(&k).unwrap();
        assert_eq!(back.name, "prop0");
        assert_eq!(
            back.namespace.as_deref(),
            Some("http://example.com/neon/litmus/")
        );
        let bare = DavProp {
            namespace: None,
            ..p
        };
        assert_eq!(prop_of(&prop_key(&bare)).unwrap().namespace, None);
        assert!(prop_of(b"user.other").is_none());
        assert!(prop_of(b"user.dav:noclose").is_none());
    }
}

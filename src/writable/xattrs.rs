//! Extended attributes of the writable mount, and the one policy on them: a
//! minimal POSIX access ACL (what `cp -a` and `setfacl -b` set instead of
//! calling chmod) is the mode, so it is stored as the mode; a stored copy would
//! go stale at the next chmod and win on restore. Real ACLs are kept as xattrs.

use super::WritableFs;
use crate::format::tree::Xattr;
use crate::fs_error::{FsError, FsResult};

const ACL_ACCESS: &[u8] = b"system.posix_acl_access";

/// The permission bits of a minimal POSIX access ACL (owner, group and other
/// entries only, in the kernel's xattr format), or `None` for a real ACL.
fn minimal_acl_perms(value: &[u8]) -> Option<u32> {
    const VERSION: u32 = 2;
    const USER_OBJ: u16 = 0x01;
    const GROUP_OBJ: u16 = 0x04;
    const OTHER: u16 = 0x20;
    let (head, entries) = value.split_at_checked(4)?;
    if u32::from_le_bytes(head.try_into().ok()?) != VERSION || entries.len() != 3 * 8 {
        return None;
    }
    let mut bits = 0;
    for (e, (tag, shift)) in
        entries
            .chunks_exact(8)
            .zip([(USER_OBJ, 6), (GROUP_OBJ, 3), (OTHER, 0)])
    {
        if u16::from_le_bytes([e[0], e[1]]) != tag {
            return None;
        }
        bits |= (u16::from_le_bytes([e[2], e[3]]) as u32 & 0o7) << shift;
    }
    Some(bits)
}

impl WritableFs {
    /// Sets one xattr with `setxattr(2)`'s `flags` (`XATTR_CREATE`,
    /// `XATTR_REPLACE`); a minimal access ACL becomes the mode instead.
    pub fn set_xattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> FsResult<()> {
        if name == ACL_ACCESS {
            if let Some(bits) = minimal_acl_perms(value) {
                // What `cp -a` sets on every file, after the mode: journal
                // only what changes.
                let (now, had_acl) = self.with_inode(ino, |i| {
                    (i.mode, i.xattrs.iter().any(|x| x.name == ACL_ACCESS))
                })?;
                let mode = (now & !0o777) | bits;
                if mode != now {
                    self.setattr(ino, super::AttrChange::mode(mode), None)?;
                }
                if had_acl {
                    self.set_xattrs(ino, |xs| {
                        xs.retain(|x| x.name != ACL_ACCESS);
                        Ok(())
                    })?;
                }
                return Ok(());
            }
        }
        self.set_xattrs(ino, |xs| {
            let pos = xs.iter().position(|x| x.name == name);
            match (pos, flags) {
                (Some(_), f) if f & libc::XATTR_CREATE != 0 => Err(FsError::Exists),
                (None, f) if f & libc::XATTR_REPLACE != 0 => Err(FsError::NoData),
                (Some(p), _) => {
                    xs[p].value = value.to_vec();
                    Ok(())
                }
                (None, _) => {
                    xs.push(Xattr {
                        name: name.to_vec(),
                        value: value.to_vec(),
                    });
                    Ok(())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::minimal_acl_perms;

    #[test]
    fn minimal_acls_are_modes_and_real_ones_are_not() {
        // What `cp -a` sets for a 0644 file.
        let acl_644 = b"\x02\0\0\0\x01\0\x06\0\xff\xff\xff\xff\x04\0\x04\0\xff\xff\xff\xff\x20\0\x04\0\xff\xff\xff\xff";
        assert_eq!(minimal_acl_perms(acl_644), Some(0o644));
        let acl_750 = b"\x02\0\0\0\x01\0\x07\0\xff\xff\xff\xff\x04\0\x05\0\xff\xff\xff\xff\x20\0\x00\0\xff\xff\xff\xff";
        assert_eq!(minimal_acl_perms(acl_750), Some(0o750));
        // A named user entry (tag 2) and a mask make it a real ACL.
        let mut real = acl_644[..12].to_vec();
        real.extend_from_slice(b"\x02\0\x06\0\xe8\x03\0\0");
        real.extend_from_slice(&acl_644[12..]);
        real.extend_from_slice(b"\x10\0\x06\0\xff\xff\xff\xff");
        assert_eq!(minimal_acl_perms(&real), None);
        assert_eq!(minimal_acl_perms(b""), None);
        assert_eq!(minimal_acl_perms(&acl_644[..20]), None);
    }
}

//! The store's `config` object: format version and the parameters every writer
//! must share (chunker, pack size, compression, encryption). Plain JSON, no secrets
//! (except the public id key of a `--plaintext` store). From format 2 on it
//! carries its own checksum, so a flipped digit is damage and not a setting,
//! and a key check that proves a master secret belongs to this store. It is
//! written twice ([`CONFIG`], [`CONFIG_COPY`]); `crate::unlock` reads them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The newest store format this build writes; it reads this one and older.
/// 2: the config carries `check` and `key_check`, key files name their store.
pub const FORMAT_VERSION: u32 = 2;

/// The config object's name, and the name of its twin.
pub const CONFIG: &str = "config";
pub const CONFIG_COPY: &str = "config-copy";

/// FastCDC parameters in bytes.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        Self {
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 8 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreConfig {
    pub version: u32,
    /// 32 random bytes, hex: names the store in caches and locks.
    pub id: String,
    pub created: i64,
    pub chunker: ChunkerParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// `zstd`; `level` is used by writers only.
    pub compression: String,
    pub compression_level: i32,
    /// `xchacha20poly1305` or `none`.
    pub encryption: String,
    /// Only for `encryption = none`: the public key of chunk-id hashing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_id_key: Option<String>,
    /// Format 2, encrypted stores: proves a master secret is this store's
    /// ([`crate::format::keyfile::key_check`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_check: Option<String>,
    /// Format 2: hex BLAKE3 of this object encoded without `check`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

impl StoreConfig {
    pub fn new(encrypted: bool) -> Result<Self> {
        let mut id = [0u8; 32];
        crate::format::crypto::fill_random(&mut id)?;
        let plaintext_id_key = if encrypted {
            None
        } else {
            let mut k = [0u8; 32];
            crate::format::crypto::fill_random(&mut k)?;
            Some(hex::encode(k))
        };
        Ok(Self {
            version: FORMAT_VERSION,
            id: hex::encode(id),
            created: crate::util::now_ns(),
            chunker: ChunkerParams::default(),
            pack_size: 16 * 1024 * 1024,
            compression: "zstd".into(),
            compression_level: 3,
            encryption: if encrypted {
                "xchacha20poly1305".into()
            } else {
                "none".into()
            },
            plaintext_id_key,
            key_check: None,
            check: None,
        })
    }

    pub fn encrypted(&self) -> bool {
        self.encryption != "none"
    }

    /// The object's bytes; from format 2 on with its checksum filled in.
    pub fn encode(&self) -> Vec<u8> {
        let mut c = self.clone();
        c.check = None;
        if c.version >= 2 {
            c.check = Some(c.checksum());
        }
        serde_json::to_vec_pretty(&c).expect("config serializes")
    }

    /// BLAKE3 of the encoding without `check`, hex.
    fn checksum(&self) -> String {
        let mut c = self.clone();
        c.check = None;
        let body = serde_json::to_vec_pretty(&c).expect("config serializes");
        hex::encode(crate::format::id::content_hash(&body))
    }

    /// Parses and validates: a config this build cannot honour is refused here.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut c: StoreConfig =
            serde_json::from_slice(bytes).map_err(|e| Error::corrupt("config", e))?;
        if c.version == 0 || c.version > FORMAT_VERSION {
            return Err(Error::corrupt(
                "config",
                format!(
                    "store format {} is newer than this klosetfs understands ({FORMAT_VERSION})",
                    c.version
                ),
            ));
        }
        if c.version >= 2 && c.check.as_deref() != Some(c.checksum().as_str()) {
            return Err(Error::corrupt(
                "config",
                "damaged: its checksum does not match",
            ));
        }
        // Verified: the checksum belongs to the encoding, not to the settings.
        c.check = None;
        let ch = c.chunker;
        use fastcdc::v2020 as cdc;
        let ok = (cdc::MINIMUM_MIN..=cdc::MINIMUM_MAX).contains(&ch.min_size)
            && (cdc::AVERAGE_MIN..=cdc::AVERAGE_MAX).contains(&ch.avg_size)
            && (cdc::MAXIMUM_MIN..=cdc::MAXIMUM_MAX).contains(&ch.max_size)
            && ch.min_size <= ch.avg_size
            && ch.avg_size <= ch.max_size;
        if !ok {
            return Err(Error::corrupt("config", "chunker parameters out of range"));
        }
        if !(1024..=1024 * 1024 * 1024).contains(&c.pack_size) {
            return Err(Error::corrupt("config", "pack size out of range"));
        }
        match (c.encryption.as_str(), &c.plaintext_id_key) {
            ("xchacha20poly1305", _) => {}
            ("none", Some(k)) if k.len() == 64 && hex::decode(k).is_ok() => {}
            _ => return Err(Error::corrupt("config", "unknown encryption settings")),
        }
        if c.compression != "zstd" {
            return Err(Error::corrupt("config", "unknown compression"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_validation() {
        let c = StoreConfig::new(true).unwrap();
        assert_eq!(StoreConfig::decode(&c.encode()).unwrap(), c);
        let mut bad = c.clone();
        bad.version = 99;
        assert!(StoreConfig::decode(&bad.encode()).is_err());
        let mut bad = c.clone();
        bad.chunker.min_size = 0;
        assert!(StoreConfig::decode(&bad.encode()).is_err());
        assert!(StoreConfig::decode(b"{garbage").is_err());
        // Format 2: any change to a setting is damage, not a new setting.
        let bytes = c.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let bad = text.replace("\"compression_level\": 3", "\"compression_level\": 4");
        assert_ne!(bad, text);
        let e = StoreConfig::decode(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        // Format 1 (no checksum) still reads.
        let mut old = c.clone();
        old.version = 1;
        let v1 = serde_json::to_vec_pretty(&old).unwrap();
        assert_eq!(StoreConfig::decode(&v1).unwrap().version, 1);
        let p = StoreConfig::new(false).unwrap();
        assert!(StoreConfig::decode(&p.encode())
            .unwrap()
            .plaintext_id_key
            .is_some());
    }
}

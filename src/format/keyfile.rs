//! Key files (`keys/<id>`): the master secret wrapped under a key derived from
//! one passphrase with Argon2id. A store can have several. From format 2 on a
//! key file names its store, and the store's id is bound into the wrapping,
//! so a key file of another store is told apart before any secret is used.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::error::{Error, Result};
use crate::format::crypto::{fill_random, Keys, MasterKey};
use crate::format::id::{content_hash, KeyId};

const KEY_AAD: &[u8] = b"klosetfs key v1";
/// Version 2 wraps under this followed by the store id (hex, as in `config`).
const KEY_AAD_V2: &[u8] = b"klosetfs key v2 ";

fn aad_v2(store: &str) -> Vec<u8> {
    [KEY_AAD_V2, store.as_bytes()].concat()
}

/// The value `config.key_check` holds for `master` in store `store_id`:
/// keyed BLAKE3 under the master secret, so it reveals nothing of it.
pub fn key_check(master: &MasterKey, store_id: &str) -> String {
    let msg = [b"klosetfs key check v2 ".as_slice(), store_id.as_bytes()].concat();
    hex::encode(blake3::keyed_hash(&master.0, &msg).as_bytes())
}

/// Argon2id parameters, recorded in every key file.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        // OWASP's second recommended setting: 64 MiB, 3 passes.
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 2,
        }
    }
}

/// The JSON body of `keys/<id>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub kdf: String,
    pub params: KdfParams,
    /// Hex, 16 random bytes.
    pub salt: String,
    /// Hex: nonce || XChaCha20-Poly1305(master secret) || tag.
    pub wrapped: String,
    pub created: i64,
    pub host: String,
    pub user: String,
    /// Version 2: the id of the store this key opens (its config's `id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

fn derive_kek(passphrase: &[u8], salt: &[u8], p: KdfParams) -> Result<MasterKey> {
    // Refuse absurd parameters from a hostile key file before allocating.
    if p.memory_kib > 4 * 1024 * 1024 || p.iterations > 100 || p.parallelism > 64 {
        return Err(Error::corrupt("key file", "unreasonable KDF parameters"));
    }
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| Error::corrupt("key file", e))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, &mut out)
        .map_err(|e| Error::corrupt("key file", e))?;
    let k = MasterKey(out);
    out.zeroize();
    Ok(k)
}

impl KeyFile {
    /// Wraps `master` under `passphrase`: version 2, bound to the store
    /// `store` when given; version 1 (for format-1 stores) without.
    pub fn new(
        master: &MasterKey,
        passphrase: &[u8],
        params: KdfParams,
        store: Option<&str>,
    ) -> Result<Self> {
        let mut salt = [0u8; 16];
        fill_random(&mut salt)?;
        let kek = derive_kek(passphrase, &salt, params)?;
        let aad = match store {
            Some(id) => aad_v2(id),
            None => KEY_AAD.to_vec(),
        };
        let wrapped = Keys::encrypted(&kek).seal(&aad, &master.0)?;
        Ok(Self {
            version: if store.is_some() { 2 } else { 1 },
            store: store.map(str::to_string),
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            wrapped: hex::encode(wrapped),
            created: crate::util::now_ns(),
            host: crate::util::hostname(),
            user: crate::util::username(),
        })
    }

    /// The master secret, or `None` when the passphrase does not fit.
    pub fn unwrap_master(&self, passphrase: &[u8]) -> Result<Option<MasterKey>> {
        let aad = match (self.version, &self.store) {
            (1, _) => KEY_AAD.to_vec(),
            (2, Some(store)) => aad_v2(store),
            _ => {
                return Err(Error::corrupt(
                    "key file",
                    format!("unsupported version {}", self.version),
                ))
            }
        };
        if self.kdf != "argon2id" {
            return Err(Error::corrupt(
                "key file",
                format!("unsupported kdf {}", self.kdf),
            ));
        }
        let salt = hex::decode(&self.salt).map_err(|e| Error::corrupt("key file", e))?;
        let wrapped = hex::decode(&self.wrapped).map_err(|e| Error::corrupt("key file", e))?;
        let kek = derive_kek(passphrase, &salt, self.params)?;
        match Keys::encrypted(&kek).open(&aad, &wrapped, "key") {
            Ok(mut m) if m.len() == 32 => {
                let mut k = [0u8; 32];
                k.copy_from_slice(&m);
                m.zeroize();
                Ok(Some(MasterKey(k)))
            }
            Ok(_) => Err(Error::corrupt(
                "key file",
                "wrapped key has the wrong length",
            )),
            Err(_) => Ok(None),
        }
    }

    pub fn encode(&self) -> (KeyId, Vec<u8>) {
        let bytes = serde_json::to_vec_pretty(self).expect("key files serialize");
        (KeyId(content_hash(&bytes)), bytes)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt("key file", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> KdfParams {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    /// The test vectors of docs/design.md §14, from the committed version-1
    /// store: a reimplementation that gets these gets Argon2id, the key
    /// unwrapping and the key derivations right.
    #[test]
    fn the_fixture_store_gives_the_design_test_vectors() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-store/keys");
        let file = std::fs::read_dir(dir).unwrap().next().unwrap().unwrap();
        let kf = KeyFile::decode(&std::fs::read(file.path()).unwrap()).unwrap();
        let salt = hex::decode(&kf.salt).unwrap();
        let kek = derive_kek(b"fixture passphrase", &salt, kf.params).unwrap();
        let m = kf
            .unwrap_master(b"fixture passphrase")
            .unwrap()
            .expect("it opens");
        let keys = crate::format::crypto::Keys::encrypted(&m);
        let got = format!(
            "K {}\nM {}\nid {}\nseed {}",
            hex::encode(kek.0),
            hex::encode(m.0),
            keys.blob_id(b"hello fixture\n").to_hex(),
            keys.chunker_seed()
        );
        assert_eq!(
            got,
            "K dec56d7f4018de189809bb547582d90eff96953a4c10383699ff3f6bebfb0199\n\
             M 8b22399de2fba6e1cd224dbb3bb95a25403dd709aa90d2d30cf1dbf764f53e42\n\
             id 620092fa205036f121e83ce9ee394e2a2f0de2c11009fd49cfad43da9a3d01a7\n\
             seed 3017694833249594730"
        );
    }

    #[test]
    fn wraps_and_unwraps() {
        let m = MasterKey::random().unwrap();
        for store in [None, Some("ab".repeat(32))] {
            let kf = KeyFile::new(&m, b"pw", fast(), store.as_deref()).unwrap();
            let (_, bytes) = kf.encode();
            let back = KeyFile::decode(&bytes).unwrap();
            assert_eq!(back.unwrap_master(b"pw").unwrap().unwrap().0, m.0);
            assert!(back.unwrap_master(b"wrong").unwrap().is_none());
        }
    }

    /// A version-2 key file relabelled for another store does not open: the
    /// store id is bound into the wrapping.
    #[test]
    fn the_store_id_is_bound_into_the_wrapping() {
        let m = MasterKey::random().unwrap();
        let mut kf = KeyFile::new(&m, b"pw", fast(), Some(&"ab".repeat(32))).unwrap();
        kf.store = Some("cd".repeat(32));
        assert!(kf.unwrap_master(b"pw").unwrap().is_none());
        assert_ne!(
            key_check(&m, &"ab".repeat(32)),
            key_check(&m, &"cd".repeat(32))
        );
    }

    #[test]
    fn hostile_params_are_refused() {
        let m = MasterKey::random().unwrap();
        let mut kf = KeyFile::new(&m, b"pw", fast(), None).unwrap();
        kf.params.memory_kib = u32::MAX;
        assert!(kf.unwrap_master(b"pw").is_err());
    }
}

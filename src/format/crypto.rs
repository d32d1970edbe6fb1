//! Key material and the one sealing scheme every stored object uses:
//! XChaCha20-Poly1305 with a random 24-byte nonce, and keyed BLAKE3 for blob ids.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::format::id::BlobId;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes added to every sealed object in an encrypted store.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The store's 32-byte random master secret; every working key derives from it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey(pub(crate) [u8; 32]);

impl MasterKey {
    pub fn random() -> Result<Self> {
        let mut k = [0u8; 32];
        fill_random(&mut k)?;
        Ok(Self(k))
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf).map_err(|e| {
        Error::io(
            "reading OS randomness",
            std::io::Error::other(e.to_string()),
        )
    })
}

/// The working keys of an open store.
#[derive(Clone)]
pub struct Keys {
    id_key: [u8; 32],
    /// Seeds FastCDC's gear table so chunk boundaries do not fingerprint content.
    chunker_seed: u64,
    cipher: Option<XChaCha20Poly1305>,
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.id_key.zeroize();
    }
}

impl Keys {
    /// Keys of an encrypted store, derived from its master secret.
    pub fn encrypted(master: &MasterKey) -> Self {
        let mut enc = blake3::derive_key("klosetfs v1 blob encryption key", &master.0);
        let id_key = blake3::derive_key("klosetfs v1 chunk id key", &master.0);
        let seed = blake3::derive_key("klosetfs v1 chunker seed", &master.0);
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&enc));
        enc.zeroize();
        Self {
            id_key,
            chunker_seed: u64::from_le_bytes(seed[..8].try_into().expect("8 bytes")),
            cipher: Some(cipher),
        }
    }

    /// Keys of a plaintext store: no encryption, the id key is public (in config).
    pub fn plaintext(id_key: [u8; 32]) -> Self {
        Self {
            id_key,
            chunker_seed: 0,
            cipher: None,
        }
    }

    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// Keyed BLAKE3 of a blob's plaintext.
    pub fn blob_id(&self, data: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.id_key, data).as_bytes())
    }

    /// Seals `plaintext` bound to `aad`: `nonce || ciphertext || tag`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let Some(cipher) = &self.cipher else {
            return Ok(plaintext.to_vec());
        };
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, &mut out[NONCE_LEN..])
            .map_err(|_| Error::corrupt("plaintext", "encryption failed"))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens what [`Keys::seal`] made; fails if a byte or the `aad` differs.
    pub fn open(&self, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        let Some(cipher) = &self.cipher else {
            return Ok(sealed.to_vec());
        };
        if sealed.len() < OVERHEAD {
            return Err(Error::corrupt(what, "too short to be sealed"));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut buf = ct.to_vec();
        cipher
            .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut buf, tag.into())
            .map_err(|_| Error::corrupt(what, "authentication failed (damaged or forged)"))?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096), aad in proptest::collection::vec(any::<u8>(), 0..64)) {
            let k = Keys::encrypted(&MasterKey::random().unwrap());
            let sealed = k.seal(&aad, &data).unwrap();
            prop_assert_eq!(sealed.len(), data.len() + OVERHEAD);
            prop_assert_eq!(k.open(&aad, &sealed, "t").unwrap(), data);
        }

        #[test]
        fn any_flipped_bit_is_detected(data in proptest::collection::vec(any::<u8>(), 1..512), pos in any::<usize>(), bit in 0u8..8) {
            let k = Keys::encrypted(&MasterKey::random().unwrap());
            let mut sealed = k.seal(b"aad", &data).unwrap();
            let i = pos % sealed.len();
            sealed[i] ^= 1 << bit;
            prop_assert!(k.open(b"aad", &sealed, "t").is_err());
        }
    }

    #[test]
    fn wrong_aad_or_key_fails() {
        let k = Keys::encrypted(&MasterKey::random().unwrap());
        let sealed = k.seal(b"one", b"secret").unwrap();
        assert!(k.open(b"two", &sealed, "t").is_err());
        let other = Keys::encrypted(&MasterKey::random().unwrap());
        assert!(other.open(b"one", &sealed, "t").is_err());
    }

    #[test]
    fn ids_depend_on_the_key() {
        let a = Keys::encrypted(&MasterKey::random().unwrap());
        let b = Keys::encrypted(&MasterKey::random().unwrap());
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        let big = vec![7u8; 2 << 20];
        assert_eq!(a.blob_id(&big), a.blob_id(&big.clone()));
    }
}

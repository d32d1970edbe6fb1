//! The store's two small root objects, `config` and its key files, read so
//! that one damaged byte is never fatal and a key never opens the wrong
//! store. Each is written twice (`config` and `config-copy`, `keys/<id>` and
//! `keys/<id>-copy`) and read in turn until one copy verifies. A key must
//! prove it belongs to this store — its `store` field (format 2), the
//! config's `key_check`, or (format 1) an index object it decrypts — before
//! anything is read or written with it. `check` reports what is damaged,
//! missing or foreign here, and `check --repair` rewrites a damaged or
//! missing copy from the good one; nothing here ever deletes the last copy.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::format::config::{StoreConfig, CONFIG, CONFIG_COPY, FORMAT_VERSION};
use crate::format::crypto::{Keys, MasterKey};
use crate::format::id::{content_hash, IndexId, KeyId};
use crate::format::index::IndexFile;
use crate::format::keyfile::{key_check, KeyFile};
use crate::storage::{Kind, Storage, StorageError};

/// The suffix of a key file's twin.
pub const KEY_COPY_SUFFIX: &str = "-copy";

/// One copy of a root object as read: its bytes if they verify, else why not.
enum Copy<T> {
    Good(T, Vec<u8>),
    Missing,
    Damaged(String, Vec<u8>),
}

fn read_copy<T>(
    storage: &dyn Storage,
    kind: Kind,
    name: &str,
    decode: impl Fn(&[u8]) -> Result<T>,
) -> Result<Copy<T>> {
    match storage.get(kind, name) {
        Ok(b) => Ok(match decode(&b) {
            Ok(v) => Copy::Good(v, b),
            Err(e) => Copy::Damaged(e.to_string(), b),
        }),
        Err(StorageError::NotFound { .. }) => Ok(Copy::Missing),
        // An outage is not damage: it stops here.
        Err(e) => Err(e.into()),
    }
}

/// The config, from the first copy that verifies, and a line for each copy
/// that does not (for warnings). Opening reads the twin only when `config`
/// fails, so it costs one request as before; [`check_root`] reads both.
pub fn read_config(storage: &dyn Storage) -> Result<(StoreConfig, Vec<String>)> {
    let a = read_copy(storage, Kind::Config, CONFIG, StoreConfig::decode)?;
    let a_why = match a {
        Copy::Good(c, _) => return Ok((c, Vec::new())),
        Copy::Damaged(why, bytes) => {
            // A newer klosetfs's store is not damage: say so, use no copy.
            if let Some(v) = newer_format(&bytes) {
                return Err(Error::corrupt(
                    "config",
                    format!(
                        "store format {v} is newer than this klosetfs understands ({FORMAT_VERSION})"
                    ),
                ));
            }
            format!("damaged ({why})")
        }
        Copy::Missing => "missing".to_string(),
    };
    match read_copy(storage, Kind::Config, CONFIG_COPY, StoreConfig::decode)? {
        Copy::Good(c, _) => Ok((
            c,
            vec![format!(
                "config is {a_why}; its copy config-copy was used (`check --repair` rewrites it)"
            )],
        )),
        Copy::Missing if a_why == "missing" => Err(Error::NotAStore(storage.location())),
        Copy::Missing => Err(Error::corrupt(
            "config",
            format!("{a_why}, and the store has no config-copy"),
        )),
        Copy::Damaged(why, _) => Err(Error::corrupt(
            "config",
            format!("both copies are unusable: config is {a_why}; config-copy is damaged ({why})"),
        )),
    }
}

/// The version a config object claims when it is newer than this build.
fn newer_format(bytes: &[u8]) -> Option<u32> {
    #[derive(serde::Deserialize)]
    struct V {
        version: u32,
    }
    serde_json::from_slice::<V>(bytes)
        .ok()
        .map(|v| v.version)
        .filter(|v| *v > FORMAT_VERSION)
}

/// Writes a new store's config: the twin first, the config itself last (a
/// resource without `config` is not yet a store).
pub fn write_config(storage: &dyn Storage, config: &StoreConfig) -> Result<()> {
    let body = config.encode();
    storage.put(Kind::Config, CONFIG_COPY, &body)?;
    storage.put(Kind::Config, CONFIG, &body)?;
    Ok(())
}

/// What `keys/` holds: key ids (each with which copies exist) and names that
/// are not key file names.
#[derive(Debug, Default)]
pub struct KeyNames {
    /// id → (the file, its twin) present.
    pub ids: BTreeMap<KeyId, (bool, bool)>,
    /// Files in `keys/` that are not `<64 lower-case hex digits>[-copy]`.
    pub strays: Vec<String>,
}

pub fn key_names(storage: &dyn Storage) -> Result<KeyNames> {
    let mut out = KeyNames::default();
    for (name, _) in storage.list(Kind::Key)? {
        let (hexid, copy) = match name.strip_suffix(KEY_COPY_SUFFIX) {
            Some(h) => (h, true),
            None => (name.as_str(), false),
        };
        let lower = hexid.len() == 64 && !hexid.bytes().any(|b| b.is_ascii_uppercase());
        match KeyId::from_hex(hexid) {
            Ok(id) if lower => {
                let e = out.ids.entry(id).or_default();
                if copy {
                    e.1 = true
                } else {
                    e.0 = true
                }
            }
            _ => out.strays.push(name),
        }
    }
    out.strays.sort();
    Ok(out)
}

fn decode_key(id: &KeyId) -> impl Fn(&[u8]) -> Result<KeyFile> + '_ {
    move |bytes| {
        if content_hash(bytes) != id.0 {
            return Err(Error::corrupt(
                format!("key file {}", id.short()),
                "damaged: its content does not match its name",
            ));
        }
        KeyFile::decode(bytes).map_err(|e| {
            Error::corrupt(format!("key file {}", id.short()), format!("damaged: {e}"))
        })
    }
}

/// The state of one key's two copies.
pub struct KeyCopies {
    pub id: KeyId,
    /// The key file from a copy that verifies, or why neither does.
    pub file: Result<KeyFile>,
    /// The verified bytes, for rewriting a bad twin.
    good: Option<Vec<u8>>,
    /// Each copy that is present but damaged: (object name, why).
    pub damaged: Vec<(String, String)>,
    /// Copies that are absent: object names.
    pub missing: Vec<String>,
}

/// Reads one key, the file first and its twin if the file does not verify
/// (or always, with `both`).
pub fn read_key(storage: &dyn Storage, id: &KeyId, both: bool) -> Result<KeyCopies> {
    let names = [id.to_hex(), format!("{}{KEY_COPY_SUFFIX}", id.to_hex())];
    let mut file = None;
    let mut good = None;
    let mut damaged = Vec::new();
    let mut missing = Vec::new();
    for n in &names {
        if file.is_some() && !both {
            break;
        }
        match read_copy(storage, Kind::Key, n, decode_key(id))? {
            Copy::Good(k, b) => {
                if file.is_none() {
                    file = Some(k);
                    good = Some(b);
                }
            }
            Copy::Missing => missing.push(n.clone()),
            Copy::Damaged(why, _) => damaged.push((n.clone(), why)),
        }
    }
    let file = match file {
        Some(k) => Ok(k),
        None => Err(match damaged.first() {
            Some((_, why)) => Error::corrupt(format!("key file {}", id.short()), why.clone()),
            None => Error::Storage(StorageError::NotFound {
                kind: Kind::Key,
                name: id.to_hex(),
            }),
        }),
    };
    Ok(KeyCopies {
        id: *id,
        file,
        good,
        damaged,
        missing,
    })
}

/// Writes a key file and its twin; returns its id.
pub fn write_key(storage: &dyn Storage, kf: &KeyFile) -> Result<KeyId> {
    let (id, body) = kf.encode();
    storage.put(Kind::Key, &id.to_hex(), &body)?;
    storage.put(
        Kind::Key,
        &format!("{}{KEY_COPY_SUFFIX}", id.to_hex()),
        &body,
    )?;
    Ok(id)
}

/// Removes a key and its twin.
pub fn remove_key(storage: &dyn Storage, id: &KeyId) -> Result<()> {
    for n in [id.to_hex(), format!("{}{KEY_COPY_SUFFIX}", id.to_hex())] {
        crate::storage::ignore_missing(storage.delete(Kind::Key, &n))?;
    }
    Ok(())
}

/// Why a key file that verifies is not this store's, if its `store` field
/// says so (format 2; a format-1 key is proved by [`belongs`] instead).
fn foreign(config: &StoreConfig, kf: &KeyFile) -> Option<String> {
    match &kf.store {
        Some(s) if *s != config.id => Some(format!(
            "it names store {}…, and this store is {}…",
            &s[..s.len().min(8)],
            &config.id[..config.id.len().min(8)]
        )),
        _ => None,
    }
}

/// Whether `master` is this store's: the config's key check (format 2), or,
/// for a format-1 store, an intact index object that it decrypts. A store
/// with no intact index yet holds nothing a foreign key could be mixed with.
fn belongs(storage: &dyn Storage, config: &StoreConfig, master: &MasterKey) -> Result<bool> {
    if let Some(kc) = &config.key_check {
        return Ok(*kc == key_check(master, &config.id));
    }
    let keys = Keys::encrypted(master);
    let mut intact = 0;
    for (name, _) in storage.list(Kind::Index)?.into_iter().take(8) {
        let Ok(id) = IndexId::from_hex(&name) else {
            continue;
        };
        let bytes = match storage.get(Kind::Index, &name) {
            Ok(b) => b,
            Err(StorageError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        if content_hash(&bytes) != id.0 {
            continue;
        }
        intact += 1;
        if IndexFile::decode(&keys, &id, &bytes).is_ok() {
            return Ok(true);
        }
        if intact >= 3 {
            break;
        }
    }
    Ok(intact == 0)
}

/// Finds the key of this store that `passphrase` opens. Every key file is
/// tried (foreign ones are skipped before their KDF runs); the error says
/// "wrong passphrase" only when every key was intact, this store's, and
/// validly named — otherwise it names what is wrong.
pub fn unlock(
    storage: &dyn Storage,
    config: &StoreConfig,
    passphrase: &[u8],
) -> Result<(KeyId, MasterKey)> {
    let names = key_names(storage)?;
    let mut damaged = Vec::new();
    let mut foreigners = Vec::new();
    for id in names.ids.keys() {
        let kc = read_key(storage, id, false)?;
        for (n, why) in &kc.damaged {
            tracing::warn!(
                "key file {n} is damaged ({why}); `check --repair` rewrites it from its twin"
            );
        }
        let kf = match kc.file {
            Ok(k) => k,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                tracing::warn!("skipping key {}: {e}", id.short());
                damaged.push(e.to_string());
                continue;
            }
        };
        if let Some(why) = foreign(config, &kf) {
            foreigners.push(format!(
                "key file {} belongs to another store: {why}",
                id.short()
            ));
            continue;
        }
        // A key file that verifies by its name but does not unwrap (an
        // unknown version, absurd KDF parameters) is damage: the next key
        // is still tried.
        let m = match kf.unwrap_master(passphrase) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("skipping key {}: {e}", id.short());
                damaged.push(format!("key file {}: {e}", id.short()));
                continue;
            }
        };
        if !belongs(storage, config, &m)? {
            foreigners.push(format!(
                "key file {} belongs to another store: the secret it holds does not open this store's objects",
                id.short()
            ));
            continue;
        }
        for f in &foreigners {
            tracing::warn!("{f}");
        }
        if !names.strays.is_empty() {
            tracing::warn!("{}", strays_line(&names.strays));
        }
        return Ok((*id, m));
    }
    let mut why = Vec::new();
    why.extend(foreigners);
    if !damaged.is_empty() {
        why.push(format!(
            "{} key file(s) are damaged ({}); another passphrase of this store, or an intact copy of the key file, opens it",
            damaged.len(),
            damaged.join("; ")
        ));
    }
    if !names.strays.is_empty() {
        why.push(strays_line(&names.strays));
    }
    if names.ids.is_empty() && why.is_empty() {
        return Err(Error::corrupt("store", "encrypted store without key files"));
    }
    if why.is_empty() {
        return Err(Error::WrongPassphrase);
    }
    Err(Error::corrupt(
        "keys",
        format!(
            "no key file of this store opens it with this passphrase, and: {}",
            why.join("; ")
        ),
    ))
}

fn strays_line(strays: &[String]) -> String {
    format!(
        "keys/ holds files that are not key files and were not tried: {} (a key file is \
         named by the lower-case hex BLAKE3 of its content, optionally with -copy)",
        strays.join(", ")
    )
}

/// Lists keys: id, and the file or why it cannot be read (both copies tried).
pub fn list_keys(storage: &dyn Storage) -> Result<Vec<(KeyId, Result<KeyFile>)>> {
    let mut out = Vec::new();
    for id in key_names(storage)?.ids.keys() {
        out.push((*id, read_key(storage, id, false)?.file));
    }
    out.sort_by_key(|(_, k)| k.as_ref().map(|k| k.created).unwrap_or(0));
    Ok(out)
}

/// What `check` says of the root objects: damage and foreign keys (errors),
/// missing twins and stray names (warnings).
#[derive(Debug, Default)]
pub struct RootReport {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Looks at both copies of the config and of every key.
pub fn check_root(storage: &dyn Storage, config: &StoreConfig) -> Result<RootReport> {
    let mut r = RootReport::default();
    let mut good = Vec::new();
    for name in [CONFIG, CONFIG_COPY] {
        match read_copy(storage, Kind::Config, name, StoreConfig::decode)? {
            Copy::Good(_, b) => good.push(b),
            Copy::Missing if name == CONFIG_COPY && config.version < 2 => r
                .warnings
                .push("config has no copy (a format-1 store): `check --repair` adds one".into()),
            Copy::Missing => r.errors.push(format!(
                "{name} is missing: `check --repair` rewrites it from its twin"
            )),
            Copy::Damaged(why, _) => r.errors.push(format!(
                "{name} is damaged ({why}): `check --repair` rewrites it from its twin"
            )),
        }
    }
    if good.len() == 2 && good[0] != good[1] {
        r.errors.push(
            "config and config-copy both read but differ, so which is right cannot be told; \
             `check --repair` leaves them alone"
                .into(),
        );
    }
    if !config.encrypted() {
        return Ok(r);
    }
    let names = key_names(storage)?;
    for id in names.ids.keys() {
        let kc = read_key(storage, id, true)?;
        for (n, why) in &kc.damaged {
            let fix = if kc.good.is_some() {
                "`check --repair` rewrites it from its twin"
            } else {
                "no intact copy is left"
            };
            r.errors
                .push(format!("key file {n} is damaged ({why}): {fix}"));
        }
        if let Ok(kf) = &kc.file {
            if let Some(why) = foreign(config, kf) {
                r.errors.push(format!(
                    "key file {} belongs to another store ({why}); it is never used here: remove it",
                    id.to_hex()
                ));
            }
            for n in &kc.missing {
                r.warnings.push(format!(
                    "key file {n} is missing (its twin is intact): `check --repair` writes it"
                ));
            }
        }
    }
    if !names.strays.is_empty() {
        r.warnings.push(strays_line(&names.strays));
    }
    Ok(r)
}

/// Rewrites every damaged or missing copy of the config and of the keys
/// from an intact twin; returns a line per object written. A copy is only
/// ever replaced by one that verifies, and the good copy is never touched;
/// a key that is foreign or has no intact copy is left alone.
pub fn repair_root(storage: &dyn Storage) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let (config, _) = read_config(storage)?;
    let a = read_copy(storage, Kind::Config, CONFIG, StoreConfig::decode)?;
    let b = read_copy(storage, Kind::Config, CONFIG_COPY, StoreConfig::decode)?;
    match (&a, &b) {
        (Copy::Good(_, x), Copy::Good(_, y)) if x != y => {
            done.push("left config and config-copy alone: both read but differ".into())
        }
        (Copy::Good(..), Copy::Good(..)) => {}
        (Copy::Good(_, good), _) => {
            rewrite(storage, Kind::Config, CONFIG_COPY, good)?;
            done.push("wrote config-copy from config".into());
        }
        (_, Copy::Good(_, good)) => {
            rewrite(storage, Kind::Config, CONFIG, good)?;
            done.push("rewrote config from config-copy".into());
        }
        _ => unreachable!("read_config found a good copy"),
    }
    if !config.encrypted() {
        return Ok(done);
    }
    for id in key_names(storage)?.ids.keys() {
        let kc = read_key(storage, id, true)?;
        let (Some(bytes), Ok(kf)) = (&kc.good, &kc.file) else {
            continue;
        };
        if foreign(&config, kf).is_some() {
            continue;
        }
        for n in kc.damaged.iter().map(|d| &d.0).chain(&kc.missing) {
            rewrite(storage, Kind::Key, n, bytes)?;
            done.push(format!("rewrote key file {n} from its intact twin"));
        }
    }
    Ok(done)
}

/// Replaces one object (objects are never overwritten in place: delete, then
/// put; the twin holds the content in between).
fn rewrite(storage: &dyn Storage, kind: Kind, name: &str, bytes: &[u8]) -> Result<()> {
    crate::storage::ignore_missing(storage.delete(kind, name))?;
    storage.put(kind, name, bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use std::sync::Arc;

    /// A key file with absurd KDF parameters (named by its hash, as an
    /// attacker can make one) beside the store's own key neither stops
    /// the store from opening nor is taken for a wrong passphrase.
    #[test]
    fn a_hostile_key_beside_the_right_one_is_skipped() {
        let s = Arc::new(MemoryStorage::new());
        let kdf = crate::repo::TEST_KDF;
        crate::repo::test_repo(s.clone());
        let (config, _) = read_config(&*s).unwrap();
        let m = MasterKey::random().unwrap();
        let mut hostile = KeyFile::new(&m, b"pw", kdf, Some(&config.id)).unwrap();
        hostile.params.memory_kib = u32::MAX;
        // Named so that it sorts first and is tried first.
        let good = *key_names(&*s).unwrap().ids.keys().next().unwrap();
        let (id, body) = loop {
            let (id, body) = hostile.encode();
            if id.to_hex() < good.to_hex() {
                break (id, body);
            }
            hostile.created += 1;
        };
        s.put(Kind::Key, &id.to_hex(), &body).unwrap();
        assert!(unlock(&*s, &config, b"pw").is_ok());
        let e = unlock(&*s, &config, b"nope").unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}

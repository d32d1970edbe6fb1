//! The user's configuration file: named stores (`@name`) with their location
//! and passphrase source, kept as TOML under the user's config directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Settings a named store may carry.
pub const STORE_KEYS: &[&str] = &[
    "location",
    "passphrase",
    "passphrase_file",
    "passphrase_command",
    "cache_dir",
    "endpoint",
    "region",
    "access_key",
    "secret_access_key",
    "path_style",
    "cache_size",
];

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UserConfig {
    #[serde(default)]
    pub stores: BTreeMap<String, BTreeMap<String, String>>,
    /// Named retention policies (`rm --policy NAME`): `key=value` settings,
    /// in order (`keep_tag` may repeat).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, Vec<String>>,
}

/// `$KLOSETFS_CONFIG`, else `<config dir>/klosetfs/config.toml`.
pub fn path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("KLOSETFS_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    dirs::config_dir()
        .map(|d| d.join("klosetfs").join("config.toml"))
        .ok_or_else(|| Error::InvalidInput("no config directory: set KLOSETFS_CONFIG".into()))
}

impl UserConfig {
    pub fn load() -> Result<Self> {
        let p = path()?;
        match std::fs::read_to_string(&p) {
            Ok(s) => {
                toml::from_str(&s).map_err(|e| Error::InvalidInput(format!("{}: {e}", p.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
        }
    }

    /// Writes atomically with private permissions (it may hold secrets).
    pub fn save(&self) -> Result<()> {
        let p = path()?;
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        let body = toml::to_string_pretty(self).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let tmp = p.with_extension("toml.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        f.write_all(body.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &p).map_err(|e| Error::io(format!("writing {}", p.display()), e))
    }

    pub fn store(&self, name: &str) -> Result<&BTreeMap<String, String>> {
        self.stores.get(name).ok_or_else(|| {
            Error::InvalidInput(format!(
                "no store named @{name}; add it with `klosetfs config store create {name} location=PATH`"
            ))
        })
    }
}

/// A named retention policy.
pub fn policy(cfg: &UserConfig, name: &str) -> Result<crate::ops::retention::Policy> {
    let settings = cfg.policies.get(name).ok_or_else(|| {
        Error::InvalidInput(format!(
            "no policy named {name:?}; add it with `klosetfs config policy create {name} keep_daily=7 ...`"
        ))
    })?;
    parse_policy(settings)
}

/// Parses `keep_daily=7`-style settings into a policy.
pub fn parse_policy(settings: &[String]) -> Result<crate::ops::retention::Policy> {
    let mut p = crate::ops::retention::Policy::default();
    for a in settings {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| Error::InvalidInput(format!("expected key=value, got {a:?}")))?;
        p.set(k, v)?;
    }
    Ok(p)
}

/// Parses `key=value` settings, refusing unknown keys.
pub fn parse_settings(args: &[String]) -> Result<Vec<(String, String)>> {
    args.iter()
        .map(|a| {
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| Error::InvalidInput(format!("expected key=value, got {a:?}")))?;
            if !STORE_KEYS.contains(&k) {
                return Err(Error::InvalidInput(format!(
                    "unknown setting {k:?}; known: {}",
                    STORE_KEYS.join(", ")
                )));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

//! The user's configuration file: named stores (`at @name`), named sources
//! (`backup @name`) and destinations (`restore -to @name`), each with its
//! location and its own credentials, and named retention policies; kept as
//! TOML under the user's config directory, readable by its owner only.

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

/// Settings a named source or destination may carry (`exclude` and
/// `one_file_system`: local sources only). Each secret may instead come
/// from a file (`*_file`, its first line) or a command (`*_command`).
pub const CONNECTOR_KEYS: &[&str] = &[
    "location",
    "uri",
    "type",
    "endpoint",
    "region",
    "path_style",
    "access_key",
    "access_key_file",
    "access_key_command",
    "secret_access_key",
    "secret_access_key_file",
    "secret_access_key_command",
    "exclude",
    "one_file_system",
];

/// Settings shown masked by `show`.
pub const SECRET_KEYS: &[&str] = &["passphrase", "secret_access_key"];

/// A named source or destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectorKind {
    Source,
    Destination,
}

impl std::fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectorKind::Source => "source",
            ConnectorKind::Destination => "destination",
        })
    }
}

/// A named source or destination, ready to use: its secrets read from
/// their files or commands.
#[derive(Clone, Debug)]
pub struct Connector {
    pub name: String,
    pub location: String,
    /// `endpoint`, `region`, `path_style`, `access_key`, `secret_access_key`
    /// (resolved), as S3 options take them.
    pub settings: BTreeMap<String, String>,
    /// Local sources: globs never backed up.
    pub excludes: Vec<String>,
    pub one_file_system: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UserConfig {
    #[serde(default)]
    pub stores: BTreeMap<String, BTreeMap<String, String>>,
    /// Named sources (`backup @NAME`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, BTreeMap<String, String>>,
    /// Named destinations (`restore -to @NAME`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub destinations: BTreeMap<String, BTreeMap<String, String>>,
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
                "no store named @{name}{}; add it with `klosetfs config store create {name} location=PATH`",
                self.elsewhere(name)
            ))
        })
    }

    /// The sources or the destinations.
    pub fn connectors(&self, kind: ConnectorKind) -> &BTreeMap<String, BTreeMap<String, String>> {
        match kind {
            ConnectorKind::Source => &self.sources,
            ConnectorKind::Destination => &self.destinations,
        }
    }

    pub fn connectors_mut(
        &mut self,
        kind: ConnectorKind,
    ) -> &mut BTreeMap<String, BTreeMap<String, String>> {
        match kind {
            ConnectorKind::Source => &mut self.sources,
            ConnectorKind::Destination => &mut self.destinations,
        }
    }

    /// The kinds (other than the one asked for) that have `name`, for an
    /// error: " (there is a source @name)".
    pub fn elsewhere(&self, name: &str) -> String {
        let mut kinds = Vec::new();
        if self.stores.contains_key(name) {
            kinds.push("store");
        }
        if self.sources.contains_key(name) {
            kinds.push("source");
        }
        if self.destinations.contains_key(name) {
            kinds.push("destination");
        }
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" (@{name} is a {}; stores go after `at`, sources to `backup`, destinations to `restore -to`)", kinds.join(" and a "))
        }
    }

    /// The named source or destination, its secrets read.
    pub fn connector(&self, kind: ConnectorKind, name: &str) -> Result<Connector> {
        let s = self.connectors(kind).get(name).ok_or_else(|| {
            let known: Vec<String> = self
                .connectors(kind)
                .keys()
                .map(|k| format!("@{k}"))
                .collect();
            Error::InvalidInput(format!(
                "no {kind} named @{name}{}; {}",
                self.elsewhere(name),
                if known.is_empty() {
                    format!("add one with `klosetfs config {kind} create {name} location=...`")
                } else {
                    format!("{kind}s: {}", known.join(", "))
                }
            ))
        })?;
        let location = s
            .get("location")
            .filter(|l| !l.is_empty())
            .cloned()
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{kind} @{name} has no location: `klosetfs config {kind} set {name} location PATH|s3://bucket/prefix`"
                ))
            })?;
        let mut settings = BTreeMap::new();
        for k in ["endpoint", "region", "path_style"] {
            if let Some(v) = s.get(k) {
                settings.insert(k.to_string(), v.clone());
            }
        }
        for k in ["access_key", "secret_access_key"] {
            if let Some(v) = secret(s, k, &format!("{kind} @{name}"))? {
                settings.insert(k.to_string(), v);
            }
        }
        let excludes = s
            .get("exclude")
            .map(|e| {
                e.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let one_file_system = one_file_system(s, &format!("{kind} @{name}"))?;
        Ok(Connector {
            name: name.to_string(),
            location,
            settings,
            excludes,
            one_file_system,
        })
    }
}

/// Refuses, when they are given rather than at the next backup, the
/// settings of a source or destination that cannot work: two forms of one
/// secret, a `one_file_system` that is not a boolean, a location that is
/// neither a path nor `s3://`. (Files and commands are read only when used.)
pub fn check_connector(
    kind: ConnectorKind,
    name: &str,
    s: &BTreeMap<String, String>,
) -> Result<()> {
    let what = format!("{kind} @{name}");
    for key in ["access_key", "secret_access_key"] {
        one_secret_form(s, key, &what)?;
    }
    one_file_system(s, &what)?;
    if let Some(loc) = s.get("location") {
        if !loc.starts_with("s3://") && loc.contains("://") {
            return Err(Error::InvalidInput(format!(
                "{what}: unsupported location {loc}: use a path or s3://bucket/prefix"
            )));
        }
    }
    Ok(())
}

fn one_file_system(s: &BTreeMap<String, String>, what: &str) -> Result<bool> {
    match s.get("one_file_system").map(String::as_str) {
        None | Some("false" | "0" | "no" | "") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(v) => Err(Error::InvalidInput(format!(
            "{what}: one_file_system={v:?}: use true or false"
        ))),
    }
}

/// At most one of `KEY`, `KEY_file` and `KEY_command`.
fn one_secret_form(s: &BTreeMap<String, String>, key: &str, what: &str) -> Result<()> {
    let given = [
        key.to_string(),
        format!("{key}_file"),
        format!("{key}_command"),
    ]
    .iter()
    .filter(|k| s.contains_key(k.as_str()))
    .count();
    if given > 1 {
        return Err(Error::InvalidInput(format!(
            "{what}: give one of {key}, {key}_file and {key}_command"
        )));
    }
    Ok(())
}

/// A secret setting: `KEY` itself, or the first line of `KEY_file` (which
/// should be readable by its owner only: a warning otherwise) or of what
/// `KEY_command` prints. At most one of the three may be given.
fn secret(s: &BTreeMap<String, String>, key: &str, what: &str) -> Result<Option<String>> {
    one_secret_form(s, key, what)?;
    let file = s.get(&format!("{key}_file"));
    let cmd = s.get(&format!("{key}_command"));
    if let Some(v) = s.get(key) {
        return Ok(Some(v.clone()));
    }
    if let Some(f) = file {
        let p = crate::util::expand_tilde(f);
        let body = std::fs::read_to_string(&p).map_err(|e| {
            Error::InvalidInput(format!(
                "{what}: cannot read {key}_file {}: {e}",
                p.display()
            ))
        })?;
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            tracing::warn!(
                "{what}: {} is readable by others than its owner; `chmod 600 {}`",
                p.display(),
                p.display()
            );
        }
        return Ok(Some(body.lines().next().unwrap_or("").trim().to_string()));
    }
    if let Some(c) = cmd {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(c)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| Error::InvalidInput(format!("{what}: running {key}_command: {e}")))?;
        if !out.status.success() {
            return Err(Error::InvalidInput(format!(
                "{what}: {key}_command failed ({})",
                out.status
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        return Ok(Some(text.lines().next().unwrap_or("").trim().to_string()));
    }
    Ok(None)
}

/// Parses a source's or destination's `key=value` settings, refusing unknown
/// keys (and, for a destination, the settings only sources have).
pub fn parse_connector_settings(
    kind: ConnectorKind,
    args: &[String],
) -> Result<Vec<(String, String)>> {
    // `key=value`, or `key value` as Plakar's `config … set NAME key value`.
    let mut pairs = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.split_once('=') {
            Some((k, v)) => pairs.push((k.to_string(), v.to_string())),
            None => {
                let v = it.next().ok_or_else(|| {
                    Error::InvalidInput(format!("{a}: give a value (`{a} VALUE` or `{a}=VALUE`)"))
                })?;
                pairs.push((a.clone(), v.clone()));
            }
        }
    }
    let mut out: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(k, v)| {
            let k = k.as_str();
            let source_only = matches!(k, "exclude" | "one_file_system");
            if !CONNECTOR_KEYS.contains(&k) || (source_only && kind == ConnectorKind::Destination) {
                let known: Vec<&str> = CONNECTOR_KEYS
                    .iter()
                    .copied()
                    .filter(|k| {
                        kind == ConnectorKind::Source
                            || !matches!(*k, "exclude" | "one_file_system")
                    })
                    .collect();
                return Err(Error::InvalidInput(format!(
                    "unknown {kind} setting {k:?}; known: {}",
                    known.join(", ")
                )));
            }
            // Plakar's name for the location.
            let k = if k == "uri" { "location" } else { k };
            Ok((k.to_string(), v))
        })
        .collect::<Result<_>>()?;
    // `type` (fs or s3) only checks the location; it is not kept.
    let location = out
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.clone());
    for (_, v) in out.iter().filter(|(k, _)| k == "type") {
        let ok = match v.as_str() {
            "s3" => location.as_ref().is_none_or(|l| l.starts_with("s3://")),
            "fs" | "local" => location.as_ref().is_none_or(|l| !l.contains("://")),
            _ => false,
        };
        if !ok {
            return Err(Error::InvalidInput(format!(
                "type {v:?}{}: use fs (a path) or s3 (s3://bucket/prefix)",
                location
                    .as_ref()
                    .map(|l| format!(" does not fit location {l}"))
                    .unwrap_or_default()
            )));
        }
    }
    out.retain(|(k, _)| k != "type");
    Ok(out)
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

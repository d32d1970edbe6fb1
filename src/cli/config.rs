//! `config store create|set|show|rm`: named stores, so `at @name` works;
//! `config source|destination create|set|show|rm`: named sources
//! (`backup @name`) and destinations (`restore -to @name`), each with its own
//! location and credentials;
//! `config policy create|show|rm`: named retention policies for `rm --policy`.

use anyhow::bail;
use clap::Subcommand;
use klosetfs::userconfig::{
    check_connector, parse_connector_settings, parse_policy, parse_settings, path, ConnectorKind,
    UserConfig, SECRET_KEYS,
};

use super::EXIT_OK;

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Named stores (`klosetfs at @NAME ...`).
    Store {
        #[command(subcommand)]
        cmd: StoreCfg,
    },
    /// Named sources (`klosetfs at STORE backup @NAME`).
    Source {
        #[command(subcommand)]
        cmd: ConnCfg,
    },
    /// Named destinations (`klosetfs at STORE restore -to @NAME SNAP`).
    Destination {
        #[command(subcommand)]
        cmd: ConnCfg,
    },
    /// Named retention policies (`klosetfs at STORE rm --policy NAME`).
    Policy {
        #[command(subcommand)]
        cmd: PolicyCfg,
    },
}

#[derive(Subcommand)]
pub enum ConnCfg {
    /// Add one: `create NAME [location=PATH|s3://bucket/prefix key=value ...]`.
    #[command(after_help = CONNECTOR_HELP)]
    Create {
        /// The name, used as `@NAME`.
        name: String,
        /// `key=value` (or `key value`) settings, see below; `location` is
        /// needed before it is used (here or with `set`).
        settings: Vec<String>,
    },
    /// Change settings: `set NAME key=value ...` or `set NAME key value`
    /// (an empty value removes one).
    #[command(after_help = CONNECTOR_HELP)]
    Set {
        /// Its name.
        name: String,
        /// `key=value` or `key value` settings (see below).
        #[arg(required = true, allow_hyphen_values = true)]
        settings: Vec<String>,
    },
    /// Show one's settings (secrets masked), or list all.
    #[command(
        after_help = "Examples:\n  klosetfs config source show\n  klosetfs config destination show restored"
    )]
    Show {
        /// Its name; all of them without it.
        name: Option<String>,
    },
    /// Forget one (what it points at is untouched).
    #[command(
        after_help = "Examples:\n  klosetfs config source rm photos\n  klosetfs config destination rm restored"
    )]
    Rm {
        /// Its name.
        name: String,
    },
}

const CONNECTOR_HELP: &str = "Settings (key=value, or key value):
  location=PATH|s3://bucket/prefix   what to back up / where to restore (needed;
                                     also uri=; type=fs|s3 checks it)
  endpoint=URL region=NAME path_style=true|false
  access_key=ID                      S3 credentials of this source/destination
  secret_access_key_file=FILE        (first line; keep the file mode 600), or
  secret_access_key_command=CMD      (first line it prints), or
  secret_access_key=KEY              WARNING: kept in clear in the config file
                                     (access_key_file/_command work the same)
  Local sources only:
  exclude=GLOB[,GLOB...]             never backed up (as backup --exclude)
  one_file_system=true               stay on the file systems of location
Without credentials of its own, a connector uses the AWS_* variables.

Examples:
  klosetfs config source create photos location=s3://photos/2024 \\
      endpoint=https://s3.example.net access_key=AKIA... secret_access_key_file=~/.photos-key
  klosetfs at @home backup @photos
  klosetfs config destination create restored location=s3://restored/docs access_key=...
  klosetfs at @home restore -to @restored latest:/home/me/Documents";

#[derive(Subcommand)]
pub enum PolicyCfg {
    /// Add or replace a policy: `create NAME keep_daily=7 keep_weekly=4 ...`.
    #[command(after_help = POLICY_HELP)]
    Create {
        /// The name, used as `rm --policy NAME`.
        name: String,
        /// `keep_*=value` settings (see below); at least one.
        #[arg(required = true)]
        settings: Vec<String>,
    },
    /// Show one policy, or list all.
    #[command(
        after_help = "Examples:\n  klosetfs config policy show\n  klosetfs config policy show daily"
    )]
    Show {
        /// A policy's name; all policies without it.
        name: Option<String>,
    },
    /// Forget a policy.
    #[command(after_help = "Example:\n  klosetfs config policy rm daily")]
    Rm {
        /// A policy's name.
        name: String,
    },
}

const POLICY_HELP: &str = "Settings (the same as rm's --keep-* options):
  keep_last=N keep_hourly=N keep_daily=N keep_weekly=N keep_monthly=N keep_yearly=N
                           N snapshots, or the newest of each of the last N
                           hours/days/ISO weeks/months/years (local time) that
                           have one; N may be `unlimited`
  keep_within=DURATION     every snapshot within DURATION (e.g. 7d, 1y6m, 36h)
                           of the group's newest
  keep_within_daily=DURATION (and _hourly, _weekly, _monthly, _yearly)
                           the newest of each day within DURATION of the newest
  keep_tag=TAG[,TAG]       snapshots with all these tags (repeatable; '' = untagged)

Example:
  klosetfs config policy create nightly keep_daily=7 keep_weekly=5 keep_monthly=12
  klosetfs at /srv/backups rm --policy nightly --dry-run";

#[derive(Subcommand)]
pub enum StoreCfg {
    /// Add a named store: `create NAME location=PATH [passphrase_file=F ...]`.
    #[command(after_help = SETTINGS_HELP)]
    Create {
        /// The name, used as `klosetfs at @NAME`.
        name: String,
        /// `key=value` settings (see below); `location` is required.
        settings: Vec<String>,
    },
    /// Change settings: `set NAME key=value ...`.
    #[command(after_help = SETTINGS_HELP)]
    Set {
        /// A configured store's name.
        name: String,
        /// `key=value` settings (see below).
        #[arg(required = true)]
        settings: Vec<String>,
    },
    /// Show one store's settings (secrets masked), or list all.
    #[command(
        after_help = "Examples:\n  klosetfs config store show\n  klosetfs config store show offsite"
    )]
    Show {
        /// A configured store's name; all stores without it.
        name: Option<String>,
    },
    /// Forget a named store (the store itself is untouched).
    #[command(after_help = "Example:\n  klosetfs config store rm offsite")]
    Rm {
        /// A configured store's name.
        name: String,
    },
}

const SETTINGS_HELP: &str = "Settings:
  location=PATH|s3://bucket/prefix   where the store is (required)
  passphrase_file=FILE               first line of FILE is the passphrase
  passphrase_command=CMD             first line CMD prints is the passphrase
  passphrase=TEXT                    WARNING: kept in clear in the config file;
                                     prefer passphrase_file or passphrase_command
  endpoint=URL region=NAME path_style=true|false
  access_key=ID secret_access_key=KEY   S3 (else AWS_* variables, ~/.aws)
  cache_dir=DIR                      klosetfs's cache/spool folder for this store
  cache_size=SIZE                    disk cache cap for remote stores' data (2G)

Example:
  klosetfs config store create home location=/srv/backups passphrase_file=~/.kpass";

pub fn run(cmd: ConfigCmd) -> anyhow::Result<u8> {
    let cmd = match cmd {
        ConfigCmd::Store { cmd } => cmd,
        ConfigCmd::Policy { cmd } => return policy(cmd),
        ConfigCmd::Source { cmd } => return connector(ConnectorKind::Source, cmd),
        ConfigCmd::Destination { cmd } => return connector(ConnectorKind::Destination, cmd),
    };
    let mut cfg = UserConfig::load()?;
    match cmd {
        StoreCfg::Create { name, settings } => {
            if cfg.stores.contains_key(&name) {
                bail!("store @{name} already exists; use `config store set`");
            }
            if name.is_empty() || name.contains(['/', '@', ' ']) {
                bail!("invalid store name {name:?}");
            }
            if cfg.sources.contains_key(&name) || cfg.destinations.contains_key(&name) {
                bail!(
                    "@{name} is already a source or destination{}; give the store another name",
                    cfg.elsewhere(&name)
                );
            }
            let s = parse_settings(&settings)?;
            if !s.iter().any(|(k, _)| k == "location") {
                bail!("give a location: `config store create {name} location=PATH`");
            }
            cfg.stores.insert(name.clone(), s.into_iter().collect());
            cfg.save()?;
            outln!("store @{name} added to {}", path()?.display());
        }
        StoreCfg::Set { name, settings } => {
            let s = parse_settings(&settings)?;
            let entry = cfg
                .stores
                .get_mut(&name)
                .ok_or_else(|| anyhow::anyhow!("no store named @{name}"))?;
            entry.extend(s);
            cfg.save()?;
        }
        StoreCfg::Show { name } => {
            show_named(&cfg.stores, name.as_deref())?;
            if let Some(n) = name {
                cfg.store(&n)?;
            }
        }
        StoreCfg::Rm { name } => {
            if cfg.stores.remove(&name).is_none() {
                bail!("no store named @{name}");
            }
            cfg.save()?;
        }
    }
    Ok(EXIT_OK)
}

fn policy(cmd: PolicyCfg) -> anyhow::Result<u8> {
    let mut cfg = UserConfig::load()?;
    match cmd {
        PolicyCfg::Create { name, settings } => {
            if name.is_empty() || name.contains(['/', '@', ' ']) {
                bail!("invalid policy name {name:?}");
            }
            let p = parse_policy(&settings)?;
            if p.is_empty() {
                bail!("the policy keeps nothing; give at least one keep_* setting above 0");
            }
            let replaced = cfg.policies.insert(name.clone(), settings).is_some();
            cfg.save()?;
            outln!(
                "policy {name} {} in {}: {p}",
                if replaced { "replaced" } else { "added" },
                path()?.display()
            );
        }
        PolicyCfg::Show { name } => {
            if let Some(n) = &name {
                klosetfs::userconfig::policy(&cfg, n)?;
            }
            for (n, s) in &cfg.policies {
                if name.as_ref().is_none_or(|x| x == n) {
                    outln!("{n}: {}", s.join(" "));
                }
            }
        }
        PolicyCfg::Rm { name } => {
            if cfg.policies.remove(&name).is_none() {
                bail!("no policy named {name:?}");
            }
            cfg.save()?;
        }
    }
    Ok(EXIT_OK)
}

/// `config source|destination …`.
fn connector(kind: ConnectorKind, cmd: ConnCfg) -> anyhow::Result<u8> {
    let mut cfg = UserConfig::load()?;
    let clear_text = |s: &[(String, String)]| {
        if s.iter()
            .any(|(k, v)| k == "secret_access_key" && !v.is_empty())
        {
            eprintln!(
                "klosetfs: warning: secret_access_key is kept in clear in {}; \
                 prefer secret_access_key_file or secret_access_key_command",
                path().map(|p| p.display().to_string()).unwrap_or_default()
            );
        }
    };
    match cmd {
        ConnCfg::Create { name, settings } => {
            if name.is_empty() || name.contains(['/', '@', ' ', ':']) {
                bail!("invalid {kind} name {name:?}");
            }
            if cfg.connectors(kind).contains_key(&name) {
                bail!("{kind} @{name} already exists; use `config {kind} set`");
            }
            if cfg.stores.contains_key(&name) {
                bail!("@{name} is already a store; give the {kind} another name");
            }
            let s = parse_connector_settings(kind, &settings)?;
            clear_text(&s);
            cfg.connectors_mut(kind)
                .insert(name.clone(), s.into_iter().collect());
            // Refuse what could not be used (two forms of one secret, a bad
            // one_file_system) before it is saved.
            check_connector(kind, &name, &cfg.connectors(kind)[&name])?;
            cfg.save()?;
            outln!("{kind} @{name} added to {}", path()?.display());
        }
        ConnCfg::Set { name, settings } => {
            let s = parse_connector_settings(kind, &settings)?;
            clear_text(&s);
            let entry = cfg
                .connectors_mut(kind)
                .get_mut(&name)
                .ok_or_else(|| anyhow::anyhow!("no {kind} named @{name}"))?;
            for (k, v) in s {
                if v.is_empty() {
                    entry.remove(&k);
                } else {
                    entry.insert(k, v);
                }
            }
            check_connector(kind, &name, &cfg.connectors(kind)[&name])?;
            cfg.save()?;
        }
        ConnCfg::Show { name } => {
            if let Some(n) = &name {
                if !cfg.connectors(kind).contains_key(n) {
                    bail!("no {kind} named @{n}{}", cfg.elsewhere(n));
                }
            }
            show_named(cfg.connectors(kind), name.as_deref())?;
        }
        ConnCfg::Rm { name } => {
            if cfg.connectors_mut(kind).remove(&name).is_none() {
                bail!("no {kind} named @{name}");
            }
            cfg.save()?;
        }
    }
    Ok(EXIT_OK)
}

/// Prints named stores, sources or destinations (`only`: just that one),
/// secrets masked.
fn show_named(
    entries: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    only: Option<&str>,
) -> anyhow::Result<()> {
    for (n, s) in entries {
        if only.is_some_and(|x| x != n) {
            continue;
        }
        outln!("@{n}");
        for (k, v) in s {
            let v = if SECRET_KEYS.contains(&k.as_str()) {
                "********"
            } else {
                v
            };
            outln!("  {k}={v}");
        }
    }
    Ok(())
}

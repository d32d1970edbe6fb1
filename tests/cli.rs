//! The command line reads well: every command has help with examples, and the
//! completions and man page are generated from the same definitions.

use std::process::Command;

fn klosetfs(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_klosetfs"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn every_command_has_help_with_examples() {
    let commands = [
        "create", "backup", "ls", "cat", "diff", "locate", "info", "restore", "check", "rm",
        "prune", "key", "unlock", "mount", "recover", "config",
    ];
    for c in commands {
        let h = klosetfs(&["help", c]);
        assert!(
            h.contains("Example"),
            "`klosetfs help {c}` has examples:\n{h}"
        );
    }
    assert!(klosetfs(&["--help"]).contains("Examples:"));
}

#[test]
fn completions_and_man_page() {
    let bash = klosetfs(&["completions", "bash"]);
    assert!(
        bash.contains("klosetfs") && bash.contains("restore"),
        "{}",
        &bash[..200.min(bash.len())]
    );
    assert!(klosetfs(&["completions", "zsh"]).contains("#compdef klosetfs"));
    let man = klosetfs(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH klosetfs"),
        "{}",
        &man[..200.min(man.len())]
    );
}

#[test]
fn bad_usage_exits_2() {
    let o = Command::new(env!("CARGO_BIN_EXE_klosetfs"))
        .args(["at", "/x", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// Plakar's single-dash `-to` works, and a usage error names it as typed.
#[test]
fn usage_errors_name_dash_to_as_typed() {
    let o = Command::new(env!("CARGO_BIN_EXE_klosetfs"))
        .args(["at", "/x", "restore", "-to"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("'-to"), "{err}");
    assert!(!err.contains("--to"), "{err}");
    let o = Command::new(env!("CARGO_BIN_EXE_klosetfs"))
        .args(["at", "/x", "restore", "--to"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("'--to"));
}

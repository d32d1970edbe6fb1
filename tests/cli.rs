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

/// The subcommands a help page lists (its `Commands:` section), but `help`.
fn subcommands(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in help.lines() {
        if !l.starts_with(' ') {
            inside = l == "Commands:";
            continue;
        }
        if inside && l.starts_with("  ") && !l.starts_with("   ") {
            let name = l.split_whitespace().next().unwrap_or("");
            if name != "help" {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// Argument and option entries of a help page that have no description: an
/// entry line (indented at most six spaces, starting with `-`, `<` or `[`)
/// with no text after its name, and no wrapped description below it.
fn undescribed(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut out = Vec::new();
    let mut section = "";
    for (i, l) in lines.iter().enumerate() {
        if !l.starts_with(' ') {
            section = l;
            continue;
        }
        if section != "Arguments:" && section != "Options:" {
            continue;
        }
        let indent = l.len() - l.trim_start().len();
        let body = l.trim();
        if indent > 6 || !body.starts_with(['-', '<', '[']) {
            continue;
        }
        // "NAME  description": two spaces part the name from its text.
        let described = body.contains("  ")
            || lines.get(i + 1).is_some_and(|n| {
                let ni = n.len() - n.trim_start().len();
                ni > 6 && !n.trim().is_empty()
            });
        if !described {
            out.push(body.to_string());
        }
    }
    out
}

/// Every command and subcommand, at any depth, explains every argument and
/// option, shows an example and (under `at`) a usage line with `<STORE>`.
#[test]
fn every_argument_of_every_command_is_described() {
    let mut todo: Vec<Vec<String>> = subcommands(&klosetfs(&["--help"]))
        .into_iter()
        .map(|c| vec![c])
        .collect();
    let mut seen = 0;
    let mut problems = Vec::new();
    while let Some(path) = todo.pop() {
        let mut args = vec!["help"];
        args.extend(path.iter().map(String::as_str));
        let h = klosetfs(&args);
        seen += 1;
        for e in undescribed(&h) {
            problems.push(format!(
                "`klosetfs help {}`: {e} has no description",
                path.join(" ")
            ));
        }
        // Under `at`, the usage line names the store, at any depth.
        if path.len() > 1 && path[0] == "at" {
            let want = format!("Usage: klosetfs at <STORE> {} ", path[1..].join(" "));
            if !h.contains(&want) {
                problems.push(format!(
                    "`klosetfs help {}`: usage is not `{want}...`",
                    path.join(" ")
                ));
            }
        }
        let subs = subcommands(&h);
        if subs.is_empty() && !h.contains("Example") {
            problems.push(format!("`klosetfs help {}` has no example", path.join(" ")));
        }
        for s in subs {
            let mut p = path.clone();
            p.push(s);
            todo.push(p);
        }
    }
    assert!(seen > 30, "only {seen} commands found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

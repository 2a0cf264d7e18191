//! The documents and the binary cannot drift apart: the README's usage block shows every
//! subcommand `switchboard --help` lists, every flag it names is one its subcommand
//! accepts, and docs/operations.md's table of `serve` flags names every flag
//! `serve --help` lists.

use std::collections::{BTreeMap, BTreeSet};

use assert_cmd::Command;

const README: &str = include_str!("../../README.md");
const OPERATIONS: &str = include_str!("../../docs/operations.md");

fn help(subcommand: &str) -> String {
    let args: &[&str] = if subcommand.is_empty() {
        &["--help"]
    } else {
        &[subcommand, "--help"]
    };
    let output = Command::cargo_bin("switchboard")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "`switchboard {subcommand} --help` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The subcommands `switchboard --help` lists under `Commands:`, but `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The flags `--help` lists: the leading `-x,` and `--name` words of its option lines.
fn help_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .flat_map(|line| {
            line.split_whitespace()
                .map(|word| word.trim_end_matches(','))
                .take_while(|word| is_flag(word))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `-n` or `--long-name`: a dash or two, then a letter.
fn is_flag(word: &str) -> bool {
    let name = word
        .strip_prefix("--")
        .or_else(|| word.strip_prefix('-'))
        .unwrap_or("");
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The flags written anywhere in `text`, such as `[--addr ADDR]` or `` `--db FILE` ``.
fn flags_in(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || "[]|`(),=".contains(c))
        .filter(|word| is_flag(word))
}

/// The fenced block right after the `## Usage` heading.
fn usage_block(readme: &str) -> &str {
    let after = readme
        .split_once("\n## Usage\n")
        .expect("README.md has a `## Usage` heading")
        .1;
    let body = after
        .trim_start()
        .strip_prefix("```text\n")
        .expect("`## Usage` is followed by a ```text block");
    &body[..body.find("\n```").expect("the usage block is closed")]
}

/// Each subcommand's flags in the usage block: a line `switchboard SUB ...` starts a
/// subcommand, and the indented lines after it continue it.
fn usage_flags(block: &str) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut found: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut current = None;
    for line in block.lines() {
        let rest = match line.strip_prefix("switchboard ") {
            Some(rest) => {
                let (subcommand, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                current = Some(subcommand);
                rest
            }
            None => line,
        };
        let subcommand = current.expect("the usage block starts with `switchboard SUB`");
        found.entry(subcommand).or_default().extend(flags_in(rest));
    }
    found
}

#[test]
fn every_flag_of_the_readme_usage_is_accepted() {
    let usage = usage_flags(usage_block(README));
    let all = subcommands(&help(""));
    assert!(all.len() >= 9, "`switchboard --help` lists {all:?}");
    for subcommand in &all {
        assert!(
            usage.contains_key(subcommand.as_str()),
            "README's usage block does not show `switchboard {subcommand}`"
        );
    }
    for (subcommand, flags) in &usage {
        let accepted = help_flags(&help(subcommand));
        let unknown: Vec<_> = flags
            .iter()
            .filter(|flag| !accepted.contains(**flag))
            .collect();
        assert!(
            unknown.is_empty(),
            "README's usage names {unknown:?} for `{subcommand}`, which `switchboard \
             {subcommand} --help` does not list ({accepted:?})"
        );
    }
}

#[test]
fn the_operations_flag_table_names_every_serve_flag() {
    let section = OPERATIONS
        .split_once("\n## `serve` flags\n")
        .expect("docs/operations.md has a `## `serve` flags` section")
        .1;
    let section = section.split("\n## ").next().unwrap_or(section);
    let documented: BTreeSet<&str> = section
        .lines()
        .filter_map(|row| row.strip_prefix('|')?.split('|').next())
        .flat_map(flags_in)
        .collect();
    let missing: Vec<_> = help_flags(&help("serve"))
        .into_iter()
        .filter(|flag| !matches!(flag.as_str(), "-h" | "--help"))
        .filter(|flag| !documented.contains(flag.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "`serve --help` lists {missing:?}, which docs/operations.md's flag table lacks"
    );
}

#[test]
fn the_parsers_read_what_they_should() {
    let usage = usage_flags(
        "switchboard serve   [--listen ADDR] [--db FILE]\n                    [--json]\n\
         switchboard bench   rr|send [-n N] [--target a|b]",
    );
    assert_eq!(
        usage["serve"],
        BTreeSet::from(["--listen", "--db", "--json"])
    );
    assert_eq!(usage["bench"], BTreeSet::from(["-n", "--target"]));
    let help = "Options:\n      --threads <N>  Threads [default: 1]\n  -n, --connections <N>\n";
    assert_eq!(
        help_flags(help),
        BTreeSet::from([
            "--threads".to_owned(),
            "-n".to_owned(),
            "--connections".to_owned()
        ])
    );
    let top = "Usage: switchboard [OPTIONS] <COMMAND>\n\nCommands:\n  serve    Run\n  \
               users    Print\n  help     Print this\n\nOptions:\n  -q, --quiet\n";
    assert_eq!(subcommands(top), ["serve", "users"]);
    assert!(!is_flag("guest-"));
    assert!(!is_flag("--"));
    assert!(!is_flag("-1"));
}

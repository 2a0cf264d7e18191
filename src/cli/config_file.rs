//! `serve --config FILE`: a TOML file whose top-level keys are `serve`'s flags without
//! the leading dashes (`listen = "0.0.0.0:12000"`, `max-connections = 500`,
//! `require-password = true`).
//!
//! No key is listed here: the keys are read off the `serve` command's own arguments,
//! and each value goes through its flag's own value parser, so a flag added to
//! `ServeArgs` is a key at once, with the same range and the same message. The file's
//! keys are then added to the command line as flags, except those the command line
//! already gives or contradicts: a flag on the command line wins.

use std::any::TypeId;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use toml::de::{DeTable, DeValue};

/// The subcommand whose flags a file sets.
pub const SUBCOMMAND: &str = "serve";

/// The flags that are about the file itself, not settings: never keys.
const NOT_KEYS: [&str; 2] = ["config", "print-config"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", place(file, *line))]
    Syntax {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error(
        "{}: unknown key `{key}` (the keys are the flags of `switchboard serve --help` \
         without the leading dashes)",
        place(file, Some(*line))
    )]
    UnknownKey {
        file: PathBuf,
        line: usize,
        key: String,
    },
    #[error("{}: bad value for key `{key}`: {why}", place(file, Some(*line)))]
    BadValue {
        file: PathBuf,
        line: usize,
        key: String,
        why: String,
    },
}

fn place(file: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("config file {}, line {line}", file.display()),
        None => format!("config file {}", file.display()),
    }
}

/// The command line with a config file's settings added, and the file they came from.
#[derive(Debug)]
pub struct WithFile {
    pub args: Vec<OsString>,
    pub file: Option<PathBuf>,
}

/// `args` (a whole command line, program name first) with the keys of the file that
/// `serve --config FILE` names appended as flags. Anything else, and a command line
/// clap refuses, comes back as it was, for clap to handle or report as usual.
pub fn apply(mut cli: Command, args: Vec<OsString>) -> Result<WithFile, ConfigError> {
    cli.build();
    let unchanged = |args| Ok(WithFile { args, file: None });
    // Leniently, because a `requires` the file fulfils is not yet met.
    let Ok(matches) = cli.clone().ignore_errors(true).try_get_matches_from(&args) else {
        return unchanged(args);
    };
    let Some((SUBCOMMAND, given)) = matches.subcommand() else {
        return unchanged(args);
    };
    let Some(file) = given.get_raw("config").and_then(|mut raw| raw.next_back()) else {
        return unchanged(args);
    };
    let file = PathBuf::from(file);
    let Some(serve) = cli.find_subcommand(SUBCOMMAND) else {
        return unchanged(args);
    };
    let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    let flags = file_flags(serve, given, &file, &text)?;
    Ok(WithFile {
        args: args.into_iter().chain(flags).collect(),
        file: Some(file),
    })
}

/// The flags that `text`'s keys stand for, in the file's order, less those the command
/// line (`given`) already decides.
fn file_flags(
    serve: &Command,
    given: &ArgMatches,
    file: &Path,
    text: &str,
) -> Result<Vec<OsString>, ConfigError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let table = DeTable::parse(text).map_err(|e| ConfigError::Syntax {
        file: file.to_owned(),
        line: e.span().map(|span| line_of(span.start)),
        message: e.message().trim().to_owned(),
    })?;
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut flags = Vec::new();
    for (key, value) in entries {
        let line = line_of(key.span().start);
        let name: &str = key.get_ref();
        let arg = keys(serve)
            .find(|arg| arg.get_long() == Some(name))
            .ok_or_else(|| ConfigError::UnknownKey {
                file: file.to_owned(),
                line,
                key: name.to_owned(),
            })?;
        let bad = |why: String| ConfigError::BadValue {
            file: file.to_owned(),
            line,
            key: name.to_owned(),
            why,
        };
        let flag = flag(serve, arg, value.get_ref()).map_err(bad)?;
        let decided = on_command_line(given, arg)
            || keys(serve)
                .any(|other| on_command_line(given, other) && conflicting(serve, arg, other));
        if let Some(flag) = flag.filter(|_| !decided) {
            flags.push(flag);
        }
    }
    Ok(flags)
}

/// The arguments of `serve` that a file may set.
fn keys(serve: &Command) -> impl Iterator<Item = &Arg> {
    serve.get_arguments().filter(|arg| {
        let long = arg.get_long().unwrap_or_default();
        !long.is_empty()
            && !NOT_KEYS.contains(&long)
            && !matches!(
                arg.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    })
}

fn on_command_line(given: &ArgMatches, arg: &Arg) -> bool {
    given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine)
}

/// Whether clap refuses `a` and `b` together: a conflict declared on either, or two
/// members of a group that takes one.
fn conflicting(serve: &Command, a: &Arg, b: &Arg) -> bool {
    let declared = |x: &Arg, y: &Arg| serve.get_arg_conflicts_with(x).contains(&y);
    let grouped = serve.get_groups().any(|group| {
        let mut group = group.clone();
        let members: Vec<_> = group.get_args().cloned().collect();
        !group.is_multiple()
            && a.get_id() != b.get_id()
            && members.contains(a.get_id())
            && members.contains(b.get_id())
    });
    declared(a, b) || declared(b, a) || grouped
}

/// What kind of TOML value a key takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// A flag without a value: `true` gives it, `false` leaves it out.
    Switch,
    /// A count, size or time: an integer (or a float, for seconds).
    Number,
    /// Everything else, as typed on the command line: addresses, paths, names.
    Text,
}

fn kind(arg: &Arg) -> Kind {
    if !arg.get_action().takes_values() {
        return Kind::Switch;
    }
    let parsed = arg.get_value_parser().type_id();
    let numbers = [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i8>(),
        TypeId::of::<i16>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
        TypeId::of::<isize>(),
        TypeId::of::<f32>(),
        TypeId::of::<f64>(),
        TypeId::of::<Duration>(),
    ];
    if numbers.iter().any(|number| parsed == *number) {
        Kind::Number
    } else {
        Kind::Text
    }
}

/// The command-line flag that `value` stands for (none for a switch set to `false`),
/// checked by the flag's own value parser.
fn flag(serve: &Command, arg: &Arg, value: &DeValue<'_>) -> Result<Option<OsString>, String> {
    let long = arg.get_long().unwrap_or_default();
    let kind = kind(arg);
    let text = match (kind, value) {
        (Kind::Switch, DeValue::Boolean(true)) => return Ok(Some(format!("--{long}").into())),
        (Kind::Switch, DeValue::Boolean(false)) => return Ok(None),
        (Kind::Number, DeValue::Integer(n)) => i128::from_str_radix(n.as_str(), n.radix())
            .map_or_else(|_| n.as_str().to_owned(), |n| n.to_string()),
        (Kind::Number, DeValue::Float(x)) => x.as_str().to_owned(),
        (Kind::Text, DeValue::String(s)) => s.to_string(),
        (_, DeValue::Array(_)) => return Err("an array is not a value here".into()),
        (_, DeValue::Table(_)) => return Err("a table is not a value here".into()),
        (Kind::Switch, _) => return Err("expected true or false".into()),
        (Kind::Number, _) => return Err("expected a number".into()),
        (Kind::Text, _) => {
            return Err(format!("expected a string in quotes ({})", value_name(arg)));
        }
    };
    let flag = format!("--{long}={text}");
    // clap lets nobody else call a value parser: `serve` parses the flag alone, and
    // only the value's own errors count (one alone may miss a flag it requires).
    let alone = serve
        .clone()
        .no_binary_name(true)
        .try_get_matches_from([OsStr::new(&flag)]);
    match alone {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation
            ) =>
        {
            Err(refusal(arg, &text, &e))
        }
        _ => Ok(Some(flag.into())),
    }
}

fn value_name(arg: &Arg) -> String {
    arg.get_value_names()
        .and_then(|names| names.first())
        .map_or_else(|| "a value".to_owned(), |name| name.to_string())
}

/// Why a value parser refused `text`, without the flag clap's message names.
fn refusal(arg: &Arg, text: &str, e: &clap::Error) -> String {
    if let Some(why) = std::error::Error::source(e) {
        return why.to_string();
    }
    let possible: Vec<_> = arg
        .get_possible_values()
        .iter()
        .filter(|value| !value.is_hide_set())
        .map(|value| value.get_name().to_owned())
        .collect();
    if possible.is_empty() {
        format!("{text:?} is not a valid {}", value_name(arg))
    } else {
        format!("{text:?} is not one of {}", possible.join(", "))
    }
}

/// The configuration `matches` (of the whole command line, `serve` with it) puts in
/// force, as a file `--config` takes back: every key, from the command line, the file
/// or its default; a key with no value is a comment.
pub fn render(mut cli: Command, matches: &ArgMatches) -> String {
    cli.build();
    let mut out = String::from(
        "# switchboard serve: the configuration in force (command line, config file, defaults)\n",
    );
    let (Some(serve), Some(given)) = (
        cli.find_subcommand(SUBCOMMAND),
        matches.subcommand_matches(SUBCOMMAND),
    ) else {
        return out;
    };
    for arg in keys(serve) {
        let key = arg.get_long().unwrap_or_default();
        let raw = given
            .get_raw(arg.get_id().as_str())
            .and_then(|mut values| values.next_back())
            .map(|value| value.to_string_lossy().into_owned());
        let line = match raw {
            None => format!("# {key} is not set (see `switchboard serve --help`)"),
            Some(raw) => format!("{key} = {}", toml_value(kind(arg), &raw)),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn toml_value(kind: Kind, raw: &str) -> String {
    let as_string = || toml::Value::String(raw.to_owned()).to_string();
    match kind {
        Kind::Switch if raw == "true" || raw == "false" => raw.to_owned(),
        Kind::Number => match (raw.trim().parse::<i64>(), raw.trim().parse::<f64>()) {
            (Ok(n), _) => n.to_string(),
            (_, Ok(x)) => toml::Value::Float(x).to_string(),
            _ => as_string(),
        },
        _ => as_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::count;

    /// A command with a flag this module has never heard of.
    fn cli() -> Command {
        Command::new("switchboard").subcommand(
            Command::new(SUBCOMMAND)
                .arg(
                    Arg::new("rate")
                        .long("rate")
                        .value_parser(count::<u32>(1..=100)),
                )
                .arg(Arg::new("loud").long("loud").action(ArgAction::SetTrue))
                .arg(
                    Arg::new("config")
                        .long("config")
                        .value_parser(clap::value_parser!(PathBuf)),
                ),
        )
    }

    fn apply_with(text: &str, flags: &[&str]) -> Result<Vec<String>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sb.toml");
        std::fs::write(&file, text).unwrap();
        let mut args: Vec<OsString> = vec!["switchboard".into(), SUBCOMMAND.into()];
        args.extend(flags.iter().map(OsString::from));
        args.extend(["--config".into(), file.into_os_string()]);
        let given = apply(cli(), args)?;
        Ok(given.args[2 + flags.len() + 2..]
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect())
    }

    #[test]
    fn any_flag_is_a_key_with_its_own_range() {
        let added = apply_with("rate = 5\nloud = true\n", &[]).unwrap();
        assert_eq!(added, ["--rate=5", "--loud"]);
        assert_eq!(apply_with("loud = false\n", &[]).unwrap(), [] as [&str; 0]);
        match apply_with("loud = true\n\nrate = 500\n", &[]) {
            Err(ConfigError::BadValue { key, line, why, .. }) => {
                assert_eq!((key.as_str(), line), ("rate", 3));
                assert_eq!(why, "500 is not in 1..=100");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            apply_with("config = \"other.toml\"\n", &[]),
            Err(ConfigError::UnknownKey { key, .. }) if key == "config"
        ));
    }

    #[test]
    fn a_flag_on_the_command_line_wins() {
        let added = apply_with("rate = 5\nloud = true\n", &["--rate", "7"]).unwrap();
        assert_eq!(added, ["--loud"]);
    }

    #[test]
    fn the_configuration_in_force_is_toml() {
        let matches = cli()
            .try_get_matches_from(["switchboard", SUBCOMMAND, "--rate", "7"])
            .unwrap();
        let text = render(cli(), &matches);
        assert!(text.contains("\nrate = 7\n"), "{text}");
        assert!(text.contains("\nloud = false\n"), "{text}");
        assert!(!text.contains("\nconfig"), "{text}");
        assert!(!text.contains("# config is not set"), "{text}");
    }
}

//! `rampart.toml`: settings from a file, beneath the environment and the command line.
//!
//! Precedence is command line > environment > file > built-in default. The file's values become
//! the defaults of clap's arguments before the command line is parsed, so clap itself puts flags
//! and environment variables above them and checks them with the same parsers as flags; an
//! argument whose value source is still "default" got its value from the file when the file
//! names it. (`std::env::set_var` would be the other way in; it is unsafe since edition 2024, and
//! unsafe code is forbidden here.)

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command, CommandFactory, FromArgMatches, ValueEnum};
use serde::Deserialize;

use crate::cli::{Cli, Global, ServeArgs};
use crate::output::usage;

/// The environment variable naming the settings file (as `--config` does).
pub const CONFIG_ENV: &str = "RAMPART_CONFIG";
/// The settings file read from the working directory when none is named.
pub const DEFAULT_FILE: &str = "rampart.toml";

/// What `rampart.toml` may say. Unknown keys are errors: a misspelt key silently ignored would
/// leave a setting at its default while the operator believes it set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database: Option<String>,
    log_format: Option<String>,
    files_from_devices: Option<u64>,
    /// CISA's KEV feed (serve's daily refresh and `intel refresh`).
    kev_url: Option<String>,
    /// Where people reach the portal: webhook alerts link to it.
    public_url: Option<String>,
    #[serde(default)]
    serve: ServeSettings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeSettings {
    listen: Option<String>,
    max_connections: Option<u64>,
    header_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    trusted_proxies: Option<Vec<String>>,
    secure_cookies: Option<bool>,
    session_lifetime: Option<u64>,
    metrics_token_env: Option<String>,
    no_kev_refresh: Option<bool>,
    /// HTTPS served directly (paths relative to the working directory).
    tls_cert: Option<String>,
    tls_key: Option<String>,
    /// What the process does: all, web or worker.
    role: Option<String>,
    job_lease: Option<u64>,
    stop_grace: Option<u64>,
    scheduler_tick: Option<u64>,
}

/// Which commands an option the file sets belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// A global option (every command has it).
    Global,
    /// `rampart serve` only.
    Serve,
    /// Every command that has the option (the syncing ones: sync, serve, demo; `kev_url`: serve
    /// and `intel refresh`).
    EveryCommand,
}

/// One setting the file gives: its key in the file and the clap argument it fills.
#[derive(Debug)]
struct FileValue {
    key: &'static str,
    arg: &'static str,
    scope: Scope,
    values: Vec<String>,
}

/// The settings file in effect (if any), and what the command line became with it.
#[derive(Debug)]
pub struct ConfigContext {
    file: Option<PathBuf>,
    values: Vec<FileValue>,
    /// The command with the file's values as its defaults.
    command: Command,
    matches: ArgMatches,
}

/// Parses the command line over the settings file. A settings file that cannot be read or says
/// something wrong is a usage error (exit code 2) naming the file, the key and, for malformed
/// TOML, the line and column. Command-line errors (and --help, --version) end the process as
/// clap does.
pub fn load(args: Vec<OsString>) -> anyhow::Result<(Cli, ConfigContext)> {
    let (file, values) = match locate(&args)? {
        None => (None, Vec::new()),
        Some(path) => {
            let values = read(&path)?;
            check_values(&path, &values)?;
            (Some(path), values)
        }
    };
    let mut command = with_file_defaults(Cli::command(), &values);
    let matches = command
        .try_get_matches_from_mut(&args)
        .unwrap_or_else(|e| e.exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit());
    Ok((
        cli,
        ConfigContext {
            file,
            values,
            command,
            matches,
        },
    ))
}

/// The file named by `--config` or `RAMPART_CONFIG` (which must exist), else `./rampart.toml`
/// when it exists.
fn locate(args: &[OsString]) -> anyhow::Result<Option<PathBuf>> {
    let named = config_flag(args).or_else(|| {
        std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    match named {
        Some(path) if path.is_file() => Ok(Some(path)),
        Some(path) => Err(usage(format!(
            "the settings file {} (named by --config or {CONFIG_ENV}) does not exist or is not a file",
            path.display()
        ))),
        None => {
            let default = Path::new(".").join(DEFAULT_FILE);
            Ok(default.is_file().then_some(default))
        }
    }
}

/// The value of `--config FILE` / `--config=FILE`, read before clap parses: the file's values
/// must be in place as defaults by then.
fn config_flag(args: &[OsString]) -> Option<PathBuf> {
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return rest.next().map(PathBuf::from);
        }
        if let Some(value) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(value));
        }
    }
    None
}

fn read(path: &Path) -> anyhow::Result<Vec<FileValue>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        usage(format!(
            "cannot read the settings file {}: {e}",
            path.display()
        ))
    })?;
    // toml's message names the line, the column and, for an unknown key, the key and the
    // keys allowed there.
    let settings: FileSettings = toml::from_str(&text).map_err(|e| {
        usage(format!(
            "the settings file {} is not valid: {}",
            path.display(),
            e.to_string().trim_end()
        ))
    })?;
    Ok(settings.into_values())
}

impl FileSettings {
    fn into_values(self) -> Vec<FileValue> {
        fn one(value: Option<impl ToString>) -> Option<Vec<String>> {
            value.map(|v| vec![v.to_string()])
        }
        let serve = self.serve;
        let all = [
            ("database", "database", Scope::Global, one(self.database)),
            (
                "log_format",
                "log_format",
                Scope::Global,
                one(self.log_format),
            ),
            (
                "files_from_devices",
                "files_from_devices",
                Scope::EveryCommand,
                one(self.files_from_devices),
            ),
            ("kev_url", "kev_url", Scope::EveryCommand, one(self.kev_url)),
            (
                "public_url",
                "public_url",
                Scope::EveryCommand,
                one(self.public_url),
            ),
            ("serve.listen", "listen", Scope::Serve, one(serve.listen)),
            (
                "serve.max_connections",
                "max_connections",
                Scope::Serve,
                one(serve.max_connections),
            ),
            (
                "serve.header_timeout",
                "header_timeout",
                Scope::Serve,
                one(serve.header_timeout),
            ),
            (
                "serve.idle_timeout",
                "idle_timeout",
                Scope::Serve,
                one(serve.idle_timeout),
            ),
            (
                "serve.trusted_proxies",
                "trusted_proxies",
                Scope::Serve,
                serve.trusted_proxies,
            ),
            (
                "serve.secure_cookies",
                "secure_cookies",
                Scope::Serve,
                one(serve.secure_cookies),
            ),
            (
                "serve.session_lifetime",
                "session_lifetime",
                Scope::Serve,
                one(serve.session_lifetime),
            ),
            (
                "serve.metrics_token_env",
                "metrics_token_env",
                Scope::Serve,
                one(serve.metrics_token_env),
            ),
            (
                "serve.no_kev_refresh",
                "no_kev_refresh",
                Scope::Serve,
                one(serve.no_kev_refresh),
            ),
            (
                "serve.tls_cert",
                "tls_cert",
                Scope::Serve,
                one(serve.tls_cert),
            ),
            ("serve.tls_key", "tls_key", Scope::Serve, one(serve.tls_key)),
            ("serve.role", "role", Scope::Serve, one(serve.role)),
            (
                "serve.job_lease",
                "job_lease",
                Scope::Serve,
                one(serve.job_lease),
            ),
            (
                "serve.stop_grace",
                "stop_grace",
                Scope::Serve,
                one(serve.stop_grace),
            ),
            (
                "serve.scheduler_tick",
                "scheduler_tick",
                Scope::Serve,
                one(serve.scheduler_tick),
            ),
        ];
        all.into_iter()
            .filter_map(|(key, arg, scope, values)| {
                values.map(|values| FileValue {
                    key,
                    arg,
                    scope,
                    values,
                })
            })
            .collect()
    }
}

/// Checks each value with the parser of its option, so that a bad value is reported against
/// the file and its key rather than as if typed on the command line.
fn check_values(path: &Path, values: &[FileValue]) -> anyhow::Result<()> {
    let root = Cli::command();
    for value in values {
        let Some(arg) = find_arg(&root, value.scope, value.arg) else {
            continue;
        };
        let (Some(long), true) = (arg.get_long(), arg.get_action().takes_values()) else {
            // A switch (secure_cookies): TOML already made it a boolean.
            continue;
        };
        let mut argv = vec!["rampart".to_owned()];
        let given = value.values.iter().map(|v| format!("--{long}={v}"));
        match value.scope {
            Scope::Global => {
                argv.extend(given);
                argv.extend(["config".to_owned(), "check".to_owned()]);
            }
            Scope::Serve | Scope::EveryCommand => {
                argv.push("serve".to_owned());
                argv.extend(given);
            }
        }
        let Err(error) = root.clone().try_get_matches_from(argv) else {
            continue;
        };
        let about_this_option = matches!(
            error.kind(),
            ErrorKind::InvalidValue | ErrorKind::ValueValidation
        ) && error
            .get(ContextKind::InvalidArg)
            .is_some_and(|a| a.to_string().starts_with(&format!("--{long}")));
        if about_this_option {
            let rendered = error.render().to_string();
            let reason = rendered
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            return Err(usage(format!(
                "the settings file {} is not valid: {}: {reason}",
                path.display(),
                value.key
            )));
        }
    }
    Ok(())
}

/// The argument `id` where an option of that scope lives (serve's for the per-command ones).
fn find_arg<'a>(root: &'a Command, scope: Scope, id: &str) -> Option<&'a Arg> {
    let command = match scope {
        Scope::Global => root,
        Scope::Serve | Scope::EveryCommand => root.find_subcommand("serve")?,
    };
    command.get_arguments().find(|a| a.get_id() == id)
}

fn with_file_defaults(mut command: Command, values: &[FileValue]) -> Command {
    for value in values {
        let id = value.arg;
        let defaults = value.values.clone();
        command = match value.scope {
            Scope::Global => set_default(command, id, defaults),
            Scope::Serve => command.mut_subcommand("serve", |c| set_default(c, id, defaults)),
            Scope::EveryCommand => set_default_everywhere(command, id, &defaults),
        };
    }
    command
}

/// The default of `id` in every subcommand that has it, nested ones too (`intel refresh`).
fn set_default_everywhere(command: Command, id: &str, values: &[String]) -> Command {
    command.mut_subcommands(|c| {
        set_default_everywhere(set_default(c, id, values.to_vec()), id, values)
    })
}

fn set_default(command: Command, id: &str, values: Vec<String>) -> Command {
    if command.get_arguments().any(|a| a.get_id() == id) {
        command.mut_arg(id, |a| a.default_values(values))
    } else {
        command
    }
}

/// `rampart config check`: the settings in effect, as a TOML file, each with where it came from.
/// The database URL's password is hidden.
pub fn effective(global: &Global, context: &ConfigContext) -> anyhow::Result<String> {
    // serve's settings as `rampart serve` would have them (environment > file > default).
    let serve_matches = context
        .command
        .clone()
        .try_get_matches_from(["rampart", "serve"])
        .map_err(|e| usage(first_line(&e)))?;
    let serve_matches = serve_matches
        .subcommand_matches("serve")
        .ok_or_else(|| usage("the serve command is missing"))?;
    let serve = ServeArgs::from_arg_matches(serve_matches).map_err(|e| usage(first_line(&e)))?;
    let serve_command = context
        .command
        .find_subcommand("serve")
        .ok_or_else(|| usage("the serve command is missing"))?;

    let root = Origin {
        context,
        command: &context.command,
        matches: &context.matches,
        scope: Scope::Global,
    };
    let in_serve = Origin {
        context,
        command: serve_command,
        matches: serve_matches,
        scope: Scope::Serve,
    };
    let per_command = Origin {
        scope: Scope::EveryCommand,
        ..in_serve
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Settings in effect (command line > environment > settings file > default)."
    );
    let _ = match &context.file {
        Some(file) => writeln!(out, "# Settings file: {}", file.display()),
        None => writeln!(
            out,
            "# Settings file: none (./{DEFAULT_FILE} does not exist; --config FILE names one)"
        ),
    };
    let database = global
        .database
        .as_deref()
        .unwrap_or(rampart_store::DEFAULT_DATABASE_URL);
    line(
        &mut out,
        "database",
        toml::Value::String(rampart_store::redact_url(database)),
        &root.source("database"),
    );
    let log_format = global
        .log_format
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    line(
        &mut out,
        "log_format",
        toml::Value::String(log_format),
        &root.source("log_format"),
    );
    line(
        &mut out,
        "files_from_devices",
        integer(serve.engine.files_from_devices),
        &per_command.source("files_from_devices"),
    );
    line(
        &mut out,
        "kev_url",
        toml::Value::String(serve.kev.kev_url.clone()),
        &per_command.source("kev_url"),
    );
    match &serve.engine.public_url {
        Some(url) => line(
            &mut out,
            "public_url",
            toml::Value::String(url.clone()),
            &per_command.source("public_url"),
        ),
        None => {
            let _ = writeln!(
                out,
                "# public_url: not set, so webhook alerts carry no links to the portal"
            );
        }
    }
    let _ = writeln!(out, "\n[serve]");
    line(
        &mut out,
        "listen",
        toml::Value::String(serve.listen.to_string()),
        &in_serve.source("listen"),
    );
    for (id, number) in [
        ("max_connections", u64::from(serve.max_connections)),
        ("header_timeout", serve.header_timeout),
        ("idle_timeout", serve.idle_timeout),
    ] {
        line(&mut out, id, integer(number), &in_serve.source(id));
    }
    line(
        &mut out,
        "trusted_proxies",
        toml::Value::Array(
            serve
                .trusted_proxies
                .iter()
                .map(|n| toml::Value::String(n.to_string()))
                .collect(),
        ),
        &in_serve.source("trusted_proxies"),
    );
    line(
        &mut out,
        "secure_cookies",
        toml::Value::Boolean(serve.secure_cookies),
        &in_serve.source("secure_cookies"),
    );
    line(
        &mut out,
        "session_lifetime",
        integer(serve.session_lifetime),
        &in_serve.source("session_lifetime"),
    );
    line(
        &mut out,
        "no_kev_refresh",
        toml::Value::Boolean(serve.no_kev_refresh),
        &in_serve.source("no_kev_refresh"),
    );
    for (id, path) in [
        ("tls_cert", &serve.tls.tls_cert),
        ("tls_key", &serve.tls.tls_key),
    ] {
        match path {
            None => {
                let _ = writeln!(out, "# {id}: not set");
            }
            Some(path) => line(
                &mut out,
                id,
                toml::Value::String(path.display().to_string()),
                &in_serve.source(id),
            ),
        }
    }
    let _ = match (&serve.tls.tls_cert, &serve.tls.tls_key) {
        (None, None) => writeln!(
            out,
            "# HTTPS: off (plain HTTP; set tls_cert and tls_key, or put a reverse proxy in front)"
        ),
        (Some(_), Some(_)) => match crate::commands::load_tls(&serve.tls) {
            Ok(_) => writeln!(
                out,
                "# HTTPS: on (the certificate and key were read and match)"
            ),
            Err(e) => writeln!(out, "# HTTPS: rampart serve will refuse to start: {e}"),
        },
        _ => writeln!(
            out,
            "# HTTPS: rampart serve will refuse to start: tls_cert and tls_key go together"
        ),
    };
    match &serve.metrics_token_env {
        None => {
            let _ = writeln!(
                out,
                "# metrics_token_env: not set (/metrics answers without a token)"
            );
        }
        Some(var) => {
            let set = std::env::var_os(var).is_some_and(|v| !v.is_empty());
            let note = if set {
                "set"
            } else {
                "NOT set: rampart serve will refuse to start"
            };
            let source = in_serve.source("metrics_token_env");
            line(
                &mut out,
                "metrics_token_env",
                toml::Value::String(var.clone()),
                &format!("{source}; the variable is {note}"),
            );
        }
    }
    Ok(out)
}

/// Where one option's value came from.
#[derive(Clone, Copy)]
struct Origin<'a> {
    context: &'a ConfigContext,
    command: &'a Command,
    matches: &'a ArgMatches,
    scope: Scope,
}

impl Origin<'_> {
    fn source(&self, id: &str) -> String {
        match self.matches.value_source(id) {
            Some(ValueSource::CommandLine) => "command line".to_owned(),
            Some(ValueSource::EnvVariable) => {
                let var = self
                    .command
                    .get_arguments()
                    .find(|a| a.get_id() == id)
                    .and_then(Arg::get_env)
                    .map(|v| v.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!("environment {var}")
            }
            _ => match (&self.context.file, self.file_sets(id)) {
                (Some(file), true) => format!("{}", file.display()),
                _ => "default".to_owned(),
            },
        }
    }

    fn file_sets(&self, id: &str) -> bool {
        self.context
            .values
            .iter()
            .any(|v| v.arg == id && v.scope == self.scope)
    }
}

fn line(out: &mut String, key: &str, value: toml::Value, source: &str) {
    let _ = writeln!(out, "{key} = {value}  # {source}");
}

fn integer(n: u64) -> toml::Value {
    toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn first_line(error: &clap::Error) -> String {
    error
        .render()
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_config_flag_is_found_before_clap_parses() {
        assert_eq!(
            config_flag(&args(&["rampart", "--config", "a.toml", "serve"])),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_flag(&args(&["rampart", "serve", "--config=b.toml"])),
            Some(PathBuf::from("b.toml"))
        );
        assert_eq!(
            config_flag(&args(&["rampart", "sync", "--", "--config", "x"])),
            None
        );
        assert_eq!(config_flag(&args(&["rampart", "serve"])), None);
    }

    #[test]
    fn every_file_key_names_an_option_that_exists() {
        let all = FileSettings {
            database: Some("sqlite://x.db".into()),
            log_format: Some("json".into()),
            files_from_devices: Some(1),
            kev_url: Some("https://example.com/kev.json".into()),
            public_url: Some("https://rampart.example.com".into()),
            serve: ServeSettings {
                listen: Some("127.0.0.1:1".into()),
                max_connections: Some(1),
                header_timeout: Some(1),
                idle_timeout: Some(1),
                trusted_proxies: Some(vec!["10.0.0.0/8".into()]),
                secure_cookies: Some(true),
                session_lifetime: Some(1),
                metrics_token_env: Some("T".into()),
                no_kev_refresh: Some(true),
                tls_cert: Some("cert.pem".into()),
                tls_key: Some("key.pem".into()),
                role: Some("worker".into()),
                job_lease: Some(30),
                stop_grace: Some(5),
                scheduler_tick: Some(2),
            },
        };
        let root = Cli::command();
        for value in all.into_values() {
            assert!(
                find_arg(&root, value.scope, value.arg).is_some(),
                "{} fills no option",
                value.key
            );
        }
    }
}

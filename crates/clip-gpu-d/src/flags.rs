//! Flag values shared by the commands: counts that must be positive, output paths checked
//! before any work, the usage error that makes `main` exit 64, and the tip that names a flag's
//! environment variable in clap's errors.
//!
//! Exit 64 (EX_USAGE) matters under systemd: the unit's `RestartPreventExitStatus=64` stops
//! the restarts that no restart can fix, while `Restart=on-failure` with no start limit would
//! restart any other failure for ever.

use std::ffi::{OsStr, OsString};
use std::num::{IntErrorKind, ParseIntError};
use std::path::Path;
use std::str::FromStr;

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// A value that parses but cannot work (a prefix that names a folder, say): `main` exits 64
/// for it, as for a flag clap refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses a count that must be at least 1 into a `NonZero` type (clap's `value_parser`).
pub fn positive<T: FromStr<Err = ParseIntError>>(text: &str) -> Result<T, String> {
    text.trim()
        .parse::<T>()
        .map_err(|error| match error.kind() {
            IntErrorKind::PosOverflow => "too large".to_owned(),
            _ => "must be a whole number of at least 1".to_owned(),
        })
}

/// A flag and its environment variable, as messages name them: `("--output", "CLIP_OUTPUT")`.
pub type FlagName = (&'static str, &'static str);

/// Checks, before any work, that `path` names a file that can be created: not a folder (nor
/// ending with `/`), in a folder that exists. When `suffixes` is not empty, `path` is a prefix
/// that the command appends them to.
pub fn check_output_file(
    (flag, env): FlagName,
    path: &Path,
    suffixes: &[&str],
) -> Result<(), UsageError> {
    let shown = path.display().to_string();
    if shown.ends_with('/') || path.is_dir() {
        let folder = shown.trim_end_matches('/');
        let folder = if folder.is_empty() { "/" } else { folder };
        let inside = Path::new(folder).join(if suffixes.is_empty() {
            "out.json"
        } else {
            "run"
        });
        return Err(UsageError(if suffixes.is_empty() {
            format!(
                "{flag} ({env}) {shown} is a folder: name the file to write, as in {flag} {}",
                inside.display()
            )
        } else {
            let files: Vec<String> = suffixes
                .iter()
                .map(|suffix| format!("{folder}{suffix}"))
                .collect();
            format!(
                "{flag} ({env}) {shown} is a folder, but it is a path prefix: the files would be {}; \
                 name a prefix inside the folder, as in {flag} {}",
                files.join(", "),
                inside.display()
            )
        }));
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if parent.is_dir() {
        return Ok(());
    }
    Err(UsageError(if parent.exists() {
        format!(
            "{flag} ({env}) {shown}: {} is not a folder",
            parent.display()
        )
    } else {
        format!(
            "{flag} ({env}) {shown}: the folder {} does not exist; create it first, or name a file in a folder that exists",
            parent.display()
        )
    }))
}

/// Checks, before any work, that `path` is a folder or can be created as one: its nearest
/// existing ancestor (itself included) is a folder.
pub fn check_folder((flag, env): FlagName, path: &Path) -> Result<(), UsageError> {
    let Some(existing) = path
        .ancestors()
        .find(|ancestor| ancestor.as_os_str().is_empty() || ancestor.exists())
    else {
        return Ok(());
    };
    if existing.as_os_str().is_empty() || existing.is_dir() {
        return Ok(());
    }
    let shown = path.display();
    Err(UsageError(if existing == path {
        format!(
            "{flag} ({env}) {shown} is a file, not a folder: name a folder (it is created if missing)"
        )
    } else {
        format!(
            "{flag} ({env}) {shown}: {} is a file, not a folder: name a folder (it is created if missing)",
            existing.display()
        )
    }))
}

/// Adds to clap's error about a flag's value a tip naming the environment variable the flag
/// is also read from, with that variable's value when it is set (and not secret): under
/// systemd, values come from the unit's environment file, not from the command line.
/// `subcommand` is the command being parsed; `lookup` reads the environment.
pub fn with_env_tip(
    mut error: clap::Error,
    command: &clap::Command,
    subcommand: Option<&OsStr>,
    lookup: impl Fn(&OsStr) -> Option<OsString>,
) -> clap::Error {
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return error;
    }
    let Some(ContextValue::String(invalid)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    // "--cpu-threads <CPU_THREADS>"
    let Some(long) = invalid
        .split_whitespace()
        .next()
        .and_then(|flag| flag.strip_prefix("--"))
    else {
        return error;
    };
    let scopes = subcommand
        .and_then(|name| command.find_subcommand(name))
        .into_iter()
        .chain([command]);
    let Some(arg) = scopes
        .flat_map(|scope| scope.get_arguments())
        .find(|arg| arg.get_long() == Some(long))
    else {
        return error;
    };
    let Some(env) = arg.get_env() else {
        return error;
    };
    let name = env.to_string_lossy();
    let tip = match lookup(env) {
        Some(_) if arg.is_hide_env_values_set() => {
            format!("--{long} is also read from {name}, which is set (its value is hidden)")
        }
        Some(value) => format!(
            "--{long} is also read from {name}, which is set to {:?}",
            value.to_string_lossy()
        ),
        None => format!("--{long} can also be set with the environment variable {name}"),
    };
    error.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![tip.into()]),
    );
    error
}

#[cfg(test)]
mod tests {
    use std::num::{NonZeroU16, NonZeroUsize};

    use clap::CommandFactory;

    use super::*;

    #[test]
    fn counts_must_be_positive() {
        assert_eq!(
            positive::<NonZeroUsize>("3"),
            Ok(NonZeroUsize::MIN.saturating_add(2))
        );
        let refused = |text: &str| positive::<NonZeroU16>(text).expect_err(text);
        assert_eq!(refused("0"), "must be a whole number of at least 1");
        assert_eq!(refused("-3"), "must be a whole number of at least 1");
        assert_eq!(refused("two"), "must be a whole number of at least 1");
        assert_eq!(refused("70000"), "too large");
    }

    #[test]
    fn output_paths_are_checked_before_any_work() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("afile");
        std::fs::write(&file, b"").expect("file");
        let flag = ("--output", "CLIP_EMBED_OUTPUT");
        let suffixes = [".img_emb.npy", ".text_emb.npy"];
        let refused = |path: &Path, suffixes: &[&str]| {
            check_output_file(flag, path, suffixes)
                .expect_err("refused")
                .to_string()
        };
        assert!(check_output_file(flag, &dir.path().join("run"), &suffixes).is_ok());
        assert!(check_output_file(flag, Path::new("run"), &suffixes).is_ok());
        let d = dir.path().display();
        assert_eq!(
            refused(dir.path(), &suffixes),
            format!(
                "--output (CLIP_EMBED_OUTPUT) {d} is a folder, but it is a path prefix: the files \
                 would be {d}.img_emb.npy, {d}.text_emb.npy; name a prefix inside the folder, as in \
                 --output {d}/run"
            )
        );
        let slash = dir.path().join("new/");
        assert!(refused(&slash, &suffixes).contains("is a folder, but it is a path prefix"));
        assert_eq!(
            refused(&dir.path().join("missing/run"), &suffixes),
            format!(
                "--output (CLIP_EMBED_OUTPUT) {d}/missing/run: the folder {d}/missing does not \
                 exist; create it first, or name a file in a folder that exists"
            )
        );
        assert!(refused(&file.join("run"), &[]).ends_with("afile is not a folder"));
        assert!(refused(dir.path(), &[]).ends_with(&format!("as in --output {d}/out.json")));

        let flag = ("--output", "CLIP_OUTPUT");
        assert!(check_folder(flag, dir.path()).is_ok());
        assert!(check_folder(flag, &dir.path().join("a/b")).is_ok());
        assert!(check_folder(flag, Path::new("relative/new")).is_ok());
        assert_eq!(
            check_folder(flag, &file).expect_err("a file").to_string(),
            format!(
                "--output (CLIP_OUTPUT) {d}/afile is a file, not a folder: name a folder (it is \
                 created if missing)"
            )
        );
        assert!(
            check_folder(flag, &file.join("sub"))
                .expect_err("under a file")
                .to_string()
                .contains("sub: ")
        );
    }

    #[test]
    fn a_refused_value_names_its_environment_variable() {
        let command = crate::embed::Args::command();
        let argv = [
            "clip-gpu-d",
            "embed",
            "--images",
            "a.jpg",
            "--texts-file",
            "t",
        ];
        let error = <crate::embed::Args as clap::Parser>::try_parse_from(argv.iter().chain(&[
            "--output",
            "o",
            "--cpu-threads",
            "0",
        ]))
        .expect_err("0 threads");
        let set = |name: &OsStr| (name == "CLIP_CPU_THREADS").then(|| OsString::from("0"));
        let text = with_env_tip(error, &command, Some("embed".as_ref()), set).to_string();
        assert!(text.contains("--cpu-threads"), "{text}");
        assert!(
            text.contains(
                "tip: --cpu-threads is also read from CLIP_CPU_THREADS, which is set to \"0\""
            ),
            "{text}"
        );

        // The same long flag reads another variable in another command.
        let error = <crate::embed::Args as clap::Parser>::try_parse_from(argv.iter().chain(&[
            "--output",
            "o",
            "--batch-size",
            "0",
        ]))
        .expect_err("batch 0");
        let text = with_env_tip(error, &command, Some("embed".as_ref()), |_| None).to_string();
        assert!(
            text.contains(
                "--batch-size can also be set with the environment variable CLIP_BATCH_SIZE"
            ),
            "{text}"
        );
    }
}

//! The accounts file (TOML, `deny_unknown_fields`): Hetzner projects with their tokens, leaderboard
//! nicknames and node caps (2021's `.env` lines, reference §4.2), plus the bootstrap settings.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use url::Url;

use crate::secret::Secret;

/// One Hetzner project the swarm may use, in fill order.
#[derive(Debug, Clone)]
pub struct Account {
    /// Short name, used in tables and the `account` label.
    pub name: String,
    pub token: Secret,
    /// Where the token came from, for errors: `the environment variable X` or `the token file P`.
    pub token_origin: String,
    /// Leaderboard nickname written into the nodes' env file.
    pub nickname: String,
    pub cap: NodeCap,
}

/// How many nodes of the swarm an account may hold (2021's `max_nodes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCap {
    /// `-1`: as many as the account's server limit allows.
    UpToLimit,
    /// `0`: paused: no new nodes, but its existing nodes are still listed, counted, healed
    /// (replacements go to other accounts) and deleted, so its token is still needed.
    Paused,
    /// `n > 0`: at most n.
    AtMost(u32),
}

/// What cloud-init installs on a node.
#[derive(Debug, Clone)]
pub struct BootstrapSettings {
    /// Where nodes download the scraper-d binary.
    pub scraper_url: Url,
    /// Its expected SHA-256, lowercase hex.
    pub scraper_sha256: String,
    /// Tracker URL as the nodes reach it.
    pub tracker_url: Url,
    /// File with the swarm's enrollment token; default `<state dir>/<swarm>.enrollment` (generated).
    pub enrollment_token_file: Option<PathBuf>,
    /// Private SSH key for the swarm; default `<state dir>/<swarm>_ed25519` (generated).
    pub ssh_key: Option<PathBuf>,
}

/// The whole file.
#[derive(Debug, Clone)]
pub struct AccountsFile {
    pub accounts: Vec<Account>,
    pub bootstrap: Option<BootstrapSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    bootstrap: Option<RawBootstrap>,
    #[serde(default, rename = "account")]
    accounts: Vec<RawAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBootstrap {
    scraper_url: Url,
    scraper_sha256: String,
    tracker_url: Url,
    #[serde(default)]
    enrollment_token_file: Option<PathBuf>,
    #[serde(default)]
    ssh_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: String,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    nickname: String,
    #[serde(default = "unlimited")]
    max_nodes: i64,
}

fn unlimited() -> i64 {
    -1
}

impl NodeCap {
    /// Room left for new nodes given `existing` ones; `None` means "until the account's limit".
    pub fn room(self, existing: usize) -> Option<usize> {
        match self {
            NodeCap::UpToLimit => None,
            NodeCap::Paused => Some(0),
            NodeCap::AtMost(cap) => Some((cap as usize).saturating_sub(existing)),
        }
    }
}

/// Reads and validates the accounts file; `env` looks up environment variables (tokens).
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<AccountsFile> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the accounts file {}; create it from deploy/swarm.example.toml or pass --config",
            path.display()
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base, env).with_context(|| format!("invalid accounts file {}", path.display()))
}

/// Parses the file's text; relative paths are taken from `base`.
pub fn parse(
    text: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<AccountsFile> {
    let raw: RawFile = toml::from_str(text)?;
    if raw.accounts.is_empty() {
        bail!("no [[account]] entries; add one per Hetzner project");
    }
    let mut accounts = Vec::new();
    for entry in raw.accounts {
        if !valid_label_value(&entry.name) || entry.name.is_empty() {
            bail!(
                "account name {:?} must be 1-63 letters, digits, '-', '_' or '.'",
                entry.name
            );
        }
        if accounts
            .iter()
            .any(|account: &Account| account.name == entry.name)
        {
            bail!("account name {:?} appears twice", entry.name);
        }
        if entry.nickname.is_empty()
            || entry.nickname.len() > 64
            || !entry
                .nickname
                .chars()
                .all(|c| c.is_alphanumeric() || "-_.@ ".contains(c))
        {
            bail!(
                "account {}: nickname {:?} must be 1-64 letters, digits, spaces or -_.@",
                entry.name,
                entry.nickname
            );
        }
        let cap = match entry.max_nodes {
            -1 => NodeCap::UpToLimit,
            0 => NodeCap::Paused,
            n if n > 0 => NodeCap::AtMost(u32::try_from(n).unwrap_or(u32::MAX)),
            n => bail!(
                "account {}: max_nodes {n} must be -1 (up to the account limit), 0 (paused) or positive",
                entry.name
            ),
        };
        // A paused account's servers are still listed and deleted, so it needs its token too.
        let (token, token_origin) = match read_token(&entry, base, env) {
            Ok(read) => read,
            Err(error) if cap == NodeCap::Paused => {
                return Err(error.context(format!(
                    "account {} is paused (max_nodes = 0) but its servers are still listed and deleted; \
                     give its token, or remove the entry once the account has no swarm servers",
                    entry.name
                )));
            }
            Err(error) => return Err(error),
        };
        accounts.push(Account {
            name: entry.name,
            token,
            token_origin,
            nickname: entry.nickname,
            cap,
        });
    }
    let bootstrap = raw
        .bootstrap
        .map(|raw| -> anyhow::Result<BootstrapSettings> {
            let sha = raw.scraper_sha256.to_ascii_lowercase();
            let how = "put there what `sha256sum scraper-d` prints for the binary at scraper_url";
            if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("bootstrap.scraper_sha256 must be 64 hex digits; {how}");
            }
            // The example file's placeholder: every node would refuse the download.
            if sha.chars().all(|c| c == '0') {
                bail!(
                    "bootstrap.scraper_sha256 is the example's all-zero placeholder, which no binary has \
                     (every node would refuse the download); {how}"
                );
            }
            check_http_url("scraper_url", &raw.scraper_url, "where nodes download scraper-d")?;
            // scraper-d refuses any other tracker URL with exit 64, and its unit's
            // RestartPreventExitStatus=64 would leave every node dead.
            check_http_url("tracker_url", &raw.tracker_url, "scraper-d only speaks http(s)")?;
            Ok(BootstrapSettings {
                scraper_url: raw.scraper_url,
                scraper_sha256: sha,
                tracker_url: raw.tracker_url,
                enrollment_token_file: raw.enrollment_token_file.map(|path| base.join(path)),
                ssh_key: raw.ssh_key.map(|path| base.join(path)),
            })
        })
        .transpose()?;
    Ok(AccountsFile {
        accounts,
        bootstrap,
    })
}

/// An http(s) URL with a host, for `bootstrap.KEY`.
fn check_http_url(key: &str, url: &Url, why: &str) -> anyhow::Result<()> {
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        bail!(
            "bootstrap.{key} {url} must be an http:// or https:// URL with a host ({why}), \
             as in https://tracker.example.org/"
        );
    }
    Ok(())
}

/// The account's token and where it came from.
fn read_token(
    entry: &RawAccount,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(Secret, String)> {
    let (token, origin) = match (&entry.token_env, &entry.token_file) {
        (Some(variable), None) => {
            let token = env(variable).with_context(|| {
                format!(
                    "account {}: environment variable {variable} is not set; export the project's API token there",
                    entry.name
                )
            })?;
            (token, format!("the environment variable {variable}"))
        }
        (None, Some(file)) => {
            let path = base.join(file);
            let token = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "account {}: cannot read token file {}",
                    entry.name,
                    path.display()
                )
            })?;
            warn_if_others_can_read(&entry.name, &path);
            (token, format!("the token file {}", path.display()))
        }
        _ => bail!(
            "account {}: set exactly one of token_env or token_file",
            entry.name
        ),
    };
    let token = token.trim();
    if token.is_empty() {
        bail!("account {}: the API token is empty", entry.name);
    }
    Ok((Secret::new(token), origin))
}

/// A token file that group or others may read or write gets a warning naming it and the fix.
/// Only a warning, unlike ssh's refusal of such a key: the token still works, and refusing would
/// stop `down` on a machine where someone else set the mode.
#[cfg(unix)]
fn warn_if_others_can_read(account: &str, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::metadata(path) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            account,
            file = %path.display(),
            mode = %format_args!("{mode:04o}"),
            "the token file can be read by other users of this machine; run chmod 600 on it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_others_can_read(_account: &str, _path: &Path) {}

/// Label values: at most 63 characters of alphanumerics and `-_.`, alphanumeric at both ends.
pub fn valid_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && value
            .chars()
            .next()
            .is_none_or(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .last()
            .is_none_or(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_accounts_and_caps() {
        let env = |name: &str| match name {
            "TOKEN_A" => Some("secret-a".to_owned()),
            "TOKEN_B" => Some("secret-b".to_owned()),
            _ => None,
        };
        let file = parse(
            r#"
            [[account]]
            name = "a"
            token_env = "TOKEN_A"
            nickname = "alice"
            [[account]]
            name = "b"
            token_env = "TOKEN_B"
            nickname = "bob"
            max_nodes = 0
            "#,
            Path::new("."),
            &env,
        )
        .expect("valid");
        assert_eq!(file.accounts.len(), 2);
        assert_eq!(file.accounts[0].cap, NodeCap::UpToLimit);
        assert_eq!(file.accounts[0].token.expose(), "secret-a");
        assert_eq!(
            file.accounts[0].token_origin,
            "the environment variable TOKEN_A"
        );
        assert_eq!(file.accounts[1].cap, NodeCap::Paused);
        assert_eq!(file.accounts[1].token.expose(), "secret-b");
        assert_eq!(NodeCap::Paused.room(0), Some(0));
        assert!(!format!("{file:?}").contains("secret-a"));
        assert_eq!(NodeCap::AtMost(3).room(1), Some(2));
        assert_eq!(NodeCap::AtMost(3).room(5), Some(0));
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../../deploy/swarm.example.toml");
        let env = |name: &str| {
            name.starts_with("HCLOUD_TOKEN_")
                .then(|| format!("token-of-{name}"))
        };
        // Its placeholder sha256 is refused, with how to get the real one.
        let error = parse(text, Path::new("."), &env).expect_err("placeholder sha256");
        assert!(format!("{error:#}").contains("sha256sum"), "{error:#}");
        let text = text.replace(&"0".repeat(64), &"ab".repeat(32));
        let file = parse(&text, Path::new("."), &env).expect("example is valid");
        let caps: Vec<NodeCap> = file.accounts.iter().map(|account| account.cap).collect();
        assert_eq!(
            caps,
            vec![NodeCap::UpToLimit, NodeCap::AtMost(10), NodeCap::Paused]
        );
        assert!(file.bootstrap.is_some());
    }

    #[test]
    fn refuses_bad_files() {
        let cases = [
            (
                "[[account]]\nname = \"a\"\ntoken_env = \"X\"\nnickname = \"n\"\ncolour = 1\n",
                "unknown field",
            ),
            (
                "[[account]]\nname = \"a\"\ntoken_env = \"X\"\nnickname = \"n\"\n",
                "X is not set",
            ),
            (
                "[[account]]\nname = \"a\"\nnickname = \"n\"\n",
                "exactly one of",
            ),
            (
                "[[account]]\nname = \"a\"\ntoken_env = \"X\"\nnickname = \"n\"\nmax_nodes = -2\n",
                "max_nodes",
            ),
            (
                "[[account]]\nname = \"a\"\ntoken_env = \"X\"\nnickname = \"n\"\nmax_nodes = 0\n",
                "paused (max_nodes = 0) but its servers are still listed",
            ),
            ("", "no [[account]]"),
        ];
        for (text, expected) in cases {
            let error = parse(text, Path::new("."), &no_env).expect_err(text);
            let message = format!("{error:#}");
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn refuses_bootstrap_values_nodes_cannot_use() {
        let env = |_: &str| Some("token".to_owned());
        let file = |scraper_url: &str, sha: &str, tracker_url: &str| {
            format!(
                "[bootstrap]\nscraper_url = \"{scraper_url}\"\nscraper_sha256 = \"{sha}\"\n\
                 tracker_url = \"{tracker_url}\"\n\
                 [[account]]\nname = \"a\"\ntoken_env = \"X\"\nnickname = \"n\"\n"
            )
        };
        let (url, sha, tracker) = (
            "https://dl.example.org/scraper-d",
            "ab".repeat(32),
            "https://tracker.example.org/",
        );
        let cases = [
            (
                file(url, &sha, "ftp://tracker.example.org/"),
                "bootstrap.tracker_url ftp://tracker.example.org/ must be an http:// or https:// URL",
            ),
            (
                file(url, &sha, "unix:/run/tracker.sock"),
                "bootstrap.tracker_url unix:/run/tracker.sock must be",
            ),
            (
                file("file:///tmp/scraper-d", &sha, tracker),
                "bootstrap.scraper_url file:///tmp/scraper-d must be",
            ),
            (
                file(url, &"0".repeat(64), tracker),
                "all-zero placeholder, which no binary has (every node would refuse the download); put there what `sha256sum scraper-d` prints",
            ),
            (
                file(url, "abc123", tracker),
                "must be 64 hex digits; put there what `sha256sum scraper-d` prints",
            ),
        ];
        for (text, expected) in &cases {
            let error = parse(text, Path::new("."), &env).expect_err(text);
            let message = format!("{error:#}");
            assert!(message.contains(expected), "{text:?}: {message}");
        }
        let text = file(url, &sha.to_uppercase(), "http://10.0.0.1:8080/");
        let parsed = parse(&text, Path::new("."), &env).expect("valid");
        assert_eq!(parsed.bootstrap.expect("bootstrap").scraper_sha256, sha);
    }
}

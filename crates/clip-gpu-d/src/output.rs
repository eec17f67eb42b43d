//! Where the dataset goes (`run --output`): a local folder that shards are written in, or
//! `s3://BUCKET/PREFIX`, where shards are written in a local spool folder first and uploaded
//! whole (see [`s3`]).

pub mod s3;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use url::Url;

/// The `--output` of `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Shards are written in this folder.
    Local(PathBuf),
    /// Shards are written in the spool folder and uploaded here.
    S3(S3Location),
}

/// `s3://BUCKET/PREFIX`; the prefix has no leading or trailing `/` and may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

/// How to reach S3, from the flags and their `AWS_*` variables; what is unset here is taken
/// from the environment by `object_store` (`AWS_DEFAULT_REGION`, `AWS_SESSION_TOKEN`, ...).
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// A custom endpoint (MinIO, Ceph, s3s-fs...): path-style requests, http allowed if it is http.
    pub endpoint: Option<Url>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
}

/// A secret whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{0:?} is not s3://BUCKET/PREFIX: {1}")]
    S3Url(String, &'static str),
    #[error(
        "{text:?} looks like a URL ({scheme}:), but the output is either a local folder or \
         s3://BUCKET/PREFIX (s3 in any case); for a local folder of that name, write ./{text}"
    )]
    Scheme { text: String, scheme: String },
}

impl Output {
    /// The folder shards are written in: the output folder itself, or the spool for S3.
    pub fn shard_dir<'a>(&'a self, spool_dir: &'a Path) -> &'a Path {
        match self {
            Output::Local(dir) => dir,
            Output::S3(_) => spool_dir,
        }
    }
}

impl FromStr for Output {
    type Err = OutputError;

    /// `s3://` (the scheme in any case, as RFC 3986 has it) is S3; any other `scheme:/...`
    /// is refused, since it would otherwise become a local folder named `ftp:` or `gs:`, with
    /// shards and completed jobs nobody finds; anything else is a local folder.
    fn from_str(text: &str) -> Result<Self, OutputError> {
        let Some((scheme, after_scheme)) = url_scheme(text) else {
            return Ok(Output::Local(PathBuf::from(text)));
        };
        let rest = match after_scheme.strip_prefix("//") {
            Some(rest) if scheme.eq_ignore_ascii_case("s3") => rest,
            _ => {
                return Err(OutputError::Scheme {
                    text: text.to_owned(),
                    scheme: scheme.to_owned(),
                });
            }
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = !bucket.is_empty()
            && bucket
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b".-_".contains(&byte));
        if !valid_bucket {
            return Err(OutputError::S3Url(text.to_owned(), "bad bucket name"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == "." || part == "..") || prefix.contains("//") {
            return Err(OutputError::S3Url(text.to_owned(), "bad prefix"));
        }
        Ok(Output::S3(S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }))
    }
}

/// The scheme of text shaped like a URL (`scheme:/...`, the scheme a letter then letters,
/// digits, `+`, `-` or `.`), and what follows its colon.
fn url_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let is_scheme = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    (is_scheme && rest.starts_with('/')).then_some((scheme, rest))
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Local(dir) => write!(f, "{}", dir.display()),
            Output::S3(location) => write!(f, "s3://{}/{}", location.bucket, location.prefix),
        }
    }
}

/// Parses an `http://` or `https://` S3 endpoint (clap's `value_parser` for `--s3-endpoint`).
pub fn parse_endpoint(text: &str) -> Result<Url, String> {
    let example = "as in http://127.0.0.1:9000 or https://s3.example.org";
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
        Ok(url) => Err(format!(
            "an S3 endpoint is an http:// or https:// URL, not {}: {example}",
            url.scheme()
        )),
        Err(error) => Err(format!("{error}: write the endpoint {example}")),
    }
}

impl Secret {
    /// The secret itself, to hand to the S3 client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Secret(text.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse() {
        let s3 = |bucket: &str, prefix: &str| {
            Output::S3(S3Location {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            })
        };
        let cases = [
            (
                "/data/laion",
                Ok(Output::Local(PathBuf::from("/data/laion"))),
            ),
            (
                "relative/dir",
                Ok(Output::Local(PathBuf::from("relative/dir"))),
            ),
            ("s3://laion", Ok(s3("laion", ""))),
            ("s3://laion/", Ok(s3("laion", ""))),
            ("s3://laion/2021/en/", Ok(s3("laion", "2021/en"))),
            ("s3://", Err("bad bucket name")),
            ("s3:///prefix", Err("bad bucket name")),
            ("s3://a b/x", Err("bad bucket name")),
            ("s3://laion/a//b", Err("bad prefix")),
            ("s3://laion/a/../b", Err("bad prefix")),
            // The scheme in any case (RFC 3986); any other URL is refused, not a folder.
            ("S3://laion/x", Ok(s3("laion", "x"))),
            ("ftp://x/y", Err("url")),
            ("gs://laion/x", Err("url")),
            ("file:///data", Err("url")),
            ("s3:/laion", Err("url")),
            ("s3a://laion", Err("url")),
            (
                "./ftp://x/y",
                Ok(Output::Local(PathBuf::from("./ftp://x/y"))),
            ),
            ("runs:2021", Ok(Output::Local(PathBuf::from("runs:2021")))),
        ];
        for (text, expected) in cases {
            let got = text.parse::<Output>().map_err(|error| match error {
                OutputError::S3Url(_, why) => why,
                OutputError::Scheme { .. } => "url",
            });
            assert_eq!(got, expected, "{text}");
        }
        let refused = "ftp://x/y".parse::<Output>().expect_err("ftp");
        assert_eq!(
            refused.to_string(),
            "\"ftp://x/y\" looks like a URL (ftp:), but the output is either a local folder or \
             s3://BUCKET/PREFIX (s3 in any case); for a local folder of that name, write ./ftp://x/y"
        );
        assert_eq!(s3("b", "p/q").to_string(), "s3://b/p/q");
        assert!(parse_endpoint("HTTP://127.0.0.1:9000").is_ok());
        assert_eq!(
            parse_endpoint("ftp://127.0.0.1:9000").expect_err("ftp"),
            "an S3 endpoint is an http:// or https:// URL, not ftp: as in http://127.0.0.1:9000 \
             or https://s3.example.org"
        );
        assert!(parse_endpoint("127.0.0.1:9000").is_err());
        assert_eq!(format!("{:?}", Secret("key".to_owned())), "***");
    }
}

//! The S3 credentials, fetched once at start. `object_store` takes them from keys, a web
//! identity token, a container endpoint or, when none of these is set, the EC2 instance
//! metadata service (169.254.169.254); without this check a refusal there surfaced only as the
//! bucket listing failing, which the start took for a store outage and waited out for ever.

use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use tracing::info;

use super::S3Error;

/// What to set, in every message about missing credentials.
const HOW_TO_SET: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
     --s3-access-key-id and --s3-secret-access-key; AWS_SESSION_TOKEN too for temporary keys), \
     or AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI \
     (AWS_PROFILE and the ~/.aws files are not read)";

/// The longest the start waits for credentials that take a request (the metadata service
/// answers in milliseconds where it exists; where it does not, each try waits 1 s to connect).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Where `object_store` takes the credentials from, in its order (`AmazonS3Builder::build`,
/// object_store 0.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CredentialSource {
    /// Access key ID and secret (flags or variables); a missing half fails the build.
    Keys,
    /// `AWS_SKIP_SIGNATURE=true`: unsigned requests (a public bucket).
    Unsigned,
    WebIdentity,
    Container,
    InstanceMetadata,
}

impl CredentialSource {
    /// The source the builder's settings select.
    pub(super) fn of(builder: &AmazonS3Builder) -> Self {
        let set = |key: AmazonS3ConfigKey| builder.get_config_value(&key).is_some();
        let skip_signature = builder
            .get_config_value(&AmazonS3ConfigKey::SkipSignature)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"));
        if skip_signature {
            CredentialSource::Unsigned
        } else if set(AmazonS3ConfigKey::AccessKeyId) || set(AmazonS3ConfigKey::SecretAccessKey) {
            CredentialSource::Keys
        } else if set(AmazonS3ConfigKey::WebIdentityTokenFile) && set(AmazonS3ConfigKey::RoleArn) {
            CredentialSource::WebIdentity
        } else if set(AmazonS3ConfigKey::ContainerCredentialsRelativeUri)
            || (set(AmazonS3ConfigKey::ContainerCredentialsFullUri)
                && set(AmazonS3ConfigKey::ContainerAuthorizationTokenFile))
        {
            CredentialSource::Container
        } else {
            CredentialSource::InstanceMetadata
        }
    }

    fn describe(self) -> &'static str {
        match self {
            CredentialSource::Keys => "access keys",
            CredentialSource::Unsigned => "none (unsigned requests)",
            CredentialSource::WebIdentity => {
                "a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)"
            }
            CredentialSource::Container => "the container credentials endpoint",
            CredentialSource::InstanceMetadata => "the EC2 instance metadata service",
        }
    }
}

/// Refuses, without a request, the instance metadata service when the AWS SDKs' standard
/// `AWS_EC2_METADATA_DISABLED` (read through `lookup`) turns it off.
pub(super) fn refuse_disabled_metadata(
    source: CredentialSource,
    bucket: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), S3Error> {
    let disabled = lookup("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"));
    if source == CredentialSource::InstanceMetadata && disabled {
        return Err(S3Error::Credentials {
            bucket: bucket.to_owned(),
            tried: format!(
                "none is set, and AWS_EC2_METADATA_DISABLED keeps the EC2 instance metadata \
                 service (an instance role) from being asked; {HOW_TO_SET}"
            ),
            source: None,
        });
    }
    Ok(())
}

/// Fetches the credentials once (keys need no request), so that missing or refused ones stop
/// the start with what to set, instead of every S3 request failing later.
pub(super) async fn check(
    store: &AmazonS3,
    source: CredentialSource,
    bucket: &str,
) -> Result<(), S3Error> {
    if matches!(source, CredentialSource::Keys | CredentialSource::Unsigned) {
        return Ok(());
    }
    let fetched = tokio::time::timeout(FETCH_TIMEOUT, store.credentials().get_credential()).await;
    let failed = |why: String, error| S3Error::Credentials {
        bucket: bucket.to_owned(),
        tried: format!("{why}; {HOW_TO_SET}"),
        source: error,
    };
    let none_set = if source == CredentialSource::InstanceMetadata {
        "none is set, and "
    } else {
        ""
    };
    match fetched {
        Ok(Ok(_)) => {
            info!(source = source.describe(), "s3 credentials loaded");
            Ok(())
        }
        Ok(Err(error)) => Err(failed(
            format!("{none_set}{} gave none", source.describe()),
            Some(error),
        )),
        Err(_) => Err(failed(
            format!(
                "{none_set}{} did not answer within {} s",
                source.describe(),
                FETCH_TIMEOUT.as_secs()
            ),
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_follow_object_store_order() {
        let builder = AmazonS3Builder::new().with_bucket_name("laion");
        let with = |key: AmazonS3ConfigKey, value: &str| builder.clone().with_config(key, value);
        assert_eq!(
            CredentialSource::of(&builder),
            CredentialSource::InstanceMetadata
        );
        assert_eq!(
            CredentialSource::of(&with(AmazonS3ConfigKey::AccessKeyId, "key")),
            CredentialSource::Keys
        );
        assert_eq!(
            CredentialSource::of(&with(AmazonS3ConfigKey::SkipSignature, "true")),
            CredentialSource::Unsigned
        );
        assert_eq!(
            CredentialSource::of(&with(
                AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
                "/v2/credentials/1"
            )),
            CredentialSource::Container
        );
        // A token file without a role is not a web identity: object_store falls through.
        assert_eq!(
            CredentialSource::of(&with(AmazonS3ConfigKey::WebIdentityTokenFile, "/token")),
            CredentialSource::InstanceMetadata
        );
    }

    #[test]
    fn a_disabled_metadata_service_is_refused_without_a_request() {
        let disabled = |name: &str| (name == "AWS_EC2_METADATA_DISABLED").then(|| "true".into());
        let error = refuse_disabled_metadata(CredentialSource::InstanceMetadata, "laion", disabled)
            .expect_err("no credentials");
        let text = error.to_string();
        assert!(
            text.starts_with("no usable S3 credentials for s3://laion: none is set")
                && text.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            "{text}"
        );
        assert!(!error.is_transient());
        assert!(refuse_disabled_metadata(CredentialSource::Keys, "laion", disabled).is_ok());
        assert!(
            refuse_disabled_metadata(CredentialSource::InstanceMetadata, "laion", |_| None).is_ok()
        );
    }
}

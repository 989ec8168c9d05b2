//! S3 credentials, one provider for both clients (issue 16).
//!
//! [`AwsCreds`] is the only place an S3 provider's credentials come from: the keys the plan's
//! `*-env` keys name (as before), or otherwise the AWS SDK's own default chain (`aws-config`:
//! environment, profiles with SSO, AssumeRole and `credential_process`, web identity, ECS, EKS
//! Pod Identity, IMDSv2), optionally with a role assumed on top (`role-arn`). The same value
//! serves the AWS SDK client (as `ProvideCredentials`) and object_store (as its
//! `CredentialProvider`), so both sign with the same keys and refresh them together: there is
//! one cache, here, and the SDK client's own identity cache is switched off.
//!
//! Temporary credentials are fetched again shortly before they expire (see [`fresh`]), so a run
//! outlives them. Every value fetched is registered with `redact` before it is used.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use object_store::aws::AwsCredential;

use crate::plan::AwsAuth;
use crate::redact;

/// How long before their expiry temporary credentials are replaced, at most. Short-lived ones
/// are replaced after half their lifetime instead, so they are not fetched again for every
/// request. Five minutes is what the AWS SDKs' own caches allow a refresh to take.
const REFRESH_EARLY: Duration = Duration::from_secs(300);

/// Credentials for one S3 provider, fetched lazily (a plan that is only checked never reaches
/// for them) and cached until shortly before they expire. Clones share the cache.
#[derive(Clone)]
pub struct AwsCreds(Arc<Inner>);

struct Inner {
    /// Where the credentials come from, for errors: `profile `evac``, `keys from `SRC_KEY``.
    source: String,
    chain: Chain,
    provider: tokio::sync::OnceCell<SharedCredentialsProvider>,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

/// Why no credentials could be had: the setup names what does not exist (a profile), or the
/// source failed (refused, unreachable, expired).
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error("{0}")]
    Configuration(String),
    #[error("{0}")]
    Other(String),
}

/// What the SDK's chain is built from, on first use (building it is async: it reads profiles).
struct Chain {
    region: String,
    auth: AwsAuth,
    /// The plan's static keys: used as they are, or to assume `auth.role_arn` with.
    base: Option<Credentials>,
}

struct Cached {
    sdk: Credentials,
    object_store: Arc<AwsCredential>,
    fetched: SystemTime,
}

impl std::fmt::Debug for AwsCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsCreds({})", self.0.source)
    }
}

impl AwsCreds {
    /// `base`: the keys the plan names, if it names any. `source`: how errors name them.
    pub fn new(source: String, region: String, auth: AwsAuth, base: Option<Credentials>) -> AwsCreds {
        AwsCreds(Arc::new(Inner {
            source,
            chain: Chain { region, auth, base },
            provider: tokio::sync::OnceCell::new(),
            cached: tokio::sync::Mutex::new(None),
        }))
    }

    /// Where the credentials come from, as errors name it.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// The current credentials: the cached ones while [`fresh`], else fetched again. One fetch
    /// at a time: concurrent requests wait for it rather than each asking the source.
    async fn get(&self) -> Result<(Credentials, Arc<AwsCredential>), Failed> {
        let mut cached = self.0.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            if fresh(c.sdk.expiry(), c.fetched, SystemTime::now()) {
                return Ok((c.sdk.clone(), c.object_store.clone()));
            }
        }
        let provider = self
            .0
            .provider
            .get_or_try_init(|| self.0.chain.build())
            .await
            .map_err(|e| Failed::Configuration(redact::redact(&format!("{}: {e}", self.0.source))))?;
        let creds = provider.provide_credentials().await.map_err(|e| {
            Failed::Other(redact::redact(&format!(
                "{}: {}",
                self.0.source,
                super::error_chain(&e)
            )))
        })?;
        redact::register(creds.access_key_id());
        redact::register(creds.secret_access_key());
        if let Some(t) = creds.session_token() {
            redact::register(t);
        }
        let object_store = Arc::new(AwsCredential {
            key_id: creds.access_key_id().to_string(),
            secret_key: creds.secret_access_key().to_string(),
            token: creds.session_token().map(str::to_string),
        });
        *cached = Some(Cached {
            sdk: creds.clone(),
            object_store: object_store.clone(),
            fetched: SystemTime::now(),
        });
        Ok((creds, object_store))
    }
}

impl Chain {
    /// The SDK's provider: the plan's keys as they are, or the default chain (with the plan's
    /// profile), and a role assumed with either when the plan names one. STS and SSO are reached
    /// where the environment says (`AWS_ENDPOINT_URL_STS`, the profile's SSO settings).
    async fn build(&self) -> Result<SharedCredentialsProvider, String> {
        use aws_config::BehaviorVersion;
        if let (Some(base), None) = (&self.base, &self.auth.role_arn) {
            return Ok(SharedCredentialsProvider::new(base.clone()));
        }
        if self.base.is_none() {
            profile_exists(self.auth.profile.as_deref()).await?;
        }
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(aws_config::Region::new(self.region.clone()));
        if let Some(p) = &self.auth.profile {
            loader = loader.profile_name(p);
        }
        if let Some(base) = &self.base {
            loader = loader.credentials_provider(base.clone());
        }
        let conf = loader.load().await;
        let Some(arn) = &self.auth.role_arn else {
            return Ok(conf.credentials_provider().expect("aws-config always sets a chain"));
        };
        let mut role = aws_config::sts::AssumeRoleProvider::builder(arn).configure(&conf);
        if let Some(id) = &self.auth.external_id {
            role = role.external_id(id);
        }
        if let Some(name) = &self.auth.role_session_name {
            role = role.session_name(name);
        }
        Ok(SharedCredentialsProvider::new(role.build().await))
    }
}

/// A profile named by the plan (`plan`) or by `AWS_PROFILE` must be in the profile files. The
/// SDK's chain does not say so: a profile missing from files that hold no profile at all
/// counts as "no profiles" and the chain goes on to web identity, ECS and the instance role, so
/// the error names IMDS, not the profile (the AWS CLI stops: "The config profile could not be
/// found"). The files are read as the SDK reads them (`AWS_CONFIG_FILE`,
/// `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/config` and `~/.aws/credentials`).
async fn profile_exists(plan: Option<&str>) -> Result<(), String> {
    let env = aws_types::os_shim_internal::Env::real();
    let Some(name) = plan
        .map(str::to_string)
        .or_else(|| env.get("AWS_PROFILE").ok().filter(|p| !p.is_empty()))
    else {
        return Ok(());
    };
    let fs = aws_types::os_shim_internal::Fs::real();
    // The default files, as the SDK's own chain reads them.
    let set = aws_config::profile::load(&fs, &env, &Default::default(), Some(name.clone().into()))
        .await
        .map_err(|e| format!("the AWS profile files cannot be read: {}", super::error_chain(&e)))?;
    if set.get_profile(&name).is_some() {
        return Ok(());
    }
    let home = || env.get("HOME").unwrap_or_else(|_| "~".into());
    let file = |var: &str, default: &str| {
        let path = env.get(var).unwrap_or_else(|_| format!("{}/.aws/{default}", home()));
        let state = if std::path::Path::new(&path).is_file() {
            ""
        } else {
            ", which does not exist"
        };
        format!("`{path}`{state}")
    };
    let mut names: Vec<&str> = set.profiles().collect();
    names.sort_unstable();
    Err(format!(
        "profile `{name}` was not found in the AWS config file {} or the credentials file {} ({})",
        file("AWS_CONFIG_FILE", "config"),
        file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        if names.is_empty() {
            "they define no profile".to_string()
        } else {
            format!("profiles there: {}", names.join(", "))
        }
    ))
}

/// Whether credentials fetched at `fetched` may still be used at `now`: they do not expire, or
/// their expiry is further away than [`REFRESH_EARLY`] or half their lifetime, whichever is
/// shorter.
fn fresh(expiry: Option<SystemTime>, fetched: SystemTime, now: SystemTime) -> bool {
    let Some(expiry) = expiry else { return true };
    let lifetime = expiry.duration_since(fetched).unwrap_or_default();
    now + REFRESH_EARLY.min(lifetime / 2) < expiry
}

impl ProvideCredentials for AwsCreds {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.get().await.map(|(c, _)| c).map_err(|e| match e {
                // Typed, so a probe can tell "fix the plan" (exit 2) from "try later".
                Failed::Configuration(m) => CredentialsError::invalid_configuration(m),
                Failed::Other(m) => CredentialsError::provider_error(m),
            })
        })
    }
}

#[async_trait::async_trait]
impl object_store::CredentialProvider for AwsCreds {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        self.get()
            .await
            .map(|(_, c)| c)
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: e.to_string().into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_credentials_are_replaced_before_they_expire() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |s: u64| t0 + Duration::from_secs(s);
        // No expiry: kept for the whole run.
        assert!(fresh(None, t0, at(1_000_000)));
        // An hour's credentials: replaced five minutes before they expire.
        assert!(fresh(Some(at(3600)), t0, at(3600 - 301)));
        assert!(!fresh(Some(at(3600)), t0, at(3600 - 300)));
        // Ten seconds' credentials: after half their lifetime, not on every request.
        assert!(fresh(Some(at(10)), t0, at(4)));
        assert!(!fresh(Some(at(10)), t0, at(5)));
        // Already expired when fetched: fetched again next time.
        assert!(!fresh(Some(at(0)), at(5), at(5)));
    }

    #[tokio::test]
    async fn static_keys_are_served_to_both_clients_and_registered() {
        let base = Credentials::new("AKIDFERRYTEST", "static-secret-4711", None, None, "plan");
        let creds = AwsCreds::new(
            "keys from `K`".into(),
            "us-east-1".into(),
            AwsAuth::default(),
            Some(base),
        );
        let sdk = creds.provide_credentials().await.unwrap();
        assert_eq!(sdk.secret_access_key(), "static-secret-4711");
        let os = object_store::CredentialProvider::get_credential(&creds).await.unwrap();
        assert_eq!(os.key_id, "AKIDFERRYTEST");
        assert_eq!(redact::redact("x static-secret-4711 y"), "x *** y");
    }
}

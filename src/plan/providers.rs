//! Validation of one `[providers.NAME]` table into a [`ProviderSpec`]: preset and type, which
//! keys apply to the type, the endpoint, and the names of the variables that hold credentials.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::secrets::{endpoint_userinfo, env_name_problem};
use super::validate::Ctx;
use super::wire::ProviderWire;
use super::{
    AwsAuth, AzureSpec, GcsSpec, LocalSpec, PlanError, ProviderKind, ProviderSpec, S3Spec, S3Write, Sse, StoreType,
    AZURE_TIERS, GCS_CLASSES, STORAGE_CLASSES,
};
use crate::catalog::{self, Preset};

/// Where a provider's errors point: its table, named in every message.
pub(super) struct Table<'a> {
    pub(super) ctx: &'a Ctx<'a>,
    pub(super) name: &'a str,
    pub(super) span: Range<usize>,
}

impl Table<'_> {
    pub(super) fn err(&self, msg: String, hint: Option<&str>) -> PlanError {
        self.ctx
            .err(self.span.clone(), format!("provider `{}`: {msg}", self.name), hint)
    }
}

/// One `[providers.NAME]` table (`span` is the table's).
pub(super) fn provider(
    ctx: &Ctx,
    base_dir: &Path,
    name: &str,
    span: Range<usize>,
    mut w: ProviderWire,
) -> Result<ProviderSpec, PlanError> {
    let table = Table { ctx, name, span };
    let (preset, kind) = preset_and_kind(&table, &w)?;
    keys_apply(&table, &w, kind)?;
    let required = required_key(&table, &mut w, kind)?;
    let region = w
        .region
        .take()
        .or_else(|| preset.and_then(|p| p.default_region.clone()));
    let allow_http = w.allow_http.unwrap_or(false);
    let endpoint = endpoint(&table, w.endpoint.take(), preset, region.as_deref(), allow_http)?;
    credential_env_names(&table, &w)?;
    let aws = aws_auth(&table, &mut w)?;
    let storage_class = storage_class(&table, &mut w, kind)?;
    let s3_write = s3_write(&table, &mut w, storage_class.clone())?;
    let encrypt = super::encrypt::encryption(&table, base_dir, &mut w)?;
    let (line, _) = ctx.line_col(table.span.start);
    let anonymous = w.anonymous.unwrap_or(false);
    let kind = match kind {
        StoreType::Local => ProviderKind::Local(LocalSpec {
            root: base_dir.join(required),
        }),
        StoreType::Memory => ProviderKind::Memory,
        StoreType::S3 => ProviderKind::S3(S3Spec {
            bucket: required,
            region,
            endpoint,
            path_style: w.path_style.or(preset.map(|p| p.path_style)).unwrap_or(false),
            allow_http,
            access_key_id_env: w.access_key_id_env,
            secret_access_key_env: w.secret_access_key_env,
            session_token_env: w.session_token_env,
            anonymous,
            aws,
            s3_write,
            sse_c_key_env: w.sse_c_key_env,
        }),
        StoreType::Azure => ProviderKind::Azure(AzureSpec {
            account: w.account,
            container: required,
            endpoint,
            allow_http,
            access_key_env: w.access_key_env,
            sas_token_env: w.sas_token_env,
            connection_string_env: w.connection_string_env,
            use_azure_cli: w.use_azure_cli.unwrap_or(false),
            anonymous,
            storage_class,
        }),
        StoreType::Gcs if required == crate::plan::accounts::EVERY_BUCKET && w.project.is_none() => {
            return Err(table.err(
                "`bucket = \"*\"` lists every bucket of a GCS project: set `project`".into(),
                Some("project = \"my-project-id\" (buckets are listed and created in it)"),
            ))
        }
        StoreType::Gcs => ProviderKind::Gcs(GcsSpec {
            bucket: required,
            project: w.project,
            endpoint,
            allow_http,
            service_account_env: w.service_account_env,
            anonymous,
            storage_class,
        }),
    };
    Ok(ProviderSpec {
        name: name.to_string(),
        preset,
        line,
        kind,
        encrypt,
    })
}

/// The preset named, and the type: given, or the preset's (both, when they agree).
fn preset_and_kind(table: &Table, w: &ProviderWire) -> Result<(Option<&'static Preset>, StoreType), PlanError> {
    let err = |msg: String, hint: Option<&str>| table.err(msg, hint);
    let preset = match &w.preset {
        None => None,
        Some(p) => Some(catalog::find(p).ok_or_else(|| {
            err(
                format!("unknown preset `{p}`"),
                Some(&format!("known presets: {}", catalog::names().join(", "))),
            )
        })?),
    };
    let kind = match (w.kind, preset) {
        (Some(k), Some(p)) if k != p.kind => {
            return Err(err(
                format!("`type = \"{k}\"` contradicts preset `{}` (type `{}`)", p.name, p.kind),
                None,
            ))
        }
        (Some(k), _) => k,
        (None, Some(p)) => p.kind,
        (None, None) => {
            return Err(err(
                "missing `type`".into(),
                Some("type = \"s3\" | \"gcs\" | \"azure\" | \"local\" | \"memory\""),
            ))
        }
    };
    Ok((preset, kind))
}

/// The keys a provider of type `kind` may set.
pub(super) fn allowed_keys(kind: StoreType) -> &'static [&'static str] {
    match kind {
        StoreType::Local => &["root"],
        StoreType::Memory => &[],
        StoreType::S3 => &[
            "bucket",
            "region",
            "endpoint",
            "path-style",
            "allow-http",
            "access-key-id-env",
            "secret-access-key-env",
            "session-token-env",
            "profile",
            "role-arn",
            "external-id",
            "role-session-name",
            "anonymous",
            "sse",
            "sse-kms-key-id",
            "storage-class",
            "sse-c-key-env",
        ],
        StoreType::Gcs => &[
            "bucket",
            "endpoint",
            "allow-http",
            "service-account-env",
            "anonymous",
            "storage-class",
            "project",
        ],
        StoreType::Azure => &[
            "account",
            "container",
            "endpoint",
            "allow-http",
            "access-key-env",
            "sas-token-env",
            "connection-string-env",
            "use-azure-cli",
            "anonymous",
            "storage-class",
        ],
    }
}

/// Which keys apply to which type: a key set for the wrong type is a mistake worth reporting;
/// then the keys the type requires.
fn keys_apply(table: &Table, w: &ProviderWire, kind: StoreType) -> Result<(), PlanError> {
    let set: Vec<(&str, bool)> = vec![
        ("root", w.root.is_some()),
        ("bucket", w.bucket.is_some()),
        ("region", w.region.is_some()),
        ("endpoint", w.endpoint.is_some()),
        ("path-style", w.path_style.is_some()),
        ("allow-http", w.allow_http.is_some()),
        ("access-key-id-env", w.access_key_id_env.is_some()),
        ("secret-access-key-env", w.secret_access_key_env.is_some()),
        ("session-token-env", w.session_token_env.is_some()),
        ("profile", w.profile.is_some()),
        ("role-arn", w.role_arn.is_some()),
        ("external-id", w.external_id.is_some()),
        ("role-session-name", w.role_session_name.is_some()),
        ("account", w.account.is_some()),
        ("container", w.container.is_some()),
        ("access-key-env", w.access_key_env.is_some()),
        ("sas-token-env", w.sas_token_env.is_some()),
        ("connection-string-env", w.connection_string_env.is_some()),
        ("use-azure-cli", w.use_azure_cli.is_some()),
        ("service-account-env", w.service_account_env.is_some()),
        ("project", w.project.is_some()),
        ("anonymous", w.anonymous.is_some()),
        ("sse", w.sse.is_some()),
        ("sse-kms-key-id", w.sse_kms_key_id.is_some()),
        ("storage-class", w.storage_class.is_some()),
        ("sse-c-key-env", w.sse_c_key_env.is_some()),
    ];
    let allowed = allowed_keys(kind);
    for (key, present) in &set {
        if *present && !allowed.contains(key) {
            return Err(table.err(
                format!("key `{key}` does not apply to type `{kind}`"),
                Some(&format!(
                    "keys for `{kind}`: {}",
                    allowed
                        .iter()
                        .chain(&super::encrypt::ENCRYPT_KEYS)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ));
        }
    }
    Ok(())
}

/// The key type `kind` requires, taken out of the table (`root`, `bucket` or `container`; empty
/// for `memory`, which requires none).
fn required_key(table: &Table, w: &mut ProviderWire, kind: StoreType) -> Result<String, PlanError> {
    let (key, value) = match kind {
        StoreType::Local => ("root", w.root.take()),
        StoreType::S3 | StoreType::Gcs => ("bucket", w.bucket.take()),
        StoreType::Azure => ("container", w.container.take()),
        StoreType::Memory => return Ok(String::new()),
    };
    value.ok_or_else(|| table.err(format!("missing `{key}` (required for type `{kind}`)"), None))
}

/// The endpoint: given (without credentials in it), or the preset's for the region; plain http
/// only with `allow-http`.
fn endpoint(
    table: &Table,
    given: Option<Spanned<String>>,
    preset: Option<&'static Preset>,
    region: Option<&str>,
    allow_http: bool,
) -> Result<Option<String>, PlanError> {
    let endpoint = match (given, preset) {
        (Some(e), _) => {
            // Credentials in the endpoint would be sent to the server as the URL's user info and
            // printed wherever the endpoint is; and the plan is no place for a secret. The user
            // info is not echoed back, only its length.
            let span = e.span();
            let e = e.into_inner();
            if let Some(info) = endpoint_userinfo(&e) {
                return Err(table.ctx.err(
                    span,
                    format!(
                        "provider `{}`: `endpoint` carries credentials (user info {} before `@`); refusing a secret in the plan",
                        table.name,
                        crate::redact::mask(info)
                    ),
                    Some("remove `user:password@` from the endpoint; name the variables that hold the keys with `access-key-id-env` and `secret-access-key-env`"),
                ));
            }
            Some(e)
        }
        (None, Some(p)) => p.endpoint_for(region).map_err(|e| table.err(e, None))?,
        (None, None) => None,
    };
    if let Some(e) = &endpoint {
        if e.starts_with("http://") && !allow_http {
            return Err(table.err(
                format!("endpoint `{e}` is plain http"),
                Some("set `allow-http = true` if that is intended (test servers, private networks)"),
            ));
        }
        if !e.starts_with("http://") && !e.starts_with("https://") {
            return Err(table.err(format!("endpoint `{e}` must start with http:// or https://"), None));
        }
    }
    Ok(endpoint)
}

/// The `*-env` keys name environment variables (never hold a secret), and an access key id
/// comes with its secret.
fn credential_env_names(table: &Table, w: &ProviderWire) -> Result<(), PlanError> {
    for (key, var) in [
        ("access-key-id-env", &w.access_key_id_env),
        ("secret-access-key-env", &w.secret_access_key_env),
        ("session-token-env", &w.session_token_env),
        ("access-key-env", &w.access_key_env),
        ("sse-c-key-env", &w.sse_c_key_env),
        ("sas-token-env", &w.sas_token_env),
        ("connection-string-env", &w.connection_string_env),
        ("service-account-env", &w.service_account_env),
    ] {
        if let Some(v) = var {
            if let Some(why) = env_name_problem(v) {
                return Err(table.err(
                    format!(
                        "`{key}` must name an environment variable, got `{}`: {why}",
                        crate::redact::mask(v)
                    ),
                    Some("secrets never go in a plan: put the value in an environment variable and name it here"),
                ));
            }
        }
    }
    let azure: Vec<&str> = [
        ("access-key-env", w.access_key_env.is_some()),
        ("sas-token-env", w.sas_token_env.is_some()),
        ("connection-string-env", w.connection_string_env.is_some()),
        ("use-azure-cli", w.use_azure_cli == Some(true)),
        ("anonymous", w.anonymous == Some(true)),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if azure.len() > 1 {
        return Err(table.err(
            format!("`{}` are different ways to sign: keep one", azure.join("` and `")),
            None,
        ));
    }
    if w.access_key_id_env.is_some() != w.secret_access_key_env.is_some() {
        return Err(table.err(
            "`access-key-id-env` and `secret-access-key-env` go together".into(),
            None,
        ));
    }
    Ok(())
}

/// The keys that steer the AWS credential chain (S3 only, checked in [`keys_apply`]): a profile
/// is another source than keys named by `*-env`, and an anonymous provider signs nothing; a role
/// is assumed with whichever credentials the provider has otherwise, so it goes with either.
fn aws_auth(table: &Table, w: &mut ProviderWire) -> Result<AwsAuth, PlanError> {
    let clash = |a: &str, b: &str| table.err(format!("`{a}` and `{b}` exclude each other"), None);
    if w.profile.is_some() && w.access_key_id_env.is_some() {
        return Err(clash("profile", "access-key-id-env"));
    }
    if w.anonymous == Some(true) {
        if w.profile.is_some() {
            return Err(clash("profile", "anonymous"));
        }
        if w.role_arn.is_some() {
            return Err(clash("role-arn", "anonymous"));
        }
    }
    let role_arn = match w.role_arn.take() {
        Some(arn) if !arn.get_ref().starts_with("arn:") => {
            let span = arn.span();
            return Err(table.ctx.err(
                span,
                format!(
                    "provider `{}`: `role-arn` must be a role ARN (`arn:aws:iam::ACCOUNT:role/NAME`)",
                    table.name
                ),
                None,
            ));
        }
        arn => arn.map(Spanned::into_inner),
    };
    for (key, set) in [
        ("external-id", w.external_id.is_some()),
        ("role-session-name", w.role_session_name.is_some()),
    ] {
        if set && role_arn.is_none() {
            return Err(table.err(format!("`{key}` needs `role-arn`"), None));
        }
    }
    if w.profile.as_deref() == Some("") {
        return Err(table.err("`profile` is empty".into(), None));
    }
    Ok(AwsAuth {
        profile: w.profile.take(),
        role_arn,
        external_id: w.external_id.take(),
        role_session_name: w.role_session_name.take(),
    })
}

/// The keys that say how objects are written to an S3 provider (S3 only, checked in
/// [`keys_apply`]), each refused at its own value: `sse` one of [`Sse::NAMES`], a KMS key only
/// with `aws:kms` (S3 refuses it otherwise, after the data is sent), `storage-class` one of
/// [`STORAGE_CLASSES`] as S3 spells it (S3 answers a misspelt class with an error per object).
fn s3_write(table: &Table, w: &mut ProviderWire, storage_class: Option<String>) -> Result<S3Write, PlanError> {
    let at = |span: Range<usize>, msg: String, hint: String| {
        table
            .ctx
            .err(span, format!("provider `{}`: {msg}", table.name), Some(&hint))
    };
    let sse = match w.sse.take() {
        None => None,
        Some(v) => Some(match v.get_ref().as_str() {
            "aws:kms" => Sse::Kms,
            "AES256" => Sse::Aes256,
            other => {
                return Err(at(
                    v.span(),
                    format!("unknown `sse` value `{other}`"),
                    format!("sse = \"{}\"", Sse::NAMES.join("\" | \"")),
                ))
            }
        }),
    };
    let kms_key_id = match w.sse_kms_key_id.take() {
        Some(k) if sse != Some(Sse::Kms) => {
            return Err(at(
                k.span(),
                "`sse-kms-key-id` needs `sse = \"aws:kms\"`".into(),
                "add `sse = \"aws:kms\"`, or remove the key id".into(),
            ))
        }
        Some(k) if k.get_ref().trim().is_empty() => {
            return Err(at(
                k.span(),
                "`sse-kms-key-id` is empty".into(),
                "a KMS key id, ARN or alias (`alias/NAME`)".into(),
            ))
        }
        k => k.map(Spanned::into_inner),
    };
    Ok(S3Write {
        sse,
        kms_key_id,
        storage_class,
    })
}

/// `storage-class`, one of the names the provider's type spells (S3 classes, Azure access tiers,
/// GCS classes; the server would refuse a misspelt one per object, after the data is sent),
/// refused at its value with the spelling it probably meant.
fn storage_class(table: &Table, w: &mut ProviderWire, kind: StoreType) -> Result<Option<String>, PlanError> {
    let Some(c) = w.storage_class.take() else {
        return Ok(None);
    };
    let (names, vendor): (&[&str], &str) = match kind {
        StoreType::S3 => (&STORAGE_CLASSES, "S3's storage classes"),
        StoreType::Azure => (&AZURE_TIERS, "Azure's access tiers"),
        StoreType::Gcs => (&GCS_CLASSES, "GCS's storage classes"),
        // Refused in `keys_apply`.
        StoreType::Local | StoreType::Memory => (&[], "none"),
    };
    if names.contains(&c.get_ref().as_str()) {
        return Ok(Some(c.into_inner()));
    }
    let near = names
        .iter()
        .find(|k| k.eq_ignore_ascii_case(&c.get_ref().replace(['-', ' '], "_")));
    Err(table.ctx.err(
        c.span(),
        format!("provider `{}`: unknown `storage-class` `{}`", table.name, c.get_ref()),
        Some(&match near {
            Some(k) => format!("it is spelt `{k}`"),
            None => format!("{vendor}: {}", names.join(", ")),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::secrets::endpoint_userinfo;
    use super::super::testing::{parse, OK};

    #[test]
    fn key_for_wrong_type_refused() {
        let text = OK.replace("root = \"in\"", "root = \"in\"\nbucket = \"b\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("key `bucket` does not apply to type `local`"), "{e}");
    }

    #[test]
    fn literal_secret_in_env_key_is_refused_and_masked() {
        let text = r#"
[providers.s]
type = "s3"
bucket = "b"
access-key-id-env = "AKIA"
secret-access-key-env = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY"
"#;
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains("must name an environment variable"), "{e}");
        assert!(!e.contains("wJalrXUtnFEMI"), "{e}");
    }

    /// The S3 keys of provider `s`.
    fn s3_of(text: &str) -> super::S3Spec {
        match &parse(text).unwrap().providers["s"].kind {
            super::ProviderKind::S3(s3) => s3.clone(),
            other => panic!("not s3: {other:?}"),
        }
    }

    /// Issue 16: the credential-chain keys are S3's, typed, and checked against each other.
    #[test]
    fn aws_chain_keys_are_validated() {
        let s3 = "[providers.s]\ntype = \"s3\"\nbucket = \"b\"\n";
        let ok = format!("{s3}profile = \"evac\"\nrole-arn = \"arn:aws:iam::1:role/r\"\nexternal-id = \"x\"\nrole-session-name = \"n\"\n");
        let spec = s3_of(&ok).aws;
        assert_eq!(spec.profile.as_deref(), Some("evac"));
        assert_eq!(spec.role_arn.as_deref(), Some("arn:aws:iam::1:role/r"));
        let e = |extra: &str| parse(&format!("{s3}{extra}")).unwrap_err().to_string();
        assert!(
            e("role-arn = \"evac\"\n").starts_with("plan.toml:4:12: provider `s`: `role-arn` must be a role ARN"),
            "{}",
            e("role-arn = \"evac\"\n")
        );
        assert!(e("external-id = \"x\"\n").contains("`external-id` needs `role-arn`"));
        assert!(
            e("profile = 3\n").starts_with("plan.toml:4:11:"),
            "{}",
            e("profile = 3\n")
        );
        assert!(e("profiles = \"a\"\n").contains("unknown field `profiles`"));
        let keys = "access-key-id-env = \"K\"\nsecret-access-key-env = \"S\"\n";
        assert!(e(&format!("profile = \"p\"\n{keys}")).contains("`profile` and `access-key-id-env` exclude each other"));
        assert!(e("anonymous = true\nrole-arn = \"arn:aws:iam::1:role/r\"\n")
            .contains("`role-arn` and `anonymous` exclude each other"));
        // A role assumed with the plan's static keys is fine.
        assert!(parse(&format!("{s3}{keys}role-arn = \"arn:aws:iam::1:role/r\"\n")).is_ok());
        let gcs = "[providers.g]\ntype = \"gcs\"\nbucket = \"b\"\nprofile = \"p\"\n";
        assert!(parse(gcs)
            .unwrap_err()
            .to_string()
            .contains("key `profile` does not apply to type `gcs`"));
    }

    /// Issue 16: `sse`, `sse-kms-key-id` and `storage-class` are S3's, each refused at its value.
    #[test]
    fn s3_write_keys_are_validated() {
        use super::super::{Sse, STORAGE_CLASSES};
        let s3 = "[providers.s]\ntype = \"s3\"\nbucket = \"b\"\n";
        let ok = format!("{s3}sse = \"aws:kms\"\nsse-kms-key-id = \"alias/k\"\nstorage-class = \"GLACIER_IR\"\n");
        let w = s3_of(&ok).s3_write;
        assert_eq!((w.sse, w.kms_key_id.as_deref()), (Some(Sse::Kms), Some("alias/k")));
        assert_eq!(w.storage_class.as_deref(), Some("GLACIER_IR"));
        assert_eq!(
            s3_of(&format!("{s3}sse = \"AES256\"\n")).s3_write.sse,
            Some(Sse::Aes256)
        );
        let e = |extra: &str| parse(&format!("{s3}{extra}")).unwrap_err().to_string();
        let bad = e("sse = \"kms\"\n");
        assert!(
            bad.starts_with("plan.toml:4:7: provider `s`: unknown `sse` value `kms`"),
            "{bad}"
        );
        let bad = e("sse = \"AES256\"\nsse-kms-key-id = \"k\"\n");
        assert!(
            bad.starts_with("plan.toml:5:18: provider `s`: `sse-kms-key-id` needs `sse = \"aws:kms\"`"),
            "{bad}"
        );
        let bad = e("storage-class = \"standard-ia\"\n");
        assert!(
            bad.starts_with("plan.toml:4:17: provider `s`: unknown `storage-class` `standard-ia`"),
            "{bad}"
        );
        assert!(bad.contains("it is spelt `STANDARD_IA`"), "{bad}");
        assert!(e("storage-class = \"COLD\"\n").contains("DEEP_ARCHIVE"));
        // Azure's tiers and GCS's classes, each type with its own names.
        let azure = |c: &str| format!("[providers.a]\ntype = \"azure\"\ncontainer = \"c\"\nstorage-class = \"{c}\"\n");
        let bad = parse(&azure("STANDARD")).unwrap_err().to_string();
        assert!(bad.contains("Azure's access tiers: Hot, Cool, Cold, Archive"), "{bad}");
        assert!(parse(&azure("cool"))
            .unwrap_err()
            .to_string()
            .contains("it is spelt `Cool`"));
        assert!(parse(&azure("Cool")).is_ok());
        let gcs = |c: &str| format!("[providers.g]\ntype = \"gcs\"\nbucket = \"b\"\nstorage-class = \"{c}\"\n");
        assert!(parse(&gcs("NEARLINE")).is_ok());
        assert!(parse(&gcs("GLACIER"))
            .unwrap_err()
            .to_string()
            .contains("GCS's storage classes"));
        // Every class offered is one the S3 API knows.
        for c in STORAGE_CLASSES {
            assert!(aws_sdk_s3::types::StorageClass::values().contains(&c), "{c}");
        }
    }

    /// Issue 14: credentials in an endpoint URL are refused at the `endpoint` key, unprinted.
    #[test]
    fn endpoint_with_user_info_is_refused_at_its_key() {
        let text = "[providers.s]\ntype = \"s3\"\nbucket = \"b\"\nallow-http = true\n\
                    endpoint = \"http://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@127.0.0.1:9000\"\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(
            e.starts_with("plan.toml:5:12: provider `s`: `endpoint` carries credentials"),
            "{e}"
        );
        assert!(
            !e.contains("AKIAIOSFODNN7EXAMPLE") && !e.contains("wJalrXUtnFEMI"),
            "{e}"
        );
        let ok = text.replace("AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@", "");
        assert!(parse(&ok).is_ok());
        assert_eq!(endpoint_userinfo("https://u@h/p@q"), Some("u"));
        assert_eq!(endpoint_userinfo("https://h:9000/a@b"), None);
    }
}

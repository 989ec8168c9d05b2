//! The plan's wire structs: exactly what the TOML may contain. serde rejects unknown keys and
//! wrong types here (toml reports the line and column); which key applies to which provider type,
//! and everything else that spans fields, is checked in [`validate`](super::validate).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{Compression, DbEngine, StoreType, VerifyLevel};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct PlanWire {
    #[serde(default)]
    pub(super) settings: SettingsWire,
    #[serde(default)]
    pub(super) providers: BTreeMap<String, Spanned<ProviderWire>>,
    #[serde(default)]
    pub(super) objects: Vec<Spanned<ObjectJobWire>>,
    #[serde(default)]
    pub(super) databases: Vec<Spanned<DatabaseJobWire>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct SettingsWire {
    pub(super) concurrency: Option<usize>,
    pub(super) part_size: Option<Spanned<String>>,
    pub(super) memory_limit: Option<Spanned<String>>,
    pub(super) state_dir: Option<String>,
    pub(super) server_side_copy: Option<bool>,
    pub(super) bandwidth: Option<Spanned<String>>,
    pub(super) metrics_file: Option<String>,
}

/// Every key any provider type accepts; which apply to which type is checked in validation.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct ProviderWire {
    #[serde(rename = "type")]
    pub(super) kind: Option<StoreType>,
    pub(super) preset: Option<String>,
    // local
    pub(super) root: Option<String>,
    // s3 / gcs
    pub(super) bucket: Option<String>,
    pub(super) region: Option<String>,
    pub(super) endpoint: Option<Spanned<String>>,
    pub(super) path_style: Option<bool>,
    pub(super) allow_http: Option<bool>,
    pub(super) access_key_id_env: Option<String>,
    pub(super) secret_access_key_env: Option<String>,
    pub(super) session_token_env: Option<String>,
    pub(super) profile: Option<String>,
    pub(super) role_arn: Option<Spanned<String>>,
    pub(super) external_id: Option<String>,
    pub(super) role_session_name: Option<String>,
    pub(super) sse: Option<Spanned<String>>,
    pub(super) sse_kms_key_id: Option<Spanned<String>>,
    pub(super) storage_class: Option<Spanned<String>>,
    pub(super) sse_c_key_env: Option<String>,
    // azure
    pub(super) account: Option<String>,
    pub(super) container: Option<String>,
    pub(super) access_key_env: Option<String>,
    pub(super) sas_token_env: Option<String>,
    pub(super) connection_string_env: Option<String>,
    pub(super) use_azure_cli: Option<bool>,
    // gcs
    pub(super) service_account_env: Option<String>,
    pub(super) project: Option<String>,
    pub(super) anonymous: Option<bool>,
    // any type: client-side encryption (plan/encrypt.rs)
    pub(super) encrypt_recipients_file: Option<String>,
    pub(super) encrypt_recipients_env: Option<String>,
    pub(super) encrypt_passphrase_env: Option<String>,
    pub(super) decrypt_identity_file: Option<String>,
    pub(super) decrypt_identity_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct ObjectJobWire {
    pub(super) name: String,
    pub(super) from: Spanned<String>,
    pub(super) to: Spanned<String>,
    #[serde(default)]
    pub(super) include: Vec<String>,
    #[serde(default)]
    pub(super) exclude: Vec<String>,
    #[serde(default)]
    pub(super) verify: VerifyLevel,
    #[serde(default)]
    pub(super) delete_extraneous: bool,
    pub(super) max_delete: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) allow_empty_source: bool,
    // history instead of a mirror (sync/history.rs)
    pub(super) keep_replaced: Option<Spanned<String>>,
    pub(super) keep_replaced_days: Option<u64>,
    // whole accounts (plan/accounts.rs)
    #[serde(default)]
    pub(super) buckets_include: Vec<String>,
    #[serde(default)]
    pub(super) buckets_exclude: Vec<String>,
    pub(super) bucket_name: Option<String>,
    pub(super) create_buckets: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct DatabaseJobWire {
    pub(super) name: String,
    pub(super) engine: DbEngine,
    pub(super) url_env: Option<String>,
    pub(super) path: Option<String>,
    pub(super) to: Spanned<String>,
    #[serde(default)]
    pub(super) compression: Compression,
    pub(super) restore_to_env: Option<String>,
    pub(super) restore_to_path: Option<String>,
    #[serde(default)]
    pub(super) restore_replace: bool,
    pub(super) keep: Option<usize>,
    pub(super) keep_daily: Option<Spanned<usize>>,
    pub(super) keep_weekly: Option<Spanned<usize>>,
    pub(super) keep_monthly: Option<Spanned<usize>>,
    // parallel dumps and globals (dump/directory.rs, dump/globals.rs)
    pub(super) jobs: Option<Spanned<i64>>,
    pub(super) globals: Option<Spanned<bool>>,
    pub(super) globals_passwords: Option<Spanned<bool>>,
}

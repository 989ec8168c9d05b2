//! Validation of a provider's client-side encryption keys (`encrypt-recipients-file`,
//! `encrypt-recipients-env`, `encrypt-passphrase-env`, `decrypt-identity-file`,
//! `decrypt-identity-env`) into an [`EncryptSpec`]. Only names are read here, of files and of
//! variables; the keys themselves are read when a dump is written or restored (`crypt`).

use std::path::Path;

use super::providers::Table;
use super::secrets::env_name_problem;
use super::wire::ProviderWire;
use super::{EncryptSpec, EncryptTo, PlanError};

/// The provider keys that say how what ferry writes there is encrypted: any store type takes them.
pub(super) const ENCRYPT_KEYS: [&str; 5] = [
    "encrypt-recipients-file",
    "encrypt-recipients-env",
    "encrypt-passphrase-env",
    "decrypt-identity-file",
    "decrypt-identity-env",
];

/// The provider's encryption, if any of its keys is set. Files resolve against the plan's
/// folder. Recipients and a passphrase exclude each other (age refuses to mix them), and an
/// identity without recipients would decrypt what ferry never encrypts there.
pub(super) fn encryption(
    table: &Table,
    base_dir: &Path,
    w: &mut ProviderWire,
) -> Result<Option<EncryptSpec>, PlanError> {
    for (key, var) in [
        ("encrypt-recipients-env", &w.encrypt_recipients_env),
        ("encrypt-passphrase-env", &w.encrypt_passphrase_env),
        ("decrypt-identity-env", &w.decrypt_identity_env),
    ] {
        if let Some(why) = var.as_deref().and_then(env_name_problem) {
            return Err(table.err(
                format!("`{key}` must name an environment variable: {why}"),
                Some("keys never go in a plan: put them in a file or a variable and name it here"),
            ));
        }
    }
    for (key, file) in [
        ("encrypt-recipients-file", &w.encrypt_recipients_file),
        ("decrypt-identity-file", &w.decrypt_identity_file),
    ] {
        if file
            .as_deref()
            .is_some_and(|f| f.starts_with("AGE-SECRET-KEY-") || f.starts_with("age1"))
        {
            return Err(table.err(
                format!("`{key}` must name a file, not hold a key"),
                Some("keys never go in a plan: put them in a file and name it here"),
            ));
        }
    }
    let file = |f: Option<String>| f.map(|f| base_dir.join(f));
    let recipients = w.encrypt_recipients_file.is_some() || w.encrypt_recipients_env.is_some();
    let identity = w.decrypt_identity_file.is_some() || w.decrypt_identity_env.is_some();
    let to = match (recipients, w.encrypt_passphrase_env.take()) {
        (true, Some(_)) => {
            return Err(table.err(
                "`encrypt-passphrase-env` and `encrypt-recipients-*` exclude each other".into(),
                Some("age encrypts to recipients or to one passphrase, never both"),
            ))
        }
        (false, Some(_)) if identity => {
            return Err(table.err(
                "`decrypt-identity-*` does not go with `encrypt-passphrase-env`: the passphrase also decrypts".into(),
                None,
            ))
        }
        (false, Some(env)) => EncryptTo::Passphrase { env },
        (true, None) => EncryptTo::Recipients {
            file: file(w.encrypt_recipients_file.take()),
            env: w.encrypt_recipients_env.take(),
        },
        (false, None) if identity => {
            return Err(table.err(
                "`decrypt-identity-*` needs `encrypt-recipients-file` or `encrypt-recipients-env`".into(),
                Some("name the public keys (`age1…`) dumps are encrypted to; the identity reads them back"),
            ))
        }
        (false, None) => return Ok(None),
    };
    Ok(Some(EncryptSpec {
        to,
        identity_file: file(w.decrypt_identity_file.take()),
        identity_env: w.decrypt_identity_env.take(),
    }))
}

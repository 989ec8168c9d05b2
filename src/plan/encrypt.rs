//! Validation of a provider's client-side encryption keys (`encrypt-recipients-file`,
//! `encrypt-recipients-env`, `encrypt-passphrase-env`, `decrypt-identity-file`,
//! `decrypt-identity-env`) into an [`EncryptSpec`]. Only names are read here, of files and of
//! variables; the keys themselves are read when a dump or an object is written or read (`crypt`).

use std::collections::BTreeMap;
use std::path::Path;

use toml::Spanned;

use super::providers::Table;
use super::secrets::env_name_problem;
use super::validate::Ctx;
use super::wire::{ObjectJobWire, ProviderWire};
use super::{EncryptSpec, EncryptTo, Location, PlanError, ProviderSpec};

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

/// Objects into an encrypting provider are encrypted to its recipients. A passphrase is refused
/// there: age runs scrypt (about a second, by design) for every file it encrypts, so every
/// object would cost one. Reading encrypted objects back is not built yet: a plaintext copy
/// of them would be ciphertext under another name.
pub(super) fn object_job_ends(
    ctx: &Ctx,
    providers: &BTreeMap<String, ProviderSpec>,
    spanned: &Spanned<ObjectJobWire>,
    from: &Location,
    to: &Location,
) -> Result<(), PlanError> {
    let w = spanned.get_ref();
    if let Some(EncryptSpec {
        to: EncryptTo::Passphrase { .. },
        ..
    }) = &providers[&to.provider].encrypt
    {
        return Err(ctx.err(
            w.to.span(),
            format!(
                "job `{}`: `to` names provider `{}`, which encrypts with a passphrase: object copies encrypt to recipients only (a passphrase costs about a second of scrypt per object)",
                w.name, to.provider
            ),
            Some("give the provider `encrypt-recipients-file` (age1… keys, `age-keygen`); passphrases stay for dumps"),
        ));
    }
    if providers[&from.provider].encrypt.is_some() {
        return Err(ctx.err(
            w.from.span(),
            format!(
                "job `{}`: `from` names provider `{}`, which encrypts (`encrypt-*`): copying encrypted objects back out is not built yet",
                w.name, from.provider
            ),
            Some("read them back with the `age` command and the identity (docs/operations.md, encrypted backups)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::testing::parse;
    use super::super::EncryptTo;

    fn vault(keys: &str) -> Result<super::super::Plan, String> {
        parse(&format!("[providers.vault]\ntype = \"memory\"\n{keys}\n")).map_err(|e| e.to_string())
    }

    #[test]
    fn recipients_and_identity_resolve_against_the_plan_folder() {
        let p = vault("encrypt-recipients-file = \"keys/r.txt\"\nencrypt-recipients-env = \"R\"\ndecrypt-identity-file = \"/k/id.txt\"").unwrap();
        let e = p.providers["vault"].encrypt.clone().unwrap();
        assert_eq!(
            e.to,
            EncryptTo::Recipients {
                file: Some(Path::new("./keys/r.txt").to_path_buf()),
                env: Some("R".into())
            }
        );
        assert_eq!(e.identity_file.as_deref(), Some(Path::new("/k/id.txt")));
        assert!(vault("").unwrap().providers["vault"].encrypt.is_none());
    }

    #[test]
    fn contradictions_and_keys_in_the_plan_are_refused() {
        for (keys, want) in [
            (
                "encrypt-passphrase-env = \"P\"\nencrypt-recipients-env = \"R\"",
                "exclude each other",
            ),
            (
                "encrypt-passphrase-env = \"P\"\ndecrypt-identity-env = \"I\"",
                "the passphrase also decrypts",
            ),
            (
                "decrypt-identity-file = \"id.txt\"",
                "needs `encrypt-recipients-file` or `encrypt-recipients-env`",
            ),
            (
                "encrypt-recipients-file = \"age1qqqqqq\"",
                "must name a file, not hold a key",
            ),
            (
                "encrypt-passphrase-env = \"hunter2 hunter2\"",
                "`encrypt-passphrase-env` must name an environment variable",
            ),
        ] {
            let e = vault(keys).unwrap_err();
            assert!(e.contains("provider `vault`") && e.contains(want), "{keys}: {e}");
        }
    }
}

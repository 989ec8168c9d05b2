//! Client-side encryption with [age](https://age-encryption.org/v1): what ferry writes to a
//! provider that has `encrypt-*` keys is encrypted before it leaves the process, so the
//! provider only ever stores ciphertext (issue 18).
//!
//! This module owns reading a provider's keys (recipients and identities from the files and
//! variables the plan names; a passphrase from its variable), registering every secret with
//! `redact` the moment it is read, and turning age's errors into ones that name the provider
//! and the plan key to fix. It does not decide *what* is encrypted: `dump` encrypts its dump
//! stream (on the thread that compresses it) and its record; object copies encrypt each object
//! with an [`objects::ObjectSealer`], part by part (recipients only: see the plan's check).
//!
//! X25519 recipients and passphrases only: no plugins, SSH keys or armor. A passphrase is for
//! humans (scrypt makes every encryption and decryption take about a second); automated
//! backups should use recipients.

use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

use age::secrecy::SecretString;

use crate::plan::{EncryptSpec, EncryptTo, ProviderSpec};
use crate::redact;

pub mod objects;
pub use objects::{ObjectKeys, ObjectSealer};

/// The first line of every age file: how an encrypted object is recognised.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// Whether `bytes` (an object's first bytes) are an age file.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(AGE_MAGIC)
}

/// A provider's keys could not be used: what to fix is in the message.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("provider `{provider}`: {what}: {message}")]
    Keys {
        provider: String,
        /// The plan key and the file or variable it names.
        what: String,
        message: String,
    },
    #[error("the dump `{key}` is encrypted, and provider `{provider}` has no `decrypt-identity-file` or `decrypt-identity-env` to read it\nhint: name the file (or variable) holding the age identity (`AGE-SECRET-KEY-1…`) that matches the provider's recipients")]
    NoIdentity { provider: String, key: String },
    #[error("the dump `{key}` is encrypted to other recipients: provider `{provider}`'s {via} does not match")]
    WrongIdentity {
        provider: String,
        key: String,
        /// The plan key that gave the identities (`decrypt-identity-file`, …).
        via: &'static str,
    },
    #[error("provider `{provider}`: cannot decrypt `{key}`: {message}")]
    Damaged {
        provider: String,
        key: String,
        message: String,
    },
}

/// What encrypts for a provider: its recipients, or its passphrase.
pub struct Sealer {
    recipients: std::sync::Arc<Vec<Box<dyn age::Recipient + Send + Sync>>>,
}

impl Sealer {
    /// The provider's sealer; `None` when it does not encrypt. Reads its recipients now, so a
    /// missing file or variable fails before anything is written.
    pub fn load(spec: &ProviderSpec) -> Result<Option<Sealer>, CryptError> {
        let Some(enc) = &spec.encrypt else {
            return Ok(None);
        };
        let mut recipients: Vec<Box<dyn age::Recipient + Send + Sync>> = Vec::new();
        match &enc.to {
            EncryptTo::Passphrase { env } => {
                let p = read_env(spec, "encrypt-passphrase-env", env)?;
                recipients.push(Box::new(age::scrypt::Recipient::new(SecretString::from(p))));
            }
            EncryptTo::Recipients { file, env } => {
                let mut sources = Vec::new();
                if let Some(f) = file {
                    sources.push((
                        format!("`encrypt-recipients-file` `{}`", f.display()),
                        read_file(spec, "encrypt-recipients-file", f)?,
                    ));
                }
                if let Some(v) = env {
                    sources.push((
                        format!("`encrypt-recipients-env` `{v}`"),
                        read_env(spec, "encrypt-recipients-env", v)?,
                    ));
                }
                for (what, text) in sources {
                    for (n, line) in key_lines(&text) {
                        let r = age::x25519::Recipient::from_str(line).map_err(|e| {
                            keys_err(
                                spec,
                                &what,
                                format!("line {n}: `{line}` is not an age X25519 recipient (`age1…`): {e}"),
                            )
                        })?;
                        recipients.push(Box::new(r));
                    }
                }
                if recipients.is_empty() {
                    return Err(keys_err(
                        spec,
                        "`encrypt-recipients-*`",
                        "no recipient (`age1…`) found".into(),
                    ));
                }
            }
        }
        Ok(Some(Sealer {
            recipients: std::sync::Arc::new(recipients),
        }))
    }

    /// The object sealer for the same recipients.
    pub fn for_objects(&self) -> io::Result<ObjectSealer> {
        ObjectSealer::new(self.recipients.clone())
    }

    /// A fresh encryptor (a new file key for each object).
    pub fn encryptor(&self) -> age::Encryptor {
        age::Encryptor::with_recipients(self.recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient))
            .expect("recipients are one passphrase or X25519 keys, which age always accepts")
    }

    /// `plain` encrypted whole: for small objects (a dump's record).
    pub fn seal(&self, plain: &[u8]) -> io::Result<Vec<u8>> {
        let mut w = self.encryptor().wrap_output(Vec::with_capacity(plain.len() + 256))?;
        w.write_all(plain)?;
        w.finish()
    }
}

/// What decrypts for a provider: its identities, or its passphrase.
pub struct Opener {
    provider: String,
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// The plan key they came from, for "does not match".
    via: &'static str,
}

impl Opener {
    /// The opener for an encrypted object at `key`: the provider's identities, or why there are
    /// none ([`CryptError::NoIdentity`]).
    pub fn load(spec: &ProviderSpec, key: &str) -> Result<Opener, CryptError> {
        let no_identity = || CryptError::NoIdentity {
            provider: spec.name.clone(),
            key: key.to_string(),
        };
        let enc: &EncryptSpec = spec.encrypt.as_ref().ok_or_else(no_identity)?;
        let mut identities: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        let via = match &enc.to {
            EncryptTo::Passphrase { env } => {
                let p = read_env(spec, "encrypt-passphrase-env", env)?;
                identities.push(Box::new(age::scrypt::Identity::new(SecretString::from(p))));
                "encrypt-passphrase-env"
            }
            EncryptTo::Recipients { .. } => {
                let mut sources = Vec::new();
                if let Some(f) = &enc.identity_file {
                    let what = format!("`decrypt-identity-file` `{}`", f.display());
                    sources.push((
                        "decrypt-identity-file",
                        what,
                        read_file(spec, "decrypt-identity-file", f)?,
                    ));
                }
                if let Some(v) = &enc.identity_env {
                    let what = format!("`decrypt-identity-env` `{v}`");
                    sources.push(("decrypt-identity-env", what, read_env(spec, "decrypt-identity-env", v)?));
                }
                let Some(via) = sources.first().map(|s| s.0) else {
                    return Err(no_identity());
                };
                for (_, what, text) in sources {
                    identities.extend(identities_in(spec, &what, &text)?);
                }
                via
            }
        };
        Ok(Opener {
            provider: spec.name.clone(),
            identities,
            via,
        })
    }

    fn ids(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities.iter().map(|i| i.as_ref() as &dyn age::Identity)
    }

    /// The error for `e`, met decrypting the header or body of the object at `key`.
    fn error(&self, key: &str, e: age::DecryptError) -> CryptError {
        match e {
            // X25519: no stanza is ours. Passphrase: the stanza does not open.
            age::DecryptError::NoMatchingKeys
            | age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed => CryptError::WrongIdentity {
                provider: self.provider.clone(),
                key: key.to_string(),
                via: self.via,
            },
            e => CryptError::Damaged {
                provider: self.provider.clone(),
                key: key.to_string(),
                message: redact::redact(&e.to_string()),
            },
        }
    }

    /// A reader of the plaintext of the age file `input` (the object at `key`); fails at once
    /// when the identities do not match the file's recipients.
    pub fn reader<R: Read>(&self, key: &str, input: R) -> Result<age::stream::StreamReader<R>, CryptError> {
        age::Decryptor::new(input)
            .and_then(|d| d.decrypt(self.ids()))
            .map_err(|e| self.error(key, e))
    }

    /// Checks, from an object's first bytes (its whole header and a little more), that these
    /// identities can read it: before anything is written anywhere.
    pub fn check(&self, key: &str, head: &[u8]) -> Result<(), CryptError> {
        self.reader(key, head).map(|_| ())
    }

    /// `sealed` decrypted whole: for small objects (a dump's record).
    pub fn open(&self, key: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptError> {
        let mut out = Vec::with_capacity(sealed.len());
        self.reader(key, sealed)?
            .read_to_end(&mut out)
            .map_err(|e| CryptError::Damaged {
                provider: self.provider.clone(),
                key: key.to_string(),
                message: e.to_string(),
            })?;
        Ok(out)
    }
}

/// The lines of a keys file that hold a key: not blank, not a `#` comment.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// The X25519 identities in `text`, each registered as a secret before it is parsed; a line
/// that does not parse is named by number, never quoted.
fn identities_in(
    spec: &ProviderSpec,
    what: &str,
    text: &str,
) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, CryptError> {
    let mut out: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
    for (n, line) in key_lines(text) {
        redact::register(line);
        let id = age::x25519::Identity::from_str(line).map_err(|_| {
            keys_err(
                spec,
                what,
                format!("line {n} is not an age X25519 identity (`AGE-SECRET-KEY-1…`)"),
            )
        })?;
        out.push(Box::new(id));
    }
    if out.is_empty() {
        return Err(keys_err(spec, what, "no identity (`AGE-SECRET-KEY-1…`) found".into()));
    }
    Ok(out)
}

fn keys_err(spec: &ProviderSpec, what: &str, message: String) -> CryptError {
    CryptError::Keys {
        provider: spec.name.clone(),
        what: what.to_string(),
        message,
    }
}

/// A variable's value, registered as a secret (identities and passphrases are; recipients are
/// public, and registering them too costs nothing).
fn read_env(spec: &ProviderSpec, key: &str, var: &str) -> Result<String, CryptError> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => {
            redact::register(&v);
            Ok(v)
        }
        _ => Err(keys_err(
            spec,
            &format!("`{key}` `{var}`"),
            "the environment variable is not set or empty".into(),
        )),
    }
}

fn read_file(spec: &ProviderSpec, key: &str, path: &Path) -> Result<String, CryptError> {
    std::fs::read_to_string(path).map_err(|e| {
        keys_err(
            spec,
            &format!("`{key}` `{}`", path.display()),
            format!("cannot read: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(to: EncryptTo, identity_env: Option<&str>) -> ProviderSpec {
        ProviderSpec {
            name: "vault".into(),
            preset: None,
            line: 1,
            kind: crate::plan::ProviderKind::Memory,
            encrypt: Some(EncryptSpec {
                to,
                identity_file: None,
                identity_env: identity_env.map(str::to_string),
            }),
        }
    }

    #[test]
    fn sealed_with_recipients_opens_with_the_identity_only() {
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        use age::secrecy::ExposeSecret;
        std::env::set_var("FERRY_T_CRYPT_RCPT", format!("# team\n{}\n", id.to_public()));
        std::env::set_var("FERRY_T_CRYPT_ID", id.to_string().expose_secret());
        std::env::set_var("FERRY_T_CRYPT_OTHER", other.to_string().expose_secret());
        let to = || EncryptTo::Recipients {
            file: None,
            env: Some("FERRY_T_CRYPT_RCPT".into()),
        };
        let sealer = Sealer::load(&spec(to(), None)).unwrap().unwrap();
        let sealed = sealer.seal(b"secret rows").unwrap();
        assert!(is_sealed(&sealed) && !sealed.windows(6).any(|w| w == b"secret"));
        let opener = Opener::load(&spec(to(), Some("FERRY_T_CRYPT_ID")), "k").unwrap();
        assert_eq!(opener.open("k", &sealed).unwrap(), b"secret rows");
        let wrong = Opener::load(&spec(to(), Some("FERRY_T_CRYPT_OTHER")), "k").unwrap();
        let e = wrong.open("k", &sealed).unwrap_err().to_string();
        assert_eq!(
            e,
            "the dump `k` is encrypted to other recipients: provider `vault`'s decrypt-identity-env does not match"
        );
        assert!(!redact::redact(id.to_string().expose_secret()).contains("AGE-SECRET-KEY"));
        let none = Opener::load(&spec(to(), None), "k").err().unwrap().to_string();
        assert!(none.contains("`decrypt-identity-file`"), "{none}");
    }
}

//! The plan never holds a secret: `*-env` values must be variable names, not credentials pasted
//! in their place, and an endpoint must not carry user info.

/// Whether a value can be the name of an environment variable, and does not look like a
/// credential pasted in its place.
pub fn is_env_name(v: &str) -> bool {
    env_name_problem(v).is_none()
}

/// Why a `*-env` value cannot be taken as a variable name, or `None` when it can. Besides the
/// syntax (`[A-Za-z_][A-Za-z0-9_]*`), a value is judged by its shape, because a secret pasted in
/// place of a name is often letters and digits too (issue 14): real names are words joined by
/// `_` (`AWS_SECRET_ACCESS_KEY`, `DATABASE_URL_2`, `OldSecret`), while keys, tokens and passwords
/// are long runs that switch between letters and digits, or between cases, at random.
pub fn env_name_problem(v: &str) -> Option<&'static str> {
    const SECRET: &str = "it looks like a secret, not a variable name";
    if v.is_empty() {
        return Some("it is empty");
    }
    let well_formed =
        !v.starts_with(|c: char| c.is_ascii_digit()) && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        // `/`, `+`, `=`, `:`, `@`, `-`, `.`: base64, URLs, passwords; never a portable name.
        return Some("a variable name is letters, digits and `_`, and does not start with a digit");
    }
    let aws_key_id = (v.starts_with("AKIA") || v.starts_with("ASIA"))
        && v.len() >= 16
        && v.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if aws_key_id {
        return Some("it looks like an AWS access key id");
    }
    for word in v.split('_') {
        let n = word.len();
        let letters = word.chars().filter(char::is_ascii_alphabetic).count();
        let digits = n - letters;
        let lower = word.chars().filter(char::is_ascii_lowercase).count();
        let upper = letters - lower;
        let pairs = || word.as_bytes().windows(2);
        // Switches between a letter and a digit: `KEY2` has one, `a9f3c2` has five.
        let digit_switches = pairs()
            .filter(|p| p[0].is_ascii_digit() != p[1].is_ascii_digit())
            .count();
        // Switches of case between letters: `OldSecret` has two, `wJalrXUtnF` six.
        let case_switches = pairs()
            .filter(|p| p[0].is_ascii_alphabetic() && p[1].is_ascii_alphabetic())
            .filter(|p| p[0].is_ascii_lowercase() != p[1].is_ascii_lowercase())
            .count();
        let hex = word.chars().all(|c| c.is_ascii_hexdigit());
        if n >= 16 && hex && digits > 0 && letters > 0 {
            return Some(SECRET);
        }
        if n >= 12 && digits > 0 && letters > 0 && digit_switches >= 3 {
            return Some(SECRET);
        }
        if n >= 12 && lower > 0 && upper > 0 && case_switches * 4 >= n {
            return Some(SECRET);
        }
        if n >= 20 && lower > 0 && upper > 0 && digits > 0 {
            return Some(SECRET);
        }
        if n >= 24 && entropy_bits(word) >= 4.2 {
            return Some(SECRET);
        }
    }
    None
}

/// Shannon entropy of a word's characters, in bits per character: about 3.2 for an English
/// word, above 4.5 for a random base62 string of the same length.
fn entropy_bits(word: &str) -> f64 {
    let mut counts = [0u32; 128];
    for b in word.bytes() {
        counts[(b & 127) as usize] += 1;
    }
    let n = word.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The user info (`user:password` or `user`) of an `http(s)://user:password@host` endpoint.
pub(super) fn endpoint_userinfo(endpoint: &str) -> Option<&str> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rfind('@').map(|at| &authority[..at])
}

#[cfg(test)]
mod tests {
    use super::super::testing::parse;
    use super::*;

    /// Issue 14: a secret pasted into a `*-env` key is refused by its shape, whatever its
    /// alphabet, and real variable names still pass.
    #[test]
    fn pasted_secrets_are_told_from_variable_names() {
        for name in [
            "OLD_SECRET",
            "AWS_SECRET_ACCESS_KEY",
            "DATABASE_URL_2",
            "FERRY_TEST_SEAWEED_KEY",
            "S3_KEY",
            "azure_storage_key",
            "OldSecret",
            "databaseConnectionString",
            "SECRETKEY2024PRODUCTION",
            "GCP_SA_KEY_JSON_B64",
            "_PRIVATE",
            "PGPASSWORD",
            "AKIA",
        ] {
            assert_eq!(env_name_problem(name), None, "{name}");
        }
        for secret in [
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMIKMDENGbPxRfiCY",
            "Zq8vN3xKp1Lw4Rt7",
            "ghp_R7kLmQ2x9VbT4nWcZ8pY3sJ6hD1fA0eG5uKi",
            "9f86d081884c7d659a2feaa0c55ad015",
            "9F86D081884C7D659A2FEAA0C55AD015",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "xoxb_2151369723_4k9Qz7XwP1mRbT3v",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCY",
            "pw-S3cret-9f3Kd",
            "user:pass@host",
            "c2VjcmV0LXZhbHVl==",
            "1SECRET",
        ] {
            assert!(env_name_problem(secret).is_some(), "{secret}");
        }
        let text = r#"
[providers.s]
type = "s3"
bucket = "b"
access-key-id-env = "KEY_ID"
secret-access-key-env = "Hx72pQw9Zk3LmN8vRt5Y"
"#;
        let e = parse(text).unwrap_err().to_string();
        assert!(e.starts_with("plan.toml:2:"), "{e}");
        assert!(e.contains("`secret-access-key-env` must name an environment variable, got `<20 characters, hidden>`: it looks like a secret"), "{e}");
        assert!(!e.contains("Hx72pQw9"), "{e}");
    }
}

//! Keys: which object keys object_store's `Path` can carry unchanged, and how a folder-like
//! prefix becomes a listing prefix. A leaf (no other module of ferry's), so the plan can validate
//! prefixes with the same rules the stores use.

use object_store::path::Path;

/// Why a key cannot be carried through object_store unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key ends with `/` (a directory marker); object_store would strip the slash")]
    DirectoryMarker,
    #[error("key starts with `/`; object_store would strip it")]
    LeadingSlash,
    #[error("key has an empty segment (`//`)")]
    EmptySegment,
    #[error("key has a `.` or `..` segment")]
    DotSegment,
    #[error("key contains a control character")]
    ControlCharacter,
    #[error("key is empty")]
    Empty,
}

/// The object_store path for a key, only if it names exactly that key: object_store's `Path` is
/// not an arbitrary key (it strips leading and trailing `/`, rejects `a//b`, `.` and `..`), and a
/// silently renamed key is worse than a reported one.
pub fn key_to_path(key: &str) -> Result<Path, KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.ends_with('/') {
        return Err(KeyError::DirectoryMarker);
    }
    if key.starts_with('/') {
        return Err(KeyError::LeadingSlash);
    }
    if key.chars().any(|c| c.is_ascii_control()) {
        return Err(KeyError::ControlCharacter);
    }
    for seg in key.split('/') {
        match seg {
            "" => return Err(KeyError::EmptySegment),
            "." | ".." => return Err(KeyError::DotSegment),
            _ => {}
        }
    }
    let path = Path::parse(key).map_err(|_| KeyError::ControlCharacter)?;
    debug_assert_eq!(path.as_ref(), key);
    Ok(path)
}

/// The listing prefix for a folder-like prefix (`""` or ending in `/`), exactly as written:
/// `Path::from` would percent-encode `#`, `%`, `[`, `~` and more, and list a folder that does
/// not exist (issue 12: `C#/` listed nothing and exited 0).
pub fn prefix_path(prefix: &str) -> Result<Option<Path>, KeyError> {
    let Some(trimmed) = prefix.strip_suffix('/') else {
        return if prefix.is_empty() {
            Ok(None)
        } else {
            key_to_path(prefix).map(Some)
        };
    };
    key_to_path(trimmed).map(Some)
}

/// A key as it may be shown to a person (terminal, log): control characters escaped (`\t`,
/// `\n`, `\u{1b}`), so a key cannot move the cursor, recolour the screen or forge a log line.
/// JSON keeps keys exact.
pub fn shown(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_keys_map_exactly_or_are_refused() {
        for k in [
            "a b/c.txt",
            "100%.txt",
            "x+y#z?.txt",
            "ü/é",
            "e\u{301}",
            "&=;:@!$'()*",
            "[x]{y}^|~",
        ] {
            assert_eq!(key_to_path(k).unwrap().as_ref(), k);
        }
        assert_eq!(key_to_path("photos/"), Err(KeyError::DirectoryMarker));
        assert_eq!(key_to_path("a//b"), Err(KeyError::EmptySegment));
        assert_eq!(key_to_path("a/../b"), Err(KeyError::DotSegment));
        assert_eq!(key_to_path("/abs"), Err(KeyError::LeadingSlash));
    }

    #[test]
    fn prefix_paths() {
        assert_eq!(prefix_path(""), Ok(None));
        assert_eq!(prefix_path("a/b/").unwrap().unwrap().as_ref(), "a/b");
        // Issue 12: characters object_store would percent-encode stay as written.
        for p in ["C#/", "photos [2020]/", "100%/", "~old/", "a{b}^|/c/"] {
            assert_eq!(prefix_path(p).unwrap().unwrap().as_ref(), p.trim_end_matches('/'));
        }
        assert!(prefix_path("a//").is_err());
        assert!(prefix_path("a/../").is_err());
    }
}

//! One grammar for sizes and rates, used by the plan, the provider presets and the command line
//! alike (they used to disagree: `"5k"` was a size but not a rate). A leaf: no `crate::` import.
//!
//! A size is a number and a byte unit, SI (`k`, `kB`, `MB`, ... powers of 1000) or binary
//! (`KiB`, `MiB`, ... powers of 1024), case-insensitive, with or without a space: `16MiB`,
//! `5 MB`, `1024`. A rate is a size per second (`100MB/s`, `100MB`) or bits per second
//! (`1Gbit/s`, `500Mbps`).

/// The multiplier of a byte unit, lowercased (`""` and `b` are bytes).
fn byte_unit(unit: &str) -> Option<u64> {
    Some(match unit {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        "p" | "pb" => 1_000_000_000_000_000,
        "pib" => 1 << 50,
        _ => return None,
    })
}

/// `"16 MiB"` -> (16.0, "mib"); None when it does not start with a number.
fn number_and_unit(t: &str) -> Option<(f64, String)> {
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    Some((num.parse().ok()?, unit.trim().to_ascii_lowercase()))
}

/// Parses a size in bytes. Sizes from 1024 PiB up are refused: no store holds anything that
/// large, and part and budget arithmetic would overflow (`--part-size 16777216TiB` panicked).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (n, unit) = number_and_unit(s.trim()).ok_or_else(|| format!("`{s}` is not a size"))?;
    let mult = byte_unit(&unit).ok_or_else(|| format!("unknown unit `{unit}` in `{s}`"))?;
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes >= (1u64 << 60) as f64 {
        return Err(format!("`{s}` is too large (at most 1024 PiB)"));
    }
    Ok(bytes as u64)
}

/// Parses a rate in bytes per second: a size per second, or bits per second (`Mbit/s`, `Mbps`).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let bad = || format!("`{s}` is not a bandwidth (e.g. 100MB/s, 1Gbit/s)");
    let t = s.trim().to_ascii_lowercase().replace(' ', "");
    // `Mbps` and friends are bits; `MB/s` bytes.
    let t = match t.strip_suffix("bps") {
        Some(prefix) => format!("{prefix}bit"),
        None => t.strip_suffix("/s").unwrap_or(&t).to_string(),
    };
    let (n, unit) = number_and_unit(&t).ok_or_else(bad)?;
    let mult = match unit.strip_suffix("bit") {
        Some(prefix) => byte_unit(prefix)
            .filter(|_| !prefix.ends_with('b'))
            .map(|m| m as f64 / 8.0),
        None => byte_unit(&unit).map(|m| m as f64),
    };
    let mult = mult.ok_or_else(|| format!("unknown bandwidth unit in `{s}` (use MB/s, GB/s, Mbit/s, Gbit/s)"))?;
    let rate = n * mult;
    if !rate.is_finite() {
        return Err(bad());
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("5 MB").unwrap(), 5_000_000);
        assert_eq!(parse_size("5k").unwrap(), 5_000);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("0.5KiB").unwrap(), 512);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("16777216TiB").unwrap_err().contains("too large"));
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100MB/s").unwrap(), 1e8);
        assert_eq!(parse_rate("100 MB").unwrap(), 1e8);
        assert_eq!(
            parse_rate("5k/s").unwrap(),
            5e3,
            "the size grammar's units are rates too"
        );
        assert_eq!(parse_rate("64MiB/s").unwrap(), 64.0 * 1048576.0);
        assert_eq!(parse_rate("1Gbit/s").unwrap(), 1.25e8);
        assert_eq!(parse_rate("500Mbps").unwrap(), 62.5e6);
        assert_eq!(parse_rate("8bit/s").unwrap(), 1.0);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("5mbbit").is_err());
    }
}

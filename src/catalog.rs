//! The provider catalog: one TOML file per storage vendor under `providers/`, embedded at build
//! time (see `build.rs`). A preset fills in a plan provider's endpoint, region, addressing quirks
//! and limits, and supplies the prices the dry-run audit uses. This module only parses and
//! describes presets; building a store from one is `provider`'s job.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::units::parse_size;

/// The kinds of store a provider can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreType {
    S3,
    Gcs,
    Azure,
    Local,
    Memory,
}

impl std::fmt::Display for StoreType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreType::S3 => "s3",
            StoreType::Gcs => "gcs",
            StoreType::Azure => "azure",
            StoreType::Local => "local",
            StoreType::Memory => "memory",
        })
    }
}

mod prices;
pub use prices::{Prices, Retrieval, Tier, Unit};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/providers.rs"));
}

/// One vendor from `providers/NAME.toml`.
#[derive(Debug, Clone, Serialize)]
pub struct Preset {
    pub name: String,
    pub display_name: String,
    pub kind: StoreType,
    /// Endpoint with an optional `{region}` placeholder; none means the SDK default.
    pub endpoint: Option<String>,
    pub default_region: Option<String>,
    pub regions: Vec<String>,
    pub path_style: bool,
    pub notes: String,
    pub checksums: Checksums,
    pub limits: Limits,
    pub prices: Prices,
    pub quirks: Quirks,
    /// The file it came from, for messages.
    pub file: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Checksums {
    /// A single-part upload's ETag is the hex MD5 of the content.
    pub md5_etag: bool,
    /// Checksums the provider computes and returns natively.
    #[serde(default)]
    pub native: Vec<String>,
}

/// How a server departs from S3's behaviour in ways that decide whether keys arrive intact.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Quirks {
    /// Listings come in byte order of keys (S3's documented order), so they can be merged as
    /// they stream. SeaweedFS lists folder by folder (`a/b` before `a-b`).
    #[serde(default = "yes")]
    pub sorted_listing: bool,
    /// The server stores `\` in a key as `/` (Azure Blob, SeaweedFS): such keys would arrive
    /// renamed, so ferry reports them as not copied.
    #[serde(default)]
    pub backslash_is_slash: bool,
}

fn yes() -> bool {
    true
}

impl Default for Quirks {
    fn default() -> Quirks {
        Quirks {
            sorted_listing: true,
            backslash_is_slash: false,
        }
    }
}

/// Multipart limits, in bytes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    pub min_part_size: u64,
    pub max_part_size: u64,
    pub max_parts: u64,
    pub max_object_size: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PresetWire {
    name: String,
    display_name: String,
    #[serde(rename = "type")]
    kind: StoreType,
    endpoint: Option<String>,
    default_region: Option<String>,
    #[serde(default)]
    regions: Vec<String>,
    #[serde(default)]
    path_style: bool,
    #[serde(default)]
    notes: String,
    checksums: Checksums,
    limits: LimitsWire,
    prices: prices::PricesWire,
    #[serde(default)]
    quirks: Quirks,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LimitsWire {
    min_part_size: String,
    max_part_size: String,
    max_parts: u64,
    max_object_size: String,
}

impl Preset {
    /// The endpoint for a region, or an error naming the valid regions.
    pub fn endpoint_for(&self, region: Option<&str>) -> Result<Option<String>, String> {
        let Some(pattern) = &self.endpoint else {
            return Ok(None);
        };
        if !pattern.contains("{region}") {
            return Ok(Some(pattern.clone()));
        }
        let region = region
            .or(self.default_region.as_deref())
            .ok_or_else(|| format!("preset `{}` needs a `region`", self.name))?;
        if !self.regions.is_empty() && !self.regions.iter().any(|r| r == region) {
            return Err(format!(
                "region `{region}` is not one of preset `{}`'s regions: {}",
                self.name,
                self.regions.join(", ")
            ));
        }
        Ok(Some(pattern.replace("{region}", region)))
    }
}

/// Parses one catalog file; used at start-up and by the test that checks every shipped file.
pub fn parse(file: &str, text: &str) -> Result<Preset, String> {
    let w: PresetWire = toml::from_str(text).map_err(|e| format!("providers/{file}: {e}"))?;
    let size = |v: &str, key: &str| parse_size(v).map_err(|e| format!("providers/{file}: limits.{key}: {e}"));
    let limits = Limits {
        min_part_size: size(&w.limits.min_part_size, "min-part-size")?,
        max_part_size: size(&w.limits.max_part_size, "max-part-size")?,
        max_parts: w.limits.max_parts,
        max_object_size: size(&w.limits.max_object_size, "max-object-size")?,
    };
    if limits.min_part_size == 0 || limits.min_part_size > limits.max_part_size || limits.max_parts == 0 {
        return Err(format!("providers/{file}: inconsistent limits"));
    }
    let prices = w.prices.check().map_err(|e| format!("providers/{file}: {e}"))?;
    if format!("{}.toml", w.name) != file {
        return Err(format!(
            "providers/{file}: `name = \"{}\"` must match the file name",
            w.name
        ));
    }
    Ok(Preset {
        name: w.name,
        display_name: w.display_name,
        kind: w.kind,
        endpoint: w.endpoint,
        default_region: w.default_region,
        regions: w.regions,
        path_style: w.path_style,
        notes: w.notes,
        checksums: w.checksums,
        limits,
        prices,
        quirks: w.quirks,
        file: file.to_string(),
    })
}

/// Every preset, in file-name order. A broken catalog file is a build defect: the test
/// `every_catalog_file_parses` catches it before release.
pub fn all() -> &'static [Preset] {
    static ALL: OnceLock<Vec<Preset>> = OnceLock::new();
    ALL.get_or_init(|| {
        embedded::FILES
            .iter()
            .map(|(f, t)| parse(f, t).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    })
}

/// A preset by name.
pub fn find(name: &str) -> Option<&'static Preset> {
    all().iter().find(|p| p.name == name)
}

/// All preset names.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name.as_str()).collect()
}

/// The limits that apply to a store of `kind` when no preset says otherwise.
pub fn default_limits(kind: StoreType) -> Limits {
    const MIB: u64 = 1 << 20;
    match kind {
        // S3's documented limits, which GCS's and Azure's XML/Block APIs also satisfy:
        // https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html
        StoreType::S3 | StoreType::Gcs => Limits {
            min_part_size: 5 * MIB,
            max_part_size: 5 * 1024 * MIB,
            max_parts: 10_000,
            max_object_size: 5 << 40,
        },
        // Azure block blobs: 50,000 blocks of up to 4000 MiB.
        StoreType::Azure => Limits {
            min_part_size: 1,
            max_part_size: 4000 * MIB,
            max_parts: 50_000,
            max_object_size: 190 << 40,
        },
        StoreType::Local | StoreType::Memory => Limits {
            min_part_size: 1,
            max_part_size: u64::MAX / 2,
            max_parts: u64::MAX / 2,
            max_object_size: u64::MAX / 2,
        },
    }
}

/// docs/providers.md, generated from the catalog (a test keeps the file in step).
pub fn markdown() -> String {
    let mut s = String::from(
        "# Providers\n\n<!-- Generated from providers/*.toml by `FERRY_BLESS=1 cargo test --test docs`; do not edit. -->\n\n\
         A plan's provider may name a preset (`preset = \"NAME\"`) instead of spelling out endpoint,\n\
         addressing and limits. Prices drive `ferry plan`'s estimate; each carries the date and the page\n\
         it came from, and is per the unit the vendor bills in (GB = 10^9 bytes, GiB = 2^30, TB = 10^12,\n\
         TiB = 2^40). Internet egress is in monthly volume tiers, applied progressively. None includes\n\
         free tiers, minimum storage durations or subscription bases.\n\
         Adding an S3-compatible vendor is one new file in `providers/` (copy `aws.toml`), nothing else.\n\n\
         Credentials of every `s3` provider, preset or not, come from the keys its `*-env` keys name, else\n\
         from the AWS SDK's default chain, in this order: environment (`AWS_ACCESS_KEY_ID`, ...), profile\n\
         (`profile` in the plan, else `AWS_PROFILE`: static keys, SSO, `role_arn` + `source_profile`,\n\
         `credential_process`), web identity, ECS and EKS Pod Identity, EC2 instance role (IMDSv2); with\n\
         `role-arn`, that role is assumed on top. They are refreshed before they expire. Endpoint: the\n\
         plan's, else the preset's, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`. See\n\
         [plan.md](plan.md#where-each-type-gets-its-credentials).\n\n",
    );
    for p in all() {
        s += &describe(p);
    }
    s
}

/// A preset as a person reads it (`ferry providers show`, docs/providers.md).
pub fn describe(p: &Preset) -> String {
    let l = &p.limits;
    let pr = &p.prices;
    let mut s = format!("## {} (`{}`)\n\n", p.display_name, p.name);
    s += &format!("- type: `{}`\n", p.kind);
    if let Some(e) = &p.endpoint {
        s += &format!("- endpoint: `{e}`\n");
    }
    if let Some(r) = &p.default_region {
        s += &format!("- default region: `{r}`\n");
    }
    if !p.regions.is_empty() {
        s += &format!("- regions: {}\n", p.regions.join(", "));
    }
    s += &format!("- path-style addressing: {}\n", if p.path_style { "yes" } else { "no" });
    s += &format!(
        "- checksums: single-part ETag is MD5: {}; native: {}\n",
        if p.checksums.md5_etag { "yes" } else { "no" },
        if p.checksums.native.is_empty() {
            "none".to_string()
        } else {
            p.checksums.native.join(", ")
        }
    );
    s += &format!(
        "- limits: parts of {} to {} bytes, at most {} parts, objects up to {} bytes\n",
        l.min_part_size, l.max_part_size, l.max_parts, l.max_object_size
    );
    s += &describe_prices(pr);
    if !p.quirks.sorted_listing {
        s += "- listing order: not byte order (ferry pairs listings through a map, not a streaming merge)\n";
    }
    if p.quirks.backslash_is_slash {
        s += "- keys: `\\` is stored as `/` (keys with `\\` are reported as not copied)\n";
    }
    if !p.notes.is_empty() {
        s += &format!("- notes: {}\n", p.notes);
    }
    s + "\n"
}

/// The price lines of [`describe`], in the vendor's own unit.
fn describe_prices(pr: &Prices) -> String {
    let u = pr.unit.name();
    let mut egress: Vec<String> = pr
        .egress_internet
        .iter()
        .map(|t| match t.up_to {
            Some(b) => format!("{} up to {}", t.price, shown_size(b)),
            None if pr.egress_internet.len() > 1 => format!("then {}", t.price),
            None => t.price.to_string(),
        })
        .collect();
    if pr.free_egress_storage_multiple > 0.0 {
        egress.push(format!(
            "free up to {}x the data stored",
            pr.free_egress_storage_multiple
        ));
    }
    let mut s = format!(
        "- prices ({} per {u}, as of {}, from {}): egress to the internet {} per {u}; to another region of the same vendor: {}; \
         within a region: {}; storage {} per {u}-month; per 1,000 requests: LIST {}, GET {}, PUT {}\n",
        pr.currency,
        pr.as_of,
        pr.source,
        egress.join(", "),
        pr.egress_inter_region,
        pr.egress_same_region,
        pr.storage_per_month,
        pr.list_per_1000,
        pr.get_per_1000,
        pr.put_per_1000
    );
    for r in &pr.retrieval {
        s += &format!(
            "- reading from archive class `{}` ({}): {} per {u} restored + {} per 1,000 restore requests\n",
            r.class, r.option, r.per_unit, r.per_1000
        );
    }
    s
}

/// A tier boundary as the vendor writes it: `10 TiB`, `1 TB`, else bytes.
fn shown_size(b: u64) -> String {
    for (unit, size) in [
        ("TiB", 1u64 << 40),
        ("TB", 1_000_000_000_000),
        ("GiB", 1 << 30),
        ("GB", 1_000_000_000),
    ] {
        if b % size == 0 {
            return format!("{} {unit}", b / size);
        }
    }
    format!("{b} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped preset parses, and each one spoiled in a way a price edit could spoil it
    /// (a unit no vendor bills in, overlapping tiers, no date, no page) is refused.
    #[test]
    fn every_catalog_file_parses() {
        assert!(!embedded::FILES.is_empty());
        for (f, t) in embedded::FILES {
            parse(f, t).unwrap();
            // A key's whole value, a multi-line array included.
            let value = |key: &str| {
                let start = t.find(&format!("\n{key} =")).unwrap() + 1;
                let line_end = start + t[start..].find('\n').unwrap();
                let end = if t[..line_end].ends_with('[') {
                    line_end + t[line_end..].find("\n]").unwrap() + 2
                } else {
                    line_end
                };
                t[start..end].to_string()
            };
            let spoiled = [
                (value("unit"), "unit = \"gigabytes\"", "gigabytes"),
                (
                    value("egress-internet"),
                    "egress-internet = [{ up-to = \"10TB\", price = 0.1 }, { up-to = \"5TB\", price = 0.1 }, { price = 0.1 }]",
                    "overlap",
                ),
                (value("as-of"), "", "as-of"),
                (value("source"), "", "source"),
            ];
            for (old, new, named) in spoiled {
                let e = parse(f, &t.replace(&old, new)).unwrap_err();
                assert!(e.contains(named), "{f} without `{old}`: {e}");
            }
        }
        assert!(find("aws").is_some());
    }

    #[test]
    fn endpoint_pattern_checks_region() {
        let aws = find("aws").unwrap();
        assert_eq!(
            aws.endpoint_for(Some("eu-west-1")).unwrap().unwrap(),
            "https://s3.eu-west-1.amazonaws.com"
        );
        assert!(aws.endpoint_for(Some("mars-1")).unwrap_err().contains("mars-1"));
    }
}

//! A preset's prices, as the vendor bills them: in its own unit (GB, GiB, TB or TiB: a vendor's
//! "GB" is not always 10^9 bytes), internet egress in volume tiers applied progressively,
//! same-region and inter-region transfer, a free egress allowance tied to storage (B2), and
//! archive retrieval fees per storage class. Checked when a preset is parsed, so a bad unit,
//! overlapping tiers or a price without its date and page fails the catalog test.

use serde::{Deserialize, Serialize};

use crate::units::parse_size;

/// The quantity a vendor's per-unit prices are quoted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Unit {
    /// 10^9 bytes.
    #[serde(rename = "GB")]
    Gb,
    /// 2^30 bytes.
    #[serde(rename = "GiB")]
    Gib,
    /// 10^12 bytes.
    #[serde(rename = "TB")]
    Tb,
    /// 2^40 bytes.
    #[serde(rename = "TiB")]
    Tib,
}

impl Unit {
    pub fn bytes(self) -> f64 {
        match self {
            Unit::Gb => 1e9,
            Unit::Gib => (1u64 << 30) as f64,
            Unit::Tb => 1e12,
            Unit::Tib => (1u64 << 40) as f64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Unit::Gb => "GB",
            Unit::Gib => "GiB",
            Unit::Tb => "TB",
            Unit::Tib => "TiB",
        }
    }
}

/// One band of a tiered price: `price` per unit for the volume from the previous band's end up
/// to `up_to` bytes in a month; the last band has no end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tier {
    pub up_to: Option<u64>,
    pub price: f64,
}

/// The fee for reading an object stored in an archive class: it must be restored (rehydrated)
/// first, billed per unit restored and per 1,000 restore requests.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Retrieval {
    /// The class as the vendor's API names it (`GLACIER`, `DEEP_ARCHIVE`, `Archive`).
    pub class: String,
    /// Which retrieval option the figures are for (standard, bulk, high priority...).
    pub option: String,
    pub per_unit: f64,
    pub per_1000: f64,
}

/// Prices in `currency` and per `unit`, as published at `source` on `as_of`.
#[derive(Debug, Clone, Serialize)]
pub struct Prices {
    pub currency: String,
    pub as_of: String,
    pub source: String,
    pub unit: Unit,
    /// Egress to the internet (and to other vendors), by monthly volume.
    pub egress_internet: Vec<Tier>,
    /// Transfer to another region of the same vendor.
    pub egress_inter_region: f64,
    /// Transfer within one region of the same vendor.
    pub egress_same_region: f64,
    /// Egress is free up to this multiple of the data stored (B2: 3); 0 when there is none.
    pub free_egress_storage_multiple: f64,
    pub storage_per_month: f64,
    pub list_per_1000: f64,
    pub get_per_1000: f64,
    pub put_per_1000: f64,
    pub retrieval: Vec<Retrieval>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RateWire {
    Flat(f64),
    Tiers(Vec<TierWire>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TierWire {
    up_to: Option<String>,
    price: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct PricesWire {
    currency: String,
    as_of: String,
    source: String,
    unit: Unit,
    egress_internet: RateWire,
    egress_inter_region: f64,
    egress_same_region: f64,
    #[serde(default)]
    free_egress_storage_multiple: f64,
    storage_per_month: f64,
    list_per_1000: f64,
    get_per_1000: f64,
    put_per_1000: f64,
    #[serde(default)]
    retrieval: Vec<Retrieval>,
}

impl PricesWire {
    /// The prices, or what is wrong with them (the message names the key).
    pub(super) fn check(self) -> Result<Prices, String> {
        let date_ok = self.as_of.len() == 10
            && self
                .as_of
                .char_indices()
                .all(|(i, c)| if i == 4 || i == 7 { c == '-' } else { c.is_ascii_digit() });
        if !date_ok {
            return Err(format!("prices.as-of `{}` is not a date (YYYY-MM-DD)", self.as_of));
        }
        if self.source.trim().is_empty() || self.currency.trim().is_empty() {
            return Err("prices.source and prices.currency must not be empty".into());
        }
        let egress_internet = tiers(self.egress_internet)?;
        let mut figures = vec![
            ("egress-inter-region", self.egress_inter_region),
            ("egress-same-region", self.egress_same_region),
            ("free-egress-storage-multiple", self.free_egress_storage_multiple),
            ("storage-per-month", self.storage_per_month),
            ("list-per-1000", self.list_per_1000),
            ("get-per-1000", self.get_per_1000),
            ("put-per-1000", self.put_per_1000),
        ];
        figures.extend(egress_internet.iter().map(|t| ("egress-internet", t.price)));
        for r in &self.retrieval {
            figures.extend([("retrieval.per-unit", r.per_unit), ("retrieval.per-1000", r.per_1000)]);
            if r.class.is_empty() || self.retrieval.iter().filter(|o| o.class == r.class).count() > 1 {
                return Err(format!(
                    "prices.retrieval: class `{}` is empty or listed twice",
                    r.class
                ));
            }
        }
        if let Some((key, v)) = figures.iter().find(|(_, v)| !v.is_finite() || *v < 0.0) {
            return Err(format!("prices.{key} = {v} is not a price"));
        }
        Ok(Prices {
            currency: self.currency,
            as_of: self.as_of,
            source: self.source,
            unit: self.unit,
            egress_internet,
            egress_inter_region: self.egress_inter_region,
            egress_same_region: self.egress_same_region,
            free_egress_storage_multiple: self.free_egress_storage_multiple,
            storage_per_month: self.storage_per_month,
            list_per_1000: self.list_per_1000,
            get_per_1000: self.get_per_1000,
            put_per_1000: self.put_per_1000,
            retrieval: self.retrieval,
        })
    }
}

/// The tiers of a rate: each band ends above the previous one, and only the last is open.
fn tiers(w: RateWire) -> Result<Vec<Tier>, String> {
    let wire = match w {
        RateWire::Flat(price) => return Ok(vec![Tier { up_to: None, price }]),
        RateWire::Tiers(t) => t,
    };
    let mut out: Vec<Tier> = Vec::new();
    for (i, t) in wire.iter().enumerate() {
        let last = i + 1 == wire.len();
        let up_to = match (&t.up_to, last) {
            (Some(s), false) => Some(parse_size(s).map_err(|e| format!("prices.egress-internet: {e}"))?),
            (None, true) => None,
            _ => return Err("prices.egress-internet: every tier but the last needs `up-to`; the last has none".into()),
        };
        let from = out.last().and_then(|p| p.up_to).unwrap_or(0);
        if up_to.is_some_and(|u| u <= from) {
            return Err(format!(
                "prices.egress-internet: tier {} ends at {} bytes, not above the previous tier's end ({from}): tiers overlap",
                i + 1,
                up_to.unwrap_or(0)
            ));
        }
        out.push(Tier { up_to, price: t.price });
    }
    if out.is_empty() {
        return Err("prices.egress-internet: no tiers".into());
    }
    Ok(out)
}

impl Prices {
    /// `bytes` in the vendor's unit.
    pub fn units(&self, bytes: u64) -> f64 {
        bytes as f64 / self.unit.bytes()
    }

    /// Internet egress for `bytes` moved in one month, each tier's price applied to the part of
    /// the volume that falls in it (not the whole volume at the tier it reaches).
    pub fn internet_egress(&self, bytes: u64) -> f64 {
        let mut cost = 0.0;
        let mut from = 0u64;
        for t in &self.egress_internet {
            let to = t.up_to.map_or(bytes, |u| u.min(bytes));
            if to > from {
                cost += self.units(to - from) * t.price;
            }
            match t.up_to {
                Some(u) if u < bytes => from = u,
                _ => break,
            }
        }
        cost
    }

    /// The first tier's internet egress per 10^9 bytes, for tables comparing vendors.
    pub fn egress_internet_per_gb(&self) -> f64 {
        self.egress_internet[0].price * 1e9 / self.unit.bytes()
    }

    /// Storage per 10^9 bytes and month, for tables comparing vendors.
    pub fn storage_per_gb_month(&self) -> f64 {
        self.storage_per_month * 1e9 / self.unit.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(extra: &str) -> Result<Prices, String> {
        let text = format!(
            "currency = \"USD\"\nas-of = \"2025-06-01\"\nsource = \"https://example.com/pricing\"\n\
             egress-inter-region = 0.02\negress-same-region = 0.0\nstorage-per-month = 0.02\n\
             list-per-1000 = 0.005\nget-per-1000 = 0.0004\nput-per-1000 = 0.005\n{extra}"
        );
        toml::from_str::<PricesWire>(&text).map_err(|e| e.to_string())?.check()
    }

    #[test]
    fn a_bad_unit_overlapping_tiers_or_missing_provenance_are_refused() {
        assert!(wire("unit = \"GB\"\negress-internet = 0.09\n").is_ok());
        let bad_unit = wire("unit = \"gigabyte\"\negress-internet = 0.09\n").unwrap_err();
        assert!(bad_unit.contains("gigabyte"), "{bad_unit}");
        let overlap = wire(
            "unit = \"GB\"\negress-internet = [{ up-to = \"50TB\", price = 0.09 }, \
             { up-to = \"10TB\", price = 0.085 }, { price = 0.05 }]\n",
        )
        .unwrap_err();
        assert!(overlap.contains("overlap"), "{overlap}");
        let open_middle =
            wire("unit = \"GB\"\negress-internet = [{ price = 0.09 }, { up-to = \"10TB\", price = 0.05 }]\n")
                .unwrap_err();
        assert!(open_middle.contains("up-to"), "{open_middle}");
        let no_date = toml::from_str::<PricesWire>(
            "currency = \"USD\"\nsource = \"x\"\nunit = \"GB\"\negress-internet = 0.1\negress-inter-region = 0.0\n\
             egress-same-region = 0.0\nstorage-per-month = 0.0\nlist-per-1000 = 0.0\nget-per-1000 = 0.0\nput-per-1000 = 0.0\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(no_date.contains("as-of"), "{no_date}");
        let text = "currency = \"USD\"\nas-of = \"June 2025\"\nsource = \"\"\nunit = \"GB\"\negress-internet = 0.1\n\
                    egress-inter-region = 0.0\negress-same-region = 0.0\nstorage-per-month = 0.0\n\
                    list-per-1000 = 0.0\nget-per-1000 = 0.0\nput-per-1000 = 0.0\n";
        let bad_date = toml::from_str::<PricesWire>(text).unwrap().check().unwrap_err();
        assert!(bad_date.contains("as-of"), "{bad_date}");
        let no_source = toml::from_str::<PricesWire>(&text.replace("June 2025", "2025-06-01"))
            .unwrap()
            .check()
            .unwrap_err();
        assert!(no_source.contains("source"), "{no_source}");
    }

    /// 500 TB (10^12 bytes each) out of a vendor with AWS's tiers, by hand: 10 TB at 0.09,
    /// 40 TB at 0.085, 100 TB at 0.07, the remaining 350 TB at 0.05, in thousands of GB.
    #[test]
    fn tiers_apply_progressively() {
        let p = wire(
            "unit = \"GB\"\negress-internet = [{ up-to = \"10TB\", price = 0.09 }, { up-to = \"50TB\", price = 0.085 }, \
             { up-to = \"150TB\", price = 0.07 }, { price = 0.05 }]\n",
        )
        .unwrap();
        let tb = 1_000_000_000_000u64;
        let by_hand = 10_000.0 * 0.09 + 40_000.0 * 0.085 + 100_000.0 * 0.07 + 350_000.0 * 0.05;
        assert_eq!(by_hand, 28_800.0);
        assert!((p.internet_egress(500 * tb) - 28_800.0).abs() < 1e-6);
        // Inside the first tier, and exactly at a boundary.
        assert!((p.internet_egress(tb) - 1_000.0 * 0.09).abs() < 1e-9);
        assert!((p.internet_egress(50 * tb) - (900.0 + 3_400.0)).abs() < 1e-6);
        assert_eq!(p.internet_egress(0), 0.0);
    }
}

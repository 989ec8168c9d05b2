//! The dry-run estimate: what a job will cost and how long it will take, from the counts the
//! classification produced (`sync::JobReport`) and the prices in the provider catalog.
//!
//! Pure arithmetic, no I/O: egress out of the source for the bytes to copy (internet, another
//! region of the same vendor, or the same region; tiers and free allowances applied), requests at
//! both ends by class, a month of storage at the destination for what it will hold, what
//! restoring from each archive class would add, and the time at a given bandwidth. Every figure names the prices it used (vendor, date, page) and the
//! assumptions behind it; a provider without a preset has no known prices, and says so.

use serde::Serialize;

use crate::catalog::{self, Preset, Prices};
use crate::plan::{ProviderSpec, StoreType};
use crate::sync::JobReport;

/// The estimate for one job.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Estimate {
    /// Bytes that will cross from source to destination.
    pub transfer_bytes: u64,
    /// Which of the source's transfer prices applies.
    pub egress_rule: EgressRule,
    /// Egress out of the source, less any free allowance, tiers applied progressively.
    pub egress: Option<f64>,
    /// Requests at the source (LIST pages and GETs).
    pub source_requests: Option<f64>,
    /// Requests at the destination (LIST pages and PUT-class).
    pub destination_requests: Option<f64>,
    /// One month of storage at the destination for everything it will hold after the run.
    pub destination_storage_month: Option<f64>,
    /// Sum of the above, when all are known and in one currency.
    pub total: Option<f64>,
    pub source_currency: Option<String>,
    pub destination_currency: Option<String>,
    /// What restoring the objects to move would add if they sit in an archive class of the
    /// source, per class (in the source's currency; not in `total`: a listing does not tell
    /// ferry each object's class).
    pub retrieval_if_archived: Vec<RetrievalCost>,
    /// What restoring the source objects the listing reported in an archive class would cost,
    /// per class and option, from their actual bytes and count (in the source's currency; not
    /// in `total`: `run` does not copy them).
    pub retrieval_archived: Vec<RetrievalCost>,
    /// Set by a dry run whose destination could not be listed (no bucket yet, or no answer):
    /// why. Everything was then priced as new, from the preset alone.
    pub destination_not_reached: Option<String>,
    /// Seconds to move `transfer_bytes` at the given bandwidth.
    pub seconds: Option<f64>,
    pub bandwidth_bytes_per_second: Option<f64>,
    /// Which catalog entries priced each side: `name (as of DATE, SOURCE)`.
    pub prices_used: Vec<String>,
    pub assumptions: Vec<String>,
}

/// Which transfer price a job pays at its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EgressRule {
    /// To another vendor: internet egress, by volume tier.
    Internet,
    /// Between two regions of one vendor (or one vendor whose regions are not both known).
    InterRegion,
    /// Within one region of one vendor.
    SameRegion,
}

/// The cost of restoring the moved objects from one archive class.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RetrievalCost {
    pub class: String,
    pub option: String,
    pub cost: f64,
}

/// The catalog entry that prices a provider: its preset, else the vendor its type implies.
pub fn pricing_preset(spec: &ProviderSpec) -> Option<&'static Preset> {
    if let Some(p) = spec.preset {
        return Some(p);
    }
    match spec.store_type() {
        StoreType::Local => catalog::find("local"),
        StoreType::Memory => catalog::find("memory"),
        StoreType::Gcs if spec.endpoint().is_none() => catalog::find("gcs"),
        StoreType::Azure if spec.endpoint().is_none() => catalog::find("azure"),
        StoreType::S3 if spec.endpoint().is_none() => catalog::find("aws"),
        // A custom endpoint without a preset could be anyone's.
        _ => None,
    }
}

/// Which price lists an estimate uses, and what it assumes (a side without a preset has no
/// prices).
fn prices_and_assumptions(
    src: &ProviderSpec,
    dst: &ProviderSpec,
    sp: Option<&'static Preset>,
    dp: Option<&'static Preset>,
) -> (Vec<String>, Vec<String>) {
    let mut prices_used = Vec::new();
    let mut assumptions = vec![
        "list prices as published on the date shown, in the unit each vendor bills in (GB, GiB, TB or TiB); \
         no free tier or committed-use discount"
            .to_string(),
        "internet egress tiers are applied progressively from zero, as if this job were the source's only egress that month"
            .to_string(),
        "minimum storage durations and subscription bases are not modelled; archive retrieval is listed per class \
         (retrieval_if_archived), not in the total"
            .to_string(),
        format!(
            "LIST requests: one per {} keys listed (after include/exclude)",
            crate::pairing::LIST_PAGE
        ),
        "a multipart upload is billed as create + one request per part + complete, all PUT-class".to_string(),
    ];
    for (side, spec, p) in [("source", src, sp), ("destination", dst, dp)] {
        match p {
            Some(p) => prices_used.push(format!(
                "{side} `{}`: {} ({} per {}, as of {}, {})",
                spec.name,
                p.display_name,
                p.prices.currency,
                p.prices.unit.name(),
                p.prices.as_of,
                p.prices.source
            )),
            None => assumptions.push(format!(
                "{side} `{}` has no preset: its prices are unknown (add `preset = \"...\"` to the plan)",
                spec.name
            )),
        }
    }
    (prices_used, assumptions)
}

/// Internet egress to another vendor; between regions or within one when both sides are one
/// vendor (same preset), since vendors price their own network far below the internet.
fn egress_rule(
    src: &ProviderSpec,
    dst: &ProviderSpec,
    sp: Option<&Preset>,
    dp: Option<&Preset>,
    assumptions: &mut Vec<String>,
) -> EgressRule {
    if !matches!((sp, dp), (Some(a), Some(b)) if a.name == b.name) {
        return EgressRule::Internet;
    }
    match (src.region(), dst.region()) {
        (Some(a), Some(b)) if a == b => {
            assumptions.push("source and destination are one vendor and region: same-region transfer price".into());
            EgressRule::SameRegion
        }
        (Some(_), Some(_)) => {
            assumptions.push("source and destination are one vendor, two regions: inter-region transfer price".into());
            EgressRule::InterRegion
        }
        _ => {
            assumptions.push(
                "source and destination are one vendor, regions not both known: inter-region transfer price".into(),
            );
            EgressRule::InterRegion
        }
    }
}

/// Egress for `bytes`, less the free allowance of a vendor that ties one to storage (B2), with
/// `stored` (what the job lists at the source) standing for the data stored there.
pub fn egress_cost(p: &Prices, rule: EgressRule, bytes: u64, stored: u64) -> f64 {
    let free = (p.free_egress_storage_multiple * stored as f64).min(u64::MAX as f64) as u64;
    let billable = bytes.saturating_sub(free);
    match rule {
        EgressRule::Internet => p.internet_egress(billable),
        EgressRule::InterRegion => p.units(billable) * p.egress_inter_region,
        EgressRule::SameRegion => p.units(billable) * p.egress_same_region,
    }
}

/// What restoring `bytes` in `objects` objects costs from each archive class of the source.
fn retrieval(p: &Prices, bytes: u64, objects: u64) -> Vec<RetrievalCost> {
    p.retrieval
        .iter()
        .map(|r| RetrievalCost {
            class: r.class.clone(),
            option: r.option.clone(),
            cost: p.units(bytes) * r.per_unit + objects as f64 / 1000.0 * r.per_1000,
        })
        .collect()
}

/// Restoring what the listing reported archived: each class's prices on its own bytes.
fn archived_retrieval(p: &Prices, report: &JobReport) -> Vec<RetrievalCost> {
    let mut out = Vec::new();
    for (class, n) in &report.archived {
        let mut one = retrieval(p, n.bytes, n.objects);
        one.retain(|r| r.class.eq_ignore_ascii_case(class));
        out.extend(one);
    }
    out
}

/// Estimates a job from its dry-run report. `bandwidth`: bytes per second, if known.
pub fn estimate(report: &JobReport, src: &ProviderSpec, dst: &ProviderSpec, bandwidth: Option<f64>) -> Estimate {
    let transfer_bytes = report.new.bytes + report.changed.bytes;
    let dest_bytes_after = report.unchanged.bytes
        + transfer_bytes
        + if report.deleted.objects > 0 {
            0
        } else {
            report.extraneous.bytes
        };
    let (sp, dp) = (pricing_preset(src), pricing_preset(dst));
    let (prices_used, mut assumptions) = prices_and_assumptions(src, dst, sp, dp);
    let egress_rule = egress_rule(src, dst, sp, dp, &mut assumptions);
    if let Some(p) = sp.filter(|p| p.prices.free_egress_storage_multiple > 0.0) {
        assumptions.push(format!(
            "`{}` gives free egress up to {}x the data stored, taken as the {} bytes the job lists there",
            src.name, p.prices.free_egress_storage_multiple, report.source.bytes
        ));
    }
    let r = &report.requests;
    let egress = sp.map(|p| egress_cost(&p.prices, egress_rule, transfer_bytes, report.source.bytes));
    let source_requests = sp.map(|p| {
        r.source_list as f64 / 1000.0 * p.prices.list_per_1000 + r.source_get as f64 / 1000.0 * p.prices.get_per_1000
    });
    let destination_requests = dp.map(|p| {
        r.destination_list as f64 / 1000.0 * p.prices.list_per_1000
            + r.destination_put as f64 / 1000.0 * p.prices.put_per_1000
    });
    let destination_storage_month = dp.map(|p| p.prices.units(dest_bytes_after) * p.prices.storage_per_month);
    let parts = [egress, source_requests, destination_requests, destination_storage_month];
    let total = match (sp, dp) {
        (Some(a), Some(b)) if a.prices.currency == b.prices.currency => parts.iter().copied().sum(),
        (Some(_), Some(_)) => {
            assumptions.push("source and destination bill in different currencies: no total".into());
            None
        }
        _ => None,
    };
    let moved_objects = report.new.objects + report.changed.objects;
    Estimate {
        transfer_bytes,
        egress_rule,
        egress,
        source_requests,
        destination_requests,
        destination_storage_month,
        total,
        source_currency: sp.map(|p| p.prices.currency.clone()),
        destination_currency: dp.map(|p| p.prices.currency.clone()),
        retrieval_if_archived: sp.map_or_else(Vec::new, |p| retrieval(&p.prices, transfer_bytes, moved_objects)),
        retrieval_archived: sp.map_or_else(Vec::new, |p| archived_retrieval(&p.prices, report)),
        destination_not_reached: None,
        seconds: bandwidth.filter(|b| *b > 0.0).map(|b| transfer_bytes as f64 / b),
        bandwidth_bytes_per_second: bandwidth,
        prices_used,
        assumptions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;
    use crate::sync::{Counts, Requests};

    const TIB: u64 = 1 << 40;
    const TB: u64 = 1_000_000_000_000;

    /// A plan with providers `a` and `b` (presets and regions given), and the estimate of a job
    /// moving `bytes` in `objects` objects from `a` to an empty `b`, each object one PUT.
    fn estimate_of(a: (&str, &str), b: (&str, &str), bytes: u64, objects: u64) -> Estimate {
        let plan = Plan::from_str(
            std::path::Path::new("audit.toml"),
            &format!(
                "[providers.a]\npreset = \"{}\"\nbucket = \"a\"\nregion = \"{}\"\n\
                 [providers.b]\npreset = \"{}\"\nbucket = \"b\"\nregion = \"{}\"\n\
                 [[objects]]\nname = \"all\"\nfrom = \"a:\"\nto = \"b:\"\n",
                a.0, a.1, b.0, b.1
            ),
        )
        .unwrap();
        let all = Counts { objects, bytes };
        let report = JobReport {
            source: all,
            new: all,
            requests: Requests {
                source_list: objects.div_ceil(1000),
                source_get: objects,
                destination_list: 1,
                destination_put: objects,
            },
            ..Default::default()
        };
        estimate(&report, &plan.providers["a"], &plan.providers["b"], Some(1e9 / 8.0))
    }

    fn cents(v: Option<f64>) -> String {
        format!("{:.2}", v.unwrap())
    }

    /// The first worked example in docs/audit.md: 1 TiB in 1,000,000 objects, AWS S3 us-east-1
    /// to Wasabi us-east-1. Every figure is written out by hand from the catalog's prices.
    #[test]
    fn one_tib_aws_to_wasabi_matches_the_hand_calculation() {
        let e = estimate_of(("aws", "us-east-1"), ("wasabi", "us-east-1"), TIB, 1_000_000);
        // AWS bills per GiB: 1 TiB = 1,024 GiB at 0.09 (first tier) = 92.16 (it was 1,099.51
        // "GB" of 10^9 bytes, 98.96).
        assert_eq!(e.egress_rule, EgressRule::Internet);
        assert_eq!(cents(e.egress), "92.16");
        // 1,000 LIST pages at 0.005 per 1,000 + 1,000,000 GETs at 0.0004 per 1,000.
        assert_eq!(format!("{:.3}", e.source_requests.unwrap()), "0.405");
        assert_eq!(cents(e.destination_requests), "0.00");
        // Wasabi bills per TiB: 1 TiB at 6.99 (it was 1,099.51 x 0.00699 = 7.69).
        assert_eq!(cents(e.destination_storage_month), "6.99");
        // 92.16 + 0.405 + 0 + 6.99.
        assert_eq!(format!("{:.3}", e.total.unwrap()), "99.555");
        // 1 TiB at 125,000,000 bytes/s.
        assert_eq!(format!("{:.1}", e.seconds.unwrap()), "8796.1");
    }

    /// Binary against decimal units: 1 TB (10^12 bytes) is 931.32 GiB, so DigitalOcean's
    /// $0.02 per GiB-month comes to 18.63, not 20.00; GCS's first tier ($0.12 per GiB) to
    /// 111.76, not 120.00.
    #[test]
    fn per_gib_vendors_are_priced_per_gib() {
        let e = estimate_of(("aws", "us-east-1"), ("digitalocean", "nyc3"), TB, 1000);
        assert_eq!(cents(e.destination_storage_month), "18.63");
        let plan = Plan::from_str(
            std::path::Path::new("audit.toml"),
            "[providers.g]\ntype = \"gcs\"\nbucket = \"g\"\n[providers.r]\npreset = \"r2\"\nbucket = \"r\"\n\
             [[objects]]\nname = \"all\"\nfrom = \"g:\"\nto = \"r:\"\n",
        )
        .unwrap();
        let report = JobReport {
            new: Counts { objects: 1, bytes: TB },
            ..Default::default()
        };
        let e = estimate(&report, &plan.providers["g"], &plan.providers["r"], None);
        assert_eq!(cents(e.egress), "111.76");
    }

    /// AWS region to AWS region is inter-region transfer, $0.02 per GiB: 1 TiB costs 20.48, not
    /// the 98.96 of internet egress; within one region it is free.
    #[test]
    fn one_vendor_across_regions_pays_inter_region_transfer() {
        let e = estimate_of(("aws", "us-east-1"), ("aws", "eu-west-1"), TIB, 1000);
        assert_eq!(e.egress_rule, EgressRule::InterRegion);
        assert_eq!(cents(e.egress), "20.48");
        let e = estimate_of(("aws", "us-east-1"), ("aws", "us-east-1"), TIB, 1000);
        assert_eq!(e.egress_rule, EgressRule::SameRegion);
        assert_eq!(cents(e.egress), "0.00");
    }

    /// 500 TB out of AWS to the internet, by hand in GiB (AWS's tiers are in its binary TB):
    /// 10,240 GiB at 0.09 = 921.60, 40,960 at 0.085 = 3,481.60, 102,400 at 0.07 = 7,168.00,
    /// and the rest, 465,661.29 - 153,600 = 312,061.29 GiB, at 0.05 = 15,603.06: 27,174.26.
    /// A flat first-tier price per 10^9 bytes said 45,000.00.
    #[test]
    fn five_hundred_tb_out_of_aws_is_priced_by_tier() {
        let e = estimate_of(("aws", "us-east-1"), ("r2", "auto"), 500 * TB, 500_000);
        assert_eq!(cents(e.egress), "27174.26");
    }

    /// B2's egress is free up to 3x the data stored: moving out the 1 TB a job lists costs no
    /// egress (it was 1,000 GB x 0.01 = 10.00). Past the allowance, the overage is billed: 4 TB
    /// against 1 TB stored leaves 1 TB = 1,000 GB at 0.01 = 10.00.
    #[test]
    fn b2_egress_is_free_up_to_three_times_what_is_stored() {
        let e = estimate_of(("b2", "us-west-004"), ("wasabi", "us-east-1"), TB, 1000);
        assert_eq!(cents(e.egress), "0.00");
        let b2 = &catalog::find("b2").unwrap().prices;
        assert_eq!(
            format!("{:.2}", egress_cost(b2, EgressRule::Internet, 4 * TB, TB)),
            "10.00"
        );
    }

    /// Each retrieval figure as (class, cost to the cent).
    fn by_class(r: &[RetrievalCost]) -> Vec<(&str, String)> {
        r.iter().map(|r| (r.class.as_str(), format!("{:.2}", r.cost))).collect()
    }

    /// Restoring 1 TiB in 1,000,000 objects from S3 Glacier Flexible Retrieval (standard):
    /// 1,024 GiB at 0.01 = 10.24 plus 1,000 x 0.05 = 50.00 per 1,000 requests: 60.24; from
    /// Deep Archive: 1,024 x 0.02 = 20.48 plus 1,000 x 0.10 = 100.00: 120.48. Not in the total.
    #[test]
    fn archive_retrieval_is_priced_per_class() {
        let e = estimate_of(("aws", "us-east-1"), ("wasabi", "us-east-1"), TIB, 1_000_000);
        assert_eq!(
            by_class(&e.retrieval_if_archived),
            [("GLACIER", "60.24".to_string()), ("DEEP_ARCHIVE", "120.48".to_string())]
        );
        assert_eq!(format!("{:.3}", e.total.unwrap()), "99.555");
    }

    /// Retrieval of what the listing reported archived, each class on its own figures: 1 TiB
    /// in 1,000 GLACIER objects is 10.24 + 0.05 = 10.29; 2 TiB in 2,000 DEEP_ARCHIVE objects
    /// 40.96 + 0.20 = 41.16. No STANDARD object is priced for a retrieval.
    #[test]
    fn archived_bytes_are_priced_by_their_own_class() {
        let plan = Plan::from_str(
            std::path::Path::new("audit.toml"),
            "[providers.a]\npreset = \"aws\"\nbucket = \"a\"\nregion = \"us-east-1\"\n\
             [providers.b]\npreset = \"wasabi\"\nbucket = \"b\"\nregion = \"us-east-1\"\n\
             [[objects]]\nname = \"all\"\nfrom = \"a:\"\nto = \"b:\"\n",
        )
        .unwrap();
        let mut report = JobReport::default();
        report.archived.insert(
            "GLACIER".into(),
            Counts {
                objects: 1000,
                bytes: TIB,
            },
        );
        report.archived.insert(
            "DEEP_ARCHIVE".into(),
            Counts {
                objects: 2000,
                bytes: 2 * TIB,
            },
        );
        let e = estimate(&report, &plan.providers["a"], &plan.providers["b"], None);
        assert_eq!(
            by_class(&e.retrieval_archived),
            [("DEEP_ARCHIVE", "41.16".to_string()), ("GLACIER", "10.29".to_string())]
        );
    }
}

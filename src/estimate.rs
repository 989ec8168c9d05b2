//! The dry-run estimate: what a job will cost and how long it will take, from the counts the
//! classification produced (`sync::JobReport`) and the prices in the provider catalog.
//!
//! Pure arithmetic, no I/O: egress out of the source for the bytes to copy, requests at both
//! ends by class, a month of storage at the destination for what it will hold, and the time at a
//! given bandwidth. Every figure names the prices it used (vendor, date, page) and the
//! assumptions behind it; a provider without a preset has no known prices, and says so.

use serde::Serialize;

use crate::catalog::{self, Preset};
use crate::plan::{ProviderSpec, StoreType};
use crate::sync::JobReport;

const GB: f64 = 1e9;

/// The estimate for one job.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Estimate {
    /// Bytes that will cross from source to destination.
    pub transfer_bytes: u64,
    /// Egress out of the source (internet rate, or same-region rate for one vendor and region).
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
    /// Seconds to move `transfer_bytes` at the given bandwidth.
    pub seconds: Option<f64>,
    pub bandwidth_bytes_per_second: Option<f64>,
    /// Which catalog entries priced each side: `name (as of DATE, SOURCE)`.
    pub prices_used: Vec<String>,
    pub assumptions: Vec<String>,
}

/// The catalog entry that prices a provider: its preset, else the vendor its type implies.
pub fn pricing_preset(spec: &ProviderSpec) -> Option<&'static Preset> {
    if let Some(p) = spec.preset {
        return Some(p);
    }
    match spec.kind {
        StoreType::Local => catalog::find("local"),
        StoreType::Memory => catalog::find("memory"),
        StoreType::Gcs if spec.endpoint.is_none() => catalog::find("gcs"),
        StoreType::Azure if spec.endpoint.is_none() => catalog::find("azure"),
        StoreType::S3 if spec.endpoint.is_none() => catalog::find("aws"),
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
        "list prices as published on the date shown, first pricing tier, no free tier or committed-use discount"
            .to_string(),
        "minimum storage durations, retrieval fees and subscription bases are not modelled".to_string(),
        format!(
            "LIST requests: one per {} keys listed (after include/exclude)",
            crate::pairing::LIST_PAGE
        ),
        "a multipart upload is billed as create + one request per part + complete, all PUT-class".to_string(),
    ];
    for (side, spec, p) in [("source", src, sp), ("destination", dst, dp)] {
        match p {
            Some(p) => prices_used.push(format!(
                "{side} `{}`: {} ({}, as of {}, {})",
                spec.name, p.display_name, p.prices.currency, p.prices.as_of, p.prices.source
            )),
            None => assumptions.push(format!(
                "{side} `{}` has no preset: its prices are unknown (add `preset = \"...\"` to the plan)",
                spec.name
            )),
        }
    }
    (prices_used, assumptions)
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
    let same_place =
        matches!((sp, dp), (Some(a), Some(b)) if a.name == b.name) && src.region.is_some() && src.region == dst.region;
    if same_place {
        assumptions.push("source and destination are one vendor and region: same-region egress rate".into());
    }
    let r = &report.requests;
    let egress = sp.map(|p| {
        let rate = if same_place {
            p.prices.egress_same_region_per_gb
        } else {
            p.prices.egress_internet_per_gb
        };
        transfer_bytes as f64 / GB * rate
    });
    let source_requests = sp.map(|p| {
        r.source_list as f64 / 1000.0 * p.prices.list_per_1000 + r.source_get as f64 / 1000.0 * p.prices.get_per_1000
    });
    let destination_requests = dp.map(|p| {
        r.destination_list as f64 / 1000.0 * p.prices.list_per_1000
            + r.destination_put as f64 / 1000.0 * p.prices.put_per_1000
    });
    let destination_storage_month = dp.map(|p| dest_bytes_after as f64 / GB * p.prices.storage_per_gb_month);
    let total = match (
        sp,
        dp,
        egress,
        source_requests,
        destination_requests,
        destination_storage_month,
    ) {
        (Some(a), Some(b), Some(e), Some(s), Some(d), Some(m)) if a.prices.currency == b.prices.currency => {
            Some(e + s + d + m)
        }
        (Some(_), Some(_), ..) => {
            assumptions.push("source and destination bill in different currencies: no total".into());
            None
        }
        _ => None,
    };
    Estimate {
        transfer_bytes,
        egress,
        source_requests,
        destination_requests,
        destination_storage_month,
        total,
        source_currency: sp.map(|p| p.prices.currency.clone()),
        destination_currency: dp.map(|p| p.prices.currency.clone()),
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

    /// The worked example in docs/audit.md: 1 TiB in 1,000,000 objects, AWS S3 us-east-1 to
    /// Wasabi us-east-1, nothing at the destination yet, every object below one part.
    #[test]
    fn one_tib_aws_to_wasabi_matches_the_hand_calculation() {
        let plan = Plan::from_str(
            std::path::Path::new("audit.toml"),
            "[providers.aws]\npreset = \"aws\"\nbucket = \"a\"\nregion = \"us-east-1\"\n\
             [providers.wasabi]\npreset = \"wasabi\"\nbucket = \"b\"\nregion = \"us-east-1\"\n\
             [[objects]]\nname = \"all\"\nfrom = \"aws:\"\nto = \"wasabi:\"\n",
        )
        .unwrap();
        let tib = 1u64 << 40;
        let report = JobReport {
            source: Counts {
                objects: 1_000_000,
                bytes: tib,
            },
            new: Counts {
                objects: 1_000_000,
                bytes: tib,
            },
            requests: Requests {
                source_list: 1000,
                source_get: 1_000_000,
                destination_list: 1,
                destination_put: 1_000_000,
            },
            ..Default::default()
        };
        let e = estimate(
            &report,
            &plan.providers["aws"],
            &plan.providers["wasabi"],
            Some(1e9 / 8.0),
        );
        let aws = &catalog::find("aws").unwrap().prices;
        let wasabi = &catalog::find("wasabi").unwrap().prices;
        // By hand, from the catalog's figures (docs/audit.md writes them out):
        let gb = 1_099_511_627_776f64 / 1e9; // 1 TiB = 1,099.511627776 GB
        let egress = gb * aws.egress_internet_per_gb;
        let src_req = 1000.0 / 1000.0 * aws.list_per_1000 + 1_000_000.0 / 1000.0 * aws.get_per_1000;
        let dst_req = 1.0 / 1000.0 * wasabi.list_per_1000 + 1_000_000.0 / 1000.0 * wasabi.put_per_1000;
        let storage = gb * wasabi.storage_per_gb_month;
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-6;
        assert!(close(e.egress, egress));
        assert!(close(e.source_requests, src_req));
        assert!(close(e.destination_requests, dst_req));
        assert!(close(e.destination_storage_month, storage));
        assert!(close(e.total, egress + src_req + dst_req + storage));
        // The figures docs/audit.md prints, to the cent, for the catalog as shipped.
        assert_eq!(format!("{:.2}", e.egress.unwrap()), "98.96");
        assert_eq!(
            format!("{:.2}", e.total.unwrap()),
            format!("{:.2}", egress + src_req + dst_req + storage)
        );
        assert!((e.seconds.unwrap() - tib as f64 / 125e6).abs() < 1e-6);
    }
}

//! Bucket calls for whole accounts (issue 17): list an account's buckets, ask whether one
//! exists, create one. object_store works inside one bucket and has none of these, so each type
//! goes through the client ferry already holds for it: the AWS SDK for S3, the REST lister's
//! client and credentials for Azure and GCS. The store is opened with the provider as written
//! (`bucket = "*"`); these calls never use its bucket.

use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

use super::probe::sdk_reach_error;
use super::{RawLister, Store};
use crate::plan::ProviderKind;

/// A store type that has no buckets (local, memory).
fn no_buckets(store: &Store) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!(
            "provider `{}` ({}) has no buckets",
            store.spec.name,
            store.spec.store_type()
        )
        .into(),
    }
}

/// The GCS project of a whole-account provider (the plan requires it).
fn project(store: &Store) -> Result<&str, object_store::Error> {
    match &store.spec.kind {
        ProviderKind::Gcs(g) => g.project.as_deref().ok_or_else(|| object_store::Error::Generic {
            store: "GCS",
            source: format!("provider `{}` names no `project`", store.spec.name).into(),
        }),
        _ => Err(no_buckets(store)),
    }
}

impl Store {
    /// Every bucket (Azure: container) the credentials can list, by name, sorted.
    pub async fn list_buckets(&self) -> Result<Vec<String>, object_store::Error> {
        let mut names = match (&self.s3, &self.raw) {
            (Some(s3), _) => {
                let mut names = Vec::new();
                let mut pages = s3.client.list_buckets().into_paginator().send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| sdk_reach_error(s3, e))?;
                    names.extend(page.buckets().iter().filter_map(|b| b.name().map(str::to_string)));
                }
                names
            }
            (None, Some(RawLister::Azure(a))) => a.list_containers().await?,
            (None, Some(RawLister::Gcs(g))) => g.list_buckets(project(self)?).await?,
            (None, None) => return Err(no_buckets(self)),
        };
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Whether bucket `name` exists in this account. A bucket that exists but is another
    /// account's is an error (S3 answers 403), not "missing": creating it would fail too.
    pub async fn bucket_exists(&self, name: &str) -> Result<bool, object_store::Error> {
        match (&self.s3, &self.raw) {
            (Some(s3), _) => match s3.client.head_bucket().bucket(name).send().await {
                Ok(_) => Ok(true),
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
                Err(e) => Err(sdk_reach_error(s3, e)),
            },
            (None, Some(RawLister::Azure(a))) => a.container_exists(name).await,
            (None, Some(RawLister::Gcs(g))) => g.bucket_exists(name).await,
            (None, None) => Err(no_buckets(self)),
        }
    }

    /// Creates bucket `name` in the provider's region (S3: its `region` or its preset's; GCS:
    /// Google's default location). A bucket this account already owns is left as it is.
    pub async fn create_bucket(&self, name: &str) -> Result<(), object_store::Error> {
        match (&self.s3, &self.raw) {
            (Some(s3), _) => {
                let mut create = s3.client.create_bucket().bucket(name);
                // us-east-1 is the one region that takes no location constraint (S3 refuses
                // `us-east-1` as one).
                if let Some(region) = self.spec.region().filter(|r| *r != "us-east-1") {
                    create = create.create_bucket_configuration(
                        CreateBucketConfiguration::builder()
                            .location_constraint(BucketLocationConstraint::from(region))
                            .build(),
                    );
                }
                match create.send().await {
                    Ok(_) => Ok(()),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => Ok(()),
                    Err(e) => Err(sdk_reach_error(s3, e)),
                }
            }
            (None, Some(RawLister::Azure(a))) => a.create_container(name).await,
            (None, Some(RawLister::Gcs(g))) => g.create_bucket(project(self)?, name, None).await,
            (None, None) => Err(no_buckets(self)),
        }
    }
}

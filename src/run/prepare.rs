//! The safety ordering before a run writes anything: which steps, in which order, and the
//! stores they open. The order is data ([`steps`]) walked by one driver ([`in_order`]), so a
//! unit test can watch it without a server.

use std::collections::BTreeMap;
use std::path::Path;

use crate::journal::{Journal, StateLock};
use crate::plan::{DatabaseJob, Location, ObjectJob, Plan, ProviderKind, ProviderSpec, StoreType};
use crate::redact::redact;
use crate::store::Store;

use crate::error::{Error, Kind};

/// One step of preparing a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Connect to every database job's source (its size query): a wrong password or an
    /// unreachable server stops here, before any object or dump is written.
    ReachDatabases,
    /// Open every provider the jobs use and reach each location with one listing request; a
    /// missing local destination root stands in as empty (only checked creatable).
    ProbeStores,
    /// Take the state directory's lock (creating the directory): one run per state directory,
    /// or a second would copy the same objects and abort the first one's uploads as orphans.
    LockState,
    /// Open the journal; `read_only` for a dry run, which writes nothing anywhere.
    OpenJournal { read_only: bool },
    /// Create the root directories of local destinations.
    CreateLocalRoots,
    /// Create the destination buckets of expanded account jobs that do not exist yet
    /// (`create-buckets = true`, see `run::accounts`); until then they stand in as empty.
    CreateBuckets,
}

impl Step {
    /// Whether the step writes anything (a directory, a file).
    pub fn writes(self) -> bool {
        match self {
            Step::ReachDatabases | Step::ProbeStores => false,
            Step::OpenJournal { read_only } => !read_only,
            Step::LockState | Step::CreateLocalRoots | Step::CreateBuckets => true,
        }
    }
}

/// The safety ordering: every check before the first write. A dry run only probes the stores
/// and reads the journal.
pub fn steps(dry_run: bool) -> Vec<Step> {
    if dry_run {
        vec![Step::ProbeStores, Step::OpenJournal { read_only: true }]
    } else {
        vec![
            Step::ReachDatabases,
            Step::ProbeStores,
            Step::LockState,
            Step::OpenJournal { read_only: false },
            Step::CreateLocalRoots,
            Step::CreateBuckets,
        ]
    }
}

/// Does one step of the preparation.
pub(super) trait Preparation {
    async fn step(&mut self, step: Step) -> Result<(), Error>;
}

/// Takes `steps` in order; the first that fails stops the preparation.
pub(super) async fn in_order(p: &mut impl Preparation, steps: &[Step]) -> Result<(), Error> {
    for &s in steps {
        p.step(s).await?;
    }
    Ok(())
}

/// The state directory (journal, lock, manifests) must not be inside a local folder an object
/// job lists (a root and its prefix): its live journal would be copied as data, and a mirror
/// (`delete-extraneous`) would delete it as extraneous in the middle of the run.
pub(super) fn state_outside_listed_roots(plan: &Plan, jobs: &Selected, state_dir: &Path) -> Result<(), Error> {
    for job in &jobs.objects {
        for (loc, what) in [
            (&job.from, "copied with the data"),
            (&job.to, "overwritten, or deleted as extraneous by a mirror"),
        ] {
            if plan.local_location_holds(loc, state_dir) {
                return Err(Error::usage(format!(
                    "the state directory `{}` is inside `{loc}`, which job `{}` lists: its live journal would be {what}\n\
                     hint: set `state-dir` in [settings] or pass --state-dir with a folder outside it",
                    state_dir.display(),
                    job.name,
                )));
            }
        }
    }
    Ok(())
}

/// The jobs a command works on: all, or those named with --job.
pub(super) struct Selected<'a> {
    pub objects: Vec<&'a ObjectJob>,
    pub databases: Vec<&'a DatabaseJob>,
}

impl Selected<'_> {
    /// Every provider location the jobs touch, with whether it is written to.
    fn locations(&self) -> Vec<(Location, bool)> {
        let mut v = Vec::new();
        for j in &self.objects {
            v.push((j.from.clone(), false));
            v.push((j.to.clone(), true));
        }
        for d in &self.databases {
            // Probe the folder a dump key template writes into.
            let fixed = d.to.prefix.split('{').next().unwrap_or("");
            let dir = fixed.rfind('/').map(|i| &fixed[..=i]).unwrap_or("");
            v.push((
                Location {
                    provider: d.to.provider.clone(),
                    prefix: dir.to_string(),
                },
                true,
            ));
        }
        v
    }
}

pub(super) fn selected<'a>(plan: &'a Plan, jobs: &[String]) -> Result<Selected<'a>, Error> {
    for j in jobs {
        if !plan.objects.iter().any(|o| &o.name == j) && !plan.databases.iter().any(|d| &d.name == j) {
            let names: Vec<_> = plan
                .objects
                .iter()
                .map(|o| o.name.as_str())
                .chain(plan.databases.iter().map(|d| d.name.as_str()))
                .collect();
            return Err(Error::usage(format!(
                "no job named `{j}` in `{}` (jobs: {})",
                plan.file.display(),
                names.join(", ")
            )));
        }
    }
    let wanted = |n: &String| jobs.is_empty() || jobs.contains(n);
    Ok(Selected {
        objects: plan.objects.iter().filter(|o| wanted(&o.name)).collect(),
        databases: plan.databases.iter().filter(|d| wanted(&d.name)).collect(),
    })
}

/// The preparation that does the work.
pub(super) struct Real<'a> {
    plan: &'a Plan,
    jobs: &'a Selected<'a>,
    state: &'a Path,
    dry_run: bool,
    stores: BTreeMap<String, Store>,
    /// Dry run: destinations that could not be listed and stand in as empty, with why.
    unreached: Unreached,
    lock: Option<StateLock>,
    journal: Option<Journal>,
}

impl<'a> Real<'a> {
    pub fn new(plan: &'a Plan, jobs: &'a Selected<'a>, state: &'a Path, dry_run: bool) -> Real<'a> {
        Real {
            plan,
            jobs,
            state,
            dry_run,
            stores: BTreeMap::new(),
            unreached: Unreached::new(),
            lock: None,
            journal: None,
        }
    }

    /// The stores, journal and lock, once every step has been taken, and the destinations a
    /// dry run could not reach.
    pub fn finish(self) -> (BTreeMap<String, Store>, Journal, Option<StateLock>, Unreached) {
        (
            self.stores,
            self.journal.expect("the steps open the journal"),
            self.lock,
            self.unreached,
        )
    }
}

impl Preparation for Real<'_> {
    async fn step(&mut self, step: Step) -> Result<(), Error> {
        match step {
            Step::ReachDatabases => reach_databases(&self.jobs.databases).await,
            Step::ProbeStores => {
                let audit = self.dry_run.then_some(&mut self.unreached);
                self.stores = open_stores_or_stand_in(self.plan, self.jobs, audit).await?;
                Ok(())
            }
            Step::LockState => {
                let lock = StateLock::acquire(self.state)?;
                self.lock = Some(lock);
                Ok(())
            }
            Step::OpenJournal { read_only } => {
                self.journal = Some(open_journal(self.state, read_only)?);
                Ok(())
            }
            Step::CreateLocalRoots => create_local_destinations(self.plan, self.jobs, &mut self.stores),
            Step::CreateBuckets => super::accounts::create_buckets(self.plan, &mut self.stores).await,
        }
    }
}

async fn reach_databases(databases: &[&DatabaseJob]) -> Result<(), Error> {
    for db in databases {
        // The size query connects with the job's credentials.
        crate::dump::estimate_size(db).await.map_err(|e| {
            let kind = if database_unavailable(&e) {
                Kind::Unavailable
            } else {
                Kind::Usage
            };
            Error::of(
                kind,
                redact(&format!(
                    "database `{}` (plan line {}): cannot connect: {e}",
                    db.name, db.line
                )),
            )
        })?;
    }
    Ok(())
}

/// What the database clients (libpq's `psql`, `mariadb`) print when the server did not answer
/// or is not taking connections now, as opposed to refusing these credentials or this
/// database (`password authentication failed`, `Access denied`, `Unknown database`): a
/// client's exit status does not tell the two apart, its message does.
const DATABASE_UNAVAILABLE: &[&str] = &[
    "Connection refused",
    "could not connect to server",
    "timeout expired",
    "could not translate host name",
    "Network is unreachable",
    "No route to host",
    "the database system is starting up",
    "the database system is shutting down",
    "too many clients already",
    "Can't connect to",
    "Unknown server host",
    "Lost connection to server",
    "Too many connections",
];

/// Whether a database that could not be reached is "not available now" (exit 3) rather than
/// configured wrong (exit 2).
fn database_unavailable(e: &crate::dump::DumpError) -> bool {
    match e {
        crate::dump::DumpError::Tool { stderr, .. } => DATABASE_UNAVAILABLE.iter().any(|n| stderr.contains(n)),
        _ => false,
    }
}

pub(super) fn open_journal(state: &Path, read_only: bool) -> Result<Journal, Error> {
    let path = state.join("journal.sqlite");
    // A dry run, verify and status write nothing anywhere, not even a journal.
    let j = if read_only {
        Journal::open_read_only(&path)?
    } else {
        Journal::open(&path)?
    };
    Ok(j)
}

/// Destinations a dry run could not list, by provider name: the message to show.
pub(super) type Unreached = BTreeMap<String, String>;

/// Opens every provider the selected jobs use and reaches each with one listing request, so
/// missing credentials or an unreachable endpoint stop the run before anything is written. A
/// missing local destination root stands in as an empty store until every provider has
/// answered: a run that stops on a bad credential must not have created a directory first.
pub(super) async fn open_stores(plan: &Plan, jobs: &Selected<'_>) -> Result<BTreeMap<String, Store>, Error> {
    open_stores_or_stand_in(plan, jobs, None).await
}

/// [`open_stores`]; with `audit` (a dry run), an object job's destination that cannot be listed
/// because it does not exist yet (see [`priced_unlisted`]) stands in as empty and is recorded
/// there, so an audit can price a migration before the destination account or bucket exists.
async fn open_stores_or_stand_in(
    plan: &Plan,
    jobs: &Selected<'_>,
    mut audit: Option<&mut Unreached>,
) -> Result<BTreeMap<String, Store>, Error> {
    let locations = jobs.locations();
    let destinations: Vec<&str> = locations
        .iter()
        .filter(|(_, w)| *w)
        .map(|(l, _)| l.provider.as_str())
        .collect();
    let mut names: Vec<&str> = locations.iter().map(|(l, _)| l.provider.as_str()).collect();
    names.sort();
    names.dedup();
    let mut stores = BTreeMap::new();
    for name in names {
        let spec = &plan.providers[name];
        let store = if plan.buckets_to_create.contains(name) {
            Store::empty_stand_in(spec)
        } else {
            open_or_stand_in(spec, destinations.contains(&name))?
        };
        stores.insert(name.to_string(), store);
    }
    for (loc, _) in &locations {
        let store = &stores[&loc.provider];
        let Err(e) = store.probe(&loc.prefix).await else {
            continue;
        };
        let at = where_listed(store);
        let message = redact(&format!(
            "provider `{}` (plan line {}): cannot list `{}`{at}: {e}",
            loc.provider, store.spec.line, loc
        ));
        match audit.as_deref_mut() {
            Some(unreached) if priced_unlisted(jobs, &store.spec, &e) => {
                unreached.insert(
                    loc.provider.clone(),
                    format!(
                        "destination `{}` not reached: priced from the preset alone; nothing listed there ({message})",
                        loc.provider
                    ),
                );
                let stand_in = Store::empty_stand_in(&store.spec);
                stores.insert(loc.provider.clone(), stand_in);
            }
            _ => return Err(Error::of(probe_kind(&e), message)),
        }
    }
    Ok(stores)
}

/// Whether a dry run may price a provider it could not list as an empty destination: it is
/// only ever an object job's destination (a source that stood in as empty would predict
/// nothing to move), and its bucket does not exist, or it has prices of its own (a preset, or
/// the vendor its type implies) and its endpoint did not answer. A refused credential is not
/// "not there yet": the plan is wrong, and the audit says so.
fn priced_unlisted(jobs: &Selected<'_>, spec: &ProviderSpec, e: &object_store::Error) -> bool {
    let name = spec.name.as_str();
    let destination_only = jobs.objects.iter().any(|j| j.to.provider == name)
        && !jobs.objects.iter().any(|j| j.from.provider == name)
        && !jobs.databases.iter().any(|d| d.to.provider == name);
    let unanswered = crate::store::unavailable(e) && crate::estimate::pricing_preset(spec).is_some();
    destination_only && (missing_bucket(e) || unanswered)
}

/// A listing refused because the bucket or container is not there (S3 `NoSuchBucket`, Azure
/// `ContainerNotFound`, GCS 404): the error names it, whichever client made the request.
fn missing_bucket(e: &object_store::Error) -> bool {
    let text = e.to_string();
    matches!(e, object_store::Error::NotFound { .. })
        || ["NoSuchBucket", "ContainerNotFound", "HTTP 404", "status 404"]
            .iter()
            .any(|n| text.contains(n))
}

/// ` (bucket `b` at ENDPOINT)` for a store with an endpoint in its plan, so an error names the
/// address that did not answer.
pub(super) fn where_listed(store: &Store) -> String {
    let Some(endpoint) = store.spec.endpoint() else {
        return String::new();
    };
    match store.spec.bucket() {
        Some(b) => format!(" (bucket `{b}` at {endpoint})"),
        None => format!(" at {endpoint}"),
    }
}

/// A probe that failed: the provider did not answer (exit 3, retry later) or refused (exit 2).
pub(super) fn probe_kind(e: &object_store::Error) -> Kind {
    if crate::store::unavailable(e) {
        Kind::Unavailable
    } else {
        Kind::Usage
    }
}

/// Opens a provider without creating anything: a local destination root that does not exist yet
/// must only be creatable, and stands in as an empty store.
pub(super) fn open_or_stand_in(spec: &ProviderSpec, is_destination: bool) -> Result<Store, Error> {
    match &spec.kind {
        ProviderKind::Local(local) if is_destination && !local.root.exists() => {
            check_creatable(spec, &local.root)?;
            Ok(Store::empty_stand_in(spec))
        }
        _ => Ok(Store::open(spec, false)?),
    }
}

/// A local destination root that does not exist yet must be creatable: its nearest existing
/// ancestor is a writable directory. Checked without creating anything.
fn check_creatable(spec: &ProviderSpec, root: &Path) -> Result<(), Error> {
    let mut p = root;
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => return Ok(()),
        }
    }
    let meta = std::fs::metadata(p).map_err(|e| crate::store::ProviderError {
        provider: spec.name.clone(),
        message: format!(
            "cannot create local root `{}`: cannot read `{}`: {e}",
            root.display(),
            p.display()
        ),
        hint: None,
    })?;
    if !meta.is_dir() {
        return Err(crate::store::ProviderError {
            provider: spec.name.clone(),
            message: format!(
                "cannot create local root `{}`: `{}` is not a directory",
                root.display(),
                p.display()
            ),
            hint: None,
        }
        .into());
    }
    Ok(())
}

/// Creates the root directories of local destinations (after every check has passed).
fn create_local_destinations(
    plan: &Plan,
    jobs: &Selected<'_>,
    stores: &mut BTreeMap<String, Store>,
) -> Result<(), Error> {
    for (loc, written) in jobs.locations() {
        let spec = &plan.providers[&loc.provider];
        if written && spec.store_type() == StoreType::Local {
            stores.insert(loc.provider.clone(), Store::open(spec, true)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the steps taken; fails at `fail_at`.
    struct Recorder {
        taken: Vec<Step>,
        fail_at: Option<Step>,
    }

    impl Preparation for Recorder {
        async fn step(&mut self, step: Step) -> Result<(), Error> {
            self.taken.push(step);
            if self.fail_at == Some(step) {
                return Err(Error::usage(format!("{step:?} failed")));
            }
            Ok(())
        }
    }

    #[test]
    fn every_check_comes_before_the_first_write() {
        for dry_run in [false, true] {
            let s = steps(dry_run);
            let first_write = s.iter().position(|s| s.writes()).unwrap_or(s.len());
            assert!(
                s[first_write..].iter().all(|s| s.writes()),
                "a check after a write: {s:?}"
            );
            assert!(s.contains(&Step::ProbeStores));
        }
        assert_eq!(
            steps(false),
            [
                Step::ReachDatabases,
                Step::ProbeStores,
                Step::LockState,
                Step::OpenJournal { read_only: false },
                Step::CreateLocalRoots,
                Step::CreateBuckets,
            ]
        );
        // The journal is opened under the lock, and local roots and buckets are created last.
        assert_eq!(steps(false).last(), Some(&Step::CreateBuckets));
    }

    #[test]
    fn a_dry_run_writes_nothing() {
        assert!(steps(true).iter().all(|s| !s.writes()), "{:?}", steps(true));
        assert!(!steps(true).contains(&Step::LockState));
    }

    #[tokio::test]
    async fn the_first_failed_step_stops_the_preparation() {
        let all = steps(false);
        for (i, &bad) in all.iter().enumerate() {
            let mut r = Recorder {
                taken: Vec::new(),
                fail_at: Some(bad),
            };
            let e = in_order(&mut r, &all).await.unwrap_err();
            assert_eq!(e.to_string(), format!("{bad:?} failed"));
            assert_eq!(r.taken, all[..=i], "after {bad:?} failed");
        }
        // An unreachable database or store: nothing is written, no directory created.
        for bad in [Step::ReachDatabases, Step::ProbeStores] {
            let mut r = Recorder {
                taken: Vec::new(),
                fail_at: Some(bad),
            };
            let _ = in_order(&mut r, &all).await;
            assert!(r.taken.iter().all(|s| !s.writes()), "{:?}", r.taken);
        }
        let mut r = Recorder {
            taken: Vec::new(),
            fail_at: None,
        };
        in_order(&mut r, &all).await.unwrap();
        assert_eq!(r.taken, all);
    }
}

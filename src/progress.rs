//! Progress reporting as a trait: the engine reports, the front end decides how to show it.
//! Only the CLI knows indicatif; tests and library users pass [`NoProgress`] or their own.

/// Receives progress events from the engine. Implementations must be cheap: `bytes` is called
/// for every chunk that streams through.
pub trait Progress: Send + Sync {
    /// A job starts (`what` is "copy", "verify", "plan" or "dump").
    fn job_started(&self, _job: &str, _what: &str) {}
    /// Work discovered while listing: objects and bytes that will be processed.
    fn found(&self, _objects: u64, _bytes: u64) {}
    /// Bytes streamed.
    fn bytes(&self, _n: u64) {}
    /// One object finished (copied, verified or failed).
    fn object_done(&self) {}
    /// Bytes counted in `found` that will not be streamed after all (skipped, failed).
    fn skipped_bytes(&self, _n: u64) {}
    /// The job ended.
    fn job_finished(&self, _job: &str) {}
    /// A line for a person (a retried or failed object), shown with `-v`.
    fn message(&self, _text: &str) {}
    /// A line a person must see without asking for detail: work that ferry could not avoid
    /// redoing, and why.
    fn warn(&self, _text: &str) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

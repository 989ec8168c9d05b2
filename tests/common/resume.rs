//! A run killed inside one multipart upload and run again, with whatever credentials the test
//! sets up (issue 16: resuming inside an object must not depend on static keys, since the S3
//! client that lists parts is built whatever the credential source).
//!
//! One 60 MiB file goes from the local disk to `bucket` in 5 MiB parts through a counting proxy;
//! the run is SIGKILLed once 35 MiB have gone out, and run again in the same clean environment
//! (`ferry_clean_env`: no `AWS_*` but what the test sets). The object is read back with the
//! test's own client; the resumed run may re-send at most the parts that were in flight.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::oracle::{sha256, toml_str};
use super::{counting_proxy, Traffic};

const SIZE: usize = 60 << 20;
const PART: u64 = 5 << 20;
// Past the parts that can be in flight (4 x 5 MiB): a restart from the first part would re-send
// more than that bound, so the check below can fail.
const KILL_AT: u64 = 35 << 20;

pub struct Resume<'a> {
    /// The run's folder: its working directory and `HOME`, where the test wrote the AWS files.
    pub dir: &'a Path,
    /// The S3 server, `http://host:port`.
    pub endpoint: String,
    pub bucket: String,
    /// The destination prefix (`""`, or ending in `/`).
    pub prefix: String,
    /// The credential lines of the destination's provider table (may be empty).
    pub auth: String,
    /// The environment (`AWS_PROFILE`, …).
    pub vars: Vec<(&'static str, String)>,
    /// The test's own client for `bucket`, to read the object back.
    pub reader: aws_sdk_s3::Client,
}

impl Resume<'_> {
    pub fn killed_then_resumed(&self) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let traffic = Arc::new(Traffic::default());
        let upstream = self.endpoint.trim_start_matches("http://").to_string();
        let port = rt.block_on(counting_proxy(upstream, traffic.clone()));
        let body = super::data(SIZE, 21);
        std::fs::create_dir_all(self.dir.join("src")).unwrap();
        std::fs::write(self.dir.join("src/big.bin"), &body).unwrap();
        let plan = self.dir.join("resume.toml");
        std::fs::write(
            &plan,
            format!(
                "[settings]\npart-size = \"5MiB\"\n\n[providers.src]\ntype = \"local\"\nroot = {}\n\n\
                 [providers.dst]\ntype = \"s3\"\nbucket = \"{}\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
                 region = \"us-east-1\"\nallow-http = true\npath-style = true\n{}\n\n\
                 [[objects]]\nname = \"resume\"\nfrom = \"src:\"\nto = \"dst:{}\"\n",
                toml_str(&self.dir.join("src").display().to_string()),
                self.bucket,
                self.auth,
                self.prefix,
            ),
        )
        .unwrap();

        let mut child = super::ferry_clean_command(self.dir, &plan, &self.vars).spawn().unwrap();
        let before = super::sigkill_once_sent(&mut child, &traffic, KILL_AT);
        let first = child.wait_with_output().unwrap();
        assert!(
            before >= KILL_AT,
            "killed after only {before} bytes: {}",
            String::from_utf8_lossy(&first.stderr)
        );
        let journal = rusqlite::Connection::open(self.dir.join(".ferry/resume/journal.sqlite")).unwrap();
        let upload: Option<String> = journal
            .query_row("SELECT upload_id FROM objects WHERE key = 'big.bin'", [], |r| r.get(0))
            .unwrap();
        assert!(upload.is_some(), "the killed run journaled no upload to resume");
        drop(journal);

        let out = super::ferry_clean_env(self.dir, &plan, &self.vars);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert!(json["jobs"][0]["restarted_uploads"].is_null(), "{stdout}");
        let after = traffic.sent.load(Ordering::Relaxed) - before;
        let resent = (before + after).saturating_sub(SIZE as u64);
        let bound = ferry::sync::PARTS_IN_FLIGHT as u64 * PART + (256 << 10);
        eprintln!(
            "{} MiB before the kill, {} MiB by the resumed run, {} MiB sent twice (bound {} MiB)",
            before >> 20,
            after >> 20,
            resent >> 20,
            bound >> 20
        );
        assert!(resent <= bound, "re-sent {resent} bytes: the upload was not resumed");
        let key = format!("{}big.bin", self.prefix);
        let got = super::wire::s3_get(&self.reader, &self.bucket, &key).unwrap();
        assert_eq!(got.len(), SIZE, "size of {key}");
        assert_eq!(sha256(&got), sha256(&body), "content of {key}");
    }
}

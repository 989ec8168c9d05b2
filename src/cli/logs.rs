//! Logs through `tracing` (issue 17): ferry's own events (job starts, retries, failures,
//! heartbeats, warnings; see `progress`) and the ones object_store and the AWS SDK emit
//! (retries, credential fetches, connections), which were dropped before there was a
//! subscriber.
//!
//! - `--log-file PATH` appends every event at the chosen level to PATH: `info` for ferry and
//!   `warn` for the libraries by default; `-v` adds ferry's `debug` and the libraries' `info`;
//!   `-vv` everything at `debug`. `--log-format json` writes one JSON object per line.
//! - Without a file, stderr keeps ferry's human lines; `-vv` adds the libraries' events there
//!   (ferry's own are already printed as text, so they are not repeated).
//! - `RUST_LOG` replaces the filter wherever events go.
//!
//! Every line passes through `redact` before it is written: the libraries' events can quote a
//! URL or a header, and secrets ferry read or fetched are registered there.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `TIME LEVEL target: message key=value`
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`.
    Json,
}

/// Installs the subscriber; the error names the log file that could not be opened.
pub(super) fn init(file: Option<&PathBuf>, format: LogFormat, verbose: u8) -> Result<(), String> {
    let from_env = || EnvFilter::try_from_default_env().ok();
    let mut layers: Vec<Boxed> = Vec::new();
    if let Some(path) = file {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the log file `{}`: {e}", path.display()))?;
        let filter = from_env().unwrap_or_else(|| {
            EnvFilter::new(match verbose {
                0 => "warn,ferry=info",
                1 => "info,ferry=debug",
                _ => "debug",
            })
        });
        let sink = Redacted(Arc::new(Mutex::new(Box::new(f))));
        layers.push(layer(sink, format).with_filter(filter).boxed());
    }
    // Ferry's own lines already reach stderr as text (`progress`).
    if let Some(filter) = from_env().or_else(|| (verbose >= 2).then(|| EnvFilter::new("debug,ferry=off"))) {
        let sink = Redacted(Arc::new(Mutex::new(Box::new(std::io::stderr()))));
        layers.push(layer(sink, format).with_filter(filter).boxed());
    }
    if layers.is_empty() {
        return Ok(());
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| format!("cannot start logging: {e}"))
}

type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

fn layer(sink: Redacted, format: LogFormat) -> Boxed {
    let fmt = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(sink);
    match format {
        LogFormat::Text => Box::new(fmt),
        LogFormat::Json => Box::new(fmt.json().flatten_event(false)),
    }
}

/// A log sink whose every write is redacted first. The formatter writes each event with one
/// `write_all` of the whole line, so a secret is never split across two writes.
#[derive(Clone)]
struct Redacted(Arc<Mutex<Box<dyn Write + Send>>>);

impl Write for Redacted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = crate::redact::redact(&String::from_utf8_lossy(buf));
        let mut sink = self.0.lock().unwrap_or_else(|p| p.into_inner());
        sink.write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

impl<'a> MakeWriter<'a> for Redacted {
    type Writer = Redacted;
    fn make_writer(&'a self) -> Redacted {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registered secret never reaches the sink, whatever else the line holds.
    #[test]
    fn lines_are_redacted_before_they_are_written() {
        struct Keep(Arc<Mutex<Vec<u8>>>);
        impl Write for Keep {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let kept = Arc::new(Mutex::new(Vec::new()));
        crate::redact::register("logs-test-Secret-4711");
        let mut sink = Redacted(Arc::new(Mutex::new(Box::new(Keep(kept.clone())))));
        sink.write_all(b"GET /b?X-Amz-Signature=1 with logs-test-Secret-4711 and http://u:pw@h/\n")
            .unwrap();
        let text = String::from_utf8(kept.lock().unwrap().clone()).unwrap();
        assert!(
            !text.contains("logs-test-Secret-4711") && !text.contains(":pw@"),
            "{text}"
        );
    }
}

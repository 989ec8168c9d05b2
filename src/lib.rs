//! ferry moves object buckets and database dumps from one storage provider to another:
//! streamed, checksummed, journaled, resumable.
//!
//! Where things live: [`plan`] parses and validates the TOML plan; [`catalog`] holds the
//! provider presets from `providers/`; [`store`] opens stores and maps keys; [`pairing`]
//! pairs source and destination listings; [`sync`] decides and copies; [`checksum`] hashes
//! every byte; [`crypt`] encrypts what goes to a provider with `encrypt-*` keys; [`error`] says what a failure means (the exit code); [`verify`] compares destination with source; [`journal`] remembers every object
//! across runs; [`manifest`] writes the proof; [`progress`] reports; [`redact`] keeps secrets
//! out of output; [`throttle`] paces requests and bytes; [`run`] runs a plan (the safety
//! ordering, one cancellation token, a typed report), and [`cli`], the command line, calls only
//! it.

pub mod catalog;
pub mod checksum;
pub mod cli;
pub mod crypt;
pub mod dump;
pub mod error;
pub mod estimate;
pub mod filter;
pub mod journal;
pub mod keys;
pub mod manifest;
pub mod pairing;
pub mod plan;
pub mod progress;
pub mod redact;
pub mod run;
pub mod store;
pub mod sync;
pub mod template;
pub mod throttle;
pub mod units;
pub mod verify;

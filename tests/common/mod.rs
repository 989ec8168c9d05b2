//! What every integration test that needs the real servers shares.
//! (A directory module, so cargo does not build it as a test target of its own.)

#![allow(dead_code)] // each test target uses a different part

/// Whether the real test servers are up (tests/servers/up.sh exports FERRY_TEST_SERVERS=1). In
/// CI a missing server is a failure, never a skip; on a developer's machine without them the
/// test says loudly that it skipped.
pub fn servers_available(name: &str) -> bool {
    if std::env::var("FERRY_TEST_SERVERS").is_ok_and(|v| v == "1") {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
        panic!("{name}: CI is set but the test servers are not (FERRY_TEST_SERVERS != 1): run tests/servers/up.sh");
    }
    eprintln!("SKIPPED {name}: no test servers (run `tests/run` or source tests/servers/up.sh's env file)");
    false
}

/// A variable the server script exports.
pub fn env(v: &str) -> String {
    std::env::var(v).unwrap_or_else(|_| panic!("{v} is not set: run tests/servers/up.sh"))
}

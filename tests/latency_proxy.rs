//! benches/latency_proxy.py, the wide-area link of the WAN benchmark rows (issue 19): a round
//! trip through it costs at least twice its one-way delay, and ferry copies through it intact.
//! (Lower bounds only: how fast things go belongs in the benchmark, not in a pass/fail test.)

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::oracle::{ferry, nanos};
use common::wire::{block_on, s3_get, s3_put, s3_sdk};
use common::{env, servers_available};

struct Proxy {
    child: Child,
    port: u16,
}

impl Proxy {
    fn start(upstream: &str, delay_ms: u32) -> Proxy {
        let python = std::env::var("FERRY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/latency_proxy.py");
        let mut child = Command::new(python)
            .args([
                script,
                "--upstream",
                upstream,
                "--delay-ms",
                &delay_ms.to_string(),
                "--port",
                "0",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().rsplit(':').next().unwrap().parse().expect(&line);
        Proxy { child, port }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_round_trip_costs_the_delay_and_a_copy_arrives_whole() {
    if !servers_available("a_round_trip_costs_the_delay_and_a_copy_arrives_whole") {
        return;
    }
    let seaweed = env("FERRY_TEST_SEAWEED_ENDPOINT");
    let upstream = seaweed.trim_start_matches("http://");
    let proxy = Proxy::start(upstream, 25);
    let host = format!("127.0.0.1:{}", proxy.port);
    // Connecting (one round trip) and one request (another): at least 4 x 25 ms.
    let started = Instant::now();
    let r = common::wire::request("GET", &host, "/", &[], b"").unwrap();
    let took = started.elapsed();
    assert!(r.status > 0);
    assert!(
        took >= Duration::from_millis(100),
        "a request took {took:?} through a 25 ms proxy"
    );
    eprintln!("one request through the 25 ms proxy: {took:?}");

    let s3 = s3_sdk("SEAWEED");
    let tag = nanos() % 1_000_000_000;
    let prefix = format!("lat-{tag}/");
    let bodies: Vec<Vec<u8>> = (0..12).map(|i| common::data(1000 + i * 150_000, i as u64)).collect();
    for (i, b) in bodies.iter().enumerate() {
        s3_put(&s3, "ferry-a", &format!("{prefix}{i}"), b).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    let provider = |bucket: &str| {
        format!(
            "type = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"http://{host}\"\npath-style = true\nallow-http = true\n\
             access-key-id-env = \"K\"\nsecret-access-key-env = \"S\"\n"
        )
    };
    std::fs::write(
        &plan,
        format!(
            "[settings]\nserver-side-copy = false\n\n[providers.a]\n{}\n[providers.b]\n{}\n\
             [[objects]]\nname = \"wan\"\nfrom = \"a:{prefix}\"\nto = \"b:{prefix}\"\n",
            provider("ferry-a"),
            provider("ferry-b")
        ),
    )
    .unwrap();
    std::env::set_var("K", env("FERRY_TEST_SEAWEED_KEY"));
    std::env::set_var("S", env("FERRY_TEST_SEAWEED_SECRET"));
    let r = ferry(&["run", "--json"], &plan, Duration::from_secs(120));
    assert_eq!(r.code, Some(0), "{}", r.summary());
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!(
            &s3_get(&s3, "ferry-b", &format!("{prefix}{i}")).unwrap(),
            b,
            "object {i}"
        );
    }
    for bucket in ["ferry-a", "ferry-b"] {
        for i in 0..bodies.len() {
            let _ = block_on(s3.delete_object().bucket(bucket).key(format!("{prefix}{i}")).send());
        }
    }
}

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

/// Issue 19: objects in flight find their own level. 1,500 small files to SeaweedFS through a
/// 40 ms one-way proxy (80 ms round trip), where each object is bound by round trips: at the
/// defaults the job's adaptive limit climbs past its start of 64 (the JSON's
/// `concurrency_peak`), and every object arrives; with `--concurrency 32` it never passes 32;
/// between two local folders it stays at 16. (What it reaches, not how fast: speed is the
/// benchmark's.)
#[test]
fn objects_in_flight_climb_with_the_round_trip_up_to_the_ceiling() {
    if !servers_available("objects_in_flight_climb_with_the_round_trip") {
        return;
    }
    let seaweed = env("FERRY_TEST_SEAWEED_ENDPOINT");
    let proxy = Proxy::start(seaweed.trim_start_matches("http://"), 40);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..1500 {
        std::fs::write(src.join(format!("f{i:04}")), format!("object {i}\n")).unwrap();
    }
    let prefix = format!("climb-{}/", nanos() % 1_000_000_000);
    let plan_with = |name: &str, to: &str| {
        let plan = dir.path().join(name);
        std::fs::write(
            &plan,
            format!(
                "[settings]\nstate-dir = \"state-{name}\"\n\n[providers.src]\ntype = \"local\"\nroot = \"{}\"\n\n\
                 [providers.wan]\ntype = \"s3\"\nbucket = \"ferry-a\"\nendpoint = \"http://127.0.0.1:{}\"\n\
                 path-style = true\nallow-http = true\naccess-key-id-env = \"K\"\nsecret-access-key-env = \"S\"\n\n\
                 [providers.disk]\ntype = \"local\"\nroot = \"{}\"\n\n\
                 [[objects]]\nname = \"climb\"\nfrom = \"src:\"\nto = \"{to}\"\n",
                src.display(),
                proxy.port,
                dir.path().join("disk").display()
            ),
        )
        .unwrap();
        plan
    };
    std::env::set_var("K", env("FERRY_TEST_SEAWEED_KEY"));
    std::env::set_var("S", env("FERRY_TEST_SEAWEED_SECRET"));
    let s3 = s3_sdk("SEAWEED");
    let clear = || {
        for k in common::wire::s3_list(&s3, "ferry-a", &prefix).unwrap_or_default() {
            common::wire::s3_delete(&s3, "ferry-a", &k);
        }
    };

    let r = ferry(
        &["run", "--json"],
        &plan_with("wan.toml", &format!("wan:{prefix}")),
        Duration::from_secs(300),
    );
    assert_eq!(r.code, Some(0), "{}", r.summary());
    let peak = r.job("climb").unwrap()["concurrency_peak"].as_u64().unwrap();
    let landed = common::wire::s3_list(&s3, "ferry-a", &prefix).unwrap().len();
    eprintln!("defaults through 80 ms: peak {peak} objects in flight; {landed} objects landed");
    assert_eq!(landed, 1500);
    assert!(peak > 64, "the limit never climbed past its start: {peak}");
    clear();

    let capped = plan_with("capped.toml", &format!("wan:{prefix}"));
    let r = ferry(
        &["run", "--json", "--concurrency", "32"],
        &capped,
        Duration::from_secs(300),
    );
    assert_eq!(r.code, Some(0), "{}", r.summary());
    let peak = r.job("climb").unwrap()["concurrency_peak"].as_u64().unwrap();
    assert!(peak <= 32, "--concurrency 32 is a ceiling, reached {peak}");
    clear();

    let r = ferry(
        &["run", "--json"],
        &plan_with("local.toml", "disk:"),
        Duration::from_secs(300),
    );
    assert_eq!(r.code, Some(0), "{}", r.summary());
    assert_eq!(r.job("climb").unwrap()["concurrency_peak"], 16);
}

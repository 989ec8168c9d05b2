//! Issue 16: Azure credentials as plan keys rather than hidden variables, against Azurite (it
//! checks SharedKey and SAS signatures): `sas-token-env`, `connection-string-env` and
//! `use-azure-cli`. A source named by the plan is the only one used: a wrong
//! `AZURE_STORAGE_ACCESS_KEY` in the environment (which object_store would otherwise prefer)
//! changes nothing. Secrets never appear in the output. Seeded through the test's own
//! SharedKey client; the destination is read from the filesystem.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::oracle::{ferry_bin, nanos, toml_str};
use common::{env, servers_available, wire};

const CONTAINER: &str = "ferry-a";

struct Case {
    dir: tempfile::TempDir,
    prefix: String,
}

impl Case {
    /// Two blobs under a fresh prefix.
    fn new() -> Case {
        let prefix = format!("azcreds-{}/", nanos());
        let az = wire::Azure::from_env();
        az.put(CONTAINER, &format!("{prefix}a.txt"), b"alpha").unwrap();
        az.put(CONTAINER, &format!("{prefix}sub/b.bin"), &common::data(3000, 5))
            .unwrap();
        Case {
            dir: tempfile::tempdir().unwrap(),
            prefix,
        }
    }

    /// A plan copying the prefix to a local folder; `auth` completes the Azure table.
    fn plan(&self, auth: &str) -> PathBuf {
        let plan = self.dir.path().join("p.toml");
        std::fs::write(
            &plan,
            format!(
                "[providers.src]\ntype = \"azure\"\ncontainer = \"{CONTAINER}\"\n{auth}\n\
                 [providers.dst]\ntype = \"local\"\nroot = {}\n\
                 [[objects]]\nname = \"j\"\nfrom = \"src:{}\"\nto = \"dst:\"\n",
                toml_str(&self.dir.path().join("dst").display().to_string()),
                self.prefix
            ),
        )
        .unwrap();
        plan
    }

    /// `ferry run --json` with `vars` and a wrong account key in the environment.
    fn run(&self, plan: &Path, vars: &[(&str, String)], path: Option<&Path>) -> (Output, String) {
        let mut c = Command::new(ferry_bin());
        c.args(["run", "--json"])
            .arg(plan)
            .current_dir(self.dir.path())
            .env("AZURE_STORAGE_ACCESS_KEY", wire::base64(b"not the account key at all"));
        for (k, v) in vars {
            c.env(k, v);
        }
        if let Some(p) = path {
            let old = std::env::var("PATH").unwrap_or_default();
            c.env("PATH", format!("{}:{old}", p.display()));
        }
        let out = c.output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("ferry -> {:?}\n{all}", out.status.code());
        (out, all)
    }

    fn assert_copied(&self, out: &Output, all: &str) {
        assert_eq!(out.status.code(), Some(0), "{all}");
        let dst = self.dir.path().join("dst");
        assert_eq!(std::fs::read(dst.join("a.txt")).unwrap(), b"alpha");
        assert_eq!(std::fs::read(dst.join("sub/b.bin")).unwrap(), common::data(3000, 5));
        std::fs::remove_dir_all(dst).unwrap();
        std::fs::remove_dir_all(self.dir.path().join(".ferry")).ok();
    }
}

fn site() -> String {
    format!(
        "account = \"{}\"\nendpoint = \"{}\"\nallow-http = true\n",
        env("FERRY_TEST_AZURITE_ACCOUNT"),
        env("FERRY_TEST_AZURITE_ENDPOINT")
    )
}

/// A read-and-list account SAS copies; a SAS with a forged signature is refused with exit 2
/// naming the provider and the variable, and neither signature is printed.
#[test]
fn sas_token_from_the_plan() {
    if !servers_available("sas_token_from_the_plan") {
        return;
    }
    let case = Case::new();
    let sas = wire::Azure::from_env().account_sas("rl");
    let plan = case.plan(&format!("{}sas-token-env = \"FERRY_T_SAS\"\n", site()));
    let (out, all) = case.run(&plan, &[("FERRY_T_SAS", format!("?{sas}"))], None);
    case.assert_copied(&out, &all);
    let sig = sas.rsplit("sig=").next().unwrap();
    assert!(!all.contains(sig), "the signature was printed: {all}");

    let forged = format!(
        "{}sig={}",
        &sas[..sas.find("sig=").unwrap()],
        wire::pct(wire::base64(&[7u8; 32]).as_bytes(), "")
    );
    let (out, all) = case.run(&plan, &[("FERRY_T_SAS", forged.clone())], None);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("provider `src`"), "{all}");
    assert!(
        !all.contains(forged.rsplit("sig=").next().unwrap()),
        "the signature was printed: {all}"
    );

    let (out, all) = case.run(&plan, &[], None);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("`FERRY_T_SAS` (named by `sas-token-env`) is not set"),
        "{all}"
    );
}

/// A connection string as the portal prints it copies (its endpoint and account are the ones
/// used); a wrong key in it is refused with exit 2 and not printed; a plain http endpoint in it
/// needs `allow-http`, as in the plan.
#[test]
fn connection_string_from_the_plan() {
    if !servers_available("connection_string_from_the_plan") {
        return;
    }
    let case = Case::new();
    let cs = |key: &str| {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={};AccountKey={key};BlobEndpoint={};",
            env("FERRY_TEST_AZURITE_ACCOUNT"),
            env("FERRY_TEST_AZURITE_ENDPOINT")
        )
    };
    let plan = case.plan("connection-string-env = \"FERRY_T_CS\"\nallow-http = true\n");
    let (out, all) = case.run(&plan, &[("FERRY_T_CS", cs(&env("FERRY_TEST_AZURITE_KEY")))], None);
    case.assert_copied(&out, &all);
    assert!(
        !all.contains(&env("FERRY_TEST_AZURITE_KEY")),
        "the key was printed: {all}"
    );

    let wrong = wire::base64(&[9u8; 64]);
    let (out, all) = case.run(&plan, &[("FERRY_T_CS", cs(&wrong))], None);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("provider `src`") && !all.contains(&wrong), "{all}");

    let plan = case.plan("connection-string-env = \"FERRY_T_CS\"\n");
    let (out, all) = case.run(&plan, &[("FERRY_T_CS", cs(&env("FERRY_TEST_AZURITE_KEY")))], None);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("has a plain http endpoint") && all.contains("allow-http = true"),
        "{all}"
    );
}

/// `use-azure-cli = true`: the token comes from `az account get-access-token` (a stand-in `az`
/// first on PATH records its arguments). Azurite without OAuth cannot check a bearer token, so
/// what is shown is that the CLI is asked, with the storage scope, and that an `az` that says
/// "run az login" stops the run with exit 2 and its message.
#[test]
fn azure_cli_login_from_the_plan() {
    if !servers_available("azure_cli_login_from_the_plan") {
        return;
    }
    let case = Case::new();
    let bin = case.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = case.dir.path().join("az-calls");
    let az = bin.join("az");
    std::fs::write(
        &az,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\necho 'Please run az login to setup account.' >&2\nexit 1\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
    let plan = case.plan(&format!("{}use-azure-cli = true\n", site()));
    let (out, all) = case.run(&plan, &[], Some(&bin));
    let asked = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(
        asked.contains("account get-access-token") && asked.contains("https://storage.azure.com"),
        "az was not asked for a storage token: {asked:?}\n{all}"
    );
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("provider `src`") && all.contains("az login"), "{all}");
}

/// Two ways to sign in one table is a plan error naming both.
#[test]
fn two_azure_credential_sources_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("p.toml");
    std::fs::write(
        &plan,
        "[providers.src]\ntype = \"azure\"\naccount = \"a\"\ncontainer = \"c\"\nsas-token-env = \"S\"\nuse-azure-cli = true\n\
         [providers.dst]\ntype = \"local\"\nroot = \"d\"\n[[objects]]\nname = \"j\"\nfrom = \"src:\"\nto = \"dst:\"\n",
    )
    .unwrap();
    let out = Command::new(ferry_bin()).arg("check").arg(&plan).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`sas-token-env` and `use-azure-cli` are different ways to sign: keep one"),
        "{err}"
    );
}

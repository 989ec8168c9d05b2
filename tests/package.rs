//! Issue 17, something to install: `packaging/deb.sh` builds a Debian package from the test
//! build's binary; the package is checked (control fields, contents), installed with dpkg into
//! a private root (`dpkg --root`, so the machine's own packages are untouched), run there (a
//! real copy of the demo plan, read back from the filesystem), and removed. Its dependencies
//! must be satisfied by this machine's installed packages.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tool_missing(tool: &str) -> bool {
    let missing = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map_or(true, |o| !o.status.success());
    if missing {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
            panic!("{tool} is missing: the Debian package cannot be built or installed here");
        }
        eprintln!("SKIPPED: {tool} is not installed");
    }
    missing
}

#[test]
fn the_debian_package_installs_runs_and_removes() {
    if ["dpkg-deb", "dpkg", "objdump"].iter().any(|t| tool_missing(t)) {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let built = ok(
        Command::new(repo.join("packaging/deb.sh"))
            .args(["--fast", "--binary", env!("CARGO_BIN_EXE_ferry"), "--out"])
            .arg(&out)
            .output()
            .unwrap(),
        "packaging/deb.sh",
    );
    let deb = built.trim().to_string();
    let field = |f: &str| {
        ok(
            Command::new("dpkg-deb").args(["--field", &deb, f]).output().unwrap(),
            "dpkg-deb --field",
        )
        .trim()
        .to_string()
    };
    assert_eq!(field("Package"), "ferry");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    let contents = ok(
        Command::new("dpkg-deb").args(["--contents", &deb]).output().unwrap(),
        "dpkg-deb --contents",
    );
    for path in [
        "./usr/bin/ferry",
        "./usr/share/man/man1/ferry.1.gz",
        "./usr/share/bash-completion/completions/ferry",
        "./usr/share/zsh/vendor-completions/_ferry",
        "./usr/share/fish/vendor_completions.d/ferry.fish",
        "./usr/share/doc/ferry/examples/demo.toml",
    ] {
        assert!(contents.contains(path), "{path} not in the package:\n{contents}");
    }

    // Each dependency is installed on this machine, at a version that satisfies it.
    for dep in field("Depends").split(", ") {
        let (name, want) = match dep.split_once(" (>= ") {
            Some((n, v)) => (n, Some(v.trim_end_matches(')'))),
            None => (dep, None),
        };
        let have = ok(
            Command::new("dpkg-query")
                .args(["-W", "-f", "${Version}", name])
                .output()
                .unwrap(),
            &format!("dependency {name} installed"),
        );
        if let Some(want) = want {
            let ge = Command::new("dpkg")
                .args(["--compare-versions", &have, "ge", want])
                .status()
                .unwrap();
            assert!(ge.success(), "{name} {have} is older than the package needs ({want})");
        }
    }

    // Installed into a private root: the machine's dpkg database is not touched.
    let root = tmp.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let dpkg = |args: &[&str]| {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", root.display()))
            .args(["--force-not-root", "--force-depends", "--log=/dev/null"])
            .args(args);
        c.output().unwrap()
    };
    ok(dpkg(&["-i", &deb]), "dpkg -i");
    let ferry = root.join("usr/bin/ferry");
    let version = ok(
        Command::new(&ferry).arg("--version").output().unwrap(),
        "ferry --version",
    );
    assert_eq!(version.trim(), format!("ferry {}", env!("CARGO_PKG_VERSION")));
    let man = ok(
        Command::new("zcat")
            .arg(root.join("usr/share/man/man1/ferry.1.gz"))
            .output()
            .unwrap(),
        "zcat",
    );
    assert!(
        man.starts_with(".ie") || man.contains(".TH ferry"),
        "{}",
        &man[..man.len().min(200)]
    );

    // The installed binary runs a real migration: the packaged demo plan over the repo's data.
    let demo = tmp.path().join("demo");
    std::fs::create_dir_all(&demo).unwrap();
    std::fs::copy(
        root.join("usr/share/doc/ferry/examples/demo.toml"),
        demo.join("demo.toml"),
    )
    .unwrap();
    common::copy_dir(&repo.join("configs/demo-data"), &demo.join("demo-data"));
    ok(
        Command::new(&ferry)
            .arg("run")
            .arg(demo.join("demo.toml"))
            .output()
            .unwrap(),
        "installed ferry run demo.toml",
    );
    let mut files = 0;
    for e in walk(&demo.join("demo-data")) {
        let rel = e.strip_prefix(demo.join("demo-data")).unwrap();
        let copy = tmp.path().join(".demo-out/data").join(rel);
        assert_eq!(
            std::fs::read(&e).unwrap(),
            std::fs::read(&copy).unwrap(),
            "{}",
            rel.display()
        );
        files += 1;
    }
    assert!(files > 0);

    ok(dpkg(&["-r", "ferry"]), "dpkg -r");
    assert!(!ferry.exists(), "the binary stayed after dpkg -r");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

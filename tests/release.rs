//! Release artifacts (SPEC §11): `scripts/release.sh DIR` writes both static binaries
//! and a SHA256SUMS file that `sha256sum -c` accepts, and that rejects a changed byte.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/release.sh");
const ARTIFACTS: [&str; 2] = ["dind-init-linux-amd64", "dind-init-linux-arm64"];
/// SPEC §12: the static binary is at most 1.25 MiB.
const SIZE_CAP: u64 = 1_310_720;

fn sha256sum_check(dir: &Path, tmp: &TempDir, name: &str) -> Ran {
    run_timeout(
        Command::new("sha256sum")
            .args(["-c", "SHA256SUMS"])
            .current_dir(dir),
        tmp,
        name,
        Duration::from_secs(60),
    )
}

#[test]
fn release_script_writes_both_static_binaries_and_their_sums() {
    if !require(
        "release_script_writes_both_static_binaries_and_their_sums",
        &[
            (
                "qemu-aarch64-static",
                which("qemu-aarch64-static").is_some(),
            ),
            ("file", which("file").is_some()),
            ("readelf", which("readelf").is_some()),
            ("sha256sum", which("sha256sum").is_some()),
        ],
    ) {
        return;
    }
    let tmp = TempDir::new("release");
    let out = tmp.join("dist");
    let ran = run_timeout(
        Command::new("bash").arg(SCRIPT).arg(&out),
        &tmp,
        "release",
        Duration::from_secs(900),
    );
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());

    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["SHA256SUMS", ARTIFACTS[0], ARTIFACTS[1]],
        "nothing else is left in the directory"
    );

    let sums = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let listed: Vec<&str> = sums
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(listed, ARTIFACTS, "{sums}");
    let check = sha256sum_check(&out, &tmp, "sha256sum");
    assert_eq!(check.code(), Some(0), "{}", check.describe());
    assert_eq!(
        check.stdout.matches(": OK").count(),
        2,
        "{}",
        check.describe()
    );

    for (name, machine) in ARTIFACTS.iter().zip(["x86-64", "ARM aarch64"]) {
        let path = out.join(name);
        let size = fs::metadata(&path).unwrap().len();
        assert!(size <= SIZE_CAP, "{name}: {size} bytes");
        let file = Command::new("file").arg("-b").arg(&path).output().unwrap();
        let file = String::from_utf8_lossy(&file.stdout);
        assert!(
            file.contains(machine) && file.contains("statically linked"),
            "{name}: {file}"
        );
        assert!(!file.contains("not stripped"), "{name}: {file}");
        eprintln!("{name}: {size} bytes");
    }
    // The amd64 one runs here as it is.
    let version = Command::new(out.join(ARTIFACTS[0]))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("dind-init {}", env!("CARGO_PKG_VERSION"))
    );

    // Control: one changed byte and `sha256sum -c` fails.
    let arm = out.join(ARTIFACTS[1]);
    let mut bytes = fs::read(&arm).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&arm, bytes).unwrap();
    let check = sha256sum_check(&out, &tmp, "sha256sum-tampered");
    assert_eq!(check.code(), Some(1), "{}", check.describe());
    assert!(
        check.stdout.contains(&format!("{}: FAILED", ARTIFACTS[1])),
        "{}",
        check.describe()
    );
}

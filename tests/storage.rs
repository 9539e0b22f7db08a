//! `[dockerd] data_root_tmpfs` (SPEC §11): a tmpfs of the configured size at dockerd's
//! data-root, mounted at boot in the init's mount namespace before dockerd's first start.
//!
//! - On this machine (fake dockerd, private pid and mount namespaces): the tmpfs is in the
//!   init's mountinfo at `--data-root` with the size asked for, and `status` says so; a
//!   data-root that is a mount point already is left as it is; a mount that cannot be
//!   made ends the boot with one line before dockerd starts.
//! - In gVisor (`runsc do` with the test image's root, real dockerd 20.10): on the
//!   sandbox's overlay root dockerd would use `vfs`; with `data_root_tmpfs` it picks
//!   overlay2 and runs a nested container.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

/// The mountinfo lines of the init under test whose mount point is `path`.
fn mounts_at(init: &InitUnderTest, path: &Path) -> Vec<String> {
    let pid = init.init_pid();
    let info = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    info.lines()
        .filter(|l| l.split_whitespace().nth(4) == Some(s(path)))
        .map(str::to_owned)
        .collect()
}

fn start(dir: &TempDir, size: &str, data_root: &Path, inner: &str) -> InitUnderTest {
    let tc = TestConfig {
        dockerd: format!("data_root_tmpfs = \"{size}\""),
        ..TestConfig::default()
    };
    let mut text = tc.text(dir);
    text = text.replacen(
        "args = [",
        &format!("args = [\"--data-root={}\", ", data_root.display()),
        1,
    );
    let config = dir.config(&text);
    Launch::new(dir)
        .args(&["--config", s(&config)])
        .start_wrapped("", inner)
}

#[test]
fn tmpfs_is_mounted_at_the_data_root_with_its_size() {
    if !require_root("tmpfs_is_mounted_at_the_data_root_with_its_size") {
        return;
    }
    let dir = TempDir::new("storage-mount");
    let data = dir.join("data");
    let mut init = start(&dir, "64m", &data, "true");
    let st = wait_status(&dir, Duration::from_secs(30), |s| s["state"] == "ready");
    let lines = mounts_at(&init, &data);
    assert_eq!(lines.len(), 1, "{lines:?}\n{}", init.describe());
    let fields: Vec<&str> = lines[0].split(" - ").nth(1).unwrap().split(' ').collect();
    assert_eq!(fields[0], "tmpfs", "{lines:?}");
    assert!(
        fields[2].split(',').any(|o| o == "size=65536k"),
        "{lines:?}"
    );
    assert!(fields[2].split(',').any(|o| o == "mode=711"), "{lines:?}");
    let storage = &st["environment"]["storage"];
    assert_eq!(storage["data_root"], s(&data), "{st}");
    assert_eq!(storage["tmpfs"], "64m", "{st}");
    assert_eq!(
        storage["action"],
        format!("mounted a tmpfs of size 64m on {}", data.display()),
        "{st}"
    );
    assert!(init.stderr().contains(&format!(
        "data_root_tmpfs: mounted a tmpfs of size 64m on {}",
        data.display()
    )));
    // The machine's mount namespace never saw it.
    let own = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!own.contains(s(&data)));
    init.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(init.wait_code(Duration::from_secs(30)), 0);
}

#[test]
fn an_existing_mount_is_left_alone_and_a_failed_mount_ends_the_boot() {
    if !require_root("an_existing_mount_is_left_alone_and_a_failed_mount_ends_the_boot") {
        return;
    }
    // Something mounted there already (a volume, --tmpfs): left as it is.
    let dir = TempDir::new("storage-existing");
    let data = dir.join("data");
    fs::create_dir_all(&data).unwrap();
    let inner = format!("mount -t tmpfs -o size=1m tmpfs {}", data.display());
    let mut init = start(&dir, "64m", &data, &inner);
    let st = wait_status(&dir, Duration::from_secs(30), |s| s["state"] == "ready");
    let lines = mounts_at(&init, &data);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("size=1024k"), "{lines:?}");
    assert_eq!(
        st["environment"]["storage"]["action"],
        format!(
            "{} is a mount point already (tmpfs): no tmpfs mounted",
            data.display()
        ),
        "{st}"
    );
    init.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(init.wait_code(Duration::from_secs(30)), 0);

    // A data-root where nothing can be mounted (procfs refuses the directory): exit 1
    // with one line, dockerd never started.
    let dir = TempDir::new("storage-fail");
    let mut init = start(&dir, "64m", Path::new("/proc/dind-init-test/data"), "true");
    let code = init.wait_code(Duration::from_secs(30));
    let err = init.stderr();
    assert_eq!(code, 1, "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("/proc/dind-init-test/data"),
        "{}",
        errors[0]
    );
    assert!(
        !dir.join("dockerd.report").exists(),
        "dockerd was started\n{err}"
    );
}

#[test]
fn gvisor_dockerd_picks_overlay2_on_the_tmpfs() {
    if !require(
        "gvisor_dockerd_picks_overlay2_on_the_tmpfs",
        &gvisor_docker_requirements(),
    ) {
        return;
    }
    let dir = TempDir::new("storage-gvisor");
    let config = dir.config(
        "[dockerd]\ndata_root_tmpfs = \"2g\"\n[readiness]\ninterval = \"0s\"\n[log]\njournald = \"off\"\n",
    );
    let root = test_rootfs(&dir, Some(&config));
    let script = r#"set -u
dind-init probe --wait 120s || { echo "FAIL: not ready"; dind-init status; exit 1; }
echo "DRIVER $(docker info --format '{{.Driver}}')"
echo "MOUNT $(grep ' /var/lib/docker ' /proc/self/mountinfo)"
rm -rf /tmp/n && mkdir -p /tmp/n/bin && cp /bin/busybox /tmp/n/bin/ && ln -s busybox /tmp/n/bin/echo \
  && tar -C /tmp/n -cf - . | docker import - n:1 >/dev/null \
  && echo "NESTED $(docker run --rm --network none n:1 echo ok)"
echo "STATUS $(dind-init status --json)"
"#;
    let mut cmd = runsc_do(
        Path::new(RUNSC),
        &[
            "-root",
            s(&root),
            "-cwd",
            "/",
            "/usr/local/bin/dind-init",
            "--",
            "/bin/sh",
            "-c",
            script,
        ],
    );
    let ran = run_timeout(&mut cmd, &dir, "runsc", Duration::from_secs(300));
    let out = &ran.stdout;
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    assert!(out.contains("DRIVER overlay2"), "{}", ran.describe());
    assert!(out.contains("NESTED ok"), "{}", ran.describe());
    let mount = out.lines().find(|l| l.starts_with("MOUNT ")).unwrap_or("");
    assert!(mount.contains(" - tmpfs "), "{}", ran.describe());
    let status = out.lines().find_map(|l| l.strip_prefix("STATUS ")).unwrap();
    let st: serde_json::Value = serde_json::from_str(status).unwrap();
    assert_eq!(
        st["environment"]["storage"]["action"], "mounted a tmpfs of size 2g on /var/lib/docker",
        "{st}"
    );
}

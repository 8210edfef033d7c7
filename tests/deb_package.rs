//! The Debian package as a new machine gets it: unpacked into an empty directory tree, it
//! holds the window, the practice window, the `clawdesk` command line and a desktop-menu entry,
//! names the Debian packages they need, and its programs start (the windows come up on the
//! accessibility bus, the command line answers).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clawdesk_desktop::{Desktop, DesktopConfig, Sandbox, SandboxOptions};

fn dpkg_deb(args: &[&str]) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .output()
        .expect("dpkg-deb runs");
    assert!(out.status.success(), "dpkg-deb {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until a program whose bus name contains `name` is on the sandbox's accessibility bus.
/// `child` is the program when we started it ourselves (its early exit is the failure).
async fn comes_up(desktop: &Desktop, mut child: Option<&mut Child>, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(child) = child.as_deref_mut()
            && let Some(status) = child.try_wait().expect("wait")
        {
            panic!("{name} exited with {status}");
        }
        let apps = desktop.accessibility().applications().await.expect("apps");
        if apps.iter().any(|a| a.name.contains(name)) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never came up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The process whose executable is `program`, if one runs.
fn running_from(program: &Path) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        (std::fs::read_link(entry.path().join("exe")).ok()? == program).then_some(pid)
    })
}

fn start(sandbox: &Sandbox, program: &Path, args: &[&str], data: &Path) -> Child {
    sandbox
        .command(program)
        .args(args)
        .env("CLAWDESK_DATA_DIR", data)
        .env("CLAWDESK_CONFIG_DIR", data.join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", program.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the package: scripts/test.sh builds it (scripts/build-deb.sh) and runs this with --ignored"]
async fn the_package_unpacks_into_a_clean_tree_and_its_programs_start() {
    let deb = std::env::var_os("CLAWDESK_DEB")
        .map(PathBuf::from)
        .expect("CLAWDESK_DEB names the .deb to check");
    let deb = deb.to_str().expect("utf-8 path");

    let fields = dpkg_deb(&["--field", deb, "Package", "Depends"]);
    // Tauri names the package after the product name, in kebab case.
    assert!(fields.contains("Package: claw-desk"), "{fields}");
    for needed in ["libwebkit2gtk-4.1-0", "libgtk-3-0", "xvfb", "at-spi2-core"] {
        assert!(fields.contains(needed), "Depends names {needed}: {fields}");
    }

    let root = tempfile::tempdir().expect("tempdir");
    dpkg_deb(&["-x", deb, root.path().to_str().expect("utf-8")]);
    let app = root.path().join("usr/bin/clawdesk-app");
    let practice = root.path().join("usr/bin/clawdesk-practice");
    let cli = root.path().join("usr/bin/clawdesk");
    for program in [&app, &practice, &cli] {
        assert!(program.is_file(), "{} is in the package", program.display());
    }
    // The command line the README uses runs from the package.
    let version = Command::new(&cli)
        .arg("--version")
        .output()
        .expect("clawdesk runs");
    assert!(version.status.success(), "{version:?}");
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("clawdesk "),
        "{version:?}"
    );
    let entries: Vec<PathBuf> = std::fs::read_dir(root.path().join("usr/share/applications"))
        .expect("a desktop-menu entry")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let entry = std::fs::read_to_string(entries.first().expect("one entry")).expect("entry");
    assert!(
        entry.contains("Exec=clawdesk-app") && entry.contains("Name=ClawDesk"),
        "{entry}"
    );

    // Both programs start from the unpacked tree and show their windows.
    let sandbox = Sandbox::start(&SandboxOptions::default()).expect("sandbox");
    let data = tempfile::tempdir().expect("tempdir");
    let desktop = Desktop::connect(DesktopConfig::for_sandbox(&sandbox))
        .await
        .expect("desktop");
    let mut window = start(&sandbox, &app, &[], data.path());
    comes_up(&desktop, Some(&mut window), "clawdesk").await;
    let _ = window.kill();
    let _ = window.wait();
    let mut practising = start(&sandbox, &practice, &["--seed", "3"], data.path());
    comes_up(&desktop, Some(&mut practising), "clawdesk-practice").await;
    let _ = practising.kill();
    let _ = practising.wait();

    // And from the desktop menu: GIO launches the entry the way a desktop's menu does, with
    // the package's programs on PATH as an installed package has them.
    let entry_path = entries.first().expect("one entry");
    let path = std::env::join_paths(std::iter::once(root.path().join("usr/bin")).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let said = data.path().join("gio-launch.log");
    let mut launched = sandbox
        .command("gio")
        .arg("launch")
        .arg(entry_path)
        .env("PATH", path)
        .env("CLAWDESK_DATA_DIR", data.path())
        .env("CLAWDESK_CONFIG_DIR", data.path().join("config"))
        .stdout(Stdio::null())
        // A file, not a pipe: the launched app inherits it and would hold a pipe open.
        .stderr(std::fs::File::create(&said).map(Stdio::from).expect("log"))
        .spawn()
        .expect("gio runs");
    let status = launched.wait().expect("gio ends");
    assert!(
        status.success(),
        "gio launch {}: {}",
        entry_path.display(),
        std::fs::read_to_string(&said).unwrap_or_default()
    );
    // The first window was stopped above, so a process running the package's program now is
    // the one the entry started.
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        if let Some(pid) = running_from(&app) {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no process runs {} after the menu entry was launched",
            app.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    comes_up(&desktop, None, "clawdesk").await;
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

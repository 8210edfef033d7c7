//! The API key read from a real Secret Service (GNOME Keyring) on a private session bus, the way
//! a desktop user stores it with `secret-tool`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clawdesk_judge::ApiKey;

/// Kills the child when dropped, so a failing test leaves no daemon behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env(cmd: &mut Command, home: &Path, bus: &str) {
    cmd.env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .env_remove("DISPLAY");
}

fn store_secret(home: &Path, bus: &str, account: &str, secret: &str) -> bool {
    let mut cmd = Command::new("secret-tool");
    cmd.args([
        "store",
        "--label",
        "ClawDesk judge",
        "service",
        "clawdesk",
        "account",
        account,
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    env(&mut cmd, home, bus);
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(secret.as_bytes());
    }
    child.wait().is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_comes_from_the_secret_service() {
    let home = tempfile::tempdir().expect("tempdir");
    let run = home.path().join("run");
    std::fs::create_dir_all(&run).expect("run dir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let socket = home.path().join("bus");
    // A session bus without service activation: otherwise the first secret-tool call can
    // auto-start a second, locked keyring daemon that takes the Secret Service name before
    // ours does ("another secret service is running"), and the secret is never stored.
    let config = home.path().join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
            socket.display()
        ),
    )
    .expect("bus config");
    let mut bus = Killed(
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian package dbus) must be installed"),
    );
    let mut address = String::new();
    BufReader::new(bus.0.stdout.take().expect("stdout"))
        .read_line(&mut address)
        .expect("bus address");
    let address = address.trim().to_owned();

    // A fresh login keyring, created and unlocked with a password on stdin.
    let mut keyring = Command::new("gnome-keyring-daemon");
    keyring
        .args(["--foreground", "--unlock", "--components=secrets"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    env(&mut keyring, home.path(), &address);
    let mut keyring = Killed(
        keyring
            .spawn()
            .expect("gnome-keyring-daemon (Debian package gnome-keyring) must be installed"),
    );
    if let Some(mut stdin) = keyring.0.stdin.take() {
        stdin.write_all(b"clawdesk-test").expect("password");
    }
    let start = Instant::now();
    while !store_secret(home.path(), &address, "judge-test", "sk-from-keyring\n") {
        assert!(
            // Generous: on a loaded 2-core machine the daemon has been seen to take over 15 s.
            start.elapsed() < Duration::from_secs(90),
            "the keyring never came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SAFETY: no other test in this binary reads the environment.
    unsafe { std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &address) };
    let key = ApiKey::Keyring {
        service: "clawdesk".into(),
        account: "judge-test".into(),
    };
    let secret = key.resolve().await.expect("key").expect("some key");
    assert_eq!(secret.expose(), "sk-from-keyring");

    let missing = ApiKey::Keyring {
        service: "clawdesk".into(),
        account: "nobody".into(),
    };
    let err = missing.resolve().await.expect_err("no such item");
    assert!(err.to_string().contains("secret-tool store"), "{err}");
    drop(keyring);
    drop(bus);
}

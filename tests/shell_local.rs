//! The `shell-local` provisioner's runner on this machine: Packer's variables and the
//! recipe's, stdout and stderr apart, `valid_exit_codes`, and a cancel that stops the whole
//! process group. (The fixture build in build_e2e.rs runs one inside a real build.)

use std::path::Path;
use std::time::{Duration, Instant};

use kiln::build::event::{Event, EventSink, Stream};
use kiln::build::local_shell;
use kiln::build::redact::Redactor;
use kiln::build::runner::StepContext;
use kiln::recipe::provisioner::ProvisionerKind;
use kiln::recipe::shell_local::ShellLocalConfig;
use kiln::recipe::template::{LoadOptions, load_file};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The configuration of a `shell-local` provisioner written as `provisioner`.
fn config(dir: &Path, provisioner: serde_json::Value) -> ShellLocalConfig {
    let recipe = json!({
        "builders": [{
            "type": "qemu",
            "iso_url": "https://example.com/debian.qcow2",
            "iso_checksum": "none",
            "disk_image": true,
            "ssh_username": "debian"
        }],
        "provisioners": [provisioner]
    });
    let path = dir.join("recipe.json");
    std::fs::write(&path, recipe.to_string()).unwrap();
    let options = LoadOptions {
        pwd: Some(dir.to_path_buf()),
        ..LoadOptions::default()
    };
    let recipe = load_file(&path, &options).unwrap_or_else(|d| panic!("invalid: {d}"));
    match &recipe.builds[0].provisioners[0].kind {
        ProvisionerKind::ShellLocal(c) => c.clone(),
        other => panic!("not shell-local: {other:?}"),
    }
}

fn packer_env() -> Vec<(String, String)> {
    vec![
        ("PACKER_BUILD_NAME".into(), "debian".into()),
        ("PACKER_BUILDER_TYPE".into(), "qemu".into()),
    ]
}

async fn run(
    config: &ShellLocalConfig,
    scratch: &Path,
    cancel: CancellationToken,
) -> (Result<(), String>, Vec<(Stream, String)>) {
    let (sink, mut rx) = EventSink::channel(Redactor::new());
    let ctx = StepContext::detached(0, sink, cancel);
    let result = local_shell::run(&ctx, config, &packer_env(), scratch)
        .await
        .map_err(|e| e.0);
    drop(ctx);
    let mut lines = Vec::new();
    while let Some(e) = rx.recv().await {
        if let Event::Log { stream, line, .. } = e
            && stream != Stream::Kiln
        {
            lines.push((stream, line));
        }
    }
    (result, lines)
}

#[tokio::test]
async fn environment_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(
        dir.path(),
        json!({
            "type": "shell-local",
            "environment_vars": ["ZONE=ch-gva-2", "QUOTE=it's"],
            "env": {"EXTRA": "yes"},
            "inline": [
                "echo \"$PACKER_BUILD_NAME $PACKER_BUILDER_TYPE $ZONE $QUOTE $EXTRA\"",
                "echo problem >&2",
                "echo done"
            ]
        }),
    );
    let (result, lines) = run(&c, dir.path(), CancellationToken::new()).await;
    assert_eq!(result, Ok(()));
    // The two streams interleave in any order; each keeps its own.
    let stdout: Vec<&str> = lines
        .iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .map(|(_, l)| l.as_str())
        .collect();
    let stderr: Vec<&str> = lines
        .iter()
        .filter(|(s, _)| *s == Stream::Stderr)
        .map(|(_, l)| l.as_str())
        .collect();
    assert_eq!(stdout, ["debian qemu ch-gva-2 it's yes", "done"]);
    assert_eq!(stderr, ["problem"]);
}

#[tokio::test]
async fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let ok = config(
        dir.path(),
        json!({"type": "shell-local", "inline": ["exit 2"], "valid_exit_codes": [0, 2]}),
    );
    assert_eq!(
        run(&ok, dir.path(), CancellationToken::new()).await.0,
        Ok(())
    );

    let bad = config(
        dir.path(),
        json!({"type": "shell-local", "inline": ["exit 1"]}),
    );
    let err = run(&bad, dir.path(), CancellationToken::new())
        .await
        .0
        .unwrap_err();
    assert_eq!(
        err,
        "1 inline command(s) failed (exit code 1); valid exit codes: [0]. Its output is above \
         and in build.log"
    );

    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "echo hi\n").unwrap();
    let c = config(
        dir.path(),
        json!({"type": "shell-local", "script": script.to_str().unwrap()}),
    );
    let err = run(&c, dir.path(), CancellationToken::new())
        .await
        .0
        .unwrap_err();
    assert!(err.contains("(exit code 126)"), "{err}");
    assert!(err.contains("`chmod +x` it"), "{err}");
}

#[tokio::test]
async fn cancel_stops_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let started_marker = dir.path().join("started");
    let marker = dir.path().join("still-running");
    let c = config(
        dir.path(),
        json!({
            "type": "shell-local",
            "inline": [
                format!("(sleep 2; touch {}) &", marker.display()),
                format!("touch {}", started_marker.display()),
                "sleep 30".to_string()
            ]
        }),
    );
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let watched = started_marker.clone();
    let cancelled_at = tokio::spawn(async move {
        // Cancel once the script runs (its background child started before the marker).
        while !watched.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        trigger.cancel();
        Instant::now()
    });
    let (result, _) = run(&c, dir.path(), cancel).await;
    let returned = Instant::now();
    let cancelled_at = cancelled_at.await.unwrap();
    assert!(result.unwrap_err().starts_with("cancelled while"));
    assert!(
        returned.duration_since(cancelled_at) < Duration::from_secs(10),
        "returned {:?} after the cancel",
        returned.duration_since(cancelled_at)
    );
    // The background child was in the same group and was killed too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !marker.exists(),
        "a child of the script outlived the cancel"
    );
}

//! The `ssh` module against a real OpenSSH server on loopback (no VM): host-key pinning,
//! trust on first use, authentication failures, waiting for a server that comes up late,
//! timeouts and cancellation, streamed exec, and file transfer both ways.
//!
//! Needs the Debian package `openssh-server` (the tests fail, saying so, without it).

#[path = "support/sshd.rs"]
mod sshd;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln::build::event::Stream;
use kiln::recipe::secret::Secret;
use kiln::ssh::{
    Auth, AuthMethod, ExecOptions, ExitStatus, HostKeyPolicy, KeyPair, Session, SshError, Target,
    TransferMethod, TrustOnFirstUse, wait_for_ssh,
};
use sshd::{Agent, Sshd, SshdKeys, SshdOptions, free_port};
use tokio_util::sync::CancellationToken;

/// Generous: the tests run on a loaded 2-core machine.
const READY: Duration = Duration::from_secs(60);

async fn connect(target: &Target) -> Session {
    wait_for_ssh(target, READY, 3, &CancellationToken::new(), |_, _| {})
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", target.addr))
}

/// Runs `command`, returns (stdout lines, stderr lines, status).
async fn run(session: &Session, command: &str) -> (Vec<String>, Vec<String>, ExitStatus) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let status = session
        .exec(command, |stream, line| match stream {
            Stream::Stderr => err.push(line.to_string()),
            _ => out.push(line.to_string()),
        })
        .await
        .unwrap_or_else(|e| panic!("exec {command}: {e}"));
    (out, err, status)
}

/// Runs `command` and returns its stdout; fails unless it exits 0.
async fn stdout_of(session: &Session, command: &str) -> String {
    let (out, err, status) = run(session, command).await;
    assert!(status.success(), "{command}: {status}; stderr: {err:?}");
    out.join("\n")
}

// ---- keys ------------------------------------------------------------------------------

#[test]
fn fingerprints_match_ssh_keygen() {
    let key = KeyPair::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("id.pub");
    std::fs::write(&public, key.public_key_openssh() + "\n").unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&public)
        .output()
        .expect("ssh-keygen (Debian package openssh-client)");
    let printed = String::from_utf8(out.stdout).unwrap();
    // "256 SHA256:… kiln-build (ED25519)"
    let fields: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!(fields[1], key.fingerprint(), "{printed}");
    assert_eq!(fields[2], "kiln-build", "{printed}");
}

#[test]
fn private_key_files_load_and_encrypted_ones_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    for (name, passphrase) in [("plain", ""), ("locked", "correct horse")] {
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-C", name, "-N", passphrase, "-f"])
            .arg(dir.path().join(name))
            .status()
            .expect("ssh-keygen (Debian package openssh-client)");
        assert!(status.success());
    }
    let plain = KeyPair::from_file(&dir.path().join("plain")).unwrap();
    let public = std::fs::read_to_string(dir.path().join("plain.pub")).unwrap();
    assert_eq!(plain.public_key_openssh(), public.trim());

    let e = KeyPair::from_file(&dir.path().join("locked")).unwrap_err();
    assert!(matches!(e, SshError::KeyFileEncrypted { .. }), "{e}");
    let m = e.to_string();
    assert!(m.contains("encrypted with a passphrase"), "{m}");
    assert!(m.contains("unencrypted key"), "{m}");
    assert!(m.contains("ssh-agent"), "{m}");

    let e = KeyPair::from_file(&dir.path().join("plain.pub")).unwrap_err();
    assert!(e.to_string().contains("public key"), "{e}");
    let e = KeyPair::from_file(&dir.path().join("missing")).unwrap_err();
    assert!(e.to_string().contains("ssh_private_key_file"), "{e}");
}

// ---- connecting ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_with_the_pinned_host_key() {
    let server = Sshd::start();
    let session = connect(&server.target()).await;
    assert_eq!(
        kiln::ssh::keys::fingerprint(session.host_key()),
        server.keys.host.fingerprint()
    );
    assert_eq!(stdout_of(&session, "echo hello").await, "hello");
    assert_eq!(session.user(), server.user);
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pinned_host_key_is_refused_at_once() {
    let server = Sshd::start();
    let impostor = KeyPair::generate().unwrap();
    let mut target = server.target();
    target.host_key = HostKeyPolicy::pinned(impostor.public_key().clone());
    let started = Instant::now();
    let e = wait_for_ssh(&target, READY, 10, &CancellationToken::new(), |_, _| {})
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        e.to_string(),
        format!(
            "the guest's host key is not the one kiln injected ({} expected, {} offered): \
             something else answered on the forwarded port",
            impostor.fingerprint(),
            server.keys.host.fingerprint()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_on_first_use_records_the_key_and_holds_to_it() {
    let server = Sshd::start();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let tofu = TrustOnFirstUse::with_log(move |l| sink.lock().unwrap().push(l.to_string()));
    let mut target = server.target();
    target.host_key = HostKeyPolicy::TrustOnFirstUse(tofu.clone());

    let first = connect(&target).await;
    assert_eq!(
        tofu.recorded_fingerprint(),
        Some(server.keys.host.fingerprint())
    );
    {
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains(&server.keys.host.fingerprint()),
            "{lines:?}"
        );
    }
    // A reconnect (after a reboot, say) to the same server is fine.
    let second = connect(&target).await;
    assert_eq!(stdout_of(&second, "echo again").await, "again");
    drop((first, second));

    // Another server on the same "forwarded port" is not.
    let other = Sshd::start_with(SshdOptions {
        keys: Some(SshdKeys {
            host: KeyPair::generate().unwrap(),
            client: server.keys.client.clone(),
        }),
        ..Default::default()
    });
    target.addr = other.addr();
    let e = wait_for_ssh(&target, READY, 3, &CancellationToken::new(), |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e}");
    let m = e.to_string();
    assert!(m.contains(&server.keys.host.fingerprint()), "{m}");
    assert!(m.contains(&other.keys.host.fingerprint()), "{m}");
    assert_eq!(lines.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_key_fails_fast_with_a_clear_message() {
    let server = Sshd::start();
    let mut target = server.target();
    target.auth = Auth::Key(KeyPair::generate().unwrap());
    let mut attempts = Vec::new();
    let started = Instant::now();
    let e = wait_for_ssh(
        &target,
        Duration::from_secs(300),
        3,
        &CancellationToken::new(),
        |n, e| attempts.push((n, e.to_string())),
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "took {took:?}, not fast");
    assert!(
        matches!(
            e,
            SshError::AuthRejected {
                method: AuthMethod::Key,
                attempts: 3,
                ..
            }
        ),
        "{e:?}"
    );
    let m = e.to_string();
    assert!(
        m.starts_with(&format!(
            "the guest refused the key for user `{}` (3 attempts): is the public key in the \
             seed's ssh_authorized_keys, and is the user right",
            server.user
        )),
        "{m}"
    );
    assert_eq!(attempts.len(), 3, "{attempts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_fails_fast_and_never_shows_the_password() {
    let server = Sshd::start();
    let mut target = server.target();
    target.auth = Auth::Password(Secret::new("not-the-password-4711"));
    let mut seen = Vec::new();
    let e = wait_for_ssh(&target, READY, 2, &CancellationToken::new(), |_, e| {
        seen.push(format!("{e} {e:?}"))
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            SshError::AuthRejected {
                method: AuthMethod::Password,
                ..
            }
        ),
        "{e:?}"
    );
    let all = format!("{e} {e:?} {target:?} {}", seen.join(" "));
    assert!(!all.contains("4711"), "{all}");
    assert!(all.contains("refused the password"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_an_sshd_that_starts_two_seconds_later() {
    let keys = SshdKeys::generate();
    let port = free_port();
    let options = SshdOptions {
        port: Some(port),
        keys: Some(keys.clone()),
        ..Default::default()
    };
    let late = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs(2));
        Sshd::spawn(options)
    });
    let target = Target::new(
        format!("127.0.0.1:{port}"),
        sshd::current_user(),
        Auth::Key(keys.client.clone()),
        HostKeyPolicy::pinned(keys.host.public_key().clone()),
    );
    let mut attempts = Vec::new();
    let started = Instant::now();
    let session = wait_for_ssh(&target, READY, 3, &CancellationToken::new(), |n, e| {
        attempts.push((n, e.to_string()))
    })
    .await;
    let server = late.await.unwrap();
    let session = session.unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(attempts.len() >= 2, "{attempts:?}");
    // Polled quickly: at least one attempt per 500 ms of waiting, give or take load.
    assert!(
        attempts.len() as u128 >= started.elapsed().as_millis() / 1000,
        "{} attempts in {:?}",
        attempts.len(),
        started.elapsed()
    );
    assert!(
        attempts[0].1.contains("connecting to 127.0.0.1"),
        "{attempts:?}"
    );
    assert_eq!(stdout_of(&session, "echo up").await, "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_times_out_saying_how_long_it_waited() {
    let target = Target::new(
        format!("127.0.0.1:{}", free_port()),
        "debian",
        Auth::Key(KeyPair::generate().unwrap()),
        HostKeyPolicy::trust_on_first_use(),
    );
    let started = Instant::now();
    let e = wait_for_ssh(
        &target,
        Duration::from_millis(1500),
        3,
        &CancellationToken::new(),
        |_, _| {},
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let SshError::Timeout {
        waited, attempts, ..
    } = &e
    else {
        panic!("not a timeout: {e:?}");
    };
    assert!(*waited >= Duration::from_millis(1500));
    assert!(*attempts >= 3, "{attempts}");
    let m = e.to_string();
    assert!(
        m.starts_with(&format!("SSH on {} was not ready after 1.", target.addr)),
        "{m}"
    );
    assert!(m.contains("last error: connecting to 127.0.0.1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_never_speaks_ssh_times_out_too() {
    // Like qemu's user network while the guest boots: the port accepts, then nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let target = Target::new(
        addr.to_string(),
        "debian",
        Auth::Key(KeyPair::generate().unwrap()),
        HostKeyPolicy::trust_on_first_use(),
    );
    let started = Instant::now();
    let e = wait_for_ssh(
        &target,
        Duration::from_secs(2),
        3,
        &CancellationToken::new(),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(e, SshError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("no SSH answer within"), "{e}");
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_accepts_and_hangs_up_is_not_ready_yet() {
    // qemu's user network while sshd is not up in the guest: accept, then close at once
    // (or after a line that is not SSH). Retried until the timeout, not counted as a
    // failed handshake.
    for greeting in [&b""[..], &b"garbage\r\n"[..]] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(greeting).await;
                drop(socket);
            }
        });
        let target = Target::new(
            addr.to_string(),
            "debian",
            Auth::Key(KeyPair::generate().unwrap()),
            HostKeyPolicy::trust_on_first_use(),
        );
        let mut attempts = 0;
        let e = wait_for_ssh(
            &target,
            Duration::from_secs(2),
            2,
            &CancellationToken::new(),
            |_, _| attempts += 1,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, SshError::Timeout { .. }), "{e:?}");
        assert!(attempts > 2, "{attempts} attempts: {e}");
        assert!(e.to_string().contains("closed the connection"), "{e}");
        server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_wait_returns_promptly() {
    // Once against a closed port (between attempts), once against a silent one (inside an
    // attempt).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap().to_string();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    for addr in [format!("127.0.0.1:{}", free_port()), silent] {
        let target = Target::new(
            addr,
            "debian",
            Auth::Key(KeyPair::generate().unwrap()),
            HostKeyPolicy::trust_on_first_use(),
        );
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let cancelled_at = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            trigger.cancel();
            Instant::now()
        });
        let e = wait_for_ssh(&target, READY, 3, &cancel, |_, _| {})
            .await
            .unwrap_err();
        let returned = Instant::now();
        let cancelled_at = cancelled_at.await.unwrap();
        assert!(e.is_cancelled(), "{e:?}");
        assert!(
            returned.duration_since(cancelled_at) < Duration::from_secs(1),
            "took {:?} after cancel",
            returned.duration_since(cancelled_at)
        );
    }
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keys_authenticate() {
    let server = Sshd::start();
    let agent = Agent::start();
    let mut target = server.target();
    target.auth = Auth::Agent(Some(agent.socket.clone()));
    // An empty agent is a configuration problem: reported at once.
    let e = wait_for_ssh(&target, READY, 3, &CancellationToken::new(), |_, _| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("holds no keys"), "{e}");

    agent.add(&KeyPair::generate().unwrap());
    agent.add(&server.keys.client);
    let session = connect(&target).await;
    assert_eq!(stdout_of(&session, "echo via-agent").await, "via-agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_builds_agent_key_is_offered_so_many_agent_keys_do_not_exhaust_max_auth_tries() {
    let server = Sshd::start();
    let agent = Agent::start();
    for _ in 0..7 {
        agent.add(&KeyPair::generate().unwrap());
    }
    agent.add(&server.keys.client);
    let mut target = server.target();
    // Every key in the agent's order: sshd ends the connection after MaxAuthTries (6)
    // refusals, before the eighth key is offered.
    target.auth = Auth::Agent(Some(agent.socket.clone()));
    assert!(
        kiln::ssh::connect::connect(&target).await.is_err(),
        "sshd refuses the eighth key after six failures"
    );
    // Only the build's key: accepted at once.
    target.auth = Auth::AgentKeys {
        socket: Some(agent.socket.clone()),
        keys: vec![server.keys.client.public_key().clone()],
    };
    let session = connect(&target).await;
    assert_eq!(stdout_of(&session, "echo chosen-key").await, "chosen-key");
    // A key the agent no longer holds: said at once, with what to do.
    let gone = KeyPair::generate().unwrap();
    target.auth = Auth::AgentKeys {
        socket: Some(agent.socket.clone()),
        keys: vec![gone.public_key().clone()],
    };
    let e = wait_for_ssh(&target, READY, 3, &CancellationToken::new(), |_, _| {})
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("no longer holds the build's key")
            && e.to_string().contains(&gone.fingerprint())
            && e.to_string().contains("ssh-add"),
        "{e}"
    );
}

// ---- exec ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_lines_in_order_with_stdout_and_stderr_apart() {
    let server = Sshd::start();
    let session = connect(&server.target()).await;
    let (out, err, status) = run(
        &session,
        "for i in 1 2 3; do echo out$i; echo err$i >&2; done; printf 'no newline'",
    )
    .await;
    assert_eq!(out, ["out1", "out2", "out3", "no newline"]);
    assert_eq!(err, ["err1", "err2", "err3"]);
    assert_eq!(status, ExitStatus::Code(0));

    // Many lines, in order, across many channel packets.
    let (out, _, status) = run(&session, "seq 1 20000").await;
    assert!(status.success());
    assert_eq!(out.len(), 20000);
    assert!(
        out.iter()
            .enumerate()
            .all(|(i, l)| *l == (i + 1).to_string())
    );

    // Invalid UTF-8 is replaced, not fatal; a line split across writes stays whole.
    let (out, _, _) = run(
        &session,
        r"printf 'caf\303'; sleep 0.2; printf '\251\n\377\n'",
    )
    .await;
    assert_eq!(out, ["café", "\u{fffd}"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reports_exit_codes_signals_and_lost_connections() {
    let server = Sshd::start();
    let session = connect(&server.target()).await;
    assert_eq!(run(&session, "true").await.2, ExitStatus::Code(0));
    let (_, err, status) = run(&session, "echo failing >&2; exit 3").await;
    assert_eq!(status, ExitStatus::Code(3));
    assert_eq!(status.code(), Some(3));
    assert_eq!(err, ["failing"]);

    let (_, _, status) = run(&session, "kill -9 $$").await;
    assert!(
        matches!(&status, ExitStatus::Signal { name, .. } if name == "KILL"),
        "{status:?}"
    );
    // The session survives a killed command.
    assert_eq!(stdout_of(&session, "echo still-here").await, "still-here");

    // Killing the server side of the connection loses it: not an error, and told apart.
    // (What the command printed just before may be lost with the connection.)
    let (_, _, status) = run(&session, "kill -9 $PPID; sleep 5").await;
    assert_eq!(status, ExitStatus::ConnectionLost, "{status}");
    // A new command on the dead connection is an error that says so.
    let e = session.exec("true", |_, _| {}).await.unwrap_err();
    assert!(matches!(e, SshError::ConnectionLost { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_pty() {
    let server = Sshd::start();
    let session = connect(&server.target()).await;
    let mut lines = Vec::new();
    let status = session
        .exec_with(
            "tty; echo to-stderr >&2",
            &ExecOptions::with_pty(true),
            &CancellationToken::new(),
            |stream, line| lines.push((stream, line.to_string())),
        )
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(lines[0].1.starts_with("/dev/pts/"), "{lines:?}");
    // With a pty, everything arrives on one stream, without \r.
    assert_eq!(
        lines[1],
        (Stream::Stdout, "to-stderr".to_string()),
        "{lines:?}"
    );

    let (out, _, status) = run(&session, "tty").await;
    assert_eq!(status, ExitStatus::Code(1));
    assert_eq!(out, ["not a tty"]);
}

/// Pids of processes whose command line is exactly `cmdline`.
fn pids_of(cmdline: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-x", "-f", cmdline])
        .output()
        .expect("pgrep (Debian package procps)");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_exec_returns_promptly_and_hangs_up_a_pty_command() {
    let server = Sshd::start();
    let session = connect(&server.target()).await;
    for pty in [false, true] {
        // A sleep with a duration no other process uses, to find it afterwards.
        let sleeper = format!(
            "sleep {}",
            400_000 + 2 * std::process::id() + u32::from(pty)
        );
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let cancelled_at = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            trigger.cancel();
            Instant::now()
        });
        let mut lines = Vec::new();
        let e = session
            .exec_with(
                &format!("echo started; exec {sleeper}"),
                &ExecOptions::with_pty(pty),
                &cancel,
                |_, l| lines.push(l.to_string()),
            )
            .await
            .unwrap_err();
        let returned = Instant::now();
        assert!(e.is_cancelled(), "{e:?}");
        let cancelled_at = cancelled_at.await.unwrap();
        assert!(
            returned.duration_since(cancelled_at) < Duration::from_secs(1),
            "pty {pty}: {:?}",
            returned.duration_since(cancelled_at)
        );
        assert_eq!(lines, ["started"], "pty {pty}");
        if pty {
            // Closing the channel hangs up the pty: the command ends.
            let gone = Instant::now();
            while !pids_of(&sleeper).is_empty() {
                assert!(
                    gone.elapsed() < Duration::from_secs(20),
                    "`{sleeper}` still runs after cancel"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } else {
            // Without a pty only the TERM signal request can stop it, and OpenSSH refuses
            // that for root sessions (these tests log in as root); end it here.
            for pid in pids_of(&sleeper) {
                let _ = std::process::Command::new("kill").arg(&pid).status();
            }
        }
    }
    // The session is still usable.
    assert_eq!(stdout_of(&session, "echo next").await, "next");
}

// ---- transfer ------------------------------------------------------------------------------

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

fn local_sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

async fn remote_sha256(session: &Session, path: &str) -> String {
    stdout_of(session, &format!("sha256sum '{path}'")).await[..64].to_string()
}

/// Writes a small tree: a.txt, sub/run.sh (0755), sub/deep/blob.bin (300 KiB).
fn make_tree(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root.join("sub/deep")).unwrap();
    std::fs::write(root.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(root.join("sub/run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(
        root.join("sub/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(root.join("sub/deep/blob.bin"), noise(300 * 1024, 7)).unwrap();
}

/// `find DIR -type f` relative and sorted, with modes and checksums, run remotely.
async fn remote_listing(session: &Session, dir: &str) -> String {
    stdout_of(
        session,
        &format!(
            "cd '{dir}' && find . -type f -printf '%P %m\\n' | sort && \
             find . -type f | sort | xargs sha256sum"
        ),
    )
    .await
}

fn local_listing(dir: &Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("find . -type f -printf '%P %m\\n' | sort && find . -type f | sort | xargs sha256sum")
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

async fn uploads_and_downloads(server: &Sshd, method: TransferMethod) {
    let session = connect(&server.target()).await;
    let cancel = CancellationToken::new();
    assert_eq!(session.transfer_method(&cancel).await.unwrap(), method);
    let local = tempfile::tempdir().unwrap();
    let remote_root = server.dir.path().join("remote");
    std::fs::create_dir(&remote_root).unwrap();
    let remote = remote_root.to_str().unwrap().to_string();

    // Bytes (a script made from `inline`), with a mode, then run.
    let script = b"#!/bin/sh\necho \"inline says $1\"\n";
    let mut seen = Vec::new();
    session
        .upload_bytes(
            script,
            &format!("{remote}/inline.sh"),
            0o755,
            &cancel,
            |d, t| seen.push((d, t)),
        )
        .await
        .unwrap();
    assert_eq!(
        seen.last(),
        Some(&(script.len() as u64, script.len() as u64))
    );
    assert_eq!(
        stdout_of(
            &session,
            &format!("{remote}/inline.sh hi; stat -c %a {remote}/inline.sh")
        )
        .await,
        "inline says hi\n755"
    );
    // Overwriting changes content and mode.
    session
        .upload_bytes(
            b"echo second",
            &format!("{remote}/inline.sh"),
            0o600,
            &cancel,
            |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(
        stdout_of(
            &session,
            &format!("cat {remote}/inline.sh; echo; stat -c %a {remote}/inline.sh")
        )
        .await,
        "echo second\n600"
    );

    // A file, 1 MiB plus change, progress monotonic up to the total.
    let big = local.path().join("big.bin");
    std::fs::write(&big, noise(1024 * 1024 + 4321, 1)).unwrap();
    let mut seen: Vec<(u64, u64)> = Vec::new();
    session
        .upload_file(
            &big,
            &format!("{remote}/big.bin"),
            Some(0o640),
            &cancel,
            |d, t| seen.push((d, t)),
        )
        .await
        .unwrap();
    let total = 1024 * 1024 + 4321;
    assert_eq!(seen.last(), Some(&(total, total)));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    assert!(seen.len() >= 3, "{seen:?}");
    assert_eq!(
        remote_sha256(&session, &format!("{remote}/big.bin")).await,
        local_sha256(&big)
    );
    assert_eq!(
        stdout_of(&session, &format!("stat -c %a {remote}/big.bin")).await,
        "640"
    );

    // A file into a directory (trailing slash, or an existing directory).
    let dest = session
        .upload(&big, &format!("{remote}/"), &cancel, |_, _| {})
        .await
        .unwrap();
    assert_eq!(dest, format!("{remote}/big.bin"));

    // Directories, Packer style: `src` → remote/src, `src/` → its contents.
    let src = local.path().join("src");
    make_tree(&src);
    let expected = local_listing(&src);
    let mut last = (0, 0);
    let dest = session
        .upload(&src, &format!("{remote}/with"), &cancel, |d, t| {
            last = (d, t)
        })
        .await
        .unwrap();
    assert_eq!(dest, format!("{remote}/with/src"));
    assert_eq!(remote_listing(&session, &dest).await, expected);
    let tree_size = 6 + 19 + 300 * 1024;
    assert_eq!(last, (tree_size, tree_size));
    let contents = local.path().join("src/");
    let dest = session
        .upload(&contents, &format!("{remote}/flat"), &cancel, |_, _| {})
        .await
        .unwrap();
    assert_eq!(dest, format!("{remote}/flat"));
    assert_eq!(remote_listing(&session, &dest).await, expected);
    assert_eq!(
        stdout_of(&session, &format!("{remote}/flat/sub/run.sh")).await,
        "ran"
    );

    // Download a file: to a path, and into a directory.
    let back = local.path().join("back");
    std::fs::create_dir(&back).unwrap();
    let mut last = (0, 0);
    session
        .download_file(
            &format!("{remote}/big.bin"),
            &back.join("copy.bin"),
            &cancel,
            |d, t| last = (d, t),
        )
        .await
        .unwrap();
    assert_eq!(local_sha256(&back.join("copy.bin")), local_sha256(&big));
    assert_eq!(last.0, total);
    let into = session
        .download(&format!("{remote}/inline.sh"), &back, &cancel, |_, _| {})
        .await
        .unwrap();
    assert_eq!(into, back.join("inline.sh"));
    assert_eq!(std::fs::read_to_string(&into).unwrap(), "echo second");

    // Download a directory (SFTP only).
    let got = session
        .download(&format!("{remote}/flat"), &back, &cancel, |_, _| {})
        .await;
    match method {
        TransferMethod::Sftp => {
            let got = got.unwrap();
            assert_eq!(got, back.join("flat"));
            assert_eq!(local_listing(&got), expected);
            let got = session
                .download(
                    &format!("{remote}/flat/"),
                    &back.join("contents"),
                    &cancel,
                    |_, _| {},
                )
                .await
                .unwrap();
            assert_eq!(got, back.join("contents"));
            assert_eq!(local_listing(&got), expected);
        }
        TransferMethod::Exec => {
            let e = got.unwrap_err();
            assert!(
                e.to_string().contains("needs the guest's SFTP subsystem"),
                "{e}"
            );
        }
    }

    // Errors name the remote path.
    let e = session
        .upload_bytes(b"x", "/nonexistent-dir/kiln/x", 0o644, &cancel, |_, _| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("/nonexistent-dir/kiln/x"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_over_sftp() {
    let server = Sshd::start();
    uploads_and_downloads(&server, TransferMethod::Sftp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_fall_back_to_exec_without_sftp() {
    let server = Sshd::start_with(SshdOptions {
        sftp: false,
        ..Default::default()
    });
    uploads_and_downloads(&server, TransferMethod::Exec).await;
}

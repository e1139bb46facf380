//! A desktop notification when a long build ends while the window is not in front: the
//! freedesktop Notifications service on the session D-Bus (GNOME, KDE, XFCE, dunst, mako…).
//! Behind a trait so tests record notifications instead of showing them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::build::event::Outcome;

/// Builds shorter than this end without a notification (the user is likely still watching).
pub const DEFAULT_NOTIFY_AFTER: Duration = Duration::from_secs(60);

/// What a notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The one-line summary.
    pub summary: String,
    /// The details.
    pub body: String,
    /// A failure asks for attention (the "critical" urgency).
    pub critical: bool,
}

/// Shows notifications.
pub trait Notifier: Send + Sync {
    /// Shows `notification`; failures (no notification service) are only logged.
    fn notify(&self, notification: Notification);
}

/// Whether a build that ran for `duration` ends with a notification: it was long enough
/// (`after`) and the window is not known to be focused.
pub fn should_notify(duration: Duration, after: Duration, focused: Option<bool>) -> bool {
    duration >= after && focused != Some(true)
}

/// The notification for the end of build `name`.
pub fn build_ended(
    name: &str,
    outcome: &Outcome,
    duration: Duration,
    artifact: Option<&Path>,
) -> Notification {
    let took = format_duration(duration);
    let (summary, body, critical) = match outcome {
        Outcome::Done | Outcome::Skipped(_) => (
            format!("kiln: {name} built"),
            match artifact {
                Some(path) => format!("Finished in {took}: {}", path.display()),
                None => format!("Finished in {took}."),
            },
            false,
        ),
        Outcome::Failed(message) => (
            format!("kiln: {name} failed"),
            format!(
                "After {took}: {}",
                message.lines().next().unwrap_or_default()
            ),
            true,
        ),
        Outcome::Cancelled => (
            format!("kiln: {name} cancelled"),
            format!("Cancelled after {took}."),
            false,
        ),
    };
    Notification {
        summary,
        body,
        critical,
    }
}

fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

/// The freedesktop Notifications service, called from the tokio runtime.
#[derive(Debug, Clone)]
pub struct DesktopNotifier {
    runtime: Handle,
}

impl DesktopNotifier {
    /// A notifier that makes its D-Bus calls on `runtime`.
    pub fn new(runtime: Handle) -> Self {
        Self { runtime }
    }
}

impl Notifier for DesktopNotifier {
    fn notify(&self, notification: Notification) {
        self.runtime.spawn(async move {
            if let Err(e) = send(&notification).await {
                tracing::info!("no desktop notification ({e}): {}", notification.summary);
            }
        });
    }
}

/// `org.freedesktop.Notifications.Notify` on the session bus; returns the notification's id.
pub async fn send(notification: &Notification) -> zbus::Result<u32> {
    send_on(&zbus::Connection::session().await?, notification).await
}

/// `org.freedesktop.Notifications.Notify` on `connection`'s bus; returns the notification's id.
pub async fn send_on(
    connection: &zbus::Connection,
    notification: &Notification,
) -> zbus::Result<u32> {
    let mut hints: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
    hints.insert(
        "urgency",
        zbus::zvariant::Value::U8(if notification.critical { 2 } else { 1 }),
    );
    hints.insert(
        "desktop-entry",
        zbus::zvariant::Value::from("io.github.kiln.Kiln"),
    );
    let reply = connection
        .call_method(
            Some("org.freedesktop.Notifications"),
            "/org/freedesktop/Notifications",
            Some("org.freedesktop.Notifications"),
            "Notify",
            &(
                "kiln",
                0u32,
                "io.github.kiln.Kiln",
                notification.summary.as_str(),
                notification.body.as_str(),
                Vec::<&str>::new(),
                hints,
                -1i32,
            ),
        )
        .await?;
    reply.body().deserialize::<u32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_long_builds_of_an_unfocused_window_notify() {
        let minute = Duration::from_secs(60);
        assert!(should_notify(minute, minute, Some(false)));
        assert!(should_notify(minute, minute, None));
        assert!(!should_notify(minute, minute, Some(true)));
        assert!(!should_notify(Duration::from_secs(59), minute, Some(false)));
    }

    #[test]
    fn the_text_says_how_it_ended_and_how_long_it_took() {
        let ok = build_ended(
            "debian",
            &Outcome::Done,
            Duration::from_secs(754),
            Some(Path::new("/out/debian.qcow2")),
        );
        assert_eq!(ok.summary, "kiln: debian built");
        assert_eq!(ok.body, "Finished in 12 min 34 s: /out/debian.qcow2");
        assert!(!ok.critical);
        let failed = build_ended(
            "debian",
            &Outcome::Failed("Provision 1/1: exit 1\nmore lines".into()),
            Duration::from_secs(3700),
            None,
        );
        assert_eq!(failed.summary, "kiln: debian failed");
        assert_eq!(failed.body, "After 1 h 1 min: Provision 1/1: exit 1");
        assert!(failed.critical);
        let cancelled = build_ended("d", &Outcome::Cancelled, Duration::from_secs(5), None);
        assert_eq!(cancelled.body, "Cancelled after 5 s.");
    }
}

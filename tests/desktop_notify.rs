//! The end-of-build notification over a real D-Bus: a private `dbus-daemon` (no service activation), a
//! stand-in notification service on it that records what it is sent (as GNOME Shell or dunst
//! would receive it), and kiln's `Notify` call.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "support/private_bus.rs"]
mod private_bus;

use kiln::build::event::Outcome;
use kiln::gui::notify::{build_ended, send_on};
use private_bus::PrivateBus;
use zbus::zvariant::OwnedValue;

/// One `Notify` call as the service received it.
#[derive(Debug, Clone)]
struct Received {
    app_name: String,
    app_icon: String,
    summary: String,
    body: String,
    urgency: Option<u8>,
    expire_timeout: i32,
}

struct Service {
    received: Arc<Mutex<Vec<Received>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Service {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        hints: HashMap<String, OwnedValue>,
        expire_timeout: i32,
    ) -> u32 {
        let urgency = hints.get("urgency").and_then(|v| u8::try_from(v).ok());
        let mut received = self.received.lock().unwrap();
        received.push(Received {
            app_name,
            app_icon,
            summary,
            body,
            urgency,
            expire_timeout,
        });
        received.len() as u32
    }
}

#[test]
fn a_finished_build_reaches_the_notification_service() {
    let bus = PrivateBus::start();
    let address = bus.address().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let outcome = runtime.block_on(async {
        let _service = zbus::connection::Builder::address(address.as_str())
            .unwrap()
            .name("org.freedesktop.Notifications")
            .unwrap()
            .serve_at(
                "/org/freedesktop/Notifications",
                Service {
                    received: received.clone(),
                },
            )
            .unwrap()
            .build()
            .await
            .unwrap();
        let client = zbus::connection::Builder::address(address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let done = build_ended(
            "debian",
            &Outcome::Done,
            Duration::from_secs(754),
            Some(Path::new("/out/debian.qcow2")),
        );
        let first = send_on(&client, &done).await;
        let failed = build_ended(
            "debian",
            &Outcome::Failed("Provision 1/1: exit 1".into()),
            Duration::from_secs(90),
            None,
        );
        let second = send_on(&client, &failed).await;
        (first, second)
    });
    drop(bus);
    assert_eq!(outcome.0.unwrap(), 1, "the service's id comes back");
    assert_eq!(outcome.1.unwrap(), 2);
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[0].app_name, "kiln");
    assert_eq!(received[0].app_icon, "io.github.kiln.Kiln");
    assert_eq!(received[0].summary, "kiln: debian built");
    assert_eq!(
        received[0].body,
        "Finished in 12 min 34 s: /out/debian.qcow2"
    );
    assert_eq!(received[0].urgency, Some(1));
    assert_eq!(received[0].expire_timeout, -1);
    assert_eq!(received[1].summary, "kiln: debian failed");
    assert_eq!(received[1].urgency, Some(2), "a failure is critical");
}

#[test]
fn without_a_notification_service_the_call_fails_instead_of_hanging() {
    let bus = PrivateBus::start();
    let address = bus.address().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let result = runtime.block_on(async {
        let client = zbus::connection::Builder::address(address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let note = build_ended("d", &Outcome::Cancelled, Duration::from_secs(61), None);
        tokio::time::timeout(Duration::from_secs(10), send_on(&client, &note)).await
    });
    drop(bus);
    let answer = result.expect("the call returns within 10 s");
    let error = answer.expect_err("nobody owns org.freedesktop.Notifications");
    assert!(
        error.to_string().contains("ServiceUnknown")
            || error.to_string().contains("org.freedesktop.Notifications"),
        "{error}"
    );
}

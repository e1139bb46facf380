//! The real file dialog code path over a real D-Bus: a private `dbus-daemon`, a stand-in XDG
//! desktop portal on it (`org.freedesktop.portal.Desktop` at `/org/freedesktop/portal/desktop`
//! with `org.freedesktop.portal.FileChooser`), and kiln's [`RfdDialogs`] driven through the
//! [`FileDialogs`] trait exactly as the window drives it: `pick`, then the answer through the
//! callback, from another thread.
//!
//! The stand-in answers the way xdg-desktop-portal does (`src/request.c` there): the method
//! returns the request handle `/org/freedesktop/portal/desktop/request/<sender>/<handle_token>`
//! (the caller's unique name without ':' and with '.' → '_'), and the user's answer comes
//! later as `org.freedesktop.portal.Request.Response(u32, a{sv})`, emitted on that path and
//! addressed to the caller. rfd (0.17, `xdg-portal` feature) talks to it through libdbus
//! (loaded at run time, no ashpd, no GTK); it subscribes to `Response` before calling, never
//! calls `Request.Close` and never reads the portal's `version` property, so the stand-in has
//! neither.
//!
//! libdbus reads `DBUS_SESSION_BUS_ADDRESS` once per process, so every case shares one bus
//! and runs, in order, in the one test below.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

#[path = "support/private_bus.rs"]
mod private_bus;

use kiln::gui::dialogs::{FileDialogs, Pick, PickAnswer, RfdDialogs};
use private_bus::PrivateBus;
use zbus::message::Header;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

/// The longest any single step may take before the test gives up (a hang is a failure, not
/// a stuck test run).
const DEADLINE: Duration = Duration::from_secs(20);

/// The filter kiln's dialogs offer, as it reaches the portal (`a(sa(us))`: 0 = a glob).
fn json_filter() -> Filters {
    vec![("Packer recipe (JSON)".into(), vec![(0, "*.json".into())])]
}

/// The portal's `filters` option: (name, [(kind, pattern)]), kind 0 a glob, 1 a MIME type.
type Filters = Vec<(String, Vec<(u32, String)>)>;

/// One `OpenFile` or `SaveFile` call as the portal received it.
#[derive(Debug, Clone)]
struct Request {
    /// `OpenFile` or `SaveFile`.
    method: &'static str,
    /// The caller's unique bus name (`:1.5`).
    sender: String,
    parent_window: String,
    title: String,
    handle_token: Option<String>,
    current_name: Option<String>,
    /// The raw bytes of `current_folder` (the spec: a NUL-terminated byte string).
    current_folder: Option<Vec<u8>>,
    filters: Option<Filters>,
    multiple: Option<bool>,
    /// The request handle the portal returned.
    handle: String,
}

/// The stand-in portal: records each call and hands it to the test, which plays the user.
struct FileChooser {
    requests: mpsc::Sender<Request>,
}

impl FileChooser {
    fn take(
        &self,
        method: &'static str,
        header: &Header<'_>,
        parent_window: String,
        title: String,
        mut options: HashMap<String, OwnedValue>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let bad = |what: &str, e: zbus::zvariant::Error| {
            zbus::fdo::Error::InvalidArgs(format!("option {what}: {e}"))
        };
        let sender = header
            .sender()
            .ok_or_else(|| zbus::fdo::Error::Failed("a call without a sender".into()))?
            .to_string();
        let handle_token = match options.remove("handle_token") {
            Some(v) => Some(String::try_from(v).map_err(|e| bad("handle_token", e))?),
            None => None,
        };
        let current_name = match options.remove("current_name") {
            Some(v) => Some(String::try_from(v).map_err(|e| bad("current_name", e))?),
            None => None,
        };
        let current_folder = match options.remove("current_folder") {
            Some(v) => Some(Vec::<u8>::try_from(v).map_err(|e| bad("current_folder", e))?),
            None => None,
        };
        let filters = match options.remove("filters") {
            Some(v) => Some(
                Vec::<(String, Vec<(u32, String)>)>::try_from(v).map_err(|e| bad("filters", e))?,
            ),
            None => None,
        };
        let multiple = match options.remove("multiple") {
            Some(v) => Some(bool::try_from(v).map_err(|e| bad("multiple", e))?),
            None => None,
        };
        // As xdg-desktop-portal: without a token the last element is "t".
        let handle = format!(
            "/org/freedesktop/portal/desktop/request/{}/{}",
            sender.trim_start_matches(':').replace('.', "_"),
            handle_token.as_deref().unwrap_or("t")
        );
        let path = OwnedObjectPath::try_from(handle.clone())
            .map_err(|e| zbus::fdo::Error::InvalidArgs(format!("handle_token: {e}")))?;
        self.requests
            .send(Request {
                method,
                sender,
                parent_window,
                title,
                handle_token,
                current_name,
                current_folder,
                filters,
                multiple,
                handle,
            })
            .map_err(|_| zbus::fdo::Error::Failed("the test is gone".into()))?;
        Ok(path)
    }
}

#[zbus::interface(name = "org.freedesktop.portal.FileChooser")]
impl FileChooser {
    /// `OpenFile(s parent_window, s title, a{sv} options) -> o handle`.
    fn open_file(
        &self,
        #[zbus(header)] header: Header<'_>,
        parent_window: String,
        title: String,
        options: HashMap<String, OwnedValue>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.take("OpenFile", &header, parent_window, title, options)
    }

    /// `SaveFile(s parent_window, s title, a{sv} options) -> o handle`.
    fn save_file(
        &self,
        #[zbus(header)] header: Header<'_>,
        parent_window: String,
        title: String,
        options: HashMap<String, OwnedValue>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.take("SaveFile", &header, parent_window, title, options)
    }
}

/// Asks `dialogs` for `pick` as the window does; the answer arrives on the returned channel.
fn ask(dialogs: &dyn FileDialogs, pick: Pick, dir: Option<PathBuf>) -> Receiver<PickAnswer> {
    let (tx, rx) = mpsc::channel();
    dialogs.pick(
        pick,
        dir,
        Box::new(move |answer| {
            let _ = tx.send(answer);
        }),
    );
    rx
}

/// The callback's answer, within the deadline.
fn answer_of(rx: &Receiver<PickAnswer>, what: &str) -> PickAnswer {
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|e| panic!("{what}: no answer from the dialog within {DEADLINE:?} ({e})"))
}

/// The next call the portal received, within the deadline.
fn next_request(requests: &Receiver<Request>, what: &str) -> Request {
    requests
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|e| panic!("{what}: the portal was not called within {DEADLINE:?} ({e})"))
}

/// `path` as the portal sends it: a percent-encoded `file://` URI.
fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

/// `dir` as `current_folder` should carry it: its bytes and a closing NUL.
fn folder_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = dir.as_os_str().as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// The stand-in portal's user closes the dialog: `Response(response, results)` on the
/// request's handle, addressed to the caller (as xdg-desktop-portal sends it).
fn respond(
    runtime: &tokio::runtime::Runtime,
    portal: &zbus::Connection,
    request: &Request,
    response: u32,
    uri: Option<&str>,
) {
    let mut results: HashMap<&str, Value<'_>> = HashMap::new();
    if let Some(uri) = uri {
        results.insert("uris", Value::from(vec![uri]));
        // The real portal also says which filter was selected; rfd must skip over it.
        results.insert(
            "current_filter",
            Value::from(("Packer recipe (JSON)", vec![(0u32, "*.json")])),
        );
    }
    runtime
        .block_on(async {
            tokio::time::timeout(
                DEADLINE,
                portal.emit_signal(
                    Some(request.sender.as_str()),
                    request.handle.as_str(),
                    "org.freedesktop.portal.Request",
                    "Response",
                    &(response, results),
                ),
            )
            .await
        })
        .expect("the Response signal is sent in time")
        .expect("the Response signal is sent");
}

/// Checks that the dialog is still waiting for its user (the callback has not run). The
/// pause also lets the portal's reply reach rfd before the `Response` is sent, as with the real
/// portal: rfd 0.17 blocks in `dbus_connection_read_write(-1)` before looking at messages
/// already queued, so a `Response` read together with the reply would never be seen.
fn still_open(rx: &Receiver<PickAnswer>, what: &str) {
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        rx.try_recv(),
        Err(TryRecvError::Empty),
        "{what}: the callback ran before the user answered"
    );
}

#[test]
fn the_desktop_file_dialog_goes_through_the_xdg_portal() {
    let started = Instant::now();
    let bus = PrivateBus::start();
    // SAFETY: this is the only test in this binary and it has started no thread yet (the
    // harness's main thread only waits for it; dbus-daemon is a child process), so nothing
    // reads the environment while it changes. libdbus (in rfd) reads the address once, at
    // its first use below. Without DISPLAY or WAYLAND_DISPLAY, rfd's zenity fallback (used
    // when the portal call fails) cannot open a window that would wait for a person.
    unsafe {
        std::env::set_var("DBUS_SESSION_BUS_ADDRESS", bus.address());
        std::env::remove_var("DISPLAY");
        std::env::remove_var("WAYLAND_DISPLAY");
    }
    let dialogs = RfdDialogs;
    let folder = tempfile::tempdir().expect("a temporary directory");
    let dir = folder.path().to_path_buf();

    // 1. No portal on the bus at all (and no display for zenity): the window hears back,
    //    promptly, that there is no dialog here and what to do instead.
    let t = Instant::now();
    let rx = ask(&dialogs, Pick::OpenRecipe, Some(dir.clone()));
    match answer_of(&rx, "without a portal") {
        PickAnswer::Failed(why) => assert!(
            why.contains(
                "No file dialog on this desktop: no XDG desktop portal on the session bus"
            ) && why.contains("type the path"),
            "{why}"
        ),
        other => panic!("without a portal: {other:?}"),
    }
    eprintln!("without a portal the dialog said so in {:?}", t.elapsed());

    // The stand-in portal appears.
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (requests_tx, requests) = mpsc::channel();
    let portal = runtime
        .block_on(async {
            zbus::connection::Builder::address(bus.address())?
                .name("org.freedesktop.portal.Desktop")?
                .serve_at(
                    "/org/freedesktop/portal/desktop",
                    FileChooser {
                        requests: requests_tx,
                    },
                )?
                .build()
                .await
        })
        .expect("the stand-in portal is on the bus");

    // 2. Open…: everything the window asks for reaches the portal; the chosen file comes back.
    let rx = ask(&dialogs, Pick::OpenRecipe, Some(dir.clone()));
    let req = next_request(&requests, "Open");
    assert_eq!(req.method, "OpenFile");
    assert_eq!(req.title, "Open a recipe");
    assert_eq!(req.parent_window, "", "no parent window is given");
    assert_eq!(req.multiple, Some(false), "one file at a time");
    assert_eq!(req.current_folder, Some(folder_bytes(&dir)));
    assert_eq!(req.current_name, None);
    assert_eq!(req.filters, Some(json_filter()));
    let token = req.handle_token.clone().expect("a handle_token is sent");
    assert!(!token.is_empty());
    assert!(
        req.handle.ends_with(&format!("/{token}")),
        "{} ends with the token",
        req.handle
    );
    still_open(&rx, "Open");
    // A name with a space and non-ASCII letters, percent-encoded in the URI.
    let chosen = dir.join("débian 12 (copy).json");
    respond(&runtime, &portal, &req, 0, Some(&file_uri(&chosen)));
    assert_eq!(answer_of(&rx, "Open"), PickAnswer::Chosen(chosen));

    // 3. The three Save dialogs: the suggested name and the starting folder reach the portal.
    let saves = [
        (
            Pick::NewRecipe {
                suggested: "new-recipe.json".into(),
            },
            "Save the new recipe as",
            "new-recipe.json",
        ),
        (
            Pick::SaveRecipeAs {
                suggested: "debian.json".into(),
            },
            "Save the recipe as",
            "debian.json",
        ),
        (
            Pick::SaveVarFile {
                suggested: "debian.vars.json".into(),
            },
            "Save the variables as a var-file",
            "debian.vars.json",
        ),
    ];
    for (pick, title, suggested) in saves {
        let what = format!("{pick:?}");
        let rx = ask(&dialogs, pick, Some(dir.clone()));
        let req = next_request(&requests, &what);
        assert_eq!(req.method, "SaveFile", "{what}");
        assert_eq!(req.title, title, "{what}");
        assert_eq!(req.current_name.as_deref(), Some(suggested), "{what}");
        assert_eq!(req.current_folder, Some(folder_bytes(&dir)), "{what}");
        assert_eq!(req.filters, Some(json_filter()), "{what}");
        assert!(req.handle_token.is_some(), "{what}: a handle_token is sent");
        still_open(&rx, &what);
        let chosen = dir.join(format!("saved-{suggested}"));
        respond(&runtime, &portal, &req, 0, Some(&file_uri(&chosen)));
        assert_eq!(answer_of(&rx, &what), PickAnswer::Chosen(chosen), "{what}");
    }

    // 4. Cancelled (response 1) and ended otherwise (2): no path.
    let rx = ask(&dialogs, Pick::OpenRecipe, None);
    let req = next_request(&requests, "cancelled Open");
    assert_eq!(req.current_folder, None, "no starting folder was given");
    still_open(&rx, "cancelled Open");
    respond(&runtime, &portal, &req, 1, None);
    assert_eq!(answer_of(&rx, "cancelled Open"), PickAnswer::Cancelled);

    let rx = ask(
        &dialogs,
        Pick::SaveRecipeAs {
            suggested: "x.json".into(),
        },
        Some(dir.clone()),
    );
    let req = next_request(&requests, "failed Save");
    still_open(&rx, "failed Save");
    respond(&runtime, &portal, &req, 2, None);
    assert_eq!(answer_of(&rx, "failed Save"), PickAnswer::Cancelled);

    // 5. The portal leaves the bus while its dialog is open (it crashed or was restarted):
    //    rfd alone would wait for that dialog forever; the window hears back that it broke.
    let rx = ask(&dialogs, Pick::OpenRecipe, Some(dir.clone()));
    let req = next_request(&requests, "Open, then the portal leaves");
    assert_eq!(req.method, "OpenFile");
    still_open(&rx, "Open, then the portal leaves");
    runtime
        .block_on(async { tokio::time::timeout(DEADLINE, portal.close()).await })
        .expect("the portal's connection closes in time")
        .expect("the portal's connection closes");
    let t = Instant::now();
    match answer_of(&rx, "Open, then the portal leaves") {
        PickAnswer::Failed(why) => assert!(why.contains("portal left"), "{why}"),
        other => panic!("after the portal left: {other:?}"),
    }
    eprintln!(
        "after the portal left the dialog said so in {:?}",
        t.elapsed()
    );

    // rfd's thread still waits for that dialog, and libdbus ends the whole process
    // (`_exit(1)`) when its bus goes away; so a portal comes back and closes the dialog, and
    // the bus is stopped only once rfd's connection has left it.
    let again = runtime
        .block_on(async {
            zbus::connection::Builder::address(bus.address())?
                .name("org.freedesktop.portal.Desktop")?
                .build()
                .await
        })
        .expect("a portal is back on the bus");
    respond(&runtime, &again, &req, 1, None);
    let gone_by = Instant::now() + DEADLINE;
    runtime.block_on(async {
        let dbus = zbus::fdo::DBusProxy::new(&again)
            .await
            .expect("a proxy for the bus");
        let name = zbus::names::BusName::try_from(req.sender.as_str()).expect("a bus name");
        while dbus.name_has_owner(name.clone()).await.unwrap_or(false) {
            assert!(
                Instant::now() < gone_by,
                "rfd's connection is still on the bus after {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    drop(again);
    drop(runtime);
    eprintln!("all file dialog cases took {:?}", started.elapsed());
}

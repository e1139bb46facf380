//! What publishing needs from the machine, for the host check: Exoscale credentials kiln can
//! find (the environment, or a default profile in the keyring) and a network path to the
//! Exoscale API. Both are warnings when missing, never failures: local builds need neither.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::Duration;

use super::check::{Check, Status};
use crate::exoscale::credentials::{KEY_ENV, SECRET_ENV};
use crate::exoscale::zone::{api_base, endpoint_override_from_env};
use crate::secrets::profiles::{ProfileSummary, Profiles};

/// How long the network check waits for name resolution and a TCP connection together.
const REACH_TIMEOUT: Duration = Duration::from_secs(4);

/// The zone whose API endpoint is tried when no default profile names one.
const FALLBACK_ZONE: &str = "ch-gva-2";

/// What adding credentials takes, in both front ends' words.
const ADD_PROFILE: &str = "kiln credentials set NAME --zone ZONE (in the window: Credentials → Add a profile), or set EXOSCALE_API_KEY and EXOSCALE_API_SECRET";

fn check(name: &str, status: Status, detail: String, fix: Option<&str>) -> Check {
    Check {
        name: name.into(),
        status,
        detail,
        fix: fix.map(str::to_string),
    }
}

/// The credentials line and the network line; the network line tries the API endpoint of
/// the default profile's zone.
pub fn checks() -> Vec<Check> {
    let environment = [KEY_ENV, SECRET_ENV]
        .iter()
        .all(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    let profiles = Profiles::platform()
        .and_then(|p| p.list())
        .map_err(|e| e.to_string());
    let zone = profiles
        .as_ref()
        .ok()
        .and_then(|list| list.iter().find(|p| p.is_default))
        .map_or(FALLBACK_ZONE, |p| p.zone.as_str())
        .to_string();
    vec![
        credentials_check(environment, profiles),
        network_check(&zone, endpoint_override_from_env().as_deref(), proxy()),
    ]
}

/// The credentials line, from whether the environment holds a key and secret and what the
/// keyring's profiles are (or why they cannot be read).
pub fn credentials_check(
    environment: bool,
    profiles: Result<Vec<ProfileSummary>, String>,
) -> Check {
    const NAME: &str = "Exoscale credentials";
    if environment {
        return check(
            NAME,
            Status::Ok,
            format!(
                "{KEY_ENV} and {SECRET_ENV} are set: publishing builds use them unless a profile is chosen"
            ),
            None,
        );
    }
    match profiles {
        Err(why) => {
            // The OS keyring line above already explains an unreachable keyring at length.
            let why = if why.contains("not reachable") {
                "the OS keyring is not reachable, see its line".to_string()
            } else {
                why
            };
            check(
                NAME,
                Status::Warn,
                format!(
                    "none: the keyring's profiles cannot be read ({why}) and {KEY_ENV} is not set; publishing builds (exoscale-import) stop at their first check"
                ),
                Some(ADD_PROFILE),
            )
        }
        Ok(list) => match list.iter().find(|p| p.is_default) {
            Some(p) if p.has_secret => check(
                NAME,
                Status::Ok,
                format!(
                    "the default profile `{}` (zone {}) is in the keyring",
                    p.name, p.zone
                ),
                None,
            ),
            Some(p) => check(
                NAME,
                Status::Warn,
                format!(
                    "the default profile `{}` has no key and secret in the keyring any more; publishing builds stop at their first check",
                    p.name
                ),
                Some(&format!(
                    "kiln credentials set {} --zone {}",
                    p.name, p.zone
                )),
            ),
            None if list.is_empty() => check(
                NAME,
                Status::Warn,
                format!(
                    "none: no profile in the keyring and {KEY_ENV} is not set; publishing builds (exoscale-import) stop at their first check"
                ),
                Some(ADD_PROFILE),
            ),
            None => check(
                NAME,
                Status::Warn,
                format!(
                    "{} profile{} but no default: a publishing build must name one (--profile, or the window's credentials choice)",
                    list.len(),
                    if list.len() == 1 { "" } else { "s" }
                ),
                Some(
                    "in the window: Credentials → Make default; or kiln credentials set NAME --zone ZONE --default",
                ),
            ),
        },
    }
}

/// The proxy HTTPS requests go through, if the environment names one (as reqwest reads it).
fn proxy() -> Option<String> {
    ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
}

/// The network line: can a TCP connection be opened to `zone`'s API endpoint (or to the
/// proxy, when one is set) within a few seconds.
pub fn network_check(zone: &str, endpoint: Option<&str>, proxy: Option<String>) -> Check {
    const NAME: &str = "Network to Exoscale";
    let url = match api_base(zone, endpoint) {
        Ok(url) => url,
        Err(e) => {
            return check(NAME, Status::Warn, format!("no API endpoint: {e}"), None);
        }
    };
    let via_proxy = proxy.as_deref().and_then(|p| reqwest::Url::parse(p).ok());
    let target = via_proxy.as_ref().unwrap_or(&url);
    let (Some(host), Some(port)) = (target.host_str(), target.port_or_known_default()) else {
        return check(
            NAME,
            Status::Warn,
            format!("cannot tell where {target} is"),
            None,
        );
    };
    let place = format!("{host}:{port}");
    let what = match &via_proxy {
        Some(_) => format!("the proxy {place} (for {url})"),
        None => place.clone(),
    };
    match reach(&place, REACH_TIMEOUT) {
        Ok(addr) => check(
            NAME,
            Status::Ok,
            format!("{what} answers ({addr}): publishing can reach the API and object storage"),
            None,
        ),
        Err(why) => check(
            NAME,
            Status::Warn,
            format!(
                "cannot reach {what}: {why}. Publishing and downloading base images need it; builds from local or cached images work"
            ),
            Some("check the network, DNS, or the proxy (HTTPS_PROXY)"),
        ),
    }
}

/// Resolves `place` and opens a TCP connection to it, within `timeout` overall (name
/// resolution cannot be given a timeout of its own, so it runs on a thread of its own).
fn reach(place: &str, timeout: Duration) -> Result<SocketAddr, String> {
    let (tx, rx) = mpsc::channel();
    let owned = place.to_string();
    let spawned = std::thread::Builder::new()
        .name("kiln-reach".into())
        .spawn(move || {
            let answer = (|| {
                let addrs: Vec<SocketAddr> = owned
                    .to_socket_addrs()
                    .map_err(|e| format!("name resolution failed ({e})"))?
                    .collect();
                let mut last = String::from("no address");
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(_) => return Ok(addr),
                        Err(e) => last = format!("{addr}: {e}"),
                    }
                }
                Err(last)
            })();
            let _ = tx.send(answer);
        });
    if let Err(e) = spawned {
        return Err(format!("cannot start the check ({e})"));
    }
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str, is_default: bool, has_secret: bool) -> ProfileSummary {
        ProfileSummary {
            name: name.into(),
            zone: "de-fra-1".into(),
            is_default,
            has_secret,
        }
    }

    #[test]
    fn credentials_are_ok_from_the_environment_or_a_default_profile_and_a_warning_otherwise() {
        assert_eq!(
            credentials_check(true, Err("no bus".into())).status,
            Status::Ok
        );
        let ok = credentials_check(false, Ok(vec![profile("work", true, true)]));
        assert_eq!(ok.status, Status::Ok);
        assert!(
            ok.detail.contains("`work` (zone de-fra-1)"),
            "{}",
            ok.detail
        );

        for (profiles, words) in [
            (
                Err("no Secret Service".to_string()),
                "cannot be read (no Secret Service)",
            ),
            (Ok(vec![]), "no profile in the keyring"),
            (
                Ok(vec![profile("a", false, true)]),
                "1 profile but no default",
            ),
            (Ok(vec![profile("a", true, false)]), "has no key and secret"),
        ] {
            let c = credentials_check(false, profiles);
            assert_eq!(c.status, Status::Warn, "{}", c.detail);
            assert!(c.detail.contains(words), "{}", c.detail);
            assert!(c.fix.is_some(), "{}", c.detail);
        }
    }

    #[test]
    fn the_network_check_connects_to_the_endpoint_and_says_when_it_cannot() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = format!("http://127.0.0.1:{port}/{{zone}}/v2");
        let c = network_check("ch-gva-2", Some(&endpoint), None);
        assert_eq!(c.status, Status::Ok, "{}", c.detail);
        assert!(
            c.detail.contains(&format!("127.0.0.1:{port} answers")),
            "{}",
            c.detail
        );

        drop(listener);
        let c = network_check("ch-gva-2", Some(&endpoint), None);
        assert_eq!(c.status, Status::Warn, "{}", c.detail);
        assert!(c.detail.contains("cannot reach"), "{}", c.detail);
        assert!(c.fix.is_some());

        // Through a proxy, the proxy is what must answer.
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_url = format!("http://127.0.0.1:{}", proxy.local_addr().unwrap().port());
        let c = network_check("ch-gva-2", Some(&endpoint), Some(proxy_url));
        assert_eq!(c.status, Status::Ok, "{}", c.detail);
        assert!(c.detail.contains("the proxy 127.0.0.1:"), "{}", c.detail);
    }

    #[test]
    fn a_name_that_does_not_resolve_is_a_warning_not_a_wait() {
        let started = std::time::Instant::now();
        let c = network_check(
            "ch-gva-2",
            Some("https://kiln-test.invalid/{zone}/v2"),
            None,
        );
        assert_eq!(c.status, Status::Warn, "{}", c.detail);
        assert!(started.elapsed() < REACH_TIMEOUT + Duration::from_secs(1));
    }
}

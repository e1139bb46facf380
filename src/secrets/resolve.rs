//! Which Exoscale credentials a command or a build uses, and where they came from.
//!
//! The order: values given explicitly (a recipe's `api_key`/`api_secret`) → the environment
//! (`EXOSCALE_API_KEY` and `EXOSCALE_API_SECRET`) → the named profile (a recipe's `profile`) →
//! the default profile of the keyring. So a recipe that names a profile runs unchanged in CI,
//! where the environment carries the credentials and no keyring exists. A profile named on the
//! command line (`--profile`) is the user's choice of the moment and comes before the
//! environment ([`Request::profile_first`]). The keyring is opened only when a profile is
//! needed. Every secret found is registered with the redactor at once.

use super::error::SecretsError;
use super::profiles::Profiles;
use crate::base::redact::Redactor;
use crate::base::secret::Secret;
use crate::exoscale::Credentials;
use crate::exoscale::credentials::{KEY_ENV, SECRET_ENV};

/// Where resolved credentials came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Given explicitly (the recipe's `api_key` and `api_secret`).
    Explicit,
    /// `EXOSCALE_API_KEY` and `EXOSCALE_API_SECRET`.
    Environment,
    /// A keyring profile of this name.
    Profile(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Explicit => write!(f, "the recipe"),
            Origin::Environment => write!(f, "{KEY_ENV}/{SECRET_ENV}"),
            Origin::Profile(name) => write!(f, "profile `{name}`"),
        }
    }
}

/// Credentials with their origin and, for a profile, its default zone.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The key and secret.
    pub credentials: Credentials,
    /// Where they came from.
    pub origin: Origin,
    /// The profile's default zone (`None` unless they came from a profile).
    pub zone: Option<String>,
}

/// What the resolver may look at.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    /// Explicit key and secret (empty strings count as absent).
    pub explicit: Option<(&'a str, &'a Secret)>,
    /// A profile named explicitly.
    pub profile: Option<&'a str>,
    /// Whether the named profile comes before the environment (`--profile` on the command
    /// line) or after it (a recipe's `profile`).
    pub profile_first: bool,
}

/// Resolves credentials in the module's order. `open_profiles` is called only when the keyring
/// is needed (tests pass a mock-backed [`Profiles`]).
pub fn resolve_with(
    request: &Request<'_>,
    redactor: &Redactor,
    environment: impl Fn(&str) -> Option<String>,
    open_profiles: impl FnOnce() -> Result<Profiles, SecretsError>,
) -> Result<Resolved, SecretsError> {
    if let Some((key, secret)) = request.explicit
        && !key.is_empty()
        && !secret.is_empty()
    {
        let credentials = Credentials::new(key, secret.clone()).map_err(|_| missing())?;
        credentials.register_secret(redactor);
        return Ok(Resolved {
            credentials,
            origin: Origin::Explicit,
            zone: None,
        });
    }
    let named = request.profile.filter(|n| !n.is_empty());
    if let Some(name) = named
        && request.profile_first
    {
        return from_profile(&open_profiles()?, name, redactor);
    }
    let key = environment(KEY_ENV).unwrap_or_default();
    let secret = environment(SECRET_ENV).unwrap_or_default();
    if !key.is_empty() && !secret.is_empty() {
        let credentials = Credentials::new(key, Secret::new(secret)).map_err(|_| missing())?;
        credentials.register_secret(redactor);
        return Ok(Resolved {
            credentials,
            origin: Origin::Environment,
            zone: None,
        });
    }
    if let Some(name) = named {
        return from_profile(&open_profiles()?, name, redactor);
    }
    let profiles = match open_profiles() {
        Ok(p) => p,
        // No keyring and nothing else: say what all the ways are.
        Err(SecretsError::KeyringUnavailable { .. }) => return Err(missing()),
        Err(e) => return Err(e),
    };
    let name = match profiles.resolve_name(None) {
        Ok(name) => name,
        Err(SecretsError::NoDefaultProfile) => return Err(missing()),
        Err(e) => return Err(e),
    };
    from_profile(&profiles, &name, redactor)
}

/// [`resolve_with`] on the process environment and the platform keyring.
pub fn resolve(request: &Request<'_>, redactor: &Redactor) -> Result<Resolved, SecretsError> {
    resolve_with(
        request,
        redactor,
        |name| std::env::var(name).ok(),
        Profiles::platform,
    )
}

fn from_profile(
    profiles: &Profiles,
    name: &str,
    redactor: &Redactor,
) -> Result<Resolved, SecretsError> {
    let credentials = profiles.load(name, redactor)?;
    Ok(Resolved {
        credentials,
        origin: Origin::Profile(name.to_string()),
        zone: Some(profiles.zone(name)?),
    })
}

fn missing() -> SecretsError {
    SecretsError::NoCredentials
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Vault;

    fn profiles(dir: &tempfile::TempDir) -> Profiles {
        let vault = Vault::with_store(keyring_core::mock::Store::new().unwrap());
        Profiles::new(vault, dir.path().join("config.toml"))
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn unavailable() -> Result<Profiles, SecretsError> {
        Err(SecretsError::KeyringUnavailable {
            reason: "no D-Bus session bus".into(),
        })
    }

    const ENV: &[(&str, &str)] = &[(KEY_ENV, "EXOenv"), (SECRET_ENV, "SENTINEL-env")];

    #[test]
    fn explicit_values_win_and_the_keyring_is_never_opened() {
        let secret = Secret::new("SENTINEL-recipe");
        let request = Request {
            explicit: Some(("EXOrecipe", &secret)),
            profile: Some("work"),
            profile_first: true,
        };
        let redactor = Redactor::new();
        let r = resolve_with(&request, &redactor, env(ENV), || {
            panic!("the keyring must not be opened")
        })
        .unwrap();
        assert_eq!(r.origin, Origin::Explicit);
        assert_eq!(r.credentials.key(), "EXOrecipe");
        assert_eq!(redactor.redact("SENTINEL-recipe"), "********");
    }

    #[test]
    fn a_recipe_profile_comes_after_the_environment_so_ci_needs_no_keyring() {
        let request = Request {
            explicit: None,
            profile: Some("work"),
            profile_first: false,
        };
        let r = resolve_with(&request, &Redactor::new(), env(ENV), || {
            panic!("the keyring must not be opened")
        })
        .unwrap();
        assert_eq!(r.origin, Origin::Environment);
    }

    #[test]
    fn a_profile_on_the_command_line_beats_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let p = profiles(&dir);
        p.save(
            "work",
            "de-fra-1",
            &Credentials::new("EXOwork", Secret::new("SENTINEL-work")).unwrap(),
            false,
        )
        .unwrap();
        let redactor = Redactor::new();
        let request = Request {
            explicit: None,
            profile: Some("work"),
            profile_first: true,
        };
        let r = resolve_with(&request, &redactor, env(ENV), || Ok(p.clone())).unwrap();
        assert_eq!(r.origin, Origin::Profile("work".into()));
        assert_eq!(r.zone.as_deref(), Some("de-fra-1"));
        assert_eq!(r.credentials.key(), "EXOwork");
        assert_eq!(redactor.redact("a SENTINEL-work b"), "a ******** b");
    }

    #[test]
    fn the_environment_beats_the_default_profile_and_needs_no_keyring() {
        let redactor = Redactor::new();
        let r = resolve_with(&Request::default(), &redactor, env(ENV), || {
            panic!("the keyring must not be opened")
        })
        .unwrap();
        assert_eq!(r.origin, Origin::Environment);
        assert_eq!(r.credentials.key(), "EXOenv");
        assert_eq!(redactor.redact("SENTINEL-env"), "********");
    }

    #[test]
    fn the_default_profile_is_the_last_resort() {
        let dir = tempfile::tempdir().unwrap();
        let p = profiles(&dir);
        p.save(
            "main",
            "ch-dk-2",
            &Credentials::new("EXOmain", Secret::new("s")).unwrap(),
            false,
        )
        .unwrap();
        let r = resolve_with(&Request::default(), &Redactor::new(), env(&[]), || {
            Ok(p.clone())
        })
        .unwrap();
        assert_eq!(r.origin, Origin::Profile("main".into()));
    }

    #[test]
    fn nothing_anywhere_names_every_way_on() {
        for open in [
            unavailable as fn() -> Result<Profiles, SecretsError>,
            || {
                Ok(Profiles::new(
                    Vault::with_store(keyring_core::mock::Store::new().unwrap()),
                    std::path::PathBuf::from("/nonexistent/kiln/config.toml"),
                ))
            },
        ] {
            let e = resolve_with(&Request::default(), &Redactor::new(), env(&[]), open)
                .unwrap_err()
                .to_string();
            assert!(e.contains(KEY_ENV), "{e}");
            assert!(e.contains("kiln credentials set"), "{e}");
        }
    }

    #[test]
    fn a_named_profile_without_a_keyring_says_so() {
        let request = Request {
            explicit: None,
            profile: Some("work"),
            profile_first: true,
        };
        let e = resolve_with(&request, &Redactor::new(), env(ENV), unavailable).unwrap_err();
        assert!(matches!(e, SecretsError::KeyringUnavailable { .. }), "{e}");
    }
}

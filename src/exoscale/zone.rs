//! Exoscale zones and the API endpoint of each: `https://api-{zone}.exoscale.com/v2`, or an
//! override (recipe `api_endpoint`, env `EXOSCALE_API_ENDPOINT`) in which `{zone}` is
//! replaced by the zone.

use reqwest::Url;

use super::error::ApiError;
pub use crate::recipe::postprocessor::{DEFAULT_EXOSCALE_ZONE, EXOSCALE_ZONES};

/// The environment variable that overrides the API endpoint.
pub const ENDPOINT_ENV: &str = "EXOSCALE_API_ENDPOINT";

/// The placeholder replaced by the zone in an endpoint override.
pub const ZONE_PLACEHOLDER: &str = "{zone}";

/// The endpoint override from the environment (`EXOSCALE_API_ENDPOINT`), when set and not
/// empty.
pub fn endpoint_override_from_env() -> Option<String> {
    std::env::var(ENDPOINT_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// The endpoint override to use: the recipe's `api_endpoint` when it is set, else
/// `EXOSCALE_API_ENDPOINT`, else none (each zone's standard endpoint).
pub fn endpoint_override(recipe_value: Option<&str>) -> Option<String> {
    recipe_value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .or_else(endpoint_override_from_env)
}

/// Whether kiln knows `zone`.
pub fn is_known(zone: &str) -> bool {
    EXOSCALE_ZONES.contains(&zone)
}

/// The API v2 base URL for `zone`. With `override_endpoint` (`{zone}` replaced), any zone
/// name is accepted (private deployments, tests); without it the zone must be one of
/// [`EXOSCALE_ZONES`].
pub fn api_base(zone: &str, override_endpoint: Option<&str>) -> Result<Url, ApiError> {
    let text = match override_endpoint {
        Some(endpoint) => endpoint.trim().replace(ZONE_PLACEHOLDER, zone),
        None if is_known(zone) => format!("https://api-{zone}.exoscale.com/v2"),
        None => {
            return Err(ApiError::UnknownZone {
                zone: zone.to_string(),
            });
        }
    };
    let mut url = Url::parse(&text).map_err(|e| ApiError::InvalidEndpoint {
        endpoint: text.clone(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(ApiError::InvalidEndpoint {
            endpoint: text,
            reason: "expected an http:// or https:// URL".into(),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ApiError::InvalidEndpoint {
            endpoint: text,
            reason: "the endpoint must not have a query or a fragment".into(),
        });
    }
    // Paths are appended to the base, so it ends without a slash.
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_zone_has_its_endpoint() {
        assert_eq!(EXOSCALE_ZONES.len(), 8);
        for zone in EXOSCALE_ZONES {
            assert_eq!(
                api_base(zone, None).unwrap().as_str(),
                format!("https://api-{zone}.exoscale.com/v2")
            );
        }
    }

    #[test]
    fn unknown_zone_needs_an_override() {
        let err = api_base("xx-nowhere-1", None).unwrap_err();
        assert!(err.to_string().contains("xx-nowhere-1"), "{err}");
        assert!(err.to_string().contains(ENDPOINT_ENV), "{err}");
        assert_eq!(
            api_base("xx-nowhere-1", Some("http://127.0.0.1:9/{zone}/v2/"))
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/xx-nowhere-1/v2"
        );
    }

    #[test]
    fn the_recipe_endpoint_wins_over_the_environment() {
        assert_eq!(
            endpoint_override(Some(" http://10.0.0.1/{zone}/v2 ")).as_deref(),
            Some("http://10.0.0.1/{zone}/v2")
        );
        assert_eq!(endpoint_override(Some("  ")), endpoint_override_from_env());
    }

    #[test]
    fn bad_overrides_are_explained() {
        for bad in ["not a url", "ftp://host/v2", "http://h/v2?x=1"] {
            let err = api_base("de-fra-1", Some(bad)).unwrap_err();
            assert!(
                matches!(err, ApiError::InvalidEndpoint { .. }),
                "{bad}: {err}"
            );
        }
    }
}

//! The API's request and response bodies kiln uses, as the OpenAPI description names them
//! (kebab-case). Responses are read leniently (unknown fields ignored, missing fields
//! `None`) so a newer API never breaks kiln; requests carry exactly the documented fields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::recipe::postprocessor::BootMode;

/// A compute template (`#/components/schemas/template`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Template {
    /// Template id (UUID).
    pub id: String,
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Family (`debian`, …), set by Exoscale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Size in bytes (the disk's virtual size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `legacy` or `uefi`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_mode: Option<String>,
    /// When it was registered (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// `private` or `public`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    /// The zones it is available in.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub zones: Vec<String>,
    /// MD5 of the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// The URL it was registered from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The user to log in as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_user: Option<String>,
    /// Whether instances get an SSH key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_key_enabled: Option<bool>,
    /// Whether instances get a password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_enabled: Option<bool>,
    /// Version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// Maintainer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintainer: Option<String>,
}

impl Template {
    /// The creation time, when the API gave a valid one.
    pub fn created(&self) -> Option<DateTime<Utc>> {
        let text = self.created_at.as_deref()?;
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The name, or `-` when the API gave none.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("-")
    }
}

/// The answer of `GET /template`. The API leaves `templates` out when there are none (an
/// organisation with no template of that visibility: Exoscale's Go client declares it
/// `omitempty`), so a missing or `null` list is an empty one.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TemplateList {
    /// The templates.
    #[serde(default, deserialize_with = "null_as_default")]
    pub templates: Vec<Template>,
}

/// Reads `null` as the type's default (an empty list, an empty reference), as Exoscale's own
/// clients do for fields the API may leave empty.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A zone (`#/components/schemas/zone`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Zone {
    /// Zone name (`ch-gva-2`, …).
    pub name: String,
    /// The zone's API endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_endpoint: Option<String>,
    /// The zone's object-store endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sos_endpoint: Option<String>,
}

/// The answer of `GET /zone` (a missing or `null` list is an empty one).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ZoneList {
    /// The zones.
    #[serde(default, deserialize_with = "null_as_default")]
    pub zones: Vec<Zone>,
}

/// The state of an asynchronous operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationState {
    /// Still running.
    Pending,
    /// Done.
    Success,
    /// Failed (see the reason and message).
    Failure,
    /// Timed out on Exoscale's side.
    Timeout,
}

impl OperationState {
    /// The API's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Pending => "pending",
            OperationState::Success => "success",
            OperationState::Failure => "failure",
            OperationState::Timeout => "timeout",
        }
    }
}

/// What an operation is about (`reference` of an operation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reference {
    /// The id of the resource (for a registration or a copy: the new template).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A link to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The command that started the operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// An asynchronous operation (`#/components/schemas/operation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Operation id (UUID).
    pub id: String,
    /// Its state.
    pub state: OperationState,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The API's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What it is about (`null` when the API has nothing to refer to).
    #[serde(default, deserialize_with = "null_as_default")]
    pub reference: Reference,
}

/// The body of `POST /template` (register a template).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegisterTemplate {
    /// Name (1–255 characters).
    pub name: String,
    /// The URL Exoscale downloads the image from.
    pub url: String,
    /// MD5 of the image, lowercase hex.
    pub checksum: String,
    /// Whether instances get an SSH key.
    pub ssh_key_enabled: bool,
    /// Whether instances get a password.
    pub password_enabled: bool,
    /// Description (up to 255 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The user to log in as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_user: Option<String>,
    /// `legacy` or `uefi`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_mode: Option<&'static str>,
    /// Build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// Version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Maintainer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintainer: Option<String>,
}

/// The API name of a boot mode.
pub fn boot_mode_name(mode: BootMode) -> &'static str {
    match mode {
        BootMode::Legacy => "legacy",
        BootMode::Uefi => "uefi",
    }
}

/// `visibility` of `GET /template`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Visibility {
    /// Templates of the organization.
    Private,
    /// Exoscale's templates.
    Public,
}

impl Visibility {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Public => "public",
        }
    }
}

/// Filters of `GET /template`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateFilter {
    /// Only private or public templates.
    pub visibility: Option<Visibility>,
    /// Only this family.
    pub family: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_body_has_the_documented_names() {
        let body = RegisterTemplate {
            name: "Debian".into(),
            url: "https://x/y".into(),
            checksum: "abc".into(),
            ssh_key_enabled: true,
            password_enabled: false,
            description: None,
            default_user: Some("debian".into()),
            boot_mode: Some(boot_mode_name(BootMode::Uefi)),
            build: None,
            version: None,
            maintainer: None,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"name":"Debian","url":"https://x/y","checksum":"abc","ssh-key-enabled":true,"password-enabled":false,"default-user":"debian","boot-mode":"uefi"}"#
        );
    }

    #[test]
    fn templates_read_leniently() {
        let t: Template = serde_json::from_str(
            r#"{"id":"a","name":"n","size":10737418240,"boot-mode":"uefi","created-at":"2026-11-01T10:00:00Z","zones":["de-fra-1"],"new-field":1}"#,
        )
        .unwrap();
        assert_eq!(t.size, Some(10 << 30));
        assert_eq!(t.boot_mode.as_deref(), Some("uefi"));
        assert_eq!(
            t.created().unwrap().to_rfc3339(),
            "2026-11-01T10:00:00+00:00"
        );
        let bad_date = Template {
            created_at: Some("yesterday".into()),
            ..t
        };
        assert_eq!(bad_date.created(), None);
    }

    #[test]
    fn empty_lists_and_references_may_be_missing_or_null() {
        for body in ["{}", r#"{"templates":null}"#, r#"{"templates":[]}"#] {
            let list: TemplateList = serde_json::from_str(body).unwrap();
            assert!(list.templates.is_empty(), "{body}");
        }
        for body in ["{}", r#"{"zones":null}"#] {
            let list: ZoneList = serde_json::from_str(body).unwrap();
            assert!(list.zones.is_empty(), "{body}");
        }
        let t: Template = serde_json::from_str(r#"{"id":"a","zones":null}"#).unwrap();
        assert!(t.zones.is_empty());
        let op: Operation =
            serde_json::from_str(r#"{"id":"o","state":"success","reference":null}"#).unwrap();
        assert_eq!(op.reference, Reference::default());
        // A list of the wrong shape is still an error.
        assert!(serde_json::from_str::<TemplateList>(r#"{"templates":"none"}"#).is_err());
        assert!(serde_json::from_str::<TemplateList>(r#"{"templates":[{"id":5}]}"#).is_err());
    }
}

//! The Templates place's background side: resolving the credentials (a chosen profile, else
//! the environment, else the default profile), listing one zone or every zone at once, and
//! delete / rename / copy. Results come back to the window's inbox.

use std::sync::Arc;

use tokio::runtime::Handle;

use super::credentials::SecretsSource;
use super::engine::{Inbox, Message};
use crate::build::redact::Redactor;
use crate::exoscale::model::{Template, TemplateFilter, Visibility};
use crate::exoscale::zone::EXOSCALE_ZONES;
use crate::exoscale::{Client, ClientOptions};
use crate::secrets::resolve::{self, Request, Resolved};

/// What to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The profile (`None`: the environment, else the default profile).
    pub profile: Option<String>,
    /// One zone, or `None` for every zone.
    pub zone: Option<String>,
}

/// One template as listed, with the zone it was listed in.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The zone.
    pub zone: String,
    /// The template.
    pub template: Template,
}

/// What a listing (or an action followed by a listing) found.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The query it answers.
    pub query: Query,
    /// The templates found.
    pub templates: Vec<Listed>,
    /// Zones that failed, with why (the others are still listed).
    pub errors: Vec<String>,
    /// The outcome of the action before the listing, if any.
    pub status: Option<Result<String, String>>,
}

/// An action on one template.
#[derive(Debug, Clone)]
pub enum Action {
    /// Delete it.
    Delete {
        /// Its zone.
        zone: String,
        /// Its id.
        id: String,
    },
    /// Rename it.
    Rename {
        /// Its zone.
        zone: String,
        /// Its id.
        id: String,
        /// The new name.
        name: String,
    },
    /// Copy it to another zone.
    Copy {
        /// Its zone.
        zone: String,
        /// Its id.
        id: String,
        /// The zone to copy it to.
        to: String,
    },
}

/// Runs `action` (if any), then lists `query`; the [`Listing`] arrives in `inbox`.
pub fn run(
    runtime: &Handle,
    source: Arc<dyn SecretsSource>,
    query: Query,
    action: Option<Action>,
    inbox: Inbox,
) {
    let handle = runtime.clone();
    runtime.spawn_blocking(move || {
        let listing = match credentials(source.as_ref(), &query) {
            Err(why) => Listing {
                query,
                templates: Vec::new(),
                errors: vec![why],
                status: None,
            },
            Ok(resolved) => {
                let endpoint = source.api_endpoint();
                handle.block_on(act_and_list(resolved, endpoint, query, action))
            }
        };
        inbox.send(Message::Templates(listing));
    });
}

fn credentials(source: &dyn SecretsSource, query: &Query) -> Result<Resolved, String> {
    let request = Request {
        explicit: None,
        profile: query.profile.as_deref(),
        profile_first: true,
    };
    resolve::resolve_with(
        &request,
        &Redactor::new(),
        |name| std::env::var(name).ok(),
        || source.open().map(|(profiles, _)| profiles),
    )
    .map_err(|e| e.to_string())
}

fn client(resolved: &Resolved, endpoint: Option<&str>, zone: &str) -> Result<Client, String> {
    Client::with_endpoint_setting(
        zone,
        endpoint,
        resolved.credentials.clone(),
        ClientOptions::default(),
    )
    .map_err(|e| e.to_string())
}

async fn act_and_list(
    resolved: Resolved,
    endpoint: Option<String>,
    query: Query,
    action: Option<Action>,
) -> Listing {
    let endpoint = endpoint.as_deref();
    let status = match action {
        None => None,
        Some(action) => Some(act(&resolved, endpoint, action).await),
    };
    let zones: Vec<String> = match &query.zone {
        Some(zone) => vec![zone.clone()],
        None => EXOSCALE_ZONES.iter().map(|z| z.to_string()).collect(),
    };
    let filter = TemplateFilter {
        visibility: Some(Visibility::Private),
        family: None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut errors = Vec::new();
    for zone in zones {
        match client(&resolved, endpoint, &zone) {
            Ok(client) => {
                let filter = filter.clone();
                tasks.spawn(async move { (zone, client.list_templates(&filter).await) });
            }
            Err(why) => errors.push(format!("{zone}: {why}")),
        }
    }
    let mut templates = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((zone, Ok(list))) => templates.extend(list.into_iter().map(|template| Listed {
                zone: zone.clone(),
                template,
            })),
            Ok((zone, Err(e))) => errors.push(format!("{zone}: {e}")),
            Err(e) => errors.push(format!("a zone's listing stopped: {e}")),
        }
    }
    // Newest first; the same order on every refresh.
    templates.sort_by(|a, b| {
        b.template
            .created_at
            .cmp(&a.template.created_at)
            .then_with(|| a.zone.cmp(&b.zone))
    });
    errors.sort();
    Listing {
        query,
        templates,
        errors,
        status,
    }
}

async fn act(
    resolved: &Resolved,
    endpoint: Option<&str>,
    action: Action,
) -> Result<String, String> {
    match action {
        Action::Delete { zone, id } => {
            let client = client(resolved, endpoint, &zone)?;
            client
                .delete_template(&id)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("deleted template {id} in {zone}"))
        }
        Action::Rename { zone, id, name } => {
            let client = client(resolved, endpoint, &zone)?;
            client
                .rename_template(&id, &name)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("renamed template {id} in {zone} to \"{name}\""))
        }
        Action::Copy { zone, id, to } => {
            let client = client(resolved, endpoint, &zone)?;
            let new_id = client
                .copy_template(&id, &to)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "copied template {id} from {zone} to {to}: {new_id}"
            ))
        }
    }
}

//! Template endpoints: list, get, register, rename, delete, copy to another zone; and the
//! zone list.

use reqwest::Method;
use serde::Serialize;

use super::client::Client;
use super::error::ApiError;
use super::model::{
    Operation, RegisterTemplate, Template, TemplateFilter, TemplateList, Zone, ZoneList,
};

/// Operation failure reasons after which a copy is started again: the template is being
/// copied or changed elsewhere (Packer copies one zone at a time for the same reason).
pub const COPY_RETRY_REASONS: &[&str] = &["busy", "conflict"];

/// How many times a copy is started in all when it ends with one of [`COPY_RETRY_REASONS`].
pub const COPY_ATTEMPTS: u32 = 4;

impl Client {
    /// `GET /template`, filtered.
    pub async fn list_templates(&self, filter: &TemplateFilter) -> Result<Vec<Template>, ApiError> {
        let mut query = Vec::new();
        if let Some(visibility) = filter.visibility {
            query.push(("visibility".to_string(), visibility.as_str().to_string()));
        }
        if let Some(family) = &filter.family {
            query.push(("family".to_string(), family.clone()));
        }
        let list: TemplateList = self.call(Method::GET, &["template"], &query, None).await?;
        Ok(list.templates)
    }

    /// `GET /template/{id}`.
    pub async fn get_template(&self, id: &str) -> Result<Template, ApiError> {
        self.call(Method::GET, &["template", id], &[], None).await
    }

    /// `POST /template`: starts a registration and returns its operation (see
    /// [`Client::register_template`] to wait for it).
    pub async fn start_register_template(
        &self,
        request: &RegisterTemplate,
    ) -> Result<Operation, ApiError> {
        self.call(Method::POST, &["template"], &[], Some(json(request)))
            .await
    }

    /// Registers a template and waits until Exoscale has downloaded and checked the image;
    /// returns the new template.
    pub async fn register_template(
        &self,
        request: &RegisterTemplate,
    ) -> Result<Template, ApiError> {
        let operation = self.start_register_template(request).await?;
        let what = format!(
            "registering template \"{}\" in {}",
            request.name,
            self.zone()
        );
        let done = self.wait(operation, &what).await?;
        let id = self.referenced_id(&done, "template registration")?;
        self.get_template(&id).await
    }

    /// `PUT /template/{id}`: renames a template and waits for the change.
    pub async fn rename_template(&self, id: &str, name: &str) -> Result<(), ApiError> {
        #[derive(Serialize)]
        struct Rename<'a> {
            name: &'a str,
        }
        let operation: Operation = self
            .call(
                Method::PUT,
                &["template", id],
                &[],
                Some(json(&Rename { name })),
            )
            .await?;
        self.wait(operation, &format!("renaming template {id}"))
            .await?;
        Ok(())
    }

    /// `DELETE /template/{id}`: deletes a template (in this zone) and waits for it.
    pub async fn delete_template(&self, id: &str) -> Result<(), ApiError> {
        let operation: Operation = self
            .call(Method::DELETE, &["template", id], &[], None)
            .await?;
        self.wait(operation, &format!("deleting template {id}"))
            .await?;
        Ok(())
    }

    /// `POST /template/{id}`: copies a template of this zone to `target_zone`, waits for the
    /// copy, and returns the id of the copy.
    pub async fn copy_template(&self, id: &str, target_zone: &str) -> Result<String, ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.copy_template_once(id, target_zone).await {
                Err(ApiError::OperationFailed {
                    reason: Some(reason),
                    ..
                }) if COPY_RETRY_REASONS.contains(&reason.as_str()) && attempt < COPY_ATTEMPTS => {
                    let delay = self.options().retry.delay_after(attempt);
                    tracing::warn!(
                        "copying template {id} to {target_zone} ended `{reason}` (attempt {attempt} of {COPY_ATTEMPTS}); starting it again in {delay:?}"
                    );
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    async fn copy_template_once(&self, id: &str, target_zone: &str) -> Result<String, ApiError> {
        let body = serde_json::json!({ "target-zone": { "name": target_zone } });
        let operation: Operation = self
            .call(Method::POST, &["template", id], &[], Some(json(&body)))
            .await?;
        let what = format!(
            "copying template {id} from {} to {target_zone}",
            self.zone()
        );
        let done = self.wait(operation, &what).await?;
        self.referenced_id(&done, "template copy")
    }

    /// `GET /zone`.
    pub async fn list_zones(&self) -> Result<Vec<Zone>, ApiError> {
        let list: ZoneList = self.call(Method::GET, &["zone"], &[], None).await?;
        Ok(list.zones)
    }

    fn referenced_id(&self, operation: &Operation, what: &str) -> Result<String, ApiError> {
        operation
            .reference
            .id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ApiError::InvalidResponse {
                method: "GET".into(),
                url: format!("{}/operation/{}", self.base_url(), operation.id),
                detail: format!("the finished {what} names no template (no reference.id)"),
            })
    }
}

fn json(value: &impl Serialize) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

//! Http: the built-in HTTP server (`http_directory` / `http_content`), started before the
//! VM and stopped by the cleanup stack. The guest reaches it at 10.0.2.2 (qemu's user
//! network maps that address to the host's 127.0.0.1).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::build::runner::{BoxFuture, Step, StepContext, StepDone, StepError};
use crate::build::state::BuildState;
use crate::cloudinit::http::{HttpServer, ServeConfig};
use crate::qemu::cmdline::smbios_nocloud;
use crate::recipe::interp;

/// The host as the guest sees it on qemu's user network (`{{ .HTTPIP }}`).
pub const GUEST_HOST_IP: &str = "10.0.2.2";

/// Starts the HTTP server when the recipe asks for one.
pub struct Http;

impl Step<BuildState> for Http {
    fn name(&self) -> String {
        "HTTP server".into()
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut BuildState,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            let config = &state.config;
            if config.http_directory.is_none() && config.http_content.is_empty() {
                return Ok(StepDone::Skipped(
                    "no http_directory or http_content".into(),
                ));
            }
            let bind: IpAddr = config.http_bind_address.parse().map_err(|_| {
                StepError(format!(
                    "http_bind_address `{}` is not an IP address; use 127.0.0.1 (the default)",
                    config.http_bind_address
                ))
            })?;
            let serve = ServeConfig {
                directory: config.http_directory.as_ref().map(Into::into),
                bind,
                port_min: config.http_port_min,
                port_max: config.http_port_max,
            };
            let bound = HttpServer::bind(&serve).await.map_err(super::fail)?;
            let port = bound.port();
            state.http = Some((GUEST_HOST_IP.to_string(), port));
            let fields = state.context_fields();
            let mut content = BTreeMap::new();
            for (path, template) in &state.config.http_content {
                let body = interp::render_fields(template, &fields)
                    .map_err(|e| StepError(format!("http_content.{path}: {e}")))?;
                content.insert(path.clone(), body.into_bytes());
            }
            // cloud-init's nocloud-net asks for /vendor-data too and, on a 404, tries again
            // ten times a second apart: an empty one (no vendor data) saves those seconds.
            if smbios_nocloud(&state.config)
                && !content.is_empty()
                && !content
                    .keys()
                    .any(|k| k.trim_start_matches('/') == "vendor-data")
            {
                ctx.log("serving an empty /vendor-data (cloud-init retries for ~10 s on a 404)");
                content.insert("/vendor-data".into(), Vec::new());
            }
            let events = ctx.events().clone();
            let index = ctx.index();
            let server = bound
                .serve(content, move |served| {
                    events.log(Some(index), format!("http: {served}"))
                })
                .map_err(super::fail)?;
            ctx.log(format!(
                "serving {} on {} (the guest uses http://{GUEST_HOST_IP}:{port}/)",
                match &state.config.http_directory {
                    Some(dir) => format!("http_directory {dir}"),
                    None => format!("{} http_content file(s)", state.config.http_content.len()),
                },
                server.addr()
            ));
            *state.http_server.lock().await = Some(server);
            let slot = state.http_server.clone();
            ctx.defer("the HTTP server", move || async move {
                if let Some(server) = slot.lock().await.take() {
                    server.stop().await;
                }
                Ok(())
            });
            Ok(StepDone::Done)
        })
    }
}

//! `manifest`: records the build in Packer's JSON manifest (`builds[]` with `name`,
//! `builder_type`, `build_time`, `files`, `artifact_id`, `packer_run_uuid`, `custom_data`;
//! `last_run_uuid`), appending to an existing manifest as Packer does. Written to a temporary
//! file and renamed, so a reader never sees half a manifest.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::{BuildFacts, PostProcess, Processed};
use crate::build::artifact::Artifact;
use crate::build::runner::{BoxFuture, StepContext, StepError};
use crate::recipe::postprocessor::ManifestConfig;

/// The `manifest` post-processor.
pub struct Manifest(pub ManifestConfig);

/// The existing manifest at `path` as a JSON object (empty when there is none).
fn read_existing(path: &Path) -> Result<Map<String, Value>, StepError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(StepError(format!("cannot read {}: {e}", path.display()))),
    };
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let not_a_manifest = |why: String| {
        StepError(format!(
            "{} is not a Packer manifest ({why}); move it away or set `output` to another file",
            path.display()
        ))
    };
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| not_a_manifest(format!("line {}:{}: {e}", e.line(), e.column())))?;
    let Value::Object(map) = value else {
        return Err(not_a_manifest("it is not a JSON object".into()));
    };
    match map.get("builds") {
        None | Some(Value::Array(_)) | Some(Value::Null) => Ok(map),
        Some(_) => Err(not_a_manifest("its `builds` is not a list".into())),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StepError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        StepError(format!(
            "cannot create the directory {}: {e}",
            dir.display()
        ))
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "manifest".into());
    let temp = dir.join(format!(".{name}.kiln-partial"));
    let result = std::fs::File::create(&temp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()?;
            f.set_permissions(std::fs::Permissions::from_mode(0o644))
        })
        .and_then(|()| std::fs::rename(&temp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        StepError(format!("cannot write {}: {e}", path.display()))
    })
}

impl Manifest {
    fn entry(&self, input: &Artifact, facts: &BuildFacts) -> Result<Value, StepError> {
        let mut files = Vec::with_capacity(input.files.len());
        for path in &input.files {
            let size = std::fs::metadata(path)
                .map_err(|e| StepError(format!("cannot read {}: {e}", path.display())))?
                .len();
            let name = if self.0.strip_path {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                path.display().to_string()
            };
            files.push(json!({"name": name, "size": size}));
        }
        let mut entry = Map::new();
        entry.insert("name".into(), json!(facts.build_name));
        entry.insert("builder_type".into(), json!(facts.builder_type));
        if !self.0.strip_time {
            entry.insert("build_time".into(), json!(chrono::Utc::now().timestamp()));
        }
        entry.insert("files".into(), Value::Array(files));
        entry.insert("artifact_id".into(), json!(input.id));
        entry.insert("packer_run_uuid".into(), json!(facts.run_uuid));
        entry.insert(
            "custom_data".into(),
            if self.0.custom_data.is_empty() {
                Value::Null
            } else {
                json!(self.0.custom_data)
            },
        );
        Ok(Value::Object(entry))
    }
}

impl PostProcess for Manifest {
    fn run<'a>(
        &'a self,
        ctx: &'a mut StepContext,
        input: &'a Artifact,
        facts: &'a BuildFacts,
    ) -> BoxFuture<'a, Result<Processed, StepError>> {
        Box::pin(async move {
            let path = PathBuf::from(&self.0.output);
            let entry = self.entry(input, facts)?;
            let mut manifest = read_existing(&path)?;
            let appended = match manifest.get("builds") {
                Some(Value::Array(builds)) => builds.len(),
                _ => 0,
            };
            let builds = manifest
                .entry("builds")
                .or_insert_with(|| Value::Array(Vec::new()));
            if !builds.is_array() {
                *builds = Value::Array(Vec::new());
            }
            if let Value::Array(list) = builds {
                list.push(entry);
            }
            manifest.insert("last_run_uuid".into(), json!(facts.run_uuid));
            let mut text = serde_json::to_vec_pretty(&Value::Object(manifest))
                .map_err(|e| StepError(format!("cannot encode the manifest: {e}")))?;
            text.push(b'\n');
            write_atomically(&path, &text)?;
            ctx.log(if appended > 0 {
                format!(
                    "{}: added this build after the {appended} recorded before",
                    path.display()
                )
            } else {
                format!("{}: written", path.display())
            });
            Ok(Processed {
                artifact: input.clone(),
                keep_input_by_default: true,
                must_keep_input: true,
            })
        })
    }
}

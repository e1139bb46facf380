//! `checksum`: one file per `checksum_types` entry, in Packer's format (`%x\t%s\n`, the
//! artifact file's base name), appended to the file `output` names. Each artifact file is read
//! once for all hash types.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::{BuildFacts, PostProcess, Processed, blocking, render_output};
use crate::build::artifact::Artifact;
use crate::build::runner::{BoxFuture, StepContext, StepError};
use crate::recipe::postprocessor::{ChecksumConfig, ChecksumType};

/// The `checksum` post-processor.
pub struct Checksum(pub ChecksumConfig);

/// A running hash of one type.
enum Running {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Running {
    fn new(t: ChecksumType) -> Self {
        match t {
            ChecksumType::Md5 => Self::Md5(md5::Md5::new()),
            ChecksumType::Sha1 => Self::Sha1(sha1::Sha1::new()),
            ChecksumType::Sha224 => Self::Sha224(sha2::Sha224::new()),
            ChecksumType::Sha256 => Self::Sha256(sha2::Sha256::new()),
            ChecksumType::Sha384 => Self::Sha384(sha2::Sha384::new()),
            ChecksumType::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha1(h) => h.update(data),
            Self::Sha224(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    fn hex(self) -> String {
        match self {
            Self::Md5(h) => hex::encode(h.finalize()),
            Self::Sha1(h) => hex::encode(h.finalize()),
            Self::Sha224(h) => hex::encode(h.finalize()),
            Self::Sha256(h) => hex::encode(h.finalize()),
            Self::Sha384(h) => hex::encode(h.finalize()),
            Self::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// Hashes `path` with every type in one pass; the digests in the order of `types`.
fn hash_file(
    path: &Path,
    types: &[ChecksumType],
    work: &blocking::Work,
) -> Result<Vec<String>, String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut hashes: Vec<Running> = types.iter().map(|t| Running::new(*t)).collect();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        work.check().map_err(|e| e.to_string())?;
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        for h in &mut hashes {
            h.update(&buf[..n]);
        }
        work.advance(n as u64);
    }
    Ok(hashes.into_iter().map(Running::hex).collect())
}

fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

impl PostProcess for Checksum {
    fn run<'a>(
        &'a self,
        ctx: &'a mut StepContext,
        input: &'a Artifact,
        facts: &'a BuildFacts,
    ) -> BoxFuture<'a, Result<Processed, StepError>> {
        Box::pin(async move {
            let types = self.0.checksum_types.clone();
            let mut outputs: Vec<PathBuf> = Vec::with_capacity(types.len());
            for t in &types {
                outputs.push(render_output(
                    "output",
                    &self.0.output,
                    &[
                        ("BuildName", Some(facts.build_name.clone())),
                        ("BuilderType", Some(facts.builder_type.clone())),
                        ("ChecksumType", Some(t.name().to_string())),
                    ],
                )?);
            }
            let files = input.files.clone();
            let total = files
                .iter()
                .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
                .sum();
            let job_types = types.clone();
            let digests = blocking::run(ctx, total, move |work| {
                files
                    .iter()
                    .map(|f| hash_file(f, &job_types, work).map(|d| (base_name(f), d)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
            let mut artifact = Artifact {
                producer: "checksum".into(),
                id: String::new(),
                files: input.files.clone(),
            };
            for (i, output) in outputs.iter().enumerate() {
                if !output.exists() && !artifact.files.contains(output) {
                    artifact.files.push(output.clone());
                }
                if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StepError(format!(
                            "cannot create the directory {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                let text: String = digests
                    .iter()
                    .map(|(name, d)| format!("{}\t{name}\n", d[i]))
                    .collect();
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(output)
                    .and_then(|mut f| f.write_all(text.as_bytes()))
                    .map_err(|e| StepError(format!("cannot write {}: {e}", output.display())))?;
                ctx.log(format!("{} → {}", types[i].name(), output.display()));
            }
            artifact.id = artifact
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            Ok(Processed {
                artifact,
                keep_input_by_default: true,
                must_keep_input: true,
            })
        })
    }
}

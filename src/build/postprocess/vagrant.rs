//! `vagrant`: a Vagrant box for the `libvirt` provider from a qemu image, laid out as Packer's
//! post-processor lays it out — `box.img` (the image), `metadata.json` (provider, format,
//! virtual size in GB), a `Vagrantfile` (the provider's part, then `vagrantfile_template`'s)
//! and the `include` files — in a tar, gzipped unless `compression_level` is 0. The image is
//! streamed into the archive (no copy first); the box is written under a hidden temporary
//! name next to `output` and renamed when complete.
//!
//! `artifice`: the artifact becomes the listed files.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;

use super::blocking::{self, Work};
use super::compress::{Counting, TempFile};
use super::{BuildFacts, PostProcess, Processed, render_output};
use crate::build::artifact::Artifact;
use crate::build::runner::{BoxFuture, StepContext, StepError};
use crate::image::qemu_img::QemuImg;
use crate::qemu::cmdline::Accel;
use crate::recipe::postprocessor::{ArtificeConfig, VagrantConfig};
use crate::recipe::units::format_bytes;
use crate::recipe::vagrant::VAGRANT_PROVIDER;

/// The `vagrant` post-processor.
pub struct Vagrant(pub VagrantConfig);

/// The Vagrantfile of every box: the provider's part, then the template's (Packer's words).
fn vagrantfile(driver: &str, custom: &str) -> String {
    format!(
        "\n# The contents below were provided by the Packer Vagrant post-processor\n\
         \nVagrant.configure(\"2\") do |config|\n  config.vm.provider :libvirt do |libvirt|\n    libvirt.driver = \"{driver}\"\n  end\nend\n\
         \n\n# The contents below (if any) are custom contents provided by the\n\
         # Packer template during image build.\n{custom}\n"
    )
}

/// `metadata.json`: what vagrant-libvirt reads (keys in order, one line, as Go writes it).
pub fn metadata_json(format: &str, virtual_size: u64) -> String {
    let gib = virtual_size.div_ceil(1 << 30);
    format!(
        "{{\"format\":\"{format}\",\"provider\":\"{VAGRANT_PROVIDER}\",\"virtual_size\":{gib}}}\n"
    )
}

/// One member of the box: its name and where its bytes come from.
enum Member {
    /// Bytes made here.
    Text(String, Vec<u8>),
    /// A file on disk, under another name.
    File(String, PathBuf),
}

impl Member {
    fn name(&self) -> &str {
        match self {
            Member::Text(name, _) | Member::File(name, _) => name,
        }
    }
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    header.set_entry_type(tar::EntryType::Regular);
    header
}

/// Writes the members into `file` as a tar, gzipped at `level` (0: plain tar).
fn write_box(file: File, level: u32, members: &[Member], work: &Work) -> std::io::Result<()> {
    let out = BufWriter::with_capacity(1 << 20, file);
    let write_tar = |w: &mut dyn Write| -> std::io::Result<()> {
        let mut tar = tar::Builder::new(w);
        for member in members {
            match member {
                Member::Text(name, bytes) => {
                    let mut h = header(bytes.len() as u64, 0o644);
                    tar.append_data(&mut h, name, bytes.as_slice())?;
                    work.advance(bytes.len() as u64);
                }
                Member::File(name, path) => {
                    let input = File::open(path).map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?;
                    let size = input.metadata()?.len();
                    let mut h = header(size, 0o644);
                    let reader: Box<dyn Read> = Box::new(Counting { inner: input, work });
                    tar.append_data(&mut h, name, reader)?;
                }
            }
        }
        tar.finish()
    };
    let out = if level == 0 {
        let mut out = out;
        write_tar(&mut out)?;
        out
    } else {
        let mut gz = flate2::write::GzEncoder::new(out, Compression::new(level));
        write_tar(&mut gz)?;
        gz.finish()?
    };
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// The libvirt driver the box asks for: `kvm` unless the build had to run with TCG.
fn driver(facts: &BuildFacts) -> &'static str {
    match &facts.accel {
        Some(choice) if choice.accel == Accel::Tcg => "qemu",
        _ => "kvm",
    }
}

impl PostProcess for Vagrant {
    fn run<'a>(
        &'a self,
        ctx: &'a mut StepContext,
        input: &'a Artifact,
        facts: &'a BuildFacts,
    ) -> BoxFuture<'a, Result<Processed, StepError>> {
        Box::pin(async move {
            let config = &self.0;
            let fields = [
                ("BuildName", Some(facts.build_name.clone())),
                ("Provider", Some(VAGRANT_PROVIDER.to_string())),
                ("ArtifactId", Some(input.id.clone())),
            ];
            let output = render_output("output", &config.output, &fields)?;
            let image = input.main_file().ok_or_else(|| {
                StepError("the input artifact has no image to put in a box".into())
            })?;
            let qemu_img = QemuImg::locate().map_err(super::super::steps::fail)?;
            let info = qemu_img.info(image, ctx.cancel()).await.map_err(|e| {
                StepError(format!(
                    "a libvirt box is made from a disk image, and {} (from `{}`) is not one qemu-img reads: {e}",
                    image.display(),
                    input.producer
                ))
            })?;
            let custom = match &config.vagrantfile_template {
                None => String::new(),
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        StepError(format!("cannot read vagrantfile_template {path}: {e}"))
                    })?;
                    crate::recipe::interp::render_fields(&text, &fields)
                        .map_err(|e| StepError(format!("vagrantfile_template {path}: {e}")))?
                }
            };
            let mut members = vec![
                Member::Text(
                    "Vagrantfile".into(),
                    vagrantfile(driver(facts), &custom).into_bytes(),
                ),
                Member::File("box.img".into(), image.to_path_buf()),
            ];
            let mut metadata = Some(Member::Text(
                "metadata.json".into(),
                metadata_json(info.format.name(), info.virtual_size).into_bytes(),
            ));
            for path in &config.include {
                let path = PathBuf::from(path);
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !path.is_file() {
                    return Err(StepError(format!(
                        "include: {} is not a file (relative paths are resolved from the working directory)",
                        path.display()
                    )));
                }
                match name.as_str() {
                    // Packer keeps an included metadata.json, and writes its own Vagrantfile
                    // and box.img over included ones.
                    "metadata.json" => metadata = None,
                    "Vagrantfile" | "box.img" => {
                        ctx.log(format!(
                            "include: {} is replaced by the box's own {name}",
                            path.display()
                        ));
                        continue;
                    }
                    _ => {}
                }
                members.push(Member::File(name, path));
            }
            members.extend(metadata);
            members.sort_by(|a, b| a.name().cmp(b.name()));

            let dir = match output.parent().filter(|d| !d.as_os_str().is_empty()) {
                Some(dir) => dir.to_path_buf(),
                None => PathBuf::from("."),
            };
            std::fs::create_dir_all(&dir).map_err(|e| {
                StepError(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
            let name = output
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "box".into());
            let mut temp = TempFile {
                path: dir.join(format!(".{name}.kiln-partial")),
                keep: false,
            };
            let file = File::create(&temp.path)
                .map_err(|e| StepError(format!("cannot create {}: {e}", temp.path.display())))?;
            let total: u64 = members
                .iter()
                .map(|m| match m {
                    Member::Text(_, bytes) => bytes.len() as u64,
                    Member::File(_, path) => std::fs::metadata(path).map_or(0, |m| m.len()),
                })
                .sum();
            ctx.log(format!(
                "making the libvirt box {} ({} of {}, virtual size {}, {})",
                output.display(),
                members
                    .iter()
                    .map(Member::name)
                    .collect::<Vec<_>>()
                    .join(", "),
                format_bytes(total),
                format_bytes(info.virtual_size),
                match config.compression_level {
                    0 => "not compressed".to_string(),
                    level => format!("gzip level {level}"),
                }
            ));
            let level = config.compression_level;
            blocking::run(ctx, total, move |work| {
                write_box(file, level, &members, work).map_err(|e| e.to_string())
            })
            .await?;
            std::fs::rename(&temp.path, &output).map_err(|e| {
                StepError(format!("cannot move the box to {}: {e}", output.display()))
            })?;
            temp.keep = true;
            let size = std::fs::metadata(&output).map_or(0, |m| m.len());
            ctx.log(format!("{} ({})", output.display(), format_bytes(size)));
            Ok(Processed {
                artifact: Artifact {
                    producer: "vagrant".into(),
                    id: VAGRANT_PROVIDER.into(),
                    files: vec![output],
                },
                keep_input_by_default: false,
                must_keep_input: false,
            })
        })
    }
}

/// The `artifice` post-processor.
pub struct Artifice(pub ArtificeConfig);

impl PostProcess for Artifice {
    fn run<'a>(
        &'a self,
        ctx: &'a mut StepContext,
        _input: &'a Artifact,
        _facts: &'a BuildFacts,
    ) -> BoxFuture<'a, Result<Processed, StepError>> {
        Box::pin(async move {
            let missing: Vec<&String> = self
                .0
                .files
                .iter()
                .filter(|f| !Path::new(f).exists())
                .collect();
            if !missing.is_empty() {
                return Err(StepError(format!(
                    "files: {} not found (an earlier step should have made them; relative paths are resolved from the working directory)",
                    missing
                        .iter()
                        .map(|f| f.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            ctx.log(format!("the artifact is now {}", self.0.files.join(", ")));
            Ok(Processed {
                artifact: Artifact {
                    producer: "artifice".into(),
                    id: "ARTIFICE".into(),
                    files: self.0.files.iter().map(PathBuf::from).collect(),
                },
                // Packer's artifice keeps its input (the new files often are the old ones).
                keep_input_by_default: true,
                must_keep_input: false,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_what_vagrant_libvirt_reads() {
        assert_eq!(
            metadata_json("qcow2", 10 << 30),
            "{\"format\":\"qcow2\",\"provider\":\"libvirt\",\"virtual_size\":10}\n"
        );
        // Rounded up, never down: a box smaller than its image would not boot.
        assert_eq!(
            metadata_json("raw", (2 << 30) + 1),
            "{\"format\":\"raw\",\"provider\":\"libvirt\",\"virtual_size\":3}\n"
        );
    }

    #[test]
    fn the_vagrantfile_has_the_provider_part_then_the_templates() {
        let text = vagrantfile(
            "qemu",
            "config.vm.synced_folder \".\", \"/vagrant\", disabled: true",
        );
        let provider = text.find("libvirt.driver = \"qemu\"").unwrap();
        let custom = text.find("synced_folder").unwrap();
        assert!(provider < custom, "{text}");
    }
}

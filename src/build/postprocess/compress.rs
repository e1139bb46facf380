//! `compress`: packs the artifact's files into a tar or zip archive, or compresses its single
//! file, in every format `CompressFormat` knows (gzip, lz4, xz, bgzf). The archive is written
//! under a hidden temporary name next to `output` and renamed when complete; a cancel stops
//! the work between chunks and removes the temporary file.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;

use super::blocking::{self, Work};
use super::{BuildFacts, PostProcess, Processed, render_output};
use crate::build::artifact::Artifact;
use crate::build::runner::{BoxFuture, StepContext, StepError};
use crate::recipe::postprocessor::{CompressConfig, CompressFormat};
use crate::recipe::units::format_bytes;

/// The `compress` post-processor.
pub struct Compress(pub CompressConfig);

/// Removes a temporary file when dropped, unless it was kept.
pub(super) struct TempFile {
    /// The file.
    pub path: PathBuf,
    /// Keep it (it was renamed into place).
    pub keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Reads through to `inner`, counting bytes and stopping once the step is cancelled.
pub(super) struct Counting<'w, R> {
    /// The reader.
    pub inner: R,
    /// Where bytes are counted.
    pub work: &'w Work,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.work.check()?;
        let n = self.inner.read(buf)?;
        self.work.advance(n as u64);
        Ok(n)
    }
}

/// Blocked gzip (bgzf, as `bgzip` writes): gzip members of at most 64 KiB of input, each with
/// the `BC` extra field giving its size, and the standard empty end-of-file member.
struct Bgzf<W: Write> {
    inner: W,
    buf: Vec<u8>,
    level: Compression,
}

/// Input bytes per bgzf block (as bgzip: a little under 64 KiB, so a block of incompressible
/// data still fits the 16-bit block size).
const BGZF_BLOCK: usize = 0xff00;

/// bgzf's end-of-file marker: an empty block.
const BGZF_EOF: [u8; 28] = [
    0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 0x06, 0, b'B', b'C', 0x02, 0, 0x1b, 0, 0x03, 0, 0,
    0, 0, 0, 0, 0, 0, 0,
];

impl<W: Write> Bgzf<W> {
    fn new(inner: W, level: Compression) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(BGZF_BLOCK),
            level,
        }
    }

    fn write_block(&mut self) -> std::io::Result<()> {
        let deflate = |level: Compression| {
            let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), level);
            encoder.write_all(&self.buf)?;
            encoder.finish()
        };
        let mut data = deflate(self.level)?;
        if data.len() + 25 > usize::from(u16::MAX) {
            // Incompressible data: stored blocks always fit.
            data = deflate(Compression::none())?;
        }
        let mut crc = flate2::Crc::new();
        crc.update(&self.buf);
        let block_size = u16::try_from(data.len() + 25)
            .map_err(|_| std::io::Error::other("a bgzf block does not fit 64 KiB"))?;
        let mut header = [
            0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 0x06, 0, b'B', b'C', 0x02, 0, 0, 0,
        ];
        header[16..18].copy_from_slice(&block_size.to_le_bytes());
        self.inner.write_all(&header)?;
        self.inner.write_all(&data)?;
        self.inner.write_all(&crc.sum().to_le_bytes())?;
        self.inner
            .write_all(&(self.buf.len() as u32).to_le_bytes())?;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<W> {
        if !self.buf.is_empty() {
            self.write_block()?;
        }
        self.inner.write_all(&BGZF_EOF)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Bgzf<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(BGZF_BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BGZF_BLOCK {
            self.write_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A compressing stream over the archive file; `finish` ends the stream and returns the file.
enum Encoder {
    Plain(BufWriter<File>),
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
    Lz4(lz4_flex::frame::FrameEncoder<BufWriter<File>>),
    Xz(liblzma::write::XzEncoder<BufWriter<File>>),
    Bgzf(Bgzf<BufWriter<File>>),
}

impl Encoder {
    fn new(format: CompressFormat, file: File, level: u32) -> Self {
        let out = BufWriter::with_capacity(1 << 20, file);
        match format {
            CompressFormat::Tar | CompressFormat::Zip => Self::Plain(out),
            CompressFormat::TarGz | CompressFormat::Gz => {
                Self::Gzip(flate2::write::GzEncoder::new(out, Compression::new(level)))
            }
            CompressFormat::TarLz4 | CompressFormat::Lz4 => {
                Self::Lz4(lz4_flex::frame::FrameEncoder::new(out))
            }
            CompressFormat::TarXz | CompressFormat::Xz => {
                Self::Xz(liblzma::write::XzEncoder::new(out, level))
            }
            CompressFormat::TarBgzf | CompressFormat::Bgzf => {
                Self::Bgzf(Bgzf::new(out, Compression::new(level)))
            }
        }
    }

    fn finish(self) -> std::io::Result<File> {
        let out = match self {
            Self::Plain(w) => w,
            Self::Gzip(w) => w.finish()?,
            Self::Lz4(w) => w.finish().map_err(std::io::Error::other)?,
            Self::Xz(w) => w.finish()?,
            Self::Bgzf(w) => w.finish()?,
        };
        out.into_inner().map_err(|e| e.into_error())
    }
}

impl Write for Encoder {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(data),
            Self::Gzip(w) => w.write(data),
            Self::Lz4(w) => w.write(data),
            Self::Xz(w) => w.write(data),
            Self::Bgzf(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            Self::Gzip(w) => w.flush(),
            Self::Lz4(w) => w.flush(),
            Self::Xz(w) => w.flush(),
            Self::Bgzf(w) => w.flush(),
        }
    }
}

fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Writes `files` into `file` in `format`; the files are read once, in order.
fn pack(
    format: CompressFormat,
    level: u32,
    file: File,
    files: &[PathBuf],
    work: &Work,
) -> std::io::Result<()> {
    let open = |path: &PathBuf| {
        File::open(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
        })
    };
    if format == CompressFormat::Zip {
        let mut zip = zip::ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
        for path in files {
            let input = open(path)?;
            let size = input.metadata()?.len();
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .compression_level(Some(i64::from(level)))
                .large_file(size >= u64::from(u32::MAX));
            zip.start_file(base_name(path), options)
                .map_err(std::io::Error::other)?;
            std::io::copy(&mut Counting { inner: input, work }, &mut zip)?;
        }
        zip.finish()
            .map_err(std::io::Error::other)?
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        return Ok(());
    }
    let mut encoder = Encoder::new(format, file, level);
    if format.is_archive() {
        let mut tar = tar::Builder::new(&mut encoder);
        for path in files {
            let input = open(path)?;
            let meta = input.metadata()?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata(&meta);
            header.set_size(meta.len());
            tar.append_data(
                &mut header,
                base_name(path),
                Counting { inner: input, work },
            )?;
        }
        tar.finish()?;
    } else {
        let input = open(&files[0])?;
        std::io::copy(&mut Counting { inner: input, work }, &mut encoder)?;
    }
    encoder.finish()?.sync_all()
}

impl PostProcess for Compress {
    fn run<'a>(
        &'a self,
        ctx: &'a mut StepContext,
        input: &'a Artifact,
        facts: &'a BuildFacts,
    ) -> BoxFuture<'a, Result<Processed, StepError>> {
        Box::pin(async move {
            let config = &self.0;
            let output = render_output(
                "output",
                &config.output,
                &[
                    ("BuildName", Some(facts.build_name.clone())),
                    ("BuilderType", Some(facts.builder_type.clone())),
                ],
            )?;
            let files = input.files.clone();
            if files.is_empty() {
                return Err(StepError(
                    "the input artifact has no files to compress".into(),
                ));
            }
            if !config.format.is_archive() && files.len() > 1 {
                return Err(StepError(format!(
                    "`.{}` compresses one file, but the input artifact has {} ({}); end \
                     `output` with .tar.gz (or another archive format) to pack them all",
                    config.format.extension(),
                    files.len(),
                    files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if files.contains(&output) {
                return Err(StepError(format!(
                    "`output` {} is the input file itself; choose another name",
                    output.display()
                )));
            }
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
            let mut temp = TempFile {
                path: dir.join(format!(".{}.kiln-partial", base_name(&output))),
                keep: false,
            };
            let file = File::create(&temp.path)
                .map_err(|e| StepError(format!("cannot create {}: {e}", temp.path.display())))?;
            let total: u64 = files
                .iter()
                .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
                .sum();
            ctx.log(format!(
                "packing {} ({}) into {} (.{}, level {})",
                files.len(),
                format_bytes(total),
                output.display(),
                config.format.extension(),
                config.compression_level
            ));
            let (format, level) = (config.format, config.compression_level);
            blocking::run(ctx, total, move |work| {
                pack(format, level, file, &files, work).map_err(|e| e.to_string())
            })
            .await?;
            std::fs::rename(&temp.path, &output).map_err(|e| {
                StepError(format!(
                    "cannot move the archive to {}: {e}",
                    output.display()
                ))
            })?;
            temp.keep = true;
            let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
            ctx.log(format!("{} ({})", output.display(), format_bytes(size)));
            Ok(Processed {
                artifact: Artifact {
                    producer: "compress".into(),
                    id: "COMPRESS".into(),
                    files: vec![output],
                },
                keep_input_by_default: false,
                must_keep_input: false,
            })
        })
    }
}

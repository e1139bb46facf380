//! qcow2 metadata read directly from the file: the header and the map of which guest cluster
//! lives where, compressed or not. This is what [`super::merge`] needs to put compressed
//! clusters from two images into one without decompressing them; everything else about
//! images goes through `qemu-img`.
//!
//! The layout follows qemu's `docs/interop/qcow2.txt`: a big-endian header, a one-level L1
//! table of L2 table offsets, and L2 tables whose entries are a cluster's host offset with
//! flags (copied, compressed, zero). Images kiln cannot read this way (encrypted, external
//! data files, extended L2 entries, compression other than zlib) are refused with a reason,
//! so the caller can fall back to `qemu-img convert`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The first four bytes of every qcow2 file.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";

/// L1 and L2 entries: the cluster's refcount is exactly one.
pub const OFLAG_COPIED: u64 = 1 << 63;
/// L2 entries: the cluster is compressed.
pub const OFLAG_COMPRESSED: u64 = 1 << 62;
/// L2 entries (version 3): the cluster reads as zeros.
pub const OFLAG_ZERO: u64 = 1;
/// The host-offset bits of L1 entries and of uncompressed L2 entries.
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Compressed data is addressed in sectors of this size.
pub const SECTOR: u64 = 512;

/// Incompatible feature bits kiln can read past: dirty (refcounts may be stale, the cluster
/// map is still right) and "compression type" (checked separately: only zlib is accepted).
const READABLE_INCOMPATIBLE: u64 = 0b1001;

/// Why an image cannot be read here.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The image.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not a qcow2 image, or uses a feature this reader does not handle.
    #[error("{path}: {what}")]
    Unsupported {
        /// The image.
        path: PathBuf,
        /// What is unsupported.
        what: String,
    },
    /// The metadata contradicts itself.
    #[error("{path} looks corrupt: {what} (run `qemu-img check` on it)")]
    Corrupt {
        /// The image.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// The fields of a qcow2 header kiln uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// The virtual size in bytes.
    pub size: u64,
    /// Entries in the L1 table.
    pub l1_size: u32,
    /// Where the L1 table starts.
    pub l1_table_offset: u64,
    /// The backing file's name, when there is one.
    pub backing_file: Option<String>,
    /// Incompatible feature bits (version 3).
    pub incompatible_features: u64,
    /// 0 = zlib, 1 = zstd.
    pub compression_type: u8,
}

impl Header {
    /// The cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Guest clusters in the virtual disk.
    pub fn guest_clusters(&self) -> u64 {
        self.size.div_ceil(self.cluster_size())
    }

    /// Entries per L2 table.
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / 8
    }

    /// The bit where a compressed L2 entry's sector count starts.
    pub fn csize_shift(&self) -> u32 {
        62 - (self.cluster_bits - 8)
    }
}

/// Where one guest cluster's data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    /// Reads as zeros (the zero flag).
    Zero,
    /// Uncompressed, a whole cluster at this host offset.
    Data(u64),
    /// Compressed: a deflate stream of `len` bytes at host offset `offset`.
    Compressed {
        /// Byte offset in the file (not necessarily sector-aligned).
        offset: u64,
        /// Bytes that hold the stream: exact when the next compressed stream follows it
        /// directly (as qemu writes them), otherwise the sector-rounded bound of the entry.
        len: u64,
    },
}

/// A qcow2 image opened for reading its cluster map and data.
#[derive(Debug)]
pub struct Image {
    path: PathBuf,
    file: File,
    /// The header.
    pub header: Header,
    /// Every allocated or zero guest cluster, in guest order: (guest cluster index, where).
    /// Clusters not listed are unallocated (they read from the backing file, or as zeros).
    pub clusters: Vec<(u64, Cluster)>,
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Image {
    /// Opens `path` and reads its header and cluster map.
    pub fn open(path: &Path) -> Result<Image, Qcow2Error> {
        let io = |source| Qcow2Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let unsupported = |what: String| Qcow2Error::Unsupported {
            path: path.to_path_buf(),
            what,
        };
        let corrupt = |what: String| Qcow2Error::Corrupt {
            path: path.to_path_buf(),
            what,
        };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut raw = [0u8; 112];
        let got = read_up_to(&file, &mut raw, 0).map_err(io)?;
        if got < 72 || raw[..4] != MAGIC {
            return Err(unsupported("not a qcow2 image".into()));
        }
        let version = be_u32(&raw, 4);
        if !(2..=3).contains(&version) {
            return Err(unsupported(format!("qcow2 version {version}")));
        }
        let cluster_bits = be_u32(&raw, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(corrupt(format!("cluster_bits {cluster_bits}")));
        }
        if be_u32(&raw, 32) != 0 {
            return Err(unsupported("the image is encrypted".into()));
        }
        let (incompatible_features, compression_type) = if version >= 3 {
            if got < 104 {
                return Err(corrupt("a short version 3 header".into()));
            }
            let header_length = be_u32(&raw, 100);
            let compression = if header_length > 104 && got > 104 {
                raw[104]
            } else {
                0
            };
            (be_u64(&raw, 72), compression)
        } else {
            (0, 0)
        };
        if incompatible_features & !READABLE_INCOMPATIBLE != 0 {
            return Err(unsupported(format!(
                "incompatible features {incompatible_features:#x} (corrupt flag, external data file or extended L2 entries)"
            )));
        }
        if compression_type != 0 {
            return Err(unsupported(format!(
                "compression type {compression_type} (only zlib is merged)"
            )));
        }
        let backing_offset = be_u64(&raw, 8);
        let backing_size = be_u32(&raw, 16) as usize;
        let backing_file = if backing_offset != 0 && backing_size != 0 {
            if backing_size > 4096 {
                return Err(corrupt(format!(
                    "a backing file name of {backing_size} bytes"
                )));
            }
            let mut name = vec![0u8; backing_size];
            file.read_exact_at(&mut name, backing_offset).map_err(io)?;
            Some(String::from_utf8_lossy(&name).into_owned())
        } else {
            None
        };
        let header = Header {
            version,
            cluster_bits,
            size: be_u64(&raw, 24),
            l1_size: be_u32(&raw, 36),
            l1_table_offset: be_u64(&raw, 40),
            backing_file,
            incompatible_features,
            compression_type,
        };
        let needed_l1 = header.guest_clusters().div_ceil(header.l2_entries());
        if u64::from(header.l1_size) < needed_l1 {
            return Err(corrupt(format!(
                "an L1 table of {} entries for {} clusters",
                header.l1_size,
                header.guest_clusters()
            )));
        }
        let mut image = Image {
            path: path.to_path_buf(),
            file,
            header,
            clusters: Vec::new(),
        };
        image.read_map(needed_l1, file_len)?;
        Ok(image)
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_map(&mut self, l1_entries: u64, file_len: u64) -> Result<(), Qcow2Error> {
        let h = &self.header;
        let cs = h.cluster_size();
        let corrupt = |what: String| Qcow2Error::Corrupt {
            path: self.path.clone(),
            what,
        };
        let io = |source| Qcow2Error::Io {
            path: self.path.clone(),
            source,
        };
        let mut l1 = vec![0u8; (l1_entries * 8) as usize];
        self.file
            .read_exact_at(&mut l1, h.l1_table_offset)
            .map_err(io)?;
        let csize_shift = h.csize_shift();
        let offset_mask = (1u64 << csize_shift) - 1;
        let csize_mask = (1u64 << (h.cluster_bits - 8)) - 1;
        let guest_clusters = h.guest_clusters();
        let mut l2 = vec![0u8; cs as usize];
        let mut clusters = Vec::new();
        for i in 0..l1_entries {
            let l2_offset = be_u64(&l1, (i * 8) as usize) & OFFSET_MASK;
            if l2_offset == 0 {
                continue;
            }
            if !l2_offset.is_multiple_of(cs) || l2_offset + cs > file_len {
                return Err(corrupt(format!(
                    "L2 table {i} at {l2_offset}, outside the file"
                )));
            }
            self.file.read_exact_at(&mut l2, l2_offset).map_err(io)?;
            for j in 0..h.l2_entries() {
                let guest = i * h.l2_entries() + j;
                if guest >= guest_clusters {
                    break;
                }
                let entry = be_u64(&l2, (j * 8) as usize);
                let cluster = if entry & OFLAG_COMPRESSED != 0 {
                    let offset = entry & offset_mask;
                    let sectors = ((entry >> csize_shift) & csize_mask) + 1;
                    let len = sectors * SECTOR - (offset % SECTOR);
                    if offset + 1 > file_len {
                        return Err(corrupt(format!(
                            "compressed cluster {guest} at {offset}, outside the file"
                        )));
                    }
                    Cluster::Compressed {
                        offset,
                        len: len.min(file_len - offset),
                    }
                } else if h.version >= 3 && entry & OFLAG_ZERO != 0 {
                    Cluster::Zero
                } else {
                    let offset = entry & OFFSET_MASK;
                    if offset == 0 {
                        continue;
                    }
                    if !offset.is_multiple_of(cs) || offset + cs > file_len.next_multiple_of(cs) {
                        return Err(corrupt(format!(
                            "data cluster {guest} at {offset}, outside the file"
                        )));
                    }
                    Cluster::Data(offset)
                };
                clusters.push((guest, cluster));
            }
        }
        tighten_compressed_lengths(&mut clusters);
        self.clusters = clusters;
        Ok(())
    }

    /// Reads `buf.len()` bytes at host offset `offset`; bytes past the end of the file read
    /// as zeros (a compressed stream's sector-rounded bound may reach past it).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), Qcow2Error> {
        let got = read_up_to(&self.file, buf, offset).map_err(|source| Qcow2Error::Io {
            path: self.path.clone(),
            source,
        })?;
        buf[got..].fill(0);
        Ok(())
    }

    /// How many listed clusters are compressed and how many are uncompressed data.
    pub fn counts(&self) -> (u64, u64) {
        let mut compressed = 0;
        let mut data = 0;
        for (_, c) in &self.clusters {
            match c {
                Cluster::Compressed { .. } => compressed += 1,
                Cluster::Data(_) => data += 1,
                Cluster::Zero => {}
            }
        }
        (compressed, data)
    }
}

/// qemu packs compressed streams one after the other; an entry's sector-rounded bound then
/// reaches into the next stream. Cutting each stream at the next one's start keeps a merged
/// image from carrying those stray bytes.
fn tighten_compressed_lengths(clusters: &mut [(u64, Cluster)]) {
    let mut starts: Vec<u64> = clusters
        .iter()
        .filter_map(|(_, c)| match c {
            Cluster::Compressed { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect();
    starts.sort_unstable();
    starts.dedup();
    for (_, c) in clusters.iter_mut() {
        if let Cluster::Compressed { offset, len } = c {
            let next = starts.partition_point(|s| s <= offset);
            if let Some(&next_start) = starts.get(next) {
                *len = (*len).min(next_start - *offset);
            }
        }
    }
}

fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_streams_are_cut_at_the_next_one() {
        let mut clusters = vec![
            (
                0,
                Cluster::Compressed {
                    offset: 1000,
                    len: 536,
                },
            ),
            (1, Cluster::Data(65536)),
            (
                2,
                Cluster::Compressed {
                    offset: 1300,
                    len: 236,
                },
            ),
        ];
        tighten_compressed_lengths(&mut clusters);
        assert_eq!(
            clusters[0].1,
            Cluster::Compressed {
                offset: 1000,
                len: 300
            }
        );
        assert_eq!(
            clusters[2].1,
            Cluster::Compressed {
                offset: 1300,
                len: 236
            }
        );
    }

    #[test]
    fn a_file_that_is_not_qcow2_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.raw");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let e = Image::open(&path).unwrap_err();
        assert!(e.to_string().contains("not a qcow2 image"), "{e}");
    }
}

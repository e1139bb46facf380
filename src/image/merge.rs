//! Merging a compressed base image and a compressed delta into one standalone, compressed
//! qcow2 without recompressing anything.
//!
//! A build boots an overlay on the (already compressed) base image. At the end, qemu-img
//! compresses only what the build changed (`convert -c -B base`: the delta), and this module
//! writes the artifact: every guest cluster taken from the delta when the build touched it,
//! from the base otherwise, with compressed streams copied byte for byte. Clusters the build
//! zeroed or trimmed vanish. The result reads exactly as the overlay does, and compaction
//! costs the size of the change instead of the size of the disk.
//!
//! Layout of the written file: the header cluster, the L1 table, the L2 tables, uncompressed
//! clusters, compressed streams packed back to back, then the refcount blocks and the
//! refcount table. Refcounts follow qemu's rule for compressed clusters: every host cluster a
//! stream's sector range touches counts it once.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::qcow2::{Cluster, Image, OFLAG_COMPRESSED, OFLAG_COPIED, Qcow2Error, SECTOR};

/// qcow2 version 3 header length without optional fields (zlib compression implied).
const HEADER_LENGTH: u32 = 104;
/// 16-bit refcounts (qemu's default).
const REFCOUNT_ORDER: u32 = 4;

/// What a merge wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeStats {
    /// Guest clusters taken from the base image.
    pub from_base: u64,
    /// Guest clusters taken from the delta.
    pub from_delta: u64,
    /// The size of the written file.
    pub bytes: u64,
}

/// Why a merge did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// An input could not be read or is not mergeable.
    #[error(transparent)]
    Input(#[from] Qcow2Error),
    /// The two images do not fit together.
    #[error("cannot merge {delta} onto {base}: {why}")]
    Mismatch {
        /// The base image.
        base: String,
        /// The delta.
        delta: String,
        /// Why.
        why: String,
    },
    /// Writing the output failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The caller cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// A writer that counts what it wrote.
struct Counted {
    inner: BufWriter<File>,
    written: u64,
}

impl Counted {
    fn emit(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn zeros(&mut self, n: u64) -> std::io::Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        let mut left = n;
        while left > 0 {
            let step = left.min(ZEROS.len() as u64);
            self.emit(&ZEROS[..step as usize])?;
            left -= step;
        }
        Ok(())
    }
}

/// Where one output cluster comes from.
#[derive(Debug, Clone, Copy)]
struct Source {
    from_delta: bool,
    cluster: Cluster,
}

/// Writes to `out` a standalone qcow2 whose guest contents are `delta` over `base`: a
/// cluster the delta lists (data, compressed or zero) wins, any other comes from the base.
/// The virtual size is the delta's. `progress(done, total)` counts bytes written;
/// `cancelled()` is polled between clusters. `out` is created (truncated if it exists) and
/// synced; on error the caller removes it.
pub fn merge(
    base: &Image,
    delta: &Image,
    out: &Path,
    mut progress: impl FnMut(u64, u64),
    cancelled: impl Fn() -> bool,
) -> Result<MergeStats, MergeError> {
    let mismatch = |why: String| MergeError::Mismatch {
        base: base.path().display().to_string(),
        delta: delta.path().display().to_string(),
        why,
    };
    let h = &delta.header;
    if base.header.cluster_bits != h.cluster_bits {
        return Err(mismatch(format!(
            "cluster sizes differ ({} and {} bytes)",
            base.header.cluster_size(),
            h.cluster_size()
        )));
    }
    if base.header.backing_file.is_some() {
        return Err(mismatch("the base image has a backing file itself".into()));
    }
    if base.header.size > h.size {
        return Err(mismatch(format!(
            "the delta ({} bytes) is smaller than the base ({} bytes)",
            h.size, base.header.size
        )));
    }
    let cs = h.cluster_size();
    let sources = overlay(&base.clusters, &delta.clusters);
    let layout = Layout::plan(h.cluster_bits, h.size, &sources);

    let write_err = |source| MergeError::Write {
        path: out.display().to_string(),
        source,
    };
    let file = File::create(out).map_err(write_err)?;
    let mut w = Counted {
        inner: BufWriter::with_capacity(1 << 20, file),
        written: 0,
    };
    let total = layout.file_len;
    w.emit(&layout.header_cluster(h.size)).map_err(write_err)?;
    w.emit(&layout.l1_bytes()).map_err(write_err)?;
    for table in &layout.l2_tables {
        w.emit(table).map_err(write_err)?;
    }
    let mut buf = vec![0u8; 2 * cs as usize];
    let mut stats = MergeStats::default();
    for (i, placed) in layout.placed.iter().enumerate() {
        if i % 256 == 0 {
            if cancelled() {
                return Err(MergeError::Cancelled);
            }
            progress(w.written, total);
        }
        let (image, offset, len) = match (placed.source.from_delta, placed.source.cluster) {
            (_, Cluster::Zero) => continue,
            (true, Cluster::Data(offset)) => (delta, offset, cs),
            (false, Cluster::Data(offset)) => (base, offset, cs),
            (true, Cluster::Compressed { offset, len }) => (delta, offset, len),
            (false, Cluster::Compressed { offset, len }) => (base, offset, len),
        };
        if placed.source.from_delta {
            stats.from_delta += 1;
        } else {
            stats.from_base += 1;
        }
        let Some(chunk) = buf.get_mut(..len as usize) else {
            return Err(mismatch(format!(
                "a compressed cluster of {len} bytes in {}",
                image.path().display()
            )));
        };
        image.read_at(chunk, offset)?;
        // Uncompressed clusters sit on cluster boundaries; pad up to them.
        w.zeros(placed.at - w.written).map_err(write_err)?;
        w.emit(chunk).map_err(write_err)?;
    }
    w.zeros(layout.refcount_start - w.written)
        .map_err(write_err)?;
    for block in layout.refcount_blocks() {
        w.emit(&block).map_err(write_err)?;
    }
    w.emit(&layout.refcount_table()).map_err(write_err)?;
    let written = w.written;
    let file = w
        .inner
        .into_inner()
        .map_err(|e| write_err(e.into_error()))?;
    file.sync_data().map_err(write_err)?;
    progress(total, total);
    stats.bytes = written;
    Ok(stats)
}

/// The delta's entries over the base's, both sorted by guest cluster, without zero clusters
/// (a standalone image reads unallocated clusters as zeros).
fn overlay(base: &[(u64, Cluster)], delta: &[(u64, Cluster)]) -> Vec<(u64, Source)> {
    let mut out = Vec::with_capacity(base.len().max(delta.len()));
    let (mut b, mut d) = (0, 0);
    loop {
        let next = match (base.get(b), delta.get(d)) {
            (None, None) => break,
            (Some(x), None) => {
                b += 1;
                (x.0, false, x.1)
            }
            (None, Some(y)) => {
                d += 1;
                (y.0, true, y.1)
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                b += 1;
                (x.0, false, x.1)
            }
            (Some(x), Some(y)) => {
                if x.0 == y.0 {
                    b += 1;
                }
                d += 1;
                (y.0, true, y.1)
            }
        };
        let (guest, from_delta, cluster) = next;
        if cluster != Cluster::Zero {
            out.push((
                guest,
                Source {
                    from_delta,
                    cluster,
                },
            ));
        }
    }
    out
}

/// A cluster's place in the output.
#[derive(Debug, Clone, Copy)]
struct Placed {
    source: Source,
    /// Byte offset in the output file.
    at: u64,
}

/// Where everything goes in the output file.
struct Layout {
    cluster_bits: u32,
    l1: Vec<u64>,
    l2_tables: Vec<Vec<u8>>,
    placed: Vec<Placed>,
    refcount_start: u64,
    refblocks: u64,
    refcounts: Vec<u16>,
    file_len: u64,
}

impl Layout {
    fn plan(cluster_bits: u32, size: u64, sources: &[(u64, Source)]) -> Layout {
        let cs = 1u64 << cluster_bits;
        let l2_entries = cs / 8;
        let l1_size = size.div_ceil(cs).div_ceil(l2_entries).max(1);
        let l1_clusters = (l1_size * 8).div_ceil(cs);
        // Which L2 tables exist, in L1 order.
        let mut tables: Vec<u64> = sources.iter().map(|(g, _)| g / l2_entries).collect();
        tables.dedup();
        let l2_start = cs * (1 + l1_clusters);
        let data_start = l2_start + cs * tables.len() as u64;

        // Uncompressed clusters first (cluster-aligned), then compressed streams back to back.
        let mut placed = Vec::with_capacity(sources.len());
        let mut entries = Vec::with_capacity(sources.len());
        let mut at = data_start;
        for (guest, source) in sources {
            if let Cluster::Data(_) = source.cluster {
                placed.push(Placed {
                    source: *source,
                    at,
                });
                entries.push((*guest, at | OFLAG_COPIED));
                at += cs;
            }
        }
        let csize_shift = 62 - (cluster_bits - 8);
        let mut compressed_ranges = Vec::new();
        for (guest, source) in sources {
            if let Cluster::Compressed { len, .. } = source.cluster {
                placed.push(Placed {
                    source: *source,
                    at,
                });
                let extra_sectors = (at + len - 1) / SECTOR - at / SECTOR;
                entries.push((
                    *guest,
                    OFLAG_COMPRESSED | (extra_sectors << csize_shift) | at,
                ));
                let first = at / SECTOR * SECTOR;
                compressed_ranges.push((first, first + (extra_sectors + 1) * SECTOR));
                at += len;
            }
        }
        entries.sort_unstable_by_key(|e| e.0);
        let data_end = at.next_multiple_of(cs);

        let mut l1 = vec![0u64; l1_size as usize];
        let mut l2_tables = Vec::with_capacity(tables.len());
        let mut e = 0;
        for (n, table) in tables.iter().enumerate() {
            let offset = l2_start + cs * n as u64;
            l1[*table as usize] = offset | OFLAG_COPIED;
            let mut bytes = vec![0u8; cs as usize];
            while let Some(&(guest, value)) = entries.get(e) {
                if guest / l2_entries != *table {
                    break;
                }
                let slot = ((guest % l2_entries) * 8) as usize;
                bytes[slot..slot + 8].copy_from_slice(&value.to_be_bytes());
                e += 1;
            }
            l2_tables.push(bytes);
        }

        // Refcount blocks and table at the end, sized to cover themselves.
        let per_block = cs * 8 / (1 << REFCOUNT_ORDER);
        let data_clusters = data_end / cs;
        let (mut blocks, mut table_clusters) = (0u64, 0u64);
        loop {
            let total = data_clusters + blocks + table_clusters;
            let need_blocks = total.div_ceil(per_block);
            let need_table = (need_blocks * 8).div_ceil(cs);
            if need_blocks == blocks && need_table == table_clusters {
                break;
            }
            (blocks, table_clusters) = (need_blocks, need_table);
        }
        let total_clusters = data_clusters + blocks + table_clusters;
        let mut refcounts = vec![0u16; (blocks * per_block) as usize];
        // Header, L1, L2 tables, uncompressed data: one reference each.
        for c in 0..data_start / cs {
            refcounts[c as usize] = 1;
        }
        for p in &placed {
            if let Cluster::Data(_) = p.source.cluster {
                refcounts[(p.at / cs) as usize] = 1;
            }
        }
        for (start, end) in compressed_ranges {
            for c in start / cs..=(end - 1) / cs {
                refcounts[c as usize] += 1;
            }
        }
        for c in data_clusters..total_clusters {
            refcounts[c as usize] = 1;
        }
        Layout {
            cluster_bits,
            l1,
            l2_tables,
            placed,
            refcount_start: data_end,
            refblocks: blocks,
            refcounts,
            file_len: total_clusters * cs,
        }
    }

    fn cs(&self) -> u64 {
        1 << self.cluster_bits
    }

    fn header_cluster(&self, size: u64) -> Vec<u8> {
        let cs = self.cs();
        let mut b = vec![0u8; cs as usize];
        let mut put32 = |at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        put32(0, u32::from_be_bytes(super::qcow2::MAGIC));
        put32(4, 3);
        put32(20, self.cluster_bits);
        put32(36, self.l1.len() as u32);
        put32(56, (self.refcount_table_clusters()) as u32);
        put32(96, REFCOUNT_ORDER);
        put32(100, HEADER_LENGTH);
        let mut put64 = |at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_be_bytes());
        put64(24, size);
        put64(40, cs); // L1 table offset
        put64(48, self.refcount_start + self.refblocks * cs);
        // Bytes 104..112 stay zero: the end-of-extensions marker.
        b
    }

    fn refcount_table_clusters(&self) -> u64 {
        (self.refblocks * 8).div_ceil(self.cs())
    }

    fn l1_bytes(&self) -> Vec<u8> {
        let cs = self.cs();
        let mut b: Vec<u8> = self.l1.iter().flat_map(|e| e.to_be_bytes()).collect();
        b.resize(((b.len() as u64).div_ceil(cs) * cs) as usize, 0);
        b
    }

    fn refcount_blocks(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        let per_block = (self.cs() / 2) as usize;
        self.refcounts
            .chunks(per_block)
            .map(|counts| counts.iter().flat_map(|c| c.to_be_bytes()).collect())
    }

    fn refcount_table(&self) -> Vec<u8> {
        let cs = self.cs();
        let mut b: Vec<u8> = (0..self.refblocks)
            .flat_map(|i| (self.refcount_start + i * cs).to_be_bytes())
            .collect();
        b.resize((self.refcount_table_clusters() * cs) as usize, 0);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(o: u64) -> Cluster {
        Cluster::Data(o)
    }

    #[test]
    fn the_delta_wins_and_zeros_vanish() {
        let base = vec![(0, data(1)), (1, data(2)), (3, data(3))];
        let delta = vec![(1, Cluster::Zero), (2, data(9)), (3, data(8))];
        let merged: Vec<(u64, bool)> = overlay(&base, &delta)
            .into_iter()
            .map(|(g, s)| (g, s.from_delta))
            .collect();
        assert_eq!(merged, vec![(0, false), (2, true), (3, true)]);
    }

    #[test]
    fn refcounts_cover_the_refcount_structures() {
        let sources: Vec<(u64, Source)> = (0..10)
            .map(|g| {
                (
                    g,
                    Source {
                        from_delta: false,
                        cluster: Cluster::Compressed {
                            offset: 0,
                            len: 700,
                        },
                    },
                )
            })
            .collect();
        let layout = Layout::plan(16, 1 << 30, &sources);
        let cs = 1u64 << 16;
        assert_eq!(layout.file_len % cs, 0);
        let clusters = layout.file_len / cs;
        assert!(
            (0..clusters).all(|c| layout.refcounts[c as usize] > 0),
            "every cluster of the file is referenced"
        );
        // Ten streams of 700 bytes share the first data cluster.
        assert_eq!(layout.refcounts[(layout.placed[0].at / cs) as usize], 10);
    }
}

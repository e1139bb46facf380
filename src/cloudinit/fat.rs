//! A FAT12/FAT16 writer with VFAT long file names: what `mkfs.vfat -n CIDATA` + `mcopy`
//! make for `cloud-localds --filesystem vfat`, sized to fit its files.
//!
//! Layout (512-byte sectors, no partition table): the boot sector with the BIOS parameter
//! block, two copies of the FAT, the fixed root directory (first entry: the volume label),
//! then the data clusters: subdirectories first (breadth first), then each file's clusters,
//! contiguous. FAT12 is used below 4085 clusters, FAT16 above (with a margin around the
//! boundary, where readers disagree); FAT32 is not written, so images stop at about 2 GiB.
//!
//! Every name that is not already an upper-case 8.3 name gets long-name entries
//! (`user-data` → `USER-D~1` plus `user-data`), which Linux's vfat, mtools and Windows show.

use std::collections::{HashSet, VecDeque};
use std::io::Write;

use super::{Entry, SeedError, civil, tree};

/// The sector size.
pub const SECTOR: usize = 512;

/// FAT12 holds fewer than this many clusters; FAT16 at least this many.
const FAT12_MAX_CLUSTERS: u32 = 4085;
/// FAT16 holds fewer than this many clusters.
const FAT16_MAX_CLUSTERS: u32 = 65525;
/// Cluster counts this close to a type boundary are avoided.
const MARGIN: u32 = 16;
/// Root directory entries (as `mkfs.vfat` makes for disks); more when needed.
const ROOT_ENTRIES: usize = 512;
/// The smallest image written (what `cloud-localds --filesystem vfat` makes): free clusters
/// pad tiny seeds, so that readers which dislike minute file systems see a usual one.
const MIN_IMAGE_BYTES: u64 = 128 * 1024;
/// Media descriptor of a fixed disk.
const MEDIA: u8 = 0xF8;
/// Media descriptor of a 3.5-inch 1.44 MB floppy.
const FLOPPY_MEDIA: u8 = 0xF0;
/// Sectors of a 1.44 MB floppy (80 cylinders, 2 heads, 18 sectors a track).
pub const FLOPPY_SECTORS: u32 = 2880;
/// Root directory entries of a 1.44 MB floppy.
const FLOPPY_ROOT_ENTRIES: usize = 224;
/// FAT sectors of a 1.44 MB floppy.
const FLOPPY_FAT_SECTORS: u32 = 9;

const ATTR_READ_ONLY: u8 = 0x01;
const ATTR_HIDDEN: u8 = 0x02;
const ATTR_SYSTEM: u8 = 0x04;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_LFN: u8 = ATTR_READ_ONLY | ATTR_HIDDEN | ATTR_SYSTEM | ATTR_VOLUME_ID;

/// How the image is labelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatOptions {
    /// The volume label: up to 11 characters, stored upper case (default `CIDATA`).
    pub label: String,
    /// The volume serial number; by default derived from the names, sizes and timestamp.
    pub serial: Option<u32>,
    /// Time of every file, Unix seconds (UTC); FAT holds 1980–2107, so it is clamped.
    pub timestamp: i64,
    /// Write a 1.44 MB floppy (what `mkfs.vfat -C img 1440` makes: FAT12, 224 root
    /// entries, 18 sectors a track, 2 heads) instead of an image sized to fit.
    pub floppy: bool,
}

impl Default for FatOptions {
    fn default() -> Self {
        FatOptions {
            label: super::FAT_LABEL.to_string(),
            serial: None,
            timestamp: 0,
            floppy: false,
        }
    }
}

/// Writes a FAT12/FAT16 image of `entries` to `out`; returns the number of bytes written.
/// File contents are streamed; only the boot sector, FATs and directories are held in memory.
pub fn write<W: Write>(
    mut out: W,
    options: &FatOptions,
    entries: &[Entry],
) -> Result<u64, SeedError> {
    let layout = Layout::plan(options, entries)?;
    layout.write(&mut out, entries)?;
    out.flush().map_err(SeedError::io("writing the image"))?;
    Ok(u64::from(layout.total_sectors) * SECTOR as u64)
}

// ---- names ------------------------------------------------------------------------------------

/// Characters allowed in short names besides `A-Z 0-9`.
const SHORT_EXTRA: &[u8] = b"!#$%&'()-@^_`{}~";

fn short_char(c: char) -> u8 {
    let c = c.to_ascii_uppercase();
    if c.is_ascii_uppercase()
        || c.is_ascii_digit()
        || (c.is_ascii() && SHORT_EXTRA.contains(&(c as u8)))
    {
        c as u8
    } else {
        b'_'
    }
}

/// Checks that `name` can be a long file name.
fn check_long_name(name: &str, path: &str) -> Result<(), SeedError> {
    let bad = |reason: &str| SeedError::InvalidPath {
        path: path.to_string(),
        reason: format!("{reason}, which FAT cannot store; rename it or use --filesystem iso9660"),
    };
    if let Some(c) = name.chars().find(|&c| {
        (c as u32) < 0x20 || matches!(c, '"' | '*' | '/' | ':' | '<' | '>' | '?' | '\\' | '|')
    }) {
        return Err(bad(&format!("the name contains {c:?}")));
    }
    if name.ends_with(['.', ' ']) {
        return Err(bad("the name ends with a dot or a space"));
    }
    if name.encode_utf16().count() > 255 {
        return Err(bad("the name is longer than 255 characters"));
    }
    Ok(())
}

/// The 8.3 name of `name` within a directory whose names so far are `used`, and whether a
/// long name must go with it. An upper-case 8.3 name is kept as it is; other names get a
/// numeric tail (`user-data` → `USER-D~1`) unless upper-casing alone gives a free 8.3 name.
fn short_name(name: &str, used: &mut HashSet<[u8; 11]>) -> ([u8; 11], bool) {
    let pack = |base: &[u8], ext: &[u8]| {
        let mut s = [b' '; 11];
        s[..base.len()].copy_from_slice(base);
        s[8..8 + ext.len()].copy_from_slice(ext);
        s
    };
    // Lossless: at most one dot, 1–8 + 0–3 valid characters.
    let (stem, ext) = match name.rfind('.') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (name, ""),
    };
    let valid = |s: &str| s.chars().all(|c| short_char(c) != b'_' || c == '_');
    if !stem.is_empty()
        && stem.len() <= 8
        && ext.len() <= 3
        && !stem.contains('.')
        && !(name.contains('.') && ext.is_empty())
        && valid(stem)
        && valid(ext)
    {
        let b: Vec<u8> = stem.chars().map(short_char).collect();
        let e: Vec<u8> = ext.chars().map(short_char).collect();
        let s = pack(&b, &e);
        if used.insert(s) {
            let exact = stem.bytes().all(|c| !c.is_ascii_lowercase())
                && ext.bytes().all(|c| !c.is_ascii_lowercase());
            return (s, !exact);
        }
    }
    // Lossy: basis name and numeric tail.
    let trimmed = name.trim_start_matches('.');
    let (stem, ext) = match trimmed.rfind('.') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (trimmed, ""),
    };
    let strip = |s: &str| -> Vec<u8> {
        s.chars()
            .filter(|&c| c != ' ' && c != '.')
            .map(short_char)
            .collect()
    };
    let mut base = strip(stem);
    if base.is_empty() {
        base.push(b'_');
    }
    let mut e = strip(ext);
    e.truncate(3);
    for n in 1u32.. {
        let tail = format!("~{n}");
        let keep = base.len().min(8 - tail.len());
        let mut b = base[..keep].to_vec();
        b.extend_from_slice(tail.as_bytes());
        let s = pack(&b, &e);
        if used.insert(s) {
            return (s, true);
        }
    }
    unreachable!("a free numeric tail exists")
}

/// The checksum of a short name that long-name entries carry.
fn lfn_checksum(short: &[u8; 11]) -> u8 {
    short.iter().fold(0u8, |sum, &c| {
        ((sum & 1) << 7).wrapping_add(sum >> 1).wrapping_add(c)
    })
}

/// The long-name entries of `name` for `short`, in on-disk order (last part first).
fn lfn_entries(name: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    let count = units.len().div_ceil(13);
    if !units.len().is_multiple_of(13) {
        units.push(0);
    }
    units.resize(count * 13, 0xFFFF);
    let sum = lfn_checksum(short);
    (0..count)
        .rev()
        .map(|i| {
            let mut e = [0u8; 32];
            e[0] = (i + 1) as u8 | if i + 1 == count { 0x40 } else { 0 };
            e[11] = ATTR_LFN;
            e[13] = sum;
            let part = &units[i * 13..(i + 1) * 13];
            let slots = (1..11)
                .step_by(2)
                .chain((14..26).step_by(2))
                .chain((28..32).step_by(2));
            for (u, at) in part.iter().zip(slots) {
                e[at..at + 2].copy_from_slice(&u.to_le_bytes());
            }
            e
        })
        .collect()
}

/// FAT date and time of a Unix timestamp (UTC, clamped to 1980–2107).
fn fat_date_time(unix: i64) -> (u16, u16) {
    let (y, mo, d, h, mi, s) = civil(unix, 1980, 2107);
    let date = ((y - 1980) as u16) << 9 | u16::from(mo) << 5 | u16::from(d);
    let time = u16::from(h) << 11 | u16::from(mi) << 5 | u16::from(s / 2);
    (date, time)
}

fn short_entry(name: &[u8; 11], attr: u8, cluster: u32, size: u32, dt: (u16, u16)) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(name);
    e[11] = attr;
    let (date, time) = dt;
    e[14..16].copy_from_slice(&time.to_le_bytes());
    e[16..18].copy_from_slice(&date.to_le_bytes());
    e[18..20].copy_from_slice(&date.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[22..24].copy_from_slice(&time.to_le_bytes());
    e[24..26].copy_from_slice(&date.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

// ---- planning ---------------------------------------------------------------------------------

struct DirInfo {
    parent: usize,
    /// Children in name order: (long name, Dir or File index).
    children: Vec<(String, Child)>,
    /// The short names and whether a long name is needed, per child.
    short: Vec<([u8; 11], bool)>,
    /// Number of 32-byte entries.
    entry_count: usize,
    first_cluster: u32,
    clusters: u32,
}

#[derive(Clone, Copy)]
enum Child {
    Dir(usize),
    File(usize),
}

struct FileInfo {
    entry: usize,
    size: u64,
    first_cluster: u32,
    clusters: u32,
}

struct Layout {
    floppy: bool,
    label: [u8; 11],
    serial: u32,
    dt: (u16, u16),
    fat16: bool,
    sectors_per_cluster: u32,
    fat_sectors: u32,
    root_entries: usize,
    clusters: u32,
    total_sectors: u32,
    dirs: Vec<DirInfo>,
    /// Subdirectories in cluster order.
    dir_order: Vec<usize>,
    files: Vec<FileInfo>,
}

fn flatten(
    node: &tree::Dir,
    parent: usize,
    dirs: &mut Vec<DirInfo>,
    files: &mut Vec<FileInfo>,
) -> usize {
    let me = dirs.len();
    dirs.push(DirInfo {
        parent,
        children: Vec::new(),
        short: Vec::new(),
        entry_count: 0,
        first_cluster: 0,
        clusters: 0,
    });
    let mut children = Vec::new();
    for f in &node.files {
        children.push((f.name.clone(), Child::File(files.len())));
        files.push(FileInfo {
            entry: f.entry,
            size: f.size,
            first_cluster: 0,
            clusters: 0,
        });
    }
    for d in &node.dirs {
        let child = flatten(d, me, dirs, files);
        children.push((d.name.clone(), Child::Dir(child)));
    }
    children.sort_by(|a, b| a.0.cmp(&b.0));
    dirs[me].children = children;
    me
}

fn check_label(label: &str) -> Result<[u8; 11], SeedError> {
    let upper = label.to_ascii_uppercase();
    let ok = !upper.is_empty()
        && upper.len() <= 11
        && upper
            .chars()
            .all(|c| c == ' ' || (short_char(c) != b'_' || c == '_'));
    if !ok {
        return Err(SeedError::InvalidValue {
            field: "volume label",
            value: label.to_string(),
            reason: "must be 1–11 characters from A-Z 0-9 space ! # $ % & ' ( ) - @ ^ _ ` { } ~",
        });
    }
    let mut l = [b' '; 11];
    l[..upper.len()].copy_from_slice(upper.as_bytes());
    Ok(l)
}

/// FNV-1a over the names, sizes and timestamp: a serial number that is stable for stable input.
fn default_serial(entries: &[Entry], sizes: &[u64], timestamp: i64) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    eat(&timestamp.to_le_bytes());
    let mut sorted: Vec<(&Entry, &u64)> = entries.iter().zip(sizes).collect();
    sorted.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    for (e, s) in sorted {
        eat(e.path.as_bytes());
        eat(&[0]);
        eat(&s.to_le_bytes());
    }
    h
}

impl Layout {
    fn plan(options: &FatOptions, entries: &[Entry]) -> Result<Layout, SeedError> {
        let label = check_label(&options.label)?;
        let sizes = tree::sizes(entries)?;
        let root = tree::build(entries, &sizes)?;
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        flatten(&root, 0, &mut dirs, &mut files);

        // Names and entry counts.
        for (d, dir) in dirs.iter_mut().enumerate() {
            let mut used = HashSet::new();
            let mut folded = HashSet::new();
            let mut count = if d == 0 { 1 } else { 2 }; // label, or `.` and `..`
            let mut short = Vec::new();
            for (name, child) in &dir.children {
                let path = match child {
                    Child::File(f) => entries[files[*f].entry].path.clone(),
                    Child::Dir(_) => name.clone(),
                };
                check_long_name(name, &path)?;
                if !folded.insert(name.to_lowercase()) {
                    return Err(SeedError::InvalidPath {
                        path,
                        reason: "another name in its directory differs only in case, which FAT \
                                 does not tell apart; rename one or use --filesystem iso9660"
                            .into(),
                    });
                }
                let (s, long) = short_name(name, &mut used);
                count += 1 + if long {
                    name.encode_utf16().count().div_ceil(13)
                } else {
                    0
                };
                short.push((s, long));
            }
            dir.short = short;
            dir.entry_count = count;
        }
        if options.floppy {
            return Self::plan_floppy(options, entries, label, sizes, dirs, files);
        }
        let root_entries = dirs[0].entry_count.next_multiple_of(16).max(ROOT_ENTRIES);
        if root_entries > 65_520 {
            return Err(SeedError::TooLarge {
                what: "the root directory".into(),
                size: root_entries as u64,
                limit: 65_520,
                format: "FAT16",
                hint: "put files into subdirectories",
            });
        }
        let root_sectors = (root_entries * 32 / SECTOR) as u32;

        // Cluster size: the smallest that FAT16 can address.
        let mut chosen = None;
        for spc in [1u32, 2, 4, 8, 16, 32, 64] {
            let cb = u64::from(spc) * SECTOR as u64;
            let needed: u64 = dirs[1..]
                .iter()
                .map(|d| (d.entry_count as u64 * 32).div_ceil(cb))
                .chain(files.iter().map(|f| f.size.div_ceil(cb)))
                .sum::<u64>()
                .max(1);
            let overhead = 1 + 2 + u64::from(root_sectors);
            let floor = (MIN_IMAGE_BYTES / SECTOR as u64).saturating_sub(overhead) / u64::from(spc);
            let mut n = needed.max(floor);
            let fat16 = n >= u64::from(FAT12_MAX_CLUSTERS - MARGIN);
            if fat16 {
                n = n.max(u64::from(FAT12_MAX_CLUSTERS + MARGIN));
                if n >= u64::from(FAT16_MAX_CLUSTERS - MARGIN) {
                    continue;
                }
            }
            chosen = Some((spc, n as u32, fat16));
            break;
        }
        let total_data: u64 = sizes.iter().sum();
        let Some((spc, clusters, fat16)) = chosen else {
            return Err(SeedError::TooLarge {
                what: "the image".into(),
                size: total_data,
                limit: u64::from(FAT16_MAX_CLUSTERS - MARGIN - 1) * 64 * SECTOR as u64,
                format: "FAT16",
                hint: "use --filesystem iso9660 for large files",
            });
        };
        let fat_bytes = if fat16 {
            (clusters as usize + 2) * 2
        } else {
            ((clusters as usize + 2) * 3).div_ceil(2)
        };
        let fat_sectors = fat_bytes.div_ceil(SECTOR) as u32;
        let total_sectors = 1 + 2 * fat_sectors + root_sectors + clusters * spc;

        let mut layout = Layout {
            floppy: false,
            label,
            serial: options
                .serial
                .unwrap_or_else(|| default_serial(entries, &sizes, options.timestamp)),
            dt: fat_date_time(options.timestamp),
            fat16,
            sectors_per_cluster: spc,
            fat_sectors,
            root_entries,
            clusters,
            total_sectors,
            dirs,
            dir_order: Vec::new(),
            files,
        };
        layout.place();
        Ok(layout)
    }

    /// The fixed layout of a 1.44 MB floppy, if the files fit.
    fn plan_floppy(
        options: &FatOptions,
        entries: &[Entry],
        label: [u8; 11],
        sizes: Vec<u64>,
        dirs: Vec<DirInfo>,
        files: Vec<FileInfo>,
    ) -> Result<Layout, SeedError> {
        if dirs[0].entry_count > FLOPPY_ROOT_ENTRIES {
            return Err(SeedError::TooLarge {
                what: "the floppy's root directory".into(),
                size: dirs[0].entry_count as u64,
                limit: FLOPPY_ROOT_ENTRIES as u64,
                format: "a 1.44 MB floppy",
                hint: "put files into a directory (floppy_dirs) or use cd_files",
            });
        }
        let root_sectors = (FLOPPY_ROOT_ENTRIES * 32 / SECTOR) as u32;
        let clusters = FLOPPY_SECTORS - 1 - 2 * FLOPPY_FAT_SECTORS - root_sectors;
        let needed: u64 = dirs[1..]
            .iter()
            .map(|d| (d.entry_count as u64 * 32).div_ceil(SECTOR as u64))
            .chain(files.iter().map(|f| f.size.div_ceil(SECTOR as u64)))
            .sum();
        if needed > u64::from(clusters) {
            return Err(SeedError::TooLarge {
                what: "the floppy's files".into(),
                size: sizes.iter().sum(),
                limit: u64::from(clusters) * SECTOR as u64,
                format: "a 1.44 MB floppy",
                hint: "use cd_files/cd_content for larger files",
            });
        }
        let mut layout = Layout {
            floppy: true,
            label,
            serial: options
                .serial
                .unwrap_or_else(|| default_serial(entries, &sizes, options.timestamp)),
            dt: fat_date_time(options.timestamp),
            fat16: false,
            sectors_per_cluster: 1,
            fat_sectors: FLOPPY_FAT_SECTORS,
            root_entries: FLOPPY_ROOT_ENTRIES,
            clusters,
            total_sectors: FLOPPY_SECTORS,
            dirs,
            dir_order: Vec::new(),
            files,
        };
        layout.place();
        Ok(layout)
    }

    /// Gives clusters to the subdirectories (breadth first), then to the files.
    fn place(&mut self) {
        let Layout {
            dirs,
            files,
            dir_order,
            sectors_per_cluster: spc,
            clusters,
            ..
        } = self;
        let mut next = 2u32;
        let cb = u64::from(*spc) * SECTOR as u64;
        let mut queue = VecDeque::from([0usize]);
        while let Some(d) = queue.pop_front() {
            if d != 0 {
                dir_order.push(d);
                let n = (dirs[d].entry_count as u64 * 32).div_ceil(cb) as u32;
                dirs[d].first_cluster = next;
                dirs[d].clusters = n;
                next += n;
            }
            for (_, c) in &dirs[d].children {
                if let Child::Dir(s) = c {
                    queue.push_back(*s);
                }
            }
        }
        for f in files.iter_mut() {
            let n = f.size.div_ceil(cb) as u32;
            f.first_cluster = if n == 0 { 0 } else { next };
            f.clusters = n;
            next += n;
        }
        debug_assert!(next - 2 <= *clusters);
    }

    fn media(&self) -> u8 {
        if self.floppy { FLOPPY_MEDIA } else { MEDIA }
    }

    fn boot_sector(&self) -> Vec<u8> {
        let mut b = vec![0u8; SECTOR];
        b[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        b[3..11].copy_from_slice(b"MSWIN4.1");
        b[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
        b[13] = self.sectors_per_cluster as u8;
        b[14..16].copy_from_slice(&1u16.to_le_bytes()); // reserved sectors
        b[16] = 2; // FATs
        b[17..19].copy_from_slice(&(self.root_entries as u16).to_le_bytes());
        if self.total_sectors < 0x1_0000 {
            b[19..21].copy_from_slice(&(self.total_sectors as u16).to_le_bytes());
        } else {
            b[32..36].copy_from_slice(&self.total_sectors.to_le_bytes());
        }
        b[21] = self.media();
        b[22..24].copy_from_slice(&(self.fat_sectors as u16).to_le_bytes());
        let (per_track, heads, drive) = if self.floppy {
            (18u16, 2u16, 0x00)
        } else {
            (32, 64, 0x80)
        };
        b[24..26].copy_from_slice(&per_track.to_le_bytes());
        b[26..28].copy_from_slice(&heads.to_le_bytes());
        b[36] = drive;
        b[38] = 0x29; // extended boot signature
        b[39..43].copy_from_slice(&self.serial.to_le_bytes());
        b[43..54].copy_from_slice(&self.label);
        b[54..62].copy_from_slice(if self.fat16 { b"FAT16   " } else { b"FAT12   " });
        // Not bootable: `cli; hlt; jmp hlt`.
        b[62..66].copy_from_slice(&[0xFA, 0xF4, 0xEB, 0xFD]);
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    fn fat(&self) -> Vec<u8> {
        let mut fat = vec![0u8; self.fat_sectors as usize * SECTOR];
        let eoc: u16 = if self.fat16 { 0xFFFF } else { 0x0FFF };
        let mut set = |n: u32, v: u16| {
            let n = n as usize;
            if self.fat16 {
                fat[2 * n..2 * n + 2].copy_from_slice(&v.to_le_bytes());
            } else {
                let at = n * 3 / 2;
                if n.is_multiple_of(2) {
                    fat[at] = v as u8;
                    fat[at + 1] = (fat[at + 1] & 0xF0) | ((v >> 8) as u8 & 0x0F);
                } else {
                    fat[at] = (fat[at] & 0x0F) | ((v << 4) as u8);
                    fat[at + 1] = (v >> 4) as u8;
                }
            }
        };
        set(0, (eoc & 0xFF00) | u16::from(self.media()));
        set(1, eoc);
        let chains = self
            .dir_order
            .iter()
            .map(|&d| (self.dirs[d].first_cluster, self.dirs[d].clusters))
            .chain(self.files.iter().map(|f| (f.first_cluster, f.clusters)));
        for (first, n) in chains {
            for c in first..first + n {
                set(
                    c,
                    if c + 1 == first + n {
                        eoc
                    } else {
                        (c + 1) as u16
                    },
                );
            }
        }
        fat
    }

    /// The entries of directory `d`, padded to `len` bytes.
    fn directory(&self, d: usize, len: usize) -> Vec<u8> {
        let dir = &self.dirs[d];
        let mut out = Vec::with_capacity(len);
        if d == 0 {
            out.extend_from_slice(&short_entry(&self.label, ATTR_VOLUME_ID, 0, 0, self.dt));
        } else {
            let parent = if dir.parent == 0 {
                0
            } else {
                self.dirs[dir.parent].first_cluster
            };
            out.extend_from_slice(&short_entry(
                b".          ",
                ATTR_DIRECTORY,
                dir.first_cluster,
                0,
                self.dt,
            ));
            out.extend_from_slice(&short_entry(
                b"..         ",
                ATTR_DIRECTORY,
                parent,
                0,
                self.dt,
            ));
        }
        for ((name, child), (short, long)) in dir.children.iter().zip(&dir.short) {
            if *long {
                for e in lfn_entries(name, short) {
                    out.extend_from_slice(&e);
                }
            }
            let e = match *child {
                Child::Dir(s) => short_entry(
                    short,
                    ATTR_DIRECTORY,
                    self.dirs[s].first_cluster,
                    0,
                    self.dt,
                ),
                Child::File(f) => {
                    let fi = &self.files[f];
                    short_entry(
                        short,
                        ATTR_ARCHIVE,
                        fi.first_cluster,
                        fi.size as u32,
                        self.dt,
                    )
                }
            };
            out.extend_from_slice(&e);
        }
        out.resize(len, 0);
        out
    }

    fn write(&self, out: &mut dyn Write, entries: &[Entry]) -> Result<(), SeedError> {
        let put = |out: &mut dyn Write, b: &[u8]| {
            out.write_all(b).map_err(SeedError::io("writing the image"))
        };
        let cb = self.sectors_per_cluster as usize * SECTOR;
        put(out, &self.boot_sector())?;
        let fat = self.fat();
        put(out, &fat)?;
        put(out, &fat)?;
        put(out, &self.directory(0, self.root_entries * 32))?;
        let mut used = 0u32;
        for &d in &self.dir_order {
            let len = self.dirs[d].clusters as usize * cb;
            put(out, &self.directory(d, len))?;
            used += self.dirs[d].clusters;
        }
        let zeros = vec![0u8; cb];
        for f in &self.files {
            entries[f.entry]
                .data
                .copy_to(f.size, out, "writing the image")?;
            let rest = (u64::from(f.clusters) * cb as u64 - f.size) as usize;
            put(out, &zeros[..rest])?;
            used += f.clusters;
        }
        for _ in used..self.clusters {
            put(out, &zeros)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::new();
        let n = write(&mut out, &FatOptions::default(), entries).unwrap();
        assert_eq!(n as usize, out.len());
        out
    }

    fn seed() -> Vec<Entry> {
        vec![
            Entry::new("user-data", "#cloud-config\n"),
            Entry::new("meta-data", "instance-id: iid-local01\n"),
        ]
    }

    fn u16at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    #[test]
    fn boot_sector_fields() {
        let img = image(&seed());
        assert_eq!(&img[0..3], &[0xEB, 0x3C, 0x90]);
        assert_eq!(u16at(&img, 11), 512);
        assert_eq!(img[13], 1);
        assert_eq!(u16at(&img, 14), 1);
        assert_eq!(img[16], 2);
        assert_eq!(u16at(&img, 17), 512);
        assert_eq!(u16at(&img, 19) as usize * 512, img.len());
        assert_eq!(img[21], 0xF8);
        assert_eq!(img[38], 0x29);
        assert_eq!(&img[43..54], b"CIDATA     ");
        assert_eq!(&img[54..62], b"FAT12   ");
        assert_eq!(&img[510..512], &[0x55, 0xAA]);
        // FAT: media, end of chain, then the two one-cluster files.
        let fat = &img[512..];
        assert_eq!(&fat[..3], &[0xF8, 0xFF, 0xFF]);
        assert_eq!(&fat[3..6], &[0xFF, 0xFF, 0xFF]);
        assert_eq!(u16at(&img, 22), 1);
        // Root directory: the label first.
        let root = &img[3 * 512..];
        assert_eq!(&root[..11], b"CIDATA     ");
        assert_eq!(root[11], ATTR_VOLUME_ID);
    }

    #[test]
    fn long_names_go_with_numbered_short_names() {
        let img = image(&seed());
        let root = &img[3 * 512..];
        // meta-data: one long-name entry, then META-D~1.
        let lfn = &root[32..64];
        assert_eq!(lfn[0], 0x41);
        assert_eq!(lfn[11], ATTR_LFN);
        assert_eq!(&lfn[1..11], b"m\0e\0t\0a\0-\0");
        assert_eq!(&lfn[14..26], b"d\0a\0t\0a\0\0\0\xff\xff");
        let short = &root[64..96];
        assert_eq!(&short[..11], b"META-D~1   ");
        assert_eq!(lfn[13], lfn_checksum(short[..11].try_into().unwrap()));
        assert_eq!(u16at(short, 26), 2);
        assert_eq!(&root[128..139], b"USER-D~1   ");
        assert_eq!(u16at(&root[128..], 26), 3);
    }

    #[test]
    fn short_names() {
        let mut used = HashSet::new();
        let mut s = |n: &str| {
            let (name, long) = short_name(n, &mut used);
            (String::from_utf8(name.to_vec()).unwrap(), long)
        };
        assert_eq!(s("README"), ("README     ".into(), false));
        assert_eq!(s("init.sh"), ("INIT    SH ".into(), true));
        assert_eq!(s("user-data"), ("USER-D~1   ".into(), true));
        assert_eq!(s("user-data2"), ("USER-D~2   ".into(), true));
        assert_eq!(s("a.tar.gz"), ("ATAR~1  GZ ".into(), true));
        assert_eq!(s(".bashrc"), ("BASHRC~1   ".into(), true));
        assert_eq!(s("readme"), ("README~1   ".into(), true));
        assert_eq!(lfn_checksum(b"USER-D~1   "), lfn_checksum(b"USER-D~1   "));
    }

    #[test]
    fn names_fat_cannot_hold_are_refused() {
        let mut out = Vec::new();
        for bad in ["a:b", "trailing.", "x?"] {
            let err = write(&mut out, &FatOptions::default(), &[Entry::new(bad, "")]).unwrap_err();
            assert!(err.to_string().contains("iso9660"), "{err}");
        }
        let err = write(
            &mut out,
            &FatOptions::default(),
            &[Entry::new("User-Data", ""), Entry::new("user-data", "")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("case"), "{err}");
    }

    #[test]
    fn deterministic_and_timestamped() {
        let mut rev = seed();
        rev.reverse();
        assert!(image(&seed()) == image(&rev), "same files, same bytes");
        assert_eq!(fat_date_time(0), (1 << 5 | 1, 0), "clamped to 1980-01-01");
        assert_eq!(
            fat_date_time(1_700_000_000),
            ((43 << 9) | (11 << 5) | 14, (22 << 11) | (13 << 5) | 10)
        );
    }

    #[test]
    fn large_images_switch_to_fat16() {
        let big = vec![7u8; 4200 * 512];
        let img = image(&[Entry::new("big", big)]);
        assert_eq!(&img[54..62], b"FAT16   ");
        let clusters =
            (u16at(&img, 19) as u32 - 1 - 2 * u16at(&img, 22) as u32 - 32) / img[13] as u32;
        assert!(clusters >= FAT12_MAX_CLUSTERS + MARGIN, "{clusters}");
    }

    #[test]
    fn subdirectories_have_dot_entries() {
        let img = image(&[
            Entry::new("user-data", "u"),
            Entry::new("scripts/a.sh", "a"),
        ]);
        let data = (1 + 2 + 32) * 512;
        assert_eq!(&img[data..data + 11], b".          ");
        assert_eq!(
            u16at(&img, data + 26),
            2,
            "`.` is the directory's own cluster"
        );
        assert_eq!(&img[data + 32..data + 43], b"..         ");
        assert_eq!(
            u16at(&img, data + 32 + 26),
            0,
            "`..` of a top directory is 0"
        );
    }
}

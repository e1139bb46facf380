//! An ISO 9660 writer with Rock Ridge (RRIP 1991A over SUSP) and Joliet, enough for
//! cloud-init seeds and Packer's `cd_files`: what `genisoimage -volid cidata -joliet -rock`
//! makes.
//!
//! Layout (2048-byte sectors): 16 empty sectors (system area), the primary volume descriptor,
//! the Joliet supplementary volume descriptor, the set terminator, the primary L and M path
//! tables, the Joliet L and M path tables, the primary directories, the Joliet directories,
//! the Rock Ridge continuation areas, then every file's data (shared by both trees), each
//! starting on a sector.
//!
//! The primary tree uses ISO level 1 names (`USER_DAT.;1`); readers show the exact names
//! from the Rock Ridge `NM` entries (Linux by default, `isoinfo -R`) or the Joliet tree
//! (Windows, Linux with `-o norock`, `isoinfo -J`). Rock Ridge is announced by an `SP` entry
//! in the root's `.` record and an `ER` entry in its continuation area, as Linux requires.

use std::cmp::Ordering;
use std::collections::{HashSet, VecDeque};
use std::io::Write;

use super::{Entry, SeedError, civil, tree};

/// The size of a logical sector (and block) in bytes.
pub const SECTOR: usize = 2048;

/// The largest file a single extent can hold.
pub const MAX_FILE_SIZE: u64 = u32::MAX as u64;

/// Joliet names are limited to 64 UCS-2 characters (as `genisoimage` without `-joliet-long`).
pub const JOLIET_MAX_NAME: usize = 64;

/// Mode bits of directories in Rock Ridge (`dr-xr-xr-x`, as `cloud-localds` images show).
const DIR_MODE: u32 = 0o040_555;

/// How the image is labelled and which extensions it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoOptions {
    /// The volume identifier (label), at most 32 ASCII characters; Joliet keeps the first 16.
    pub volume_id: String,
    /// The system identifier (genisoimage writes `LINUX`).
    pub system_id: String,
    /// The application identifier.
    pub application_id: String,
    /// Creation and modification time of the volume and every file, Unix seconds (UTC);
    /// clamped to 1900–2155.
    pub timestamp: i64,
    /// Write Rock Ridge entries (exact names and POSIX modes).
    pub rock_ridge: bool,
    /// Write a Joliet supplementary volume descriptor and tree.
    pub joliet: bool,
}

impl Default for IsoOptions {
    fn default() -> Self {
        IsoOptions {
            volume_id: super::ISO_LABEL.to_string(),
            system_id: "LINUX".to_string(),
            application_id: "KILN".to_string(),
            timestamp: 0,
            rock_ridge: true,
            joliet: true,
        }
    }
}

/// Writes an ISO 9660 image of `entries` to `out`; returns the number of bytes written (a
/// multiple of [`SECTOR`]). File contents are streamed; only metadata is held in memory.
pub fn write<W: Write>(
    mut out: W,
    options: &IsoOptions,
    entries: &[Entry],
) -> Result<u64, SeedError> {
    let layout = Layout::plan(options, entries)?;
    layout.write(&mut out, entries)?;
    out.flush().map_err(SeedError::io("writing the image"))?;
    Ok(u64::from(layout.total_sectors) * SECTOR as u64)
}

// ---- arena of the tree ----------------------------------------------------------------------

struct DirInfo {
    name: String,
    parent: usize,
    subdirs: Vec<usize>,
    files: Vec<usize>,
}

struct FileInfo {
    name: String,
    entry: usize,
    size: u32,
    mode: u32,
    lba: u32,
}

fn flatten(
    node: &tree::Dir,
    parent: usize,
    dirs: &mut Vec<DirInfo>,
    files: &mut Vec<FileInfo>,
    entries: &[Entry],
) -> Result<usize, SeedError> {
    let me = dirs.len();
    dirs.push(DirInfo {
        name: node.name.clone(),
        parent,
        subdirs: Vec::new(),
        files: Vec::new(),
    });
    for f in &node.files {
        if f.size > MAX_FILE_SIZE {
            return Err(SeedError::TooLarge {
                what: entries[f.entry].path.clone(),
                size: f.size,
                limit: MAX_FILE_SIZE,
                format: "ISO 9660",
                hint: "files over 4 GiB need multi-extent files, which kiln does not write",
            });
        }
        dirs[me].files.push(files.len());
        files.push(FileInfo {
            name: f.name.clone(),
            entry: f.entry,
            size: f.size as u32,
            mode: 0o100_000 | (entries[f.entry].mode & 0o7777),
            lba: 0,
        });
    }
    for d in &node.dirs {
        let child = flatten(d, me, dirs, files, entries)?;
        dirs[me].subdirs.push(child);
    }
    Ok(me)
}

// ---- names ------------------------------------------------------------------------------------

/// Upper-cases `s` and maps everything but ISO 9660 d-characters (`A-Z 0-9 _`) to `_`, keeping
/// at most `max` characters.
fn d_chars(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// The ISO level 1 identifier of a file: 8.3 d-characters plus `;1` (`user-data` →
/// `USER_DAT.;1`), made unique within its directory by a numeric tail.
fn level1_file_name(name: &str, used: &mut HashSet<String>) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i + 1..]),
        _ => (name, ""),
    };
    let mut base = d_chars(stem, 8);
    if base.is_empty() {
        base.push('_');
    }
    let ext = d_chars(ext, 3);
    unique(&base, 8, used, |b| format!("{b}.{ext}"))
        .map(|n| format!("{n};1"))
        .unwrap_or_default()
}

/// The ISO level 1 identifier of a directory: up to 8 d-characters, made unique.
fn level1_dir_name(name: &str, used: &mut HashSet<String>) -> String {
    let mut base = d_chars(name, 8);
    if base.is_empty() {
        base.push('_');
    }
    unique(&base, 8, used, |b| b.to_string()).unwrap_or_default()
}

/// `make(base)`, or with `base`'s tail replaced by 1, 2, … until the result is not in `used`.
fn unique(
    base: &str,
    max: usize,
    used: &mut HashSet<String>,
    make: impl Fn(&str) -> String,
) -> Option<String> {
    let first = make(base);
    if used.insert(first.clone()) {
        return Some(first);
    }
    for n in 1u32..100_000_000 {
        let tail = n.to_string();
        let keep = base.len().min(max.saturating_sub(tail.len()));
        let candidate = make(&format!("{}{tail}", &base[..keep]));
        if used.insert(candidate.clone()) {
            return Some(candidate);
        }
    }
    None
}

/// Orders level-1 identifiers as ECMA-119 9.3 asks: by name, then extension (each padded with
/// spaces), then version.
fn iso_order(a: &[u8], b: &[u8]) -> Ordering {
    fn split(id: &[u8]) -> (&[u8], &[u8], &[u8]) {
        let (body, version) = match id.iter().position(|&c| c == b';') {
            Some(i) => (&id[..i], &id[i + 1..]),
            None => (id, &[][..]),
        };
        match body.iter().position(|&c| c == b'.') {
            Some(i) => (&body[..i], &body[i + 1..], version),
            None => (body, &[][..], version),
        }
    }
    fn padded(a: &[u8], b: &[u8]) -> Ordering {
        let n = a.len().max(b.len());
        let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(b' ');
        (0..n)
            .map(|i| at(a, i).cmp(&at(b, i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
    let (an, ae, av) = split(a);
    let (bn, be, bv) = split(b);
    padded(an, bn)
        .then_with(|| padded(ae, be))
        .then_with(|| bv.cmp(av))
}

/// The Joliet identifier of `name`: UCS-2 big-endian, with `* / : ; ? \` and control characters
/// replaced by `_` (Rock Ridge keeps the exact name).
fn joliet_name(name: &str, path: &str) -> Result<Vec<u8>, SeedError> {
    let units: Vec<u16> = name
        .chars()
        .map(|c| {
            if (c as u32) < 0x20 || matches!(c, '*' | '/' | ':' | ';' | '?' | '\\') {
                '_'
            } else {
                c
            }
        })
        .collect::<String>()
        .encode_utf16()
        .collect();
    if units.len() > JOLIET_MAX_NAME {
        return Err(SeedError::InvalidPath {
            path: path.to_string(),
            reason: format!(
                "the name is longer than {JOLIET_MAX_NAME} characters, which Joliet cannot \
                 hold; shorten it"
            ),
        });
    }
    Ok(ucs2(&units))
}

fn ucs2(units: &[u16]) -> Vec<u8> {
    units.iter().flat_map(|u| u.to_be_bytes()).collect()
}

// ---- field encoders ---------------------------------------------------------------------------

fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

/// The 7-byte recording date of directory records and Rock Ridge `TF` (UTC).
fn dir_date(unix: i64) -> [u8; 7] {
    let (y, mo, d, h, mi, s) = civil(unix, 1900, 2155);
    [(y - 1900) as u8, mo, d, h, mi, s, 0]
}

/// The 17-byte date of volume descriptors: `YYYYMMDDHHMMSScc` and the zone offset (UTC).
fn volume_date(unix: i64) -> [u8; 17] {
    let (y, mo, d, h, mi, s) = civil(unix, 1900, 2155);
    let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00");
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(text.as_bytes());
    out
}

/// "Not specified" for a volume descriptor date.
const NO_DATE: [u8; 17] = *b"0000000000000000\0";

// ---- Rock Ridge / SUSP entries ----------------------------------------------------------------

fn susp(sig: &[u8; 2], body: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(4 + body.len());
    e.extend_from_slice(sig);
    e.push((4 + body.len()) as u8);
    e.push(1);
    e.extend_from_slice(body);
    e
}

/// `SP`: SUSP is in use, no bytes skipped.
fn rr_sp() -> Vec<u8> {
    susp(b"SP", &[0xBE, 0xEF, 0])
}

const RR_PX: u8 = 0x01;
const RR_NM: u8 = 0x08;
const RR_TF: u8 = 0x80;

/// `RR` (RRIP 1.09): which Rock Ridge entries this record has. Linux stops reading entries
/// of a record whose `RR` lacks the flags it looks for, so the flags must be right.
fn rr_rr(flags: u8) -> Vec<u8> {
    susp(b"RR", &[flags])
}

/// `PX`: POSIX mode, links, uid and gid (RRIP 1991A, 36 bytes).
fn rr_px(mode: u32, links: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    for v in [mode, links, 0, 0] {
        body.extend_from_slice(&both32(v));
    }
    susp(b"PX", &body)
}

/// `TF`: modification, access and attribute-change time.
fn rr_tf(date: [u8; 7]) -> Vec<u8> {
    let mut body = vec![0x0E];
    for _ in 0..3 {
        body.extend_from_slice(&date);
    }
    susp(b"TF", &body)
}

/// `NM`: the exact name, in pieces of at most [`NM_PIECE`] bytes (split at character
/// boundaries) flagged CONTINUE but the last, since a SUSP entry is at most 255 bytes.
fn rr_nm(name: &str) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let mut cut = rest.len().min(NM_PIECE);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        let mut body = vec![u8::from(!tail.is_empty())];
        body.extend_from_slice(piece.as_bytes());
        pieces.push(susp(b"NM", &body));
        rest = tail;
    }
    pieces
}

/// The most name bytes in one `NM` entry.
const NM_PIECE: usize = 200;

/// `ER`: the extension reference announcing RRIP 1991A.
fn rr_er() -> Vec<u8> {
    const ID: &[u8] = b"RRIP_1991A";
    const DES: &[u8] =
        b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
    const SRC: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER \
        IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";
    let mut body = vec![ID.len() as u8, DES.len() as u8, SRC.len() as u8, 1];
    body.extend_from_slice(ID);
    body.extend_from_slice(DES);
    body.extend_from_slice(SRC);
    susp(b"ER", &body)
}

/// `CE`: where the rest of the system use entries are.
fn rr_ce(lba: u32, offset: u32, len: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(24);
    body.extend_from_slice(&both32(lba));
    body.extend_from_slice(&both32(offset));
    body.extend_from_slice(&both32(len));
    susp(b"CE", &body)
}

const CE_LEN: usize = 28;

/// A directory record is at most 255 bytes and of even length.
const MAX_RECORD: usize = 254;

// ---- planning ---------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Target {
    Dir(usize),
    File(usize),
}

struct Record {
    ident: Vec<u8>,
    target: Target,
    /// System use entries inside the record (without `CE`).
    inline: Vec<u8>,
    /// Entries moved to a continuation area.
    spill: Vec<u8>,
    /// Continuation area: (sector index within the CE sectors, offset).
    ce: (u32, u32),
}

impl Record {
    fn new(ident: Vec<u8>, target: Target, entries: Vec<Vec<u8>>) -> Record {
        let base = base_len(ident.len());
        let mut inline = Vec::new();
        let mut spill = Vec::new();
        let total: usize = entries.iter().map(Vec::len).sum();
        if base + total <= MAX_RECORD {
            inline = entries.concat();
        } else {
            let mut spilling = false;
            for e in entries {
                if !spilling && base + inline.len() + e.len() + CE_LEN <= MAX_RECORD {
                    inline.extend_from_slice(&e);
                } else {
                    spilling = true;
                    spill.extend_from_slice(&e);
                }
            }
        }
        Record {
            ident,
            target,
            inline,
            spill,
            ce: (0, 0),
        }
    }

    fn len(&self) -> usize {
        let sua = self.inline.len() + if self.spill.is_empty() { 0 } else { CE_LEN };
        let n = base_len(self.ident.len()) + sua;
        n + (n & 1)
    }
}

/// The fixed part of a directory record plus its identifier and padding byte.
fn base_len(ident_len: usize) -> usize {
    33 + ident_len + usize::from(ident_len.is_multiple_of(2))
}

/// One directory hierarchy: the primary one (level 1 names and Rock Ridge) or Joliet's.
struct Tree {
    joliet: bool,
    /// Directories in path table order (breadth first, children by identifier).
    order: Vec<usize>,
    /// Path table number of each directory (1-based).
    number: Vec<u16>,
    /// Identifier of each directory (root: `[0]`).
    dir_ident: Vec<Vec<u8>>,
    /// Records of each directory.
    records: Vec<Vec<Record>>,
    /// Extent of each directory.
    dir_lba: Vec<u32>,
    /// Size of each directory's extent in bytes (whole sectors).
    dir_size: Vec<u32>,
    path_table_size: u32,
    l_table: u32,
    m_table: u32,
}

impl Tree {
    fn plan(
        joliet: bool,
        rock: bool,
        dirs: &[DirInfo],
        files: &[FileInfo],
        entries: &[Entry],
        date: [u8; 7],
    ) -> Result<Tree, SeedError> {
        let n = dirs.len();
        let mut dir_ident = vec![Vec::new(); n];
        dir_ident[0] = vec![0];
        let mut file_ident = vec![Vec::new(); files.len()];
        // Identifiers, per directory.
        for info in dirs {
            let mut used = HashSet::new();
            let mut seen = HashSet::new();
            let mut names: Vec<(&str, Target)> = info
                .subdirs
                .iter()
                .map(|&s| (dirs[s].name.as_str(), Target::Dir(s)))
                .chain(
                    info.files
                        .iter()
                        .map(|&f| (files[f].name.as_str(), Target::File(f))),
                )
                .collect();
            names.sort_by(|a, b| a.0.cmp(b.0));
            for (name, target) in names {
                let path = || match target {
                    Target::Dir(s) => dir_path(dirs, s),
                    Target::File(f) => entries[files[f].entry].path.clone(),
                };
                let ident = if joliet {
                    let id = joliet_name(name, &path())?;
                    if !seen.insert(id.clone()) {
                        return Err(SeedError::InvalidPath {
                            path: path(),
                            reason: "its Joliet name (with `* / : ; ? \\` replaced by `_`) \
                                     clashes with another file's; rename one"
                                .into(),
                        });
                    }
                    id
                } else {
                    match target {
                        Target::Dir(_) => level1_dir_name(name, &mut used).into_bytes(),
                        Target::File(_) => level1_file_name(name, &mut used).into_bytes(),
                    }
                };
                match target {
                    Target::Dir(s) => dir_ident[s] = ident,
                    Target::File(f) => file_ident[f] = ident,
                }
            }
        }
        let order_of = |a: &[u8], b: &[u8]| {
            if joliet { a.cmp(b) } else { iso_order(a, b) }
        };
        // Breadth-first order with children sorted by identifier: exactly the path table order
        // (by level, then parent number, then identifier).
        let mut order = Vec::with_capacity(n);
        let mut queue = VecDeque::from([0usize]);
        while let Some(d) = queue.pop_front() {
            order.push(d);
            let mut subs = dirs[d].subdirs.clone();
            subs.sort_by(|&a, &b| order_of(&dir_ident[a], &dir_ident[b]));
            queue.extend(subs);
        }
        if order.len() > usize::from(u16::MAX) {
            return Err(SeedError::TooLarge {
                what: "the number of directories".into(),
                size: order.len() as u64,
                limit: u64::from(u16::MAX),
                format: "ISO 9660",
                hint: "use fewer directories",
            });
        }
        let mut number = vec![0u16; n];
        for (i, &d) in order.iter().enumerate() {
            number[d] = (i + 1) as u16;
        }
        // Records.
        let mut records = Vec::with_capacity(n);
        for (d, info) in dirs.iter().enumerate() {
            let links = |dir: usize| 2 + dirs[dir].subdirs.len() as u32;
            let dot_entries = |dir: usize, root: bool| {
                if !rock || joliet {
                    return Vec::new();
                }
                let mut v = Vec::new();
                if root {
                    v.push(rr_sp());
                }
                v.push(rr_rr(RR_PX | RR_TF));
                v.push(rr_px(DIR_MODE, links(dir)));
                v.push(rr_tf(date));
                if root {
                    v.push(rr_er());
                }
                v
            };
            let mut recs = vec![
                Record::new(vec![0], Target::Dir(d), dot_entries(d, d == 0)),
                Record::new(
                    vec![1],
                    Target::Dir(info.parent),
                    dot_entries(info.parent, false),
                ),
            ];
            let mut children: Vec<Record> = info
                .subdirs
                .iter()
                .map(|&s| (s, Target::Dir(s)))
                .map(|(s, t)| (dir_ident[s].clone(), t, &dirs[s].name, DIR_MODE, links(s)))
                .chain(info.files.iter().map(|&f| {
                    let fi = &files[f];
                    (file_ident[f].clone(), Target::File(f), &fi.name, fi.mode, 1)
                }))
                .map(|(ident, target, name, mode, nlinks)| {
                    let su = if rock && !joliet {
                        let mut su = vec![
                            rr_rr(RR_PX | RR_TF | RR_NM),
                            rr_px(mode, nlinks),
                            rr_tf(date),
                        ];
                        su.extend(rr_nm(name));
                        su
                    } else {
                        Vec::new()
                    };
                    Record::new(ident, target, su)
                })
                .collect();
            children.sort_by(|a, b| order_of(&a.ident, &b.ident));
            recs.extend(children);
            records.push(recs);
        }
        let dir_size = records.iter().map(|recs| extent_len(recs) as u32).collect();
        let path_table_size = order
            .iter()
            .map(|&d| 8 + dir_ident[d].len() + (dir_ident[d].len() & 1))
            .sum::<usize>() as u32;
        Ok(Tree {
            joliet,
            order,
            number,
            dir_ident,
            records,
            dir_lba: vec![0; n],
            dir_size,
            path_table_size,
            l_table: 0,
            m_table: 0,
        })
    }

    fn path_table(&self, big_endian: bool) -> Vec<u8> {
        let mut t = Vec::with_capacity(self.path_table_size as usize);
        for &d in &self.order {
            let id = &self.dir_ident[d];
            t.push(id.len() as u8);
            t.push(0);
            let lba = self.dir_lba[d];
            let parent = self.number[parent_of(&self.records, d)];
            if big_endian {
                t.extend_from_slice(&lba.to_be_bytes());
                t.extend_from_slice(&parent.to_be_bytes());
            } else {
                t.extend_from_slice(&lba.to_le_bytes());
                t.extend_from_slice(&parent.to_le_bytes());
            }
            t.extend_from_slice(id);
            if id.len() & 1 == 1 {
                t.push(0);
            }
        }
        t
    }

    /// The bytes of directory `d`'s extent.
    fn directory(&self, d: usize, files: &[FileInfo], ce_base: u32, date: [u8; 7]) -> Vec<u8> {
        let mut buf = vec![0u8; self.dir_size[d] as usize];
        let mut pos = 0usize;
        for rec in &self.records[d] {
            let len = rec.len();
            if pos % SECTOR + len > SECTOR {
                pos = pos.next_multiple_of(SECTOR);
            }
            let (lba, size, flags) = match rec.target {
                Target::Dir(t) => (self.dir_lba[t], self.dir_size[t], 2u8),
                Target::File(f) => (files[f].lba, files[f].size, 0u8),
            };
            let r = &mut buf[pos..pos + len];
            r[0] = len as u8;
            r[2..10].copy_from_slice(&both32(lba));
            r[10..18].copy_from_slice(&both32(size));
            r[18..25].copy_from_slice(&date);
            r[25] = flags;
            r[28..32].copy_from_slice(&both16(1));
            r[32] = rec.ident.len() as u8;
            r[33..33 + rec.ident.len()].copy_from_slice(&rec.ident);
            let mut su = base_len(rec.ident.len());
            r[su..su + rec.inline.len()].copy_from_slice(&rec.inline);
            su += rec.inline.len();
            if !rec.spill.is_empty() {
                let ce = rr_ce(ce_base + rec.ce.0, rec.ce.1, rec.spill.len() as u32);
                r[su..su + CE_LEN].copy_from_slice(&ce);
            }
            pos += len;
        }
        buf
    }
}

/// The parent of directory `d`, read from its `..` record.
fn parent_of(records: &[Vec<Record>], d: usize) -> usize {
    match records[d][1].target {
        Target::Dir(p) => p,
        Target::File(_) => unreachable!("`..` names a directory"),
    }
}

fn dir_path(dirs: &[DirInfo], mut d: usize) -> String {
    let mut parts = Vec::new();
    while d != 0 {
        parts.push(dirs[d].name.as_str());
        d = dirs[d].parent;
    }
    parts.reverse();
    parts.join("/")
}

/// The length of a directory extent holding `records` (records never cross a sector).
fn extent_len(records: &[Record]) -> usize {
    let mut pos = 0usize;
    for rec in records {
        let len = rec.len();
        if pos % SECTOR + len > SECTOR {
            pos = pos.next_multiple_of(SECTOR);
        }
        pos += len;
    }
    pos.next_multiple_of(SECTOR).max(SECTOR)
}

fn sectors(bytes: u64) -> u64 {
    bytes.div_ceil(SECTOR as u64)
}

/// Where everything goes.
struct Layout {
    options: IsoOptions,
    date: [u8; 7],
    files: Vec<FileInfo>,
    primary: Tree,
    joliet: Option<Tree>,
    ce_base: u32,
    ce_sectors: Vec<Vec<u8>>,
    first_file_sector: u32,
    total_sectors: u32,
}

impl Layout {
    fn plan(options: &IsoOptions, entries: &[Entry]) -> Result<Layout, SeedError> {
        check_id("volume id", &options.volume_id, 32)?;
        check_id("system id", &options.system_id, 32)?;
        check_id("application id", &options.application_id, 128)?;
        let sizes = tree::sizes(entries)?;
        let root = tree::build(entries, &sizes)?;
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        flatten(&root, 0, &mut dirs, &mut files, entries)?;
        let date = dir_date(options.timestamp);
        let mut primary = Tree::plan(false, options.rock_ridge, &dirs, &files, entries, date)?;
        let mut joliet = if options.joliet {
            Some(Tree::plan(true, false, &dirs, &files, entries, date)?)
        } else {
            None
        };

        // Continuation areas, packed into sectors (an area never crosses a sector).
        let mut ce_sectors: Vec<Vec<u8>> = Vec::new();
        for &d in &primary.order {
            for rec in &mut primary.records[d] {
                if rec.spill.is_empty() {
                    continue;
                }
                if ce_sectors
                    .last()
                    .is_none_or(|s| s.len() + rec.spill.len() > SECTOR)
                {
                    ce_sectors.push(Vec::new());
                }
                let index = (ce_sectors.len() - 1) as u32;
                let sector = ce_sectors.last_mut().expect("pushed");
                rec.ce = (index, sector.len() as u32);
                sector.extend_from_slice(&rec.spill);
            }
        }

        // Sector addresses.
        let mut lba: u64 = 16 + 1 + u64::from(options.joliet) + 1;
        for t in std::iter::once(&mut primary).chain(joliet.as_mut()) {
            let n = sectors(u64::from(t.path_table_size));
            t.l_table = lba as u32;
            t.m_table = (lba + n) as u32;
            lba += 2 * n;
        }
        for t in std::iter::once(&mut primary).chain(joliet.as_mut()) {
            for i in 0..t.order.len() {
                let d = t.order[i];
                t.dir_lba[d] = lba as u32;
                lba += u64::from(t.dir_size[d]) / SECTOR as u64;
            }
        }
        let ce_base = lba as u32;
        lba += ce_sectors.len() as u64;
        let first_file_sector = lba as u32;
        for f in &mut files {
            f.lba = lba as u32;
            lba += sectors(u64::from(f.size));
        }
        if lba > u64::from(u32::MAX) {
            return Err(SeedError::TooLarge {
                what: "the image".into(),
                size: lba * SECTOR as u64,
                limit: u64::from(u32::MAX) * SECTOR as u64,
                format: "ISO 9660",
                hint: "split the files over several images",
            });
        }
        Ok(Layout {
            options: options.clone(),
            date,
            files,
            primary,
            joliet,
            ce_base,
            ce_sectors,
            first_file_sector,
            total_sectors: lba as u32,
        })
    }

    fn write(&self, out: &mut dyn Write, entries: &[Entry]) -> Result<(), SeedError> {
        let mut w = SectorWriter { out, pos: 0 };
        w.zeros(16 * SECTOR as u64)?;
        w.bytes(&self.volume_descriptor(&self.primary))?;
        if let Some(j) = &self.joliet {
            w.bytes(&self.volume_descriptor(j))?;
        }
        let mut term = vec![0u8; SECTOR];
        term[0] = 255;
        term[1..6].copy_from_slice(b"CD001");
        term[6] = 1;
        w.bytes(&term)?;
        for t in std::iter::once(&self.primary).chain(self.joliet.as_ref()) {
            w.padded(&t.path_table(false))?;
            w.padded(&t.path_table(true))?;
        }
        for t in std::iter::once(&self.primary).chain(self.joliet.as_ref()) {
            for &d in &t.order {
                w.bytes(&t.directory(d, &self.files, self.ce_base, self.date))?;
            }
        }
        for s in &self.ce_sectors {
            w.padded(s)?;
        }
        debug_assert_eq!(w.pos, u64::from(self.first_file_sector) * SECTOR as u64);
        for f in &self.files {
            let entry = &entries[f.entry];
            entry
                .data
                .copy_to(u64::from(f.size), w.out, "writing the image")?;
            w.pos += u64::from(f.size);
            w.pad()?;
        }
        debug_assert_eq!(w.pos, u64::from(self.total_sectors) * SECTOR as u64);
        Ok(())
    }

    /// The primary (type 1) or Joliet supplementary (type 2) volume descriptor.
    fn volume_descriptor(&self, t: &Tree) -> Vec<u8> {
        let o = &self.options;
        let mut v = vec![0u8; SECTOR];
        v[0] = if t.joliet { 2 } else { 1 };
        v[1..6].copy_from_slice(b"CD001");
        v[6] = 1;
        let text = |v: &mut [u8], at: usize, len: usize, s: &str| {
            let field = &mut v[at..at + len];
            if t.joliet {
                for (i, pair) in field.chunks_mut(2).enumerate() {
                    let unit = s.encode_utf16().nth(i).unwrap_or(0x20);
                    let b = unit.to_be_bytes();
                    pair[0] = b[0];
                    if pair.len() > 1 {
                        pair[1] = b[1];
                    }
                }
            } else {
                field.fill(b' ');
                field[..s.len()].copy_from_slice(s.as_bytes());
            }
        };
        text(&mut v, 8, 32, &o.system_id);
        text(&mut v, 40, 32, &o.volume_id);
        v[80..88].copy_from_slice(&both32(self.total_sectors));
        if t.joliet {
            v[88..91].copy_from_slice(b"%/E"); // UCS-2 level 3
        }
        v[120..124].copy_from_slice(&both16(1));
        v[124..128].copy_from_slice(&both16(1));
        v[128..132].copy_from_slice(&both16(SECTOR as u16));
        v[132..140].copy_from_slice(&both32(t.path_table_size));
        v[140..144].copy_from_slice(&t.l_table.to_le_bytes());
        v[148..152].copy_from_slice(&t.m_table.to_be_bytes());
        // Root directory record.
        let r = &mut v[156..190];
        r[0] = 34;
        r[2..10].copy_from_slice(&both32(t.dir_lba[0]));
        r[10..18].copy_from_slice(&both32(t.dir_size[0]));
        r[18..25].copy_from_slice(&self.date);
        r[25] = 2;
        r[28..32].copy_from_slice(&both16(1));
        r[32] = 1;
        for (at, len) in [(190, 128), (318, 128), (446, 128)] {
            text(&mut v, at, len, "");
        }
        text(&mut v, 574, 128, &o.application_id);
        for at in [702, 739, 776] {
            text(&mut v, at, 37, "");
        }
        let now = volume_date(o.timestamp);
        v[813..830].copy_from_slice(&now);
        v[830..847].copy_from_slice(&now);
        v[847..864].copy_from_slice(&NO_DATE);
        v[864..881].copy_from_slice(&now);
        v[881] = 1;
        v
    }
}

fn check_id(what: &'static str, value: &str, max: usize) -> Result<(), SeedError> {
    if value.len() > max || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(SeedError::InvalidValue {
            field: what,
            value: value.to_string(),
            reason: "must be printable ASCII and fit its field (a volume id: 32 characters)",
        });
    }
    Ok(())
}

/// Writes whole sectors, keeping count.
struct SectorWriter<'a> {
    out: &'a mut dyn Write,
    pos: u64,
}

impl SectorWriter<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), SeedError> {
        self.out
            .write_all(b)
            .map_err(SeedError::io("writing the image"))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> Result<(), SeedError> {
        const ZEROS: [u8; SECTOR] = [0; SECTOR];
        while n > 0 {
            let k = n.min(SECTOR as u64) as usize;
            self.bytes(&ZEROS[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Zeros up to the next sector boundary.
    fn pad(&mut self) -> Result<(), SeedError> {
        let rest = self.pos.next_multiple_of(SECTOR as u64) - self.pos;
        self.zeros(rest)
    }

    fn padded(&mut self, b: &[u8]) -> Result<(), SeedError> {
        self.bytes(b)?;
        self.pad()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::new();
        let n = write(&mut out, &IsoOptions::default(), entries).unwrap();
        assert_eq!(n as usize, out.len());
        out
    }

    fn seed() -> Vec<Entry> {
        vec![
            Entry::new("user-data", "#cloud-config\n"),
            Entry::new("meta-data", "instance-id: iid-local01\n"),
        ]
    }

    fn le32(b: &[u8]) -> u32 {
        u32::from_le_bytes(b[..4].try_into().unwrap())
    }

    fn be32(b: &[u8]) -> u32 {
        u32::from_be_bytes(b[..4].try_into().unwrap())
    }

    fn sector(img: &[u8], n: u32) -> &[u8] {
        &img[n as usize * SECTOR..(n as usize + 1) * SECTOR]
    }

    #[test]
    fn both_endian_fields() {
        assert_eq!(both32(0x0102_0304), [4, 3, 2, 1, 1, 2, 3, 4]);
        assert_eq!(both16(2048), [0, 8, 8, 0]);
    }

    #[test]
    fn volume_descriptors_are_laid_out_as_ecma_119_says() {
        let img = image(&seed());
        assert_eq!(img.len() % SECTOR, 0);
        assert!(img[..16 * SECTOR].iter().all(|&b| b == 0));
        let pvd = sector(&img, 16);
        assert_eq!(&pvd[..8], b"\x01CD001\x01\x00");
        assert_eq!(&pvd[8..40], format!("{:32}", "LINUX").as_bytes());
        assert_eq!(&pvd[40..72], format!("{:32}", "cidata").as_bytes());
        let total = le32(&pvd[80..]);
        assert_eq!(total, be32(&pvd[84..]));
        assert_eq!(total as usize * SECTOR, img.len());
        assert_eq!(&pvd[120..132], &[1, 0, 0, 1, 1, 0, 0, 1, 0, 8, 8, 0]);
        let pt_size = le32(&pvd[132..]);
        assert_eq!(pt_size, be32(&pvd[136..]));
        assert_eq!(pt_size, 10, "one directory: the root");
        let (l, m) = (le32(&pvd[140..]), be32(&pvd[148..]));
        let l_root = sector(&img, l);
        assert_eq!((l_root[0], l_root[6], l_root[7], l_root[8]), (1, 1, 0, 0));
        let root_lba = le32(&pvd[158..]);
        assert_eq!(le32(&sector(&img, l)[2..]), root_lba);
        assert_eq!(be32(&sector(&img, m)[2..]), root_lba);
        assert_eq!(
            u16::from_be_bytes([sector(&img, m)[6], sector(&img, m)[7]]),
            1
        );
        assert_eq!(pvd[156], 34);
        assert_eq!(pvd[156 + 25], 2, "root is a directory");
        assert_eq!(&pvd[813..830], b"1970010100000000\0");
        assert_eq!(&pvd[847..864], b"0000000000000000\0");
        assert_eq!(pvd[881], 1);

        let svd = sector(&img, 17);
        assert_eq!(&svd[..7], b"\x02CD001\x01");
        assert_eq!(&svd[88..91], b"%/E");
        assert_eq!(&svd[40..52], b"\0c\0i\0d\0a\0t\0a");
        assert_eq!(&svd[52..54], b"\0 ");
        assert_eq!(le32(&svd[80..]), total);
        assert_ne!(le32(&svd[158..]), root_lba, "Joliet has its own tree");

        assert_eq!(&sector(&img, 18)[..7], b"\xffCD001\x01");
    }

    /// Finds the record named `ident` in the directory at `lba`.
    fn find<'a>(img: &'a [u8], lba: u32, ident: &[u8]) -> Option<&'a [u8]> {
        let dir = sector(img, lba);
        let mut pos = 0;
        while pos < SECTOR && dir[pos] != 0 {
            let len = dir[pos] as usize;
            let rec = &dir[pos..pos + len];
            if &rec[33..33 + rec[32] as usize] == ident {
                return Some(rec);
            }
            pos += len;
        }
        None
    }

    #[test]
    fn rock_ridge_and_joliet_carry_the_exact_names() {
        let img = image(&seed());
        let root = le32(&sector(&img, 16)[158..]);
        let dot = find(&img, root, &[0]).unwrap();
        let su = &dot[34..];
        assert_eq!(
            &su[..7],
            b"SP\x07\x01\xbe\xef\x00",
            "SP first in the root's `.`"
        );
        let ce_at = su.windows(2).position(|w| w == b"CE").expect("CE entry");
        let ce = &su[ce_at..ce_at + 28];
        let (ce_lba, ce_off, ce_len) = (le32(&ce[4..]), le32(&ce[12..]), le32(&ce[20..]));
        let area = &sector(&img, ce_lba)[ce_off as usize..(ce_off + ce_len) as usize];
        assert_eq!(&area[..2], b"ER");
        assert_eq!(&area[8..18], b"RRIP_1991A");

        let rec = find(&img, root, b"USER_DAT.;1").expect("level 1 name");
        assert_eq!(rec.len() % 2, 0);
        let su = &rec[33 + 11..];
        assert_eq!(&su[..5], b"RR\x05\x01\x89");
        let nm = su.windows(2).position(|w| w == b"NM").unwrap();
        assert_eq!(&su[nm + 5..nm + 14], b"user-data");
        let data = le32(&rec[2..]);
        assert_eq!(le32(&rec[10..]), 14);
        assert_eq!(&sector(&img, data)[..14], b"#cloud-config\n");

        let jroot = le32(&sector(&img, 17)[158..]);
        let utf16: Vec<u8> = "meta-data"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        let rec = find(&img, jroot, &utf16).expect("Joliet name");
        assert_eq!(&sector(&img, le32(&rec[2..]))[..12], b"instance-id:");
    }

    #[test]
    fn identical_input_gives_identical_bytes_in_any_order() {
        let mut reversed = seed();
        reversed.reverse();
        assert!(image(&seed()) == image(&reversed), "same files, same bytes");
        let mut later = Vec::new();
        let opts = IsoOptions {
            timestamp: 1_700_000_000,
            ..IsoOptions::default()
        };
        write(&mut later, &opts, &seed()).unwrap();
        assert!(image(&seed()) != later, "the timestamp is written");
        assert_eq!(&sector(&later, 16)[813..829], b"2023111422132000");
    }

    #[test]
    fn level1_names_are_unique_8_3() {
        let mut used = HashSet::new();
        assert_eq!(level1_file_name("user-data", &mut used), "USER_DAT.;1");
        assert_eq!(level1_file_name("user-data2", &mut used), "USER_DA1.;1");
        assert_eq!(level1_file_name("setup.sh", &mut used), "SETUP.SH;1");
        assert_eq!(level1_file_name(".hidden", &mut used), "_HIDDEN.;1");
        assert_eq!(level1_file_name("a.tar.gz", &mut used), "A_TAR.GZ;1");
        assert_eq!(level1_dir_name("scripts-dir", &mut used), "SCRIPTS_");
        assert_eq!(iso_order(b"A.;1", b"A_.;1"), Ordering::Less);
        assert_eq!(iso_order(b"AB.C;1", b"A.D;1"), Ordering::Greater);
    }

    #[test]
    fn joliet_names_replace_forbidden_characters_and_have_a_limit() {
        assert_eq!(joliet_name("a:b", "a:b").unwrap(), b"\0a\0_\0b");
        assert_eq!(joliet_name("é", "é").unwrap(), [0x00, 0xE9]);
        let long = "x".repeat(65);
        let err = joliet_name(&long, &long).unwrap_err().to_string();
        assert!(err.contains("64 characters"), "{err}");
    }

    #[test]
    fn nested_directories_get_path_table_entries() {
        let img = image(&[
            Entry::new("user-data", "u"),
            Entry::new("scripts/b.sh", "b"),
            Entry::new("scripts/inner/c", "c"),
            Entry::new("a-dir/x", "x"),
        ]);
        let pvd = sector(&img, 16);
        let l = le32(&pvd[140..]);
        let table = sector(&img, l);
        // root, A_DIR, SCRIPTS, INNER (breadth first, by identifier)
        let mut pos = 0;
        let mut seen = Vec::new();
        for _ in 0..4 {
            let len = table[pos] as usize;
            let parent = u16::from_le_bytes([table[pos + 6], table[pos + 7]]);
            seen.push((table[pos + 8..pos + 8 + len].to_vec(), parent));
            pos += 8 + len + (len & 1);
        }
        assert_eq!(
            seen,
            [
                (vec![0], 1),
                (b"A_DIR".to_vec(), 1),
                (b"SCRIPTS".to_vec(), 1),
                (b"INNER".to_vec(), 3)
            ]
        );
        assert_eq!(le32(&pvd[132..]) as usize, pos);
    }

    #[test]
    fn long_names_spill_into_continuation_areas() {
        let name = "€".repeat(64); // 192 bytes of UTF-8
        let img = image(&[Entry::new(name.clone(), "x")]);
        let root = le32(&sector(&img, 16)[158..]);
        let rec = find(&img, root, b"__________.;1").or_else(|| find(&img, root, b"________.;1"));
        let rec = rec.expect("record");
        assert!(rec.len() <= 255);
        let su = &rec[33 + rec[32] as usize + usize::from(rec[32].is_multiple_of(2))..];
        let ce = su.windows(2).position(|w| w == b"CE").expect("CE entry");
        let ce = &su[ce..ce + 28];
        let area = &sector(&img, le32(&ce[4..]))[le32(&ce[12..]) as usize..];
        assert_eq!(&area[..2], b"NM");
        assert_eq!(&area[5..5 + name.len()], name.as_bytes());
    }

    #[test]
    fn names_longer_than_one_nm_entry_are_continued() {
        let name = "n".repeat(255);
        let pieces = rr_nm(&name);
        assert_eq!(pieces.len(), 2);
        assert_eq!((pieces[0][2], pieces[0][4]), (205, 1), "length, CONTINUE");
        assert_eq!((pieces[1][2], pieces[1][4]), (60, 0));
        let euro = rr_nm(&"€".repeat(70)); // 210 bytes: the cut falls inside a character
        assert_eq!(euro[0].len() - 5, 198);
        // Without Joliet (which stops at 64 characters) such names make valid images.
        let opts = IsoOptions {
            joliet: false,
            ..IsoOptions::default()
        };
        let mut img = Vec::new();
        write(&mut img, &opts, &[Entry::new(name.clone(), "x")]).unwrap();
        let root = le32(&sector(&img, 16)[158..]);
        let rec = find(&img, root, b"NNNNNNNN.;1").expect("record");
        let su = &rec[33 + 11..];
        let ce = su.windows(2).position(|w| w == b"CE").expect("CE entry");
        let ce = &su[ce..ce + 28];
        let area = &sector(&img, le32(&ce[4..]))[le32(&ce[12..]) as usize..];
        let mut got = Vec::new();
        let mut at = 0;
        while &area[at..at + 2] == b"NM" {
            got.extend_from_slice(&area[at + 5..at + area[at + 2] as usize]);
            at += area[at + 2] as usize;
        }
        assert_eq!(got, name.as_bytes());
    }

    #[test]
    fn many_files_fill_several_directory_sectors() {
        let entries: Vec<Entry> = (0..200)
            .map(|i| Entry::new(format!("file-number-{i:03}"), format!("{i}")))
            .collect();
        let img = image(&entries);
        let pvd = sector(&img, 16);
        let size = le32(&pvd[166..]);
        assert!(size > SECTOR as u32 && size.is_multiple_of(SECTOR as u32));
    }
}

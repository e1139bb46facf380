//! Seed images checked by the tools that read them for real: `isoinfo` (genisoimage),
//! `xorriso`/`osirrox` (xorriso), `blkid` (util-linux), `mdir`/`mtype`/`mcopy`/`mlabel`/`minfo`
//! (mtools), `fsck.vfat` (dosfstools) and `cloud-localds` (cloud-image-utils) for comparison,
//! plus a loop mount where this machine allows one (an extra, never the proof). The tests
//! install nothing. The whole-seed tests (xorriso, mtools) fail when their tool is missing; the
//! others skip with a printed reason unless KILN_REQUIRE_TOOLS=1, which makes that a failure
//! too (tests/run.sh sets it and installs the packages).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kiln::cloudinit::{self, Entry, FileData, SeedFiles, SeedFormat, fat, iso9660};

const USER_DATA: &str =
    "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAAC3Nza kiln@test\n";
const NETWORK_CONFIG: &str = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n";
const VENDOR_DATA: &str = "#cloud-config\nruncmd: [true]\n";

/// Finds `name` on PATH (and in the sbin directories, where blkid lives).
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The tools, or `None` after printing why the test is skipped (a panic when
/// KILN_REQUIRE_TOOLS=1).
fn tools<const N: usize>(test: &str, names: [(&str, &str); N]) -> Option<[PathBuf; N]> {
    let mut found = Vec::new();
    for (name, package) in names {
        match tool(name) {
            Some(p) => found.push(p),
            None => {
                let msg = format!(
                    "{test}: SKIPPED: `{name}` not found (Debian package `{package}`; \
                     tests/run.sh installs it)"
                );
                if std::env::var_os("KILN_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
                    panic!("{msg}, and KILN_REQUIRE_TOOLS=1");
                }
                eprintln!("{msg}");
                return None;
            }
        }
    }
    Some(found.try_into().expect("N tools"))
}

fn run(tool: &Path, args: &[&str]) -> Output {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", tool.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}\n{}",
        tool.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The seed used by most tests: every cloud-init file plus nested extra files.
fn full_seed(dir: &Path) -> SeedFiles {
    let script = dir.join("setup.sh");
    std::fs::write(&script, "#!/bin/sh\necho hello\n").unwrap();
    SeedFiles::new(USER_DATA)
        .hostname("seed-test")
        .network_config(NETWORK_CONFIG)
        .vendor_data(VENDOR_DATA)
        .file("scripts/setup.sh", FileData::Path(script))
        .file("scripts/conf.d/a-b.yaml", "a: b\n")
}

fn write_image(dir: &Path, seed: &SeedFiles, format: SeedFormat, name: &str) -> PathBuf {
    let path = dir.join(name);
    let size = cloudinit::write_to_path(seed, format, &path).expect("image written");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    path
}

/// (path in the image, expected bytes) of `full_seed`.
fn expected_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("user-data", USER_DATA.into()),
        (
            "meta-data",
            "instance-id: iid-local01\nlocal-hostname: seed-test\n".into(),
        ),
        ("network-config", NETWORK_CONFIG.into()),
        ("vendor-data", VENDOR_DATA.into()),
        ("scripts/setup.sh", "#!/bin/sh\necho hello\n".into()),
        ("scripts/conf.d/a-b.yaml", "a: b\n".into()),
    ]
}

// ---- ISO 9660 -----------------------------------------------------------------------------------

#[test]
fn isoinfo_sees_label_rock_ridge_and_joliet() {
    let Some([isoinfo]) = tools("isoinfo_sees_label", [("isoinfo", "genisoimage")]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = write_image(
        dir.path(),
        &full_seed(dir.path()),
        SeedFormat::Iso,
        "seed.img",
    );
    let d = text(&run(&isoinfo, &["-d", "-i", img.to_str().unwrap()]));
    assert!(d.contains("CD-ROM is in ISO 9660 format"), "{d}");
    assert!(d.contains("Volume id: cidata\n"), "{d}");
    assert!(d.contains("Logical block size is: 2048"), "{d}");
    assert!(d.contains("Joliet with UCS level 3 found"), "{d}");
    assert!(d.contains("Rock Ridge signatures version 1 found"), "{d}");
    let size = std::fs::metadata(&img).unwrap().len();
    assert!(
        d.contains(&format!("Volume size is: {}\n", size / 2048)),
        "{d}"
    );
}

#[test]
fn isoinfo_extracts_exact_names_and_bytes_via_rock_ridge_and_joliet() {
    let Some([isoinfo]) = tools("isoinfo_extracts", [("isoinfo", "genisoimage")]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = write_image(
        dir.path(),
        &full_seed(dir.path()),
        SeedFormat::Iso,
        "seed.img",
    );
    let img = img.to_str().unwrap();
    for mode in ["-R", "-J"] {
        for (path, bytes) in expected_files() {
            let out = run(&isoinfo, &[mode, "-i", img, "-x", &format!("/{path}")]);
            assert_eq!(
                out.stdout,
                bytes,
                "isoinfo {mode} -x /{path}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let listing = text(&run(&isoinfo, &[mode, "-l", "-i", img]));
        for name in [
            "user-data",
            "meta-data",
            "network-config",
            "vendor-data",
            "scripts",
            "setup.sh",
            "conf.d",
            "a-b.yaml",
        ] {
            assert!(
                listing
                    .lines()
                    .any(|l| l.trim_end().ends_with(&format!("  {name}"))),
                "isoinfo {mode} -l lacks {name}:\n{listing}"
            );
        }
        assert!(
            listing.contains("Directory listing of /scripts/conf.d/"),
            "{listing}"
        );
    }
    // Rock Ridge carries POSIX modes.
    let listing = text(&run(&isoinfo, &["-R", "-l", "-i", img]));
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw-r--r--") && l.ends_with("user-data ")),
        "{listing}"
    );
    // The plain ISO 9660 tree has level 1 names.
    let plain = text(&run(&isoinfo, &["-l", "-i", img]));
    assert!(plain.contains("USER_DAT.;1"), "{plain}");
}

#[test]
fn blkid_sees_iso9660_labelled_cidata() {
    let Some([blkid]) = tools("blkid_iso", [("blkid", "util-linux")]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = write_image(
        dir.path(),
        &full_seed(dir.path()),
        SeedFormat::Iso,
        "seed.img",
    );
    let img = img.to_str().unwrap();
    let label = text(&run(&blkid, &["-o", "value", "-s", "LABEL", img]));
    assert_eq!(label.trim(), "cidata");
    let kind = text(&run(&blkid, &["-p", "-o", "value", "-s", "TYPE", img]));
    assert_eq!(kind.trim(), "iso9660");
}

#[test]
fn osirrox_extracts_the_same_tree() {
    let Some([osirrox]) = tools("osirrox_extracts", [("osirrox", "xorriso")]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = write_image(
        dir.path(),
        &full_seed(dir.path()),
        SeedFormat::Iso,
        "seed.img",
    );
    let out = dir.path().join("extracted");
    run(
        &osirrox,
        &[
            "-indev",
            img.to_str().unwrap(),
            "-extract",
            "/",
            out.to_str().unwrap(),
        ],
    );
    for (path, bytes) in expected_files() {
        assert_eq!(std::fs::read(out.join(path)).unwrap(), bytes, "{path}");
    }
}

#[test]
fn large_files_stream_from_disk_into_the_iso() {
    let Some([isoinfo]) = tools("large_files_iso", [("isoinfo", "genisoimage")]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    let data: Vec<u8> = (0..6_000_011u32)
        .map(|i| i.wrapping_mul(2_654_435_761).to_be_bytes()[0])
        .collect();
    std::fs::write(&big, &data).unwrap();
    let seed = SeedFiles::new(USER_DATA).file("payload/big.bin", FileData::Path(big));
    let img = write_image(dir.path(), &seed, SeedFormat::Iso, "seed.img");
    let out = run(
        &isoinfo,
        &["-R", "-i", img.to_str().unwrap(), "-x", "/payload/big.bin"],
    );
    assert!(out.stdout == data, "6 MB file read back differs");
}

#[test]
fn rock_ridge_names_up_to_255_bytes_read_back() {
    let Some([isoinfo]) = tools("rock_ridge_long_names", [("isoinfo", "genisoimage")]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let long = "l".repeat(255);
    let euro = "€".repeat(64); // 192 bytes: its NM entry goes to a continuation area
    let entries = [
        Entry::new(long.clone(), "long\n"),
        Entry::new(format!("d/{euro}"), "euro\n"),
    ];
    let path = dir.path().join("rr.img");
    let options = iso9660::IsoOptions {
        joliet: false,
        ..iso9660::IsoOptions::default()
    };
    iso9660::write(std::fs::File::create(&path).unwrap(), &options, &entries).unwrap();
    let img = path.to_str().unwrap();
    let listing = text(&run(&isoinfo, &["-R", "-l", "-i", img]));
    assert!(listing.contains(&format!("  {long} ")), "{listing}");
    let got = run(&isoinfo, &["-R", "-i", img, "-x", &format!("/{long}")]).stdout;
    assert_eq!(got, b"long\n");
    let got = run(&isoinfo, &["-R", "-i", img, "-x", &format!("/d/{euro}")]).stdout;
    assert_eq!(got, b"euro\n");
}

#[test]
fn iso_matches_cloud_localds_structurally() {
    let Some([localds, isoinfo]) = tools(
        "iso_matches_cloud_localds",
        [
            ("cloud-localds", "cloud-image-utils"),
            ("isoinfo", "genisoimage"),
        ],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ud = dir.path().join("user-data");
    let net = dir.path().join("net.yaml");
    std::fs::write(&ud, USER_DATA).unwrap();
    std::fs::write(&net, NETWORK_CONFIG).unwrap();
    let reference = dir.path().join("ref.img");
    run(
        &localds,
        &[
            "-N",
            net.to_str().unwrap(),
            reference.to_str().unwrap(),
            ud.to_str().unwrap(),
        ],
    );
    // cloud-localds writes its default meta-data as JSON; give kiln the same bytes.
    let ref_meta = run(
        &isoinfo,
        &["-R", "-i", reference.to_str().unwrap(), "-x", "/meta-data"],
    )
    .stdout;
    let seed = SeedFiles::new(FileData::Path(ud.clone()))
        .meta_data(ref_meta)
        .network_config(FileData::Path(net.clone()));
    let ours = write_image(dir.path(), &seed, SeedFormat::Iso, "ours.img");
    let describe = |img: &Path| {
        let d = text(&run(&isoinfo, &["-d", "-i", img.to_str().unwrap()]));
        d.lines()
            .filter(|l| {
                l.starts_with("Volume id")
                    || l.starts_with("Logical block size")
                    || l.contains("Joliet")
                    || l.contains("Rock Ridge")
            })
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(describe(&ours), describe(&reference));
    let files = |img: &Path, mode: &str| {
        let l = text(&run(&isoinfo, &[mode, "-l", "-i", img.to_str().unwrap()]));
        let mut v: Vec<(String, String)> = l
            .lines()
            .filter(|l| l.starts_with('-'))
            .map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols[cols.len() - 1].to_string(), cols[4].to_string())
            })
            .collect();
        v.sort();
        v
    };
    for mode in ["-R", "-J"] {
        assert_eq!(files(&ours, mode), files(&reference, mode), "{mode}");
    }
    for name in ["/user-data", "/meta-data", "/network-config"] {
        let get =
            |img: &Path| run(&isoinfo, &["-R", "-i", img.to_str().unwrap(), "-x", name]).stdout;
        assert_eq!(get(&ours), get(&reference), "{name}");
    }
}

// ---- FAT --------------------------------------------------------------------------------------

#[test]
fn mtools_read_exact_names_and_bytes_from_fat() {
    let Some([mtype, mdir]) = tools("mtools_read_fat", [("mtype", "mtools"), ("mdir", "mtools")])
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = write_image(
        dir.path(),
        &full_seed(dir.path()),
        SeedFormat::Fat,
        "seed.img",
    );
    let img = img.to_str().unwrap();
    for (path, bytes) in expected_files() {
        let out = Command::new(&mtype)
            .args(["-i", img, &format!("::{path}")])
            .env("MTOOLS_SKIP_CHECK", "0")
            .output()
            .unwrap();
        assert!(out.status.success(), "mtype {path}: {:?}", out);
        assert_eq!(out.stdout, bytes, "mtype ::{path}");
    }
    let listing = text(&run(&mdir, &["-i", img, "::"]));
    assert!(listing.contains("Volume in drive : is CIDATA"), "{listing}");
    for name in [
        "user-data",
        "meta-data",
        "network-config",
        "vendor-data",
        "scripts",
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.trim_end().ends_with(&format!(" {name}"))),
            "mdir lacks the long name {name}:\n{listing}"
        );
    }
}

#[test]
fn blkid_sees_vfat_labelled_cidata() {
    let Some([blkid]) = tools("blkid_vfat", [("blkid", "util-linux")]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = write_image(
        dir.path(),
        &full_seed(dir.path()),
        SeedFormat::Fat,
        "seed.img",
    );
    let img = img.to_str().unwrap();
    let label = text(&run(&blkid, &["-o", "value", "-s", "LABEL", img]));
    assert_eq!(label.trim(), "CIDATA");
    let kind = text(&run(&blkid, &["-p", "-o", "value", "-s", "TYPE", img]));
    assert_eq!(kind.trim(), "vfat");
}

#[test]
fn fsck_vfat_finds_no_errors_in_fat12_and_fat16_images() {
    let Some([fsck, mtype]) = tools(
        "fsck_vfat",
        [("fsck.vfat", "dosfstools"), ("mtype", "mtools")],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    let data: Vec<u8> = (0..3_000_017u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &data).unwrap();
    let small = write_image(
        dir.path(),
        &full_seed(dir.path()),
        SeedFormat::Fat,
        "small.img",
    );
    let seed = full_seed(dir.path()).file("payload/big.bin", FileData::Path(big));
    let large = write_image(dir.path(), &seed, SeedFormat::Fat, "large.img");
    for (img, kind) in [(&small, "FAT12"), (&large, "FAT16")] {
        let out = Command::new(&fsck)
            .args(["-n", "-v", img.to_str().unwrap()])
            .output()
            .unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "fsck.vfat -n {kind}: {report}");
        let bits = if kind == "FAT12" { "12 bit" } else { "16 bit" };
        assert!(report.contains(bits), "{report}");
    }
    let out = run(
        &mtype,
        &["-i", large.to_str().unwrap(), "::payload/big.bin"],
    );
    assert!(out.stdout == data, "3 MB file read back from FAT16 differs");
}

// ---- whole seeds through independent readers (and the kernel when it can) ----------------------

/// A tool the test cannot do without: its path, or a failure that names the Debian package.
/// Unlike `tools`, a missing tool is never a skip, so these tests cannot pass without reading
/// the image (tests/run.sh installs the package).
fn required_tool(test: &str, name: &str, package: &str) -> PathBuf {
    tool(name).unwrap_or_else(|| {
        panic!(
            "{test}: `{name}` not found: install the Debian package `{package}` \
             (apt-get install {package}; tests/run.sh installs it)"
        )
    })
}

/// A file system tree: path → contents, directories as `dir/` → `None`.
type Tree = BTreeMap<String, Option<Vec<u8>>>;

/// The tree of `files`: each file with its bytes and every directory on the way to it.
fn expected_tree(files: &[(&str, Vec<u8>)]) -> Tree {
    let mut tree = Tree::new();
    for (path, bytes) in files {
        let parts: Vec<&str> = path.split('/').collect();
        for end in 1..parts.len() {
            tree.insert(format!("{}/", parts[..end].join("/")), None);
        }
        tree.insert(path.to_string(), Some(bytes.clone()));
    }
    tree
}

/// The names of `tree` alone, to compare listings that carry no contents.
fn names(tree: &Tree) -> Vec<String> {
    tree.keys().cloned().collect()
}

/// Fails, naming each path that is missing, extra or different, when `got` is not `expected`.
fn assert_tree_eq(got: &Tree, expected: &Tree, what: &str) {
    let show = |entry: Option<&Option<Vec<u8>>>| match entry {
        None => "absent".to_string(),
        Some(None) => "a directory".to_string(),
        Some(Some(bytes)) => format!("{:?}", String::from_utf8_lossy(bytes)),
    };
    let differences: Vec<String> = got
        .keys()
        .chain(expected.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|path| got.get(*path) != expected.get(*path))
        .map(|path| {
            format!(
                "  {path}: got {}, expected {}",
                show(got.get(path)),
                show(expected.get(path))
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "{what} differs:\n{}",
        differences.join("\n")
    );
}

/// Everything under `root` as a `Tree` (only directories and regular files are expected).
fn read_tree(root: &Path) -> Tree {
    fn walk(dir: &Path, prefix: &str, tree: &mut Tree) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                let sub = format!("{prefix}{name}/");
                tree.insert(sub.clone(), None);
                walk(&entry.path(), &sub, tree);
            } else if kind.is_file() {
                tree.insert(
                    format!("{prefix}{name}"),
                    Some(std::fs::read(entry.path()).unwrap()),
                );
            } else {
                panic!("{}: neither a file nor a directory", entry.path().display());
            }
        }
    }
    let mut tree = Tree::new();
    walk(root, "", &mut tree);
    tree
}

/// Gives the owner write access to everything under `root` again (osirrox restores the
/// read-only modes of the image, which would keep the temporary directory from being removed).
fn make_writable(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root).unwrap().permissions().mode();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode | 0o700)).unwrap();
    if root.is_dir() {
        for entry in std::fs::read_dir(root).unwrap() {
            make_writable(&entry.unwrap().path());
        }
    }
}

/// Mounts `img` read-only through a loop device and checks that it shows exactly `files`.
/// `Err(why)` when this machine cannot loop-mount it (not root, no loop devices, no kernel
/// support): the kernel's view is an extra to the tools' reading, not the proof.
fn loop_mount_check(img: &Path, fstype: &str, files: &[(&str, Vec<u8>)]) -> Result<(), String> {
    let uid = Command::new("id").arg("-u").output().ok().map(|o| text(&o));
    if uid.as_deref().map(str::trim) != Some("0") {
        return Err("not running as root".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("no /dev/loop-control, loop devices are unavailable".into());
    }
    let (Some(mount), Some(umount)) = (tool("mount"), tool("umount")) else {
        return Err("`mount`/`umount` not found (Debian package `mount`)".into());
    };
    let target = tempfile::tempdir().unwrap();
    let out = Command::new(&mount)
        .args(["-t", fstype, "-o", "loop,ro"])
        .arg(img)
        .arg(target.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).into_owned();
        let unavailable = [
            "unknown filesystem type",
            "failed to setup loop device",
            "Permission denied",
            "permission denied",
            "Operation not permitted",
            "must be superuser",
            "could not find any free loop device",
        ];
        if unavailable.iter().any(|u| why.contains(u)) {
            let first_line = why.lines().next().unwrap_or_default().trim();
            return Err(format!(
                "this machine cannot loop-mount {fstype}: {first_line}"
            ));
        }
        panic!("mount -t {fstype} -o loop,ro failed: {why}");
    }
    let result = std::panic::catch_unwind(|| {
        assert_tree_eq(
            &read_tree(target.path()),
            &expected_tree(files),
            &format!("the tree through the kernel's {fstype}"),
        );
    });
    let _ = Command::new(&umount).arg(target.path()).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    Ok(())
}

/// Prints whether the kernel's view was checked too.
fn also_loop_mount(test: &str, img: &Path, fstype: &str, files: &[(&str, Vec<u8>)]) {
    match loop_mount_check(img, fstype, files) {
        Ok(()) => eprintln!("{test}: also loop-mounted as {fstype} and checked"),
        Err(why) => eprintln!("{test}: the kernel's view was not checked as well: {why}"),
    }
}

/// xorriso on `img` with one kind of tree loaded (`-read_fs`), its startup files ignored.
fn xorriso(xorriso: &Path, img: &Path, read_fs: &str, commands: &[&str]) -> Output {
    let mut args = vec![
        "-no_rc",
        "-read_fs",
        read_fs,
        "-indev",
        img.to_str().unwrap(),
    ];
    args.extend_from_slice(commands);
    run(xorriso, &args)
}

#[test]
fn iso_seed_read_by_xorriso_has_exact_names_contents_and_volume_id() {
    let test = "iso_seed_read_by_xorriso";
    let xorriso_bin = required_tool(test, "xorriso", "xorriso");
    let dir = tempfile::tempdir().unwrap();
    let img = write_image(
        dir.path(),
        &full_seed(dir.path()),
        SeedFormat::Iso,
        "seed.img",
    );
    let expected = expected_tree(&expected_files());

    let pvd = text(&xorriso(&xorriso_bin, &img, "any", &["-pvd_info"]));
    let volume_ids: Vec<&str> = pvd
        .lines()
        .filter_map(|l| l.strip_prefix("Volume Id    : "))
        .collect();
    assert_eq!(volume_ids, ["cidata"], "xorriso -pvd_info:\n{pvd}");

    // "nojoliet" loads Rock Ridge and "norock" loads Joliet; either falls back to the plain
    // ISO 9660 names (USER_DAT, ...) when its tree is missing, which the names below reject.
    for (read_fs, what) in [("nojoliet", "Rock Ridge"), ("norock", "Joliet")] {
        let listing = text(&xorriso(
            &xorriso_bin,
            &img,
            read_fs,
            &["-find", "/", "-exec", "lsdl", "--"],
        ));
        let mut listed = Vec::new();
        for line in listing.lines() {
            let at = line
                .find(" '/")
                .unwrap_or_else(|| panic!("{what}: unexpected lsdl line {line:?}"));
            let path = line[at + 3..].strip_suffix('\'').unwrap();
            if path.is_empty() {
                continue; // the root directory
            }
            let slash = if line.starts_with('d') { "/" } else { "" };
            listed.push(format!("{path}{slash}"));
        }
        listed.sort();
        assert_eq!(listed, names(&expected), "{what} names:\n{listing}");

        let out = dir.path().join(format!("extracted-{read_fs}"));
        xorriso(
            &xorriso_bin,
            &img,
            read_fs,
            &["-osirrox", "on", "-extract", "/", out.to_str().unwrap()],
        );
        make_writable(&out);
        assert_tree_eq(
            &read_tree(&out),
            &expected,
            &format!("the {what} tree extracted by xorriso"),
        );
    }
    also_loop_mount(test, &img, "iso9660", &expected_files());
}

/// mtools on `img`, checking the file system first (MTOOLS_SKIP_CHECK=0).
fn mtools(tool: &Path, img: &Path, args: &[&str]) -> Output {
    let out = Command::new(tool)
        .arg("-i")
        .arg(img)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "0")
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", tool.display()));
    assert!(
        out.status.success(),
        "{} -i IMG {args:?} failed: {}\n{}",
        tool.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn vfat_seed_read_by_mtools_has_exact_names_contents_and_label() {
    let test = "vfat_seed_read_by_mtools";
    let [mdir, mcopy, mlabel, minfo] =
        ["mdir", "mcopy", "mlabel", "minfo"].map(|name| required_tool(test, name, "mtools"));
    let dir = tempfile::tempdir().unwrap();
    let img = write_image(
        dir.path(),
        &full_seed(dir.path()),
        SeedFormat::Fat,
        "seed.img",
    );
    let expected = expected_tree(&expected_files());

    // The label in the root directory and the one in the boot sector. FAT labels are upper
    // case (mkfs.vfat -n CIDATA); cloud-init looks for `cidata` in either case.
    let label = text(&mtools(&mlabel, &img, &["-s", "::"]));
    assert_eq!(
        label.trim().strip_prefix("Volume label is "),
        Some("CIDATA"),
        "mlabel -s: {label:?}"
    );
    let info = text(&mtools(&minfo, &img, &["::"]));
    assert!(
        info.lines().any(|l| l == "disk label=\"CIDATA     \""),
        "minfo:\n{info}"
    );

    // Every name, recursively, one a line (`::/dir/` for directories).
    let listing = text(&mtools(&mdir, &img, &["-/", "-b", "::/"]));
    let mut listed: Vec<String> = listing
        .lines()
        .map(|l| {
            l.strip_prefix("::/")
                .unwrap_or_else(|| panic!("unexpected mdir -b line {l:?}"))
                .to_string()
        })
        .collect();
    listed.sort();
    assert_eq!(listed, names(&expected), "mdir -/ -b:\n{listing}");

    // The bytes of every file listed, as mcopy writes them to stdout.
    let read: Tree = listed
        .iter()
        .map(|path| {
            let bytes = (!path.ends_with('/'))
                .then(|| mtools(&mcopy, &img, &[&format!("::/{path}"), "-"]).stdout);
            (path.clone(), bytes)
        })
        .collect();
    assert_tree_eq(&read, &expected, "the tree read by mcopy");
    also_loop_mount(test, &img, "vfat", &expected_files());
}

// ---- determinism and the library API ------------------------------------------------------------

#[test]
fn same_input_same_bytes_for_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    for format in [SeedFormat::Iso, SeedFormat::Fat] {
        let a = write_image(dir.path(), &full_seed(dir.path()), format, "a.img");
        let b = write_image(dir.path(), &full_seed(dir.path()), format, "b.img");
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{format}"
        );
        let later = full_seed(dir.path()).timestamp(1_700_000_000);
        let c = write_image(dir.path(), &later, format, "c.img");
        assert!(
            std::fs::read(&a).unwrap() != std::fs::read(&c).unwrap(),
            "{format}"
        );
    }
}

#[test]
fn writers_stream_to_any_writer() {
    let entries = [
        Entry::new("user-data", USER_DATA),
        Entry::new("meta-data", "instance-id: x\n"),
    ];
    let mut iso = Vec::new();
    let n = iso9660::write(&mut iso, &iso9660::IsoOptions::default(), &entries).unwrap();
    assert_eq!(n as usize, iso.len());
    assert_eq!(&iso[32769..32774], b"CD001");
    let mut img = Vec::new();
    let n = fat::write(&mut img, &fat::FatOptions::default(), &entries).unwrap();
    assert_eq!(n as usize, img.len());
    assert_eq!(&img[43..54], b"CIDATA     ");
}

#[test]
fn clear_errors_for_bad_paths() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seed.img");
    let dup = SeedFiles::new(USER_DATA).file("user-data", "again");
    let err = cloudinit::write_to_path(&dup, SeedFormat::Iso, &out).unwrap_err();
    assert!(
        err.to_string().contains("`user-data` is given twice"),
        "{err}"
    );
    let deep = SeedFiles::new(USER_DATA).file("a/b/c/d/e/f/g/h/i", "x");
    let err = cloudinit::write_to_path(&deep, SeedFormat::Iso, &out).unwrap_err();
    assert!(err.to_string().contains("7 directories"), "{err}");
    let colon = SeedFiles::new(USER_DATA).file("a:b", "x");
    let err = cloudinit::write_to_path(&colon, SeedFormat::Fat, &out).unwrap_err();
    assert!(err.to_string().contains("--filesystem iso9660"), "{err}");
    assert!(!out.exists(), "no image is left behind on errors");
    let missing_dir = dir.path().join("nope/seed.img");
    let err = cloudinit::write_to_path(&SeedFiles::new(USER_DATA), SeedFormat::Iso, &missing_dir)
        .unwrap_err();
    assert!(
        err.to_string().contains("does the directory exist"),
        "{err}"
    );
}

// ---- the command line -----------------------------------------------------------------------

fn kiln(args: &[&str], dir: &Path, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cli_writes_an_iso_that_isoinfo_reads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("user-data.yaml"), USER_DATA).unwrap();
    std::fs::write(dir.path().join("meta.yaml"), "instance-id: i-42\n").unwrap();
    std::fs::write(dir.path().join("net.yaml"), NETWORK_CONFIG).unwrap();
    let out = kiln(
        &[
            "seed",
            "user-data.yaml",
            "meta.yaml",
            "-o",
            "seed.img",
            "--network-config",
            "net.yaml",
        ],
        dir.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let size = std::fs::metadata(dir.path().join("seed.img"))
        .unwrap()
        .len();
    let stdout = text(&out);
    assert!(
        stdout.starts_with(&format!("seed.img: {size} bytes, iso9660 labelled cidata")),
        "{stdout}"
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let Some([isoinfo]) = tools("cli_iso", [("isoinfo", "genisoimage")]) else {
        return;
    };
    let img = dir.path().join("seed.img");
    let img = img.to_str().unwrap();
    let d = text(&run(&isoinfo, &["-d", "-i", img]));
    assert!(d.contains("Volume id: cidata"), "{d}");
    for (path, bytes) in [
        ("/user-data", USER_DATA),
        ("/meta-data", "instance-id: i-42\n"),
        ("/network-config", NETWORK_CONFIG),
    ] {
        for mode in ["-R", "-J"] {
            let got = run(&isoinfo, &[mode, "-i", img, "-x", path]).stdout;
            assert_eq!(String::from_utf8_lossy(&got), bytes, "{mode} {path}");
        }
    }
}

#[test]
fn cli_reads_user_data_from_stdin_and_writes_vfat() {
    let dir = tempfile::tempdir().unwrap();
    let out = kiln(
        &[
            "seed",
            "-",
            "-o",
            "seed.img",
            "--filesystem",
            "vfat",
            "-H",
            "box-1",
            "--instance-id",
            "i-7",
        ],
        dir.path(),
        Some(USER_DATA.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        text(&out).contains("vfat labelled CIDATA"),
        "{}",
        text(&out)
    );
    let Some([mtype]) = tools("cli_vfat", [("mtype", "mtools")]) else {
        return;
    };
    let img = dir.path().join("seed.img");
    let img = img.to_str().unwrap();
    assert_eq!(text(&run(&mtype, &["-i", img, "::user-data"])), USER_DATA);
    assert_eq!(
        text(&run(&mtype, &["-i", img, "::meta-data"])),
        "instance-id: i-7\nlocal-hostname: box-1\n"
    );
}

#[test]
fn cli_output_is_deterministic_and_can_go_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ud"), USER_DATA).unwrap();
    let a = kiln(&["seed", "ud", "-o", "a.img"], dir.path(), None);
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    let piped = kiln(&["seed", "ud", "-o", "-"], dir.path(), None);
    assert_eq!(piped.status.code(), Some(0), "{}", stderr(&piped));
    assert!(piped.stdout == std::fs::read(dir.path().join("a.img")).unwrap());
    assert!(
        stderr(&piped).contains("standard output:"),
        "{}",
        stderr(&piped)
    );
    let stamped = kiln(
        &["seed", "ud", "-o", "b.img", "--timestamp", "1700000000"],
        dir.path(),
        None,
    );
    assert_eq!(stamped.status.code(), Some(0), "{}", stderr(&stamped));
    let b = std::fs::read(dir.path().join("b.img")).unwrap();
    assert_eq!(&b[16 * 2048 + 813..16 * 2048 + 827], b"20231114221320");
}

#[test]
fn cli_errors_name_the_file_and_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = kiln(
        &["seed", "no-such-file", "-o", "seed.img"],
        dir.path(),
        None,
    );
    assert_eq!(missing.status.code(), Some(1));
    let e = stderr(&missing);
    assert!(
        e.contains("user-data no-such-file") && e.contains("check the path"),
        "{e}"
    );
    assert!(!dir.path().join("seed.img").exists());

    std::fs::write(dir.path().join("ud"), USER_DATA).unwrap();
    let net = kiln(
        &["seed", "ud", "-o", "s.img", "-N", "nope.yaml"],
        dir.path(),
        None,
    );
    assert_eq!(net.status.code(), Some(1));
    assert!(
        stderr(&net).contains("network-config nope.yaml"),
        "{}",
        stderr(&net)
    );

    let qcow = kiln(
        &["seed", "ud", "-o", "s.img", "--disk-format", "qcow2"],
        dir.path(),
        None,
    );
    assert_eq!(qcow.status.code(), Some(2));
    assert!(
        stderr(&qcow).contains("qemu-img convert"),
        "{}",
        stderr(&qcow)
    );

    let fs = kiln(
        &["seed", "ud", "-o", "s.img", "--filesystem", "ext4"],
        dir.path(),
        None,
    );
    assert_eq!(fs.status.code(), Some(2));
    assert!(stderr(&fs).contains("use iso9660"), "{}", stderr(&fs));

    std::fs::write(dir.path().join("md"), "instance-id: x\n").unwrap();
    let clash = kiln(
        &["seed", "ud", "md", "-o", "s.img", "-H", "h"],
        dir.path(),
        None,
    );
    assert_eq!(clash.status.code(), Some(1));
    assert!(stderr(&clash).contains("--hostname"), "{}", stderr(&clash));

    let no_output = kiln(&["seed", "ud"], dir.path(), None);
    assert_eq!(no_output.status.code(), Some(2));
    assert!(
        stderr(&no_output).contains("--output"),
        "{}",
        stderr(&no_output)
    );

    let bad_dir = kiln(&["seed", "ud", "-o", "missing/s.img"], dir.path(), None);
    assert_eq!(bad_dir.status.code(), Some(1));
    assert!(stderr(&bad_dir).contains("missing"), "{}", stderr(&bad_dir));
}

#[test]
fn cli_warns_about_user_data_cloud_init_would_ignore() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ud"), "ssh_authorized_keys: []\n").unwrap();
    let out = kiln(&["seed", "ud", "-o", "s.img"], dir.path(), None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not start with `#cloud-config`"),
        "{}",
        stderr(&out)
    );
}

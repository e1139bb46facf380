//! `cd_files` / `cd_content` / `cd_label` images read back by real tools: `xorriso` lists
//! the tree and extracts the files (Rock Ridge names and contents), `isoinfo` reads the
//! label. Both come from tests/run.sh's APT_PACKAGES (xorriso, genisoimage). And the
//! `floppy_*` images read back by `fsck.fat` (dosfstools), `mtools` and `blkid`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use kiln::cloudinit::cdrom::CdTree;
use kiln::cloudinit::floppy::FloppyTree;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (apt-get install xorriso genisoimage): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sources(dir: &Path) {
    std::fs::create_dir_all(dir.join("seed/scripts/deep")).unwrap();
    std::fs::write(dir.join("seed/scripts/setup.sh"), "#!/bin/sh\necho setup\n").unwrap();
    std::fs::write(dir.join("seed/scripts/deep/note.txt"), "deep\n").unwrap();
    std::fs::write(dir.join("seed/Mixed Case Name.TXT"), "mixed\n").unwrap();
    std::fs::write(dir.join("ks.cfg"), "# kickstart\n").unwrap();
    std::fs::write(dir.join("a.pkg"), "a").unwrap();
    std::fs::write(dir.join("b.pkg"), "bb").unwrap();
    std::os::unix::fs::symlink(dir.join("ks.cfg"), dir.join("link.cfg")).unwrap();
}

#[test]
fn cd_files_globs_directories_and_cd_content_read_back_with_xorriso_and_isoinfo() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    sources(dir);
    let content = BTreeMap::from([
        ("user-data".to_string(), "#cloud-config\n".to_string()),
        ("/meta-data".to_string(), "instance-id: cd-1\n".to_string()),
    ]);
    let tree = CdTree::collect(
        &[
            "seed".into(),
            "ks.cfg".into(),
            "*.pkg".into(),
            "link.cfg".into(),
        ],
        &content,
        dir,
    )
    .unwrap();
    let iso = dir.join("cd.iso");
    let size = tree.write("cidata", &iso).unwrap();
    assert_eq!(size, std::fs::metadata(&iso).unwrap().len());

    let listing = run(
        "xorriso",
        &["-indev", iso.to_str().unwrap(), "-find", "/", "-type", "f"],
    );
    let mut files: Vec<&str> = listing
        .lines()
        .filter(|l| l.starts_with('\''))
        .map(|l| l.trim_matches('\''))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "/a.pkg",
            "/b.pkg",
            "/ks.cfg",
            "/link.cfg",
            "/meta-data",
            "/seed/Mixed Case Name.TXT",
            "/seed/scripts/deep/note.txt",
            "/seed/scripts/setup.sh",
            "/user-data"
        ]
    );
    let out = dir.join("extracted");
    run(
        "xorriso",
        &[
            "-osirrox",
            "on",
            "-indev",
            iso.to_str().unwrap(),
            "-extract",
            "/",
            out.to_str().unwrap(),
        ],
    );
    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
    assert_eq!(read("seed/scripts/setup.sh"), "#!/bin/sh\necho setup\n");
    assert_eq!(read("seed/scripts/deep/note.txt"), "deep\n");
    assert_eq!(read("seed/Mixed Case Name.TXT"), "mixed\n");
    assert_eq!(read("link.cfg"), "# kickstart\n", "symlinks are followed");
    assert_eq!(read("b.pkg"), "bb");
    assert_eq!(read("user-data"), "#cloud-config\n");
    assert_eq!(read("meta-data"), "instance-id: cd-1\n");

    let info = run("isoinfo", &["-d", "-i", iso.to_str().unwrap()]);
    assert!(info.contains("Volume id: cidata"), "{info}");
    assert!(
        info.contains("Rock Ridge signatures version 1 found"),
        "{info}"
    );
    assert!(info.contains("Joliet with UCS level 3 found"), "{info}");
}

#[test]
fn a_trailing_slash_puts_the_contents_at_the_root_and_the_label_defaults_to_packer() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    sources(dir);
    let seed = format!("{}/seed/", dir.display());
    let tree = CdTree::collect(&[seed], &BTreeMap::new(), Path::new("/")).unwrap();
    let iso = dir.join("cd.iso");
    tree.write(kiln::cloudinit::cdrom::DEFAULT_LABEL, &iso)
        .unwrap();
    let listing = run(
        "xorriso",
        &["-indev", iso.to_str().unwrap(), "-find", "/", "-type", "f"],
    );
    let mut files: Vec<&str> = listing
        .lines()
        .filter(|l| l.starts_with('\''))
        .map(|l| l.trim_matches('\''))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "/Mixed Case Name.TXT",
            "/scripts/deep/note.txt",
            "/scripts/setup.sh"
        ]
    );
    let info = run("isoinfo", &["-d", "-i", iso.to_str().unwrap()]);
    assert!(info.contains("Volume id: packer"), "{info}");
}

#[test]
fn nothing_half_written_when_a_source_disappears() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    sources(dir);
    let tree = CdTree::collect(&["ks.cfg".into()], &BTreeMap::new(), dir).unwrap();
    std::fs::remove_file(dir.join("ks.cfg")).unwrap();
    let iso = dir.join("out/cd.iso");
    std::fs::create_dir(dir.join("out")).unwrap();
    let err = tree.write("cidata", &iso).unwrap_err();
    assert!(err.to_string().contains("ks.cfg"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.join("out")).unwrap().count(),
        0,
        "no image and no temporary file left"
    );
}

#[test]
fn floppies_read_back_with_fsck_mtools_and_blkid() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    sources(dir);
    let content = BTreeMap::from([(
        "user-data".to_string(),
        "#cloud-config\nhostname: from-a-floppy\n".to_string(),
    )]);
    // floppy_files flattens (ks.cfg, the .pkg files, seed/'s files in the root);
    // floppy_dirs keeps the tree.
    let tree = FloppyTree::collect(
        &["ks.cfg".into(), "*.pkg".into()],
        &["seed".into()],
        &content,
        dir,
    )
    .unwrap();
    let image = dir.join("floppy.img");
    assert_eq!(tree.write("cidata", &image).unwrap(), 1_474_560);
    let image_arg = image.to_str().unwrap();

    let fsck = run("fsck.fat", &["-n", image_arg]);
    assert!(fsck.contains("files"), "{fsck}");
    let listing = run("mdir", &["-i", image_arg, "-/", "-b", "::"]);
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "::/a.pkg",
            "::/b.pkg",
            "::/ks.cfg",
            "::/seed/",
            "::/seed/Mixed Case Name.TXT",
            "::/seed/scripts/",
            "::/seed/scripts/deep/",
            "::/seed/scripts/deep/note.txt",
            "::/seed/scripts/setup.sh",
            "::/user-data"
        ]
    );
    assert_eq!(
        run("mtype", &["-i", image_arg, "::/seed/scripts/deep/note.txt"]),
        "deep\n"
    );
    assert_eq!(
        run("mtype", &["-i", image_arg, "::/user-data"]),
        "#cloud-config\nhostname: from-a-floppy\n"
    );
    // What cloud-init's NoCloud looks for: a vfat file system labelled cidata.
    let blkid = run("blkid", &["-o", "export", image_arg]);
    assert!(blkid.contains("TYPE=vfat"), "{blkid}");
    assert!(
        blkid.contains("LABEL=cidata") || blkid.contains("LABEL=CIDATA"),
        "{blkid}"
    );
}

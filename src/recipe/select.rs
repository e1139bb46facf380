//! Which builds of a template kiln runs. Most real templates have several builders (`qemu`
//! beside `virtualbox-iso`, `vmware-iso`, …) and their projects run Packer with `-only=qemu`.
//! kiln runs the `qemu` builders; the others are noted and skipped, their options unchecked.
//! `-only` and `-except` keep Packer 1.6's meaning for JSON templates: exact build names (no
//! patterns); `-except` also names post-processors (by `name`, else by type), and an excepted
//! post-processor ends its chain there.

use super::decode::suggest;
use super::diag::Diagnostics;
use super::json::Pos;

/// Builder types Packer 1.6 knows (a builder of another type is most likely a typo).
pub const PACKER_BUILDER_TYPES: &[&str] = &[
    "alicloud-ecs",
    "amazon-chroot",
    "amazon-ebs",
    "amazon-ebssurrogate",
    "amazon-ebsvolume",
    "amazon-instance",
    "azure-arm",
    "azure-chroot",
    "azure-dtl",
    "cloudstack",
    "digitalocean",
    "docker",
    "file",
    "googlecompute",
    "hcloud",
    "hyperone",
    "hyperv-iso",
    "hyperv-vmcx",
    "jdcloud",
    "linode",
    "lxc",
    "lxd",
    "ncloud",
    "null",
    "oneandone",
    "openstack",
    "oracle-classic",
    "oracle-oci",
    "osc-bsu",
    "osc-bsusurrogate",
    "osc-bsuvolume",
    "osc-chroot",
    "parallels-iso",
    "parallels-pvm",
    "profitbricks",
    "proxmox",
    "proxmox-clone",
    "proxmox-iso",
    "qemu",
    "scaleway",
    "tencentcloud-cvm",
    "triton",
    "ucloud-uhost",
    "vagrant",
    "virtualbox-iso",
    "virtualbox-ovf",
    "virtualbox-vm",
    "vmware-iso",
    "vmware-vmx",
    "vsphere-clone",
    "vsphere-iso",
    "yandex",
];

/// The builds the user asked for: `-only` and `-except`, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `-only=a,b`: only the builds with these names.
    pub only: Vec<String>,
    /// `-except=a,b`: every build but these, and no post-processor with these names.
    pub except: Vec<String>,
}

impl Selection {
    /// Whether a post-processor named `name` (its `name`, else its type) is excepted.
    pub fn excepts_post_processor(&self, name: &str) -> bool {
        self.except.iter().any(|e| e == name)
    }
}

/// Why a builder of the template is not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// It is not a `qemu` builder.
    OtherType,
    /// `-only` does not name it.
    NotInOnly,
    /// `-except` names it.
    Excepted,
}

impl SkipReason {
    /// The reason in words, for a builder of `builder_type`.
    pub fn describe(&self, builder_type: &str) -> String {
        match self {
            SkipReason::OtherType => {
                format!("type `{builder_type}`: kiln runs `qemu` builders")
            }
            SkipReason::NotInOnly => "not named by -only".into(),
            SkipReason::Excepted => "named by -except".into(),
        }
    }
}

/// A builder of the template that kiln does not run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedBuild {
    /// The build's name (`name`, else its type).
    pub name: String,
    /// The builder's type.
    pub builder_type: String,
    /// Why it is skipped.
    pub reason: SkipReason,
}

impl SkippedBuild {
    /// `name (reason)`, for lists.
    pub fn describe(&self) -> String {
        format!(
            "{} ({})",
            self.name,
            self.reason.describe(&self.builder_type)
        )
    }
}

/// One builder of the template, as far as selection needs it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The build's name.
    pub name: String,
    /// The builder's type.
    pub builder_type: String,
    /// Its index in `builders`.
    pub index: usize,
    /// Where its `type` is.
    pub type_pos: Pos,
}

fn is_pattern(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

fn unknown_name(flag: &str, name: &str, builds: &[&str], post_processors: &[String]) -> String {
    let mut known: Vec<&str> = builds.to_vec();
    if flag == "-except" {
        known.extend(post_processors.iter().map(String::as_str));
    }
    let hint = match suggest(name, known.iter().copied()) {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    };
    let what = if flag == "-except" {
        "no build and no post-processor"
    } else {
        "no build"
    };
    let mut message = format!(
        "{flag}: `{name}` names {what}{hint}; builds: {}",
        builds.join(", ")
    );
    if flag == "-except" && !post_processors.is_empty() {
        message.push_str(&format!(
            "; post-processors: {}",
            post_processors.join(", ")
        ));
    }
    if is_pattern(name) {
        message.push_str(
            " (Packer 1.6 takes exact build names with JSON templates, no patterns: list the names, comma-separated)",
        );
    }
    message
}

/// Decides which of `candidates` run, reporting to `diags`: a note per builder of another
/// type that would have run, an error per `-only`/`-except` name that names nothing
/// (`post_processors`: the names `-except` may also use), and an error when no `qemu` build
/// is left (`builders_pos`: where `builders` is). Returns the indices (into `candidates`) of
/// the builds to run, and the skipped ones.
pub fn select(
    file: &str,
    candidates: &[Candidate],
    selection: &Selection,
    post_processors: &[String],
    builders_pos: Pos,
    diags: &mut Diagnostics,
) -> (Vec<usize>, Vec<SkippedBuild>) {
    let names: Vec<&str> = candidates.iter().map(|c| c.name.as_str()).collect();
    for name in &selection.only {
        if !names.contains(&name.as_str()) {
            diags.error(
                "",
                None,
                "",
                unknown_name("-only", name, &names, post_processors),
            );
        }
    }
    for name in &selection.except {
        if !names.contains(&name.as_str()) && !post_processors.contains(name) {
            diags.error(
                "",
                None,
                "",
                unknown_name("-except", name, &names, post_processors),
            );
        }
    }
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    // Notes for builders of other types; only worth saying when something else runs (else
    // the error below lists them).
    let mut notes = Diagnostics::new();
    for (i, c) in candidates.iter().enumerate() {
        let reason = if !selection.only.is_empty() && !selection.only.contains(&c.name) {
            Some(SkipReason::NotInOnly)
        } else if selection.except.contains(&c.name) {
            Some(SkipReason::Excepted)
        } else if c.builder_type != "qemu" {
            let path = format!("builders[{}].type", c.index);
            notes.note(
                file,
                Some(c.type_pos),
                &path,
                format!(
                    "build `{}` has type `{}`, which kiln does not run (it runs `qemu` builders); its options are not checked",
                    c.name, c.builder_type
                ),
            );
            if !PACKER_BUILDER_TYPES.contains(&c.builder_type.as_str()) {
                let hint = match suggest(&c.builder_type, PACKER_BUILDER_TYPES.iter().copied()) {
                    Some(s) => format!(" (did you mean `{s}`?)"),
                    None => String::new(),
                };
                diags.warning(
                    file,
                    Some(c.type_pos),
                    &path,
                    format!(
                        "`{}` is not a builder type Packer knows{hint}",
                        c.builder_type
                    ),
                );
            }
            Some(SkipReason::OtherType)
        } else {
            None
        };
        match reason {
            Some(reason) => skipped.push(SkippedBuild {
                name: c.name.clone(),
                builder_type: c.builder_type.clone(),
                reason,
            }),
            None => run.push(i),
        }
    }
    if !run.is_empty() {
        diags.extend(notes);
    }
    if run.is_empty() && !candidates.is_empty() {
        let qemu: Vec<&str> = candidates
            .iter()
            .filter(|c| c.builder_type == "qemu")
            .map(|c| c.name.as_str())
            .collect();
        let message = if qemu.is_empty() {
            format!(
                "this template has no `qemu` builder, and kiln builds images with `qemu`; its builders: {}",
                candidates
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.builder_type))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else if !selection.only.is_empty() {
            format!(
                "-only={} selects no `qemu` build, and kiln runs `qemu` builders only; this template's qemu builds: {} (e.g. -only={})",
                selection.only.join(","),
                qemu.join(", "),
                qemu[0]
            )
        } else {
            format!(
                "-except={} leaves no `qemu` build to run; this template's qemu builds: {}",
                selection.except.join(","),
                qemu.join(", ")
            )
        };
        diags.error(file, Some(builders_pos), "builders", message);
    }
    (run, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(list: &[(&str, &str)]) -> Vec<Candidate> {
        list.iter()
            .enumerate()
            .map(|(index, (name, ty))| Candidate {
                name: name.to_string(),
                builder_type: ty.to_string(),
                index,
                type_pos: Pos {
                    line: 3 + index as u32,
                    col: 5,
                },
            })
            .collect()
    }

    fn choose(
        list: &[(&str, &str)],
        only: &[&str],
        except: &[&str],
        pps: &[&str],
    ) -> (Vec<usize>, Vec<SkippedBuild>, Diagnostics) {
        let mut diags = Diagnostics::new();
        let selection = Selection {
            only: only.iter().map(|s| s.to_string()).collect(),
            except: except.iter().map(|s| s.to_string()).collect(),
        };
        let pps: Vec<String> = pps.iter().map(|s| s.to_string()).collect();
        let (run, skipped) = select(
            "t.json",
            &candidates(list),
            &selection,
            &pps,
            Pos { line: 2, col: 3 },
            &mut diags,
        );
        (run, skipped, diags)
    }

    const MULTI: &[(&str, &str)] = &[
        ("qemu", "qemu"),
        ("virtualbox-iso", "virtualbox-iso"),
        ("vmware-iso", "vmware-iso"),
    ];

    #[test]
    fn other_builders_are_noted_and_skipped() {
        let (run, skipped, diags) = choose(MULTI, &[], &[], &[]);
        assert_eq!(run, [0]);
        assert_eq!(skipped.len(), 2);
        assert!(!diags.has_errors());
        let notes: Vec<String> = diags.notes().map(|d| d.to_string()).collect();
        assert_eq!(
            notes[0],
            "t.json:4:5: note: builders[1].type: build `virtualbox-iso` has type `virtualbox-iso`, which kiln does not run (it runs `qemu` builders); its options are not checked"
        );
        assert_eq!(
            skipped[1].describe(),
            "vmware-iso (type `vmware-iso`: kiln runs `qemu` builders)"
        );
    }

    #[test]
    fn only_selects_by_exact_name_without_notes_for_what_it_leaves_out() {
        let (run, skipped, diags) = choose(MULTI, &["qemu"], &[], &[]);
        assert_eq!(run, [0]);
        assert!(diags.is_empty(), "{diags}");
        assert!(skipped.iter().all(|s| s.reason == SkipReason::NotInOnly));

        let (run, _, diags) = choose(MULTI, &["q*"], &[], &[]);
        assert!(run.is_empty());
        let errors: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        assert_eq!(
            errors[0],
            "-only: `q*` names no build; builds: qemu, virtualbox-iso, vmware-iso (Packer 1.6 takes exact build names with JSON templates, no patterns: list the names, comma-separated)"
        );
        assert!(
            errors[1].ends_with("-only=q* selects no `qemu` build, and kiln runs `qemu` builders only; this template's qemu builds: qemu (e.g. -only=qemu)"),
            "{errors:?}"
        );
    }

    #[test]
    fn only_a_builder_of_another_type_leaves_nothing_to_run() {
        let (run, _, diags) = choose(MULTI, &["virtualbox-iso"], &[], &[]);
        assert!(run.is_empty());
        assert!(diags.has_errors());
        let (_, _, diags) = choose(&[("vb", "virtualbox-iso")], &[], &[], &[]);
        let error = diags.errors().next().unwrap().to_string();
        assert!(
            error.ends_with("this template has no `qemu` builder, and kiln builds images with `qemu`; its builders: vb (virtualbox-iso)"),
            "{error}"
        );
    }

    #[test]
    fn except_names_builds_or_post_processors() {
        let list = &[("a", "qemu"), ("b", "qemu")];
        let (run, skipped, diags) = choose(list, &[], &["b", "vagrant"], &["vagrant", "checksum"]);
        assert_eq!(run, [0]);
        assert_eq!(skipped[0].reason, SkipReason::Excepted);
        assert!(diags.is_empty(), "{diags}");
        let (_, _, diags) = choose(list, &[], &["vagrnt"], &["vagrant"]);
        assert_eq!(
            diags.errors().next().unwrap().to_string(),
            "-except: `vagrnt` names no build and no post-processor (did you mean `vagrant`?); builds: a, b; post-processors: vagrant"
        );
    }

    #[test]
    fn an_unknown_builder_type_is_a_warning_too() {
        let (_, _, diags) = choose(&[("q", "qemu"), ("x", "virtualbox-isoo")], &[], &[], &[]);
        let warning = diags.warnings().next().unwrap().to_string();
        assert!(
            warning.ends_with("`virtualbox-isoo` is not a builder type Packer knows (did you mean `virtualbox-iso`?)"),
            "{warning}"
        );
    }
}

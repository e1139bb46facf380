//! `kiln man --out DIR` (hidden): the manual pages, generated from the command-line
//! definition — `kiln.1` and one page per subcommand (`kiln-build.1`, `kiln-templates-list.1`,
//! …). The Debian package ships them; users read them with `man kiln`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};

use super::Cli;

/// Arguments of `kiln man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The directory the pages are written to (created when missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

/// What `kiln.1` says beyond the options: the environment, the files and where to read on.
const EXTRA: &str = r#".SH ENVIRONMENT
.TP
\fBKILN_LOG\fR
Log filter for standard error, e.g. \fBdebug\fR or \fBinfo\fR (default \fBwarn\fR).
.TP
\fBEXOSCALE_API_KEY\fR, \fBEXOSCALE_API_SECRET\fR
Exoscale credentials, used when the recipe has none and no \fB\-\-profile\fR is given (CI).
.TP
\fBEXOSCALE_API_ENDPOINT\fR, \fBEXOSCALE_SOS_ENDPOINT\fR
Other API and object-store endpoints; \fB{zone}\fR is replaced by the zone.
.TP
\fBKILN_RECIPES_DIR\fR
Where the bundled recipes are (default \fI/usr/share/kiln/recipes\fR when installed).
.TP
\fBCI\fR
When \fBtrue\fR, plain progress lines and no interactive breakpoints.
.SH FILES
.TP
\fI$XDG_CONFIG_HOME/kiln/config.toml\fR (\fI~/.config/kiln/config.toml\fR)
Profile names, zones and public keys; never a secret (those are in the OS keyring).
.TP
\fI$XDG_STATE_HOME/kiln/builds/<id>/\fR (\fI~/.local/state/kiln/builds/<id>/\fR)
Each build's \fIbuild.log\fR and \fIserial.log\fR (the VM's serial console).
.TP
\fI$XDG_DATA_HOME/kiln/history.sqlite\fR (\fI~/.local/share/kiln/history.sqlite\fR)
The build history (\fBkiln history\fR, the window's History): recipe, times, steps,
outcome, artifacts, template ids, variables; sensitive values are never stored.
.TP
\fI$XDG_CACHE_HOME/kiln/\fR (\fI~/.cache/kiln/\fR)
Downloaded base images, by checksum.
.TP
\fI/usr/share/kiln/recipes/\fR
The bundled recipes; \fIdebian\-12.json\fR is the default.
.SH EXIT STATUS
0 success, 1 failure (an invalid recipe, a failed build or check), 2 a usage error or a
refused request.
.SH SEE ALSO
\fBqemu\-system\-x86_64\fR(1), \fBqemu\-img\fR(1), \fBcloud\-localds\fR(1)
"#;

/// Writes `kiln.1` and one page per visible subcommand (recursively) into `dir`; returns
/// the files written, `kiln.1` first.
pub fn write_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut written = Vec::new();
    write_page(&command, dir, true, &mut written)?;
    Ok(written)
}

fn write_page(
    command: &clap::Command,
    dir: &Path,
    top: bool,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    // No date: the pages of a given version are the same whenever they are built.
    let man = clap_mangen::Man::new(command.clone()).manual("kiln manual");
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    if top {
        page.extend_from_slice(EXTRA.as_bytes());
    }
    std::fs::write(&path, page)?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(sub, dir, false, written)?;
    }
    Ok(())
}

/// Runs `kiln man`: writes the pages and lists them; exit 0.
pub fn run(args: &ManArgs, out: &mut dyn Write, _err: &mut dyn Write) -> std::io::Result<i32> {
    for path in write_pages(&args.out)? {
        writeln!(out, "{}", path.display())?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_subcommand_and_the_main_page_first() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_pages(dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names[0], "kiln.1");
        for expected in [
            "kiln-build.1",
            "kiln-validate.1",
            "kiln-doctor.1",
            "kiln-templates.1",
            "kiln-templates-list.1",
            "kiln-credentials-set.1",
            "kiln-keys-generate.1",
            "kiln-completions.1",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        assert!(
            !names.iter().any(|n| n.starts_with("kiln-man")),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
    }

    #[test]
    fn the_main_page_has_its_title_subcommands_and_files() {
        let dir = tempfile::tempdir().unwrap();
        write_pages(dir.path()).unwrap();
        let page = std::fs::read_to_string(dir.path().join("kiln.1")).unwrap();
        assert!(page.contains(".TH kiln 1"), "{page}");
        for name in [
            "build",
            "validate",
            "inspect",
            "doctor",
            "seed",
            "templates",
            "credentials",
            "keys",
            "completions",
        ] {
            assert!(
                page.contains(&format!("kiln\\-{name}(1)")),
                "kiln.1 lacks {name}"
            );
        }
        assert!(page.contains(".SH FILES") && page.contains("serial.log"));
        let build = std::fs::read_to_string(dir.path().join("kiln-build.1")).unwrap();
        assert!(build.contains(".TH kiln-build 1"), "{build}");
        assert!(!build.contains(".SH FILES"));
    }
}

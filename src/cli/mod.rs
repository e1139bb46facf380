//! The command line: `kiln validate`, `kiln inspect`, … Each subcommand lives in its own file.

pub mod args;
pub mod build;
pub mod cache;
pub mod completions;
pub mod credentials;
pub mod doctor;
pub mod failure;
pub mod history;
pub mod inspect;
pub mod keys;
pub mod man;
pub mod progress;
pub mod publish;
pub mod seed;
pub mod templates;
pub mod validate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Bake virtual-machine images from Packer recipes and publish them to Exoscale.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None)]
pub struct Cli {
    /// What to do; without a subcommand kiln opens its window.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the recipe's image headless (Ctrl-C cancels cleanly).
    Build(build::BuildArgs),
    /// Publish a qcow2 image you already have as an Exoscale template (upload, register,
    /// copy to zones, clean up), as a recipe's exoscale-import would.
    Publish(publish::PublishArgs),
    /// Check a recipe and report every problem with its place (exit 0 valid, 1 invalid).
    Validate(validate::ValidateArgs),
    /// Show a recipe's variables, builder, provisioners and post-processor chains.
    Inspect(inspect::InspectArgs),
    /// Check this machine: qemu, qemu-img, KVM, free space — with the command that fixes
    /// each problem.
    Doctor(doctor::DoctorArgs),
    /// Write a cloud-init NoCloud seed image (ISO 9660 or vfat), like cloud-localds.
    Seed(seed::SeedArgs),
    /// List, show, delete, rename and copy the templates published on Exoscale.
    Templates(templates::TemplatesArgs),
    /// Exoscale credentials profiles in the OS keyring: list, set, remove, check.
    Credentials(credentials::CredentialsArgs),
    /// SSH keys: list them, import or generate one into the OS keyring, show, remove.
    Keys(keys::KeysArgs),
    /// List the builds recorded in the history (the window's History place), newest first.
    History(history::HistoryArgs),
    /// The step cache of `kiln build --cache`: list its entries, prune it, clear it.
    Cache(cache::CacheArgs),
    /// Print the shell completion script for bash, zsh or fish.
    Completions(completions::CompletionsArgs),
    /// Write the manual pages (kiln.1 and one per subcommand) into a directory.
    #[command(hide = true)]
    Man(man::ManArgs),
}

/// Options shared by every subcommand that reads a recipe.
#[derive(Debug, Clone, Args)]
pub struct RecipeArgs {
    /// The recipe (a Packer legacy-JSON template).
    #[arg(value_name = "RECIPE")]
    pub recipe: PathBuf,
    /// Set a variable: `-var name=value` (Packer's single dash works too). Repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = args::parse_var)]
    pub vars: Vec<(String, String)>,
    /// Read variables from a JSON file. Repeatable; later files win, `-var` beats them all.
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
    /// Which builds: `-only`/`-except`, as Packer takes them.
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// The SSH key and Exoscale credentials of the build.
    #[command(flatten)]
    pub choices: ChoiceArgs,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl RecipeArgs {
    /// The load options these arguments describe.
    pub fn load_options(&self) -> crate::recipe::template::LoadOptions {
        crate::recipe::template::LoadOptions {
            vars: self.vars.clone(),
            var_files: self.var_files.clone(),
            selection: self.selection.selection(),
            ..Default::default()
        }
    }
}

/// The SSH key and the Exoscale credentials a build uses, chosen on the command line (what
/// the window's build form chooses).
#[derive(Debug, Clone, Default, Args)]
pub struct ChoiceArgs {
    /// The SSH key: a keyring key's name, a private key file, `agent` (the ssh-agent's keys),
    /// `agent:SHA256:…` (one agent key) or `temporary` (a new key for this build); default:
    /// what the recipe says.
    #[arg(long = "ssh-key", value_name = "NAME|FILE|agent[:SHA256:…]|temporary")]
    pub ssh_key: Option<String>,
    /// The credentials profile `exoscale-import` uses (before EXOSCALE_API_KEY/SECRET);
    /// default: what the recipe says.
    #[arg(long = "profile", value_name = "NAME")]
    pub profile: Option<String>,
}

impl ChoiceArgs {
    /// The choices these flags make; an unknown key or profile is refused, naming the ones
    /// there are (the config file is read, the keyring is not opened).
    pub fn choices(&self) -> Result<crate::build::choices::BuildChoices, String> {
        use crate::build::choices::{BuildChoices, CredentialsChoice, KeyChoice};
        let mut choices = BuildChoices::default();
        if self.ssh_key.is_none() && self.profile.is_none() {
            return Ok(choices);
        }
        let config = crate::secrets::config::Config::load(&crate::secrets::config::default_path())
            .map_err(|e| e.to_string())?;
        if let Some(key) = &self.ssh_key {
            choices.ssh_key = KeyChoice::parse(key, &config)?;
        }
        if let Some(profile) = &self.profile {
            choices.credentials = CredentialsChoice::parse_profile(profile, &config)?;
        }
        Ok(choices)
    }
}

/// `-only` and `-except` (Packer's single dash works too).
#[derive(Debug, Clone, Default, Args)]
pub struct SelectionArgs {
    /// Only the builds with these names (comma-separated, exact names as in Packer 1.6).
    #[arg(long = "only", value_name = "NAMES", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Every build but these, and no post-processor with these names (its `name`, else its
    /// type); an excepted post-processor ends its chain.
    #[arg(long = "except", value_name = "NAMES", value_delimiter = ',')]
    pub except: Vec<String>,
}

impl SelectionArgs {
    /// The selection these flags describe (empty names dropped).
    pub fn selection(&self) -> crate::recipe::select::Selection {
        let clean = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect()
        };
        crate::recipe::select::Selection {
            only: clean(&self.only),
            except: clean(&self.except),
        }
    }
}

//! `kiln cache`: the step cache's entries (`list`), least-recently-used eviction down to the
//! size cap or a given size (`prune`), and removing every entry (`clear`).

use std::io::Write;

use clap::{Args, Subcommand};

use crate::build::stepcache::store::{Store, default_cap, short};
use crate::recipe::units::{format_bytes, parse_disk_size};

/// Arguments of `kiln cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: CacheAction,
}

/// The `kiln cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// List the entries: key, recipe, the step the VM was saved after, size, last use.
    List {
        /// Print machine-readable JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove least recently used entries until the cache fits its cap (default: 20 GiB or
    /// a tenth of the free space, whichever is smaller; `KILN_STEP_CACHE_MAX` sets it).
    Prune {
        /// Prune down to this size instead (`5G`, `500M`; a bare number is MiB).
        #[arg(long, value_name = "SIZE")]
        max: Option<String>,
    },
    /// Remove every entry.
    Clear,
}

fn store() -> Result<Store, String> {
    crate::image::fetch::default_cache_dir()
        .map(|dir| Store::in_cache(&dir))
        .map_err(|e| e.to_string())
}

/// Runs `kiln cache`; returns the exit code.
pub fn run(args: &CacheArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    let store = match store() {
        Ok(store) => store,
        Err(e) => {
            writeln!(err, "kiln cache: {e}")?;
            return Ok(1);
        }
    };
    match &args.action {
        CacheAction::List { json } => {
            let entries = store.list();
            if *json {
                let rows: Vec<_> = entries
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "key": e.meta.key,
                            "parent": e.meta.parent,
                            "recipe": e.meta.recipe,
                            "build": e.meta.build,
                            "step": e.meta.step,
                            "created": e.meta.created,
                            "last_used": chrono::DateTime::<chrono::Utc>::from(e.last_used).to_rfc3339(),
                            "size": e.size,
                        })
                    })
                    .collect();
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                )?;
                return Ok(0);
            }
            if entries.is_empty() {
                writeln!(
                    out,
                    "the step cache in {} is empty (`kiln build --cache` fills it)",
                    store.root().display()
                )?;
                return Ok(0);
            }
            writeln!(
                out,
                "{:<12}  {:<24}  {:<28}  {:>10}  LAST USED",
                "KEY", "RECIPE", "SAVED AFTER", "SIZE"
            )?;
            for e in &entries {
                let recipe = std::path::Path::new(&e.meta.recipe)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| e.meta.recipe.clone());
                let used =
                    chrono::DateTime::<chrono::Local>::from(e.last_used).format("%Y-%m-%d %H:%M");
                writeln!(
                    out,
                    "{:<12}  {:<24}  {:<28}  {:>10}  {used}",
                    short(&e.meta.key),
                    recipe,
                    e.meta.step,
                    format_bytes(e.size)
                )?;
            }
            writeln!(
                out,
                "{} entries, {} in {} (cap {})",
                entries.len(),
                format_bytes(store.size()),
                store.root().display(),
                format_bytes(default_cap(store.root()))
            )?;
            Ok(0)
        }
        CacheAction::Prune { max } => {
            let cap = match max.as_deref().map(parse_disk_size) {
                None => default_cap(store.root()),
                Some(Ok(cap)) => cap,
                Some(Err(e)) => {
                    writeln!(err, "kiln cache prune --max: {e}")?;
                    return Ok(2);
                }
            };
            let removed = store.evict_to(cap, &[]);
            for e in &removed {
                writeln!(
                    out,
                    "removed {} ({} of {}, {})",
                    short(&e.meta.key),
                    e.meta.step,
                    e.meta.recipe,
                    format_bytes(e.size)
                )?;
            }
            writeln!(
                out,
                "{} entries removed; the step cache takes {} (cap {})",
                removed.len(),
                format_bytes(store.size()),
                format_bytes(cap)
            )?;
            Ok(0)
        }
        CacheAction::Clear => {
            let (count, bytes) = store.clear();
            writeln!(
                out,
                "removed {count} entries ({}) from {}",
                format_bytes(bytes),
                store.root().display()
            )?;
            Ok(0)
        }
    }
}

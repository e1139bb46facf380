//! The recipes that ship with kiln (`recipes/` in the source tree, `/usr/share/kiln/recipes`
//! when installed).

use std::path::PathBuf;

/// The file name of the default recipe: Debian 12 cloud image → Exoscale.
pub const DEFAULT_RECIPE: &str = "debian-12.json";

/// Where the bundled recipes are: `$KILN_RECIPES_DIR`, then `../share/kiln/recipes` next
/// to the executable, then the source tree kiln was built from.
pub fn recipes_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_RECIPES_DIR") {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(prefix) = exe.parent().and_then(|bin| bin.parent())
    {
        let installed = prefix.join("share/kiln/recipes");
        if installed.is_dir() {
            return installed;
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recipes")
}

/// The default recipe's path.
pub fn default_recipe() -> PathBuf {
    recipes_dir().join(DEFAULT_RECIPE)
}

//! Builds: turning a recipe's build into running steps that emit events. Front ends only
//! read events and send commands (start, cancel); they hold no build logic.

pub mod artifact;
pub mod breakpoint;
pub mod choices;
pub mod describe;
pub use crate::base::event;
pub mod local_shell;
pub mod log;
pub mod plan;
pub mod planned;
pub mod postprocess;
pub mod publish;
pub use crate::base::redact;
pub mod runner;
pub mod state;
pub mod stepcache;
pub mod steps;

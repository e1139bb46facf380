//! qemu: the command line, the accelerator probe, process supervision, QMP and the serial
//! console.

pub mod accel;
pub mod bootcmd;
pub mod cmdline;
pub mod keyboard;
pub mod ports;
pub mod qmp;
pub mod serial;
pub mod vm;

//! qemu: the command line, the accelerator choice and the KVM probe (with its canary firmware), process supervision, QMP and the serial
//! console.

pub mod accel;
pub mod bootcmd;
pub mod canary;
pub mod cmdline;
pub mod keyboard;
pub mod kvm_probe;
pub mod ports;
pub mod qmp;
pub mod serial;
pub mod snapshot;
pub mod vm;

//! Ports on the loopback interface for what qemu forwards or serves (SSH, VNC).

use std::net::TcpListener;

/// A port in `min..=max` that is free on 127.0.0.1, if any. The search starts at a random
/// place in the range (as Packer's does), so builds that start at the same moment rarely
/// pick the same port.
///
/// Only a hint: another process can take it before qemu binds it, which qemu then reports
/// ([`is_port_clash`]) and the Boot step retries with another.
pub fn free_local_port(min: u16, max: u16) -> Option<u16> {
    if min > max {
        return None;
    }
    let span = u32::from(max - min) + 1;
    let start = fastrand::u32(0..span);
    (0..span)
        .map(|i| min + ((start + i) % span) as u16)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

/// Whether qemu's output says it could not bind a port kiln chose (SSH forwarding, VNC):
/// another process took it between the check and qemu's start.
pub fn is_port_clash(output: &str) -> bool {
    output.contains("Could not set up host forwarding rule")
        || (output.contains("Failed to start VNC server") && output.contains("in use"))
        || output.contains("Address already in use")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_a_taken_port_and_gives_up_on_a_full_range() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        assert_eq!(free_local_port(port, port), None);
        if let Some(next) = port.checked_add(1) {
            let found = free_local_port(port, next);
            assert!(found.is_none() || found == Some(next), "{found:?}");
        }
        assert_eq!(free_local_port(10, 9), None);
    }

    #[test]
    fn the_search_starts_anywhere_in_the_range() {
        let picks: std::collections::BTreeSet<u16> = (0..64)
            .filter_map(|_| free_local_port(42000, 42999))
            .collect();
        assert!(picks.len() > 8, "{picks:?}");
        assert!(picks.iter().all(|p| (42000..=42999).contains(p)));
    }

    #[test]
    fn qemus_bind_failures_are_recognised() {
        assert!(is_port_clash(
            "qemu-system-x86_64: -netdev user,id=user.0,hostfwd=tcp:127.0.0.1:2222-:22: Could not set up host forwarding rule 'tcp:127.0.0.1:2222-:22'"
        ));
        assert!(!is_port_clash(
            "qemu-system-x86_64: -no-such-switch: invalid option"
        ));
    }
}

//! Ports on the loopback interface for what qemu forwards or serves (SSH, VNC).

use std::net::TcpListener;

/// The first port in `min..=max` that is free on 127.0.0.1, if any.
///
/// Only a hint: another process can take it before qemu binds it, which qemu then reports.
pub fn free_local_port(min: u16, max: u16) -> Option<u16> {
    (min..=max).find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
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
    }
}

//! Free local ports for the servers a test starts.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Mutex;

/// Ports already handed out in this process: the kernel may return a port
/// again once our probe socket is closed, and two fixtures must not share one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Another process can still take it before the caller binds it; the server
/// fixtures retry with a new port when that happens.
pub fn free_port() -> u16 {
    pick(|| {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
    })
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    pick(|| {
        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
    })
}

fn pick(probe: impl Fn() -> std::io::Result<u16>) -> u16 {
    let mut last = 0;
    for _ in 0..64 {
        // Binding port 0 on loopback only fails if the machine is out of
        // ephemeral ports; then no test can run, so panicking is the report.
        #[allow(clippy::expect_used)]
        let port = probe().expect("no free port on 127.0.0.1");
        let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if seen.insert(port) {
            return port;
        }
        last = port;
    }
    last
}

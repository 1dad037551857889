//! RADIUS clients (NAS, VPN, RD Gateway, NPS): who may talk to us, and with
//! which shared secret.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

/// A shared secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret(Arc<[u8]>);

impl SharedSecret {
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self(Arc::from(secret.as_ref()))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// A registered RADIUS client: its id (the agent id in auth-gateway) and secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RadiusClient {
    pub id: String,
    pub secret: SharedSecret,
}

/// Finds the client a datagram comes from. Sync on purpose: it runs for every
/// packet, so implementations answer from memory (a snapshot refreshed from the
/// database), never by a query per packet.
pub trait ClientRegistry: Send + Sync + 'static {
    fn lookup(&self, source: IpAddr) -> Option<RadiusClient>;
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an IP address")]
    Address(String),
    #[error("prefix length {0:?} is not valid for this address family")]
    Prefix(String),
}

/// An address block, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// `::ffff:a.b.c.d` is the IPv4 client a dual-stack socket reports.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(CidrError::Prefix(prefix.to_string()));
        }
        Ok(Self { addr, prefix })
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| CidrError::Address(addr.to_owned()))?;
        let addr = canonical(addr);
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| CidrError::Prefix(p.to_owned()))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Self::new(addr, prefix)
    }
}

/// A fixed list of clients; the most specific block wins.
#[derive(Debug, Clone, Default)]
pub struct StaticClients {
    entries: Vec<(Cidr, RadiusClient)>,
}

impl StaticClients {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, cidr: Cidr, client: RadiusClient) -> Self {
        self.entries.push((cidr, client));
        self
    }
}

impl ClientRegistry for StaticClients {
    fn lookup(&self, source: IpAddr) -> Option<RadiusClient> {
        self.entries
            .iter()
            .filter(|(cidr, _)| cidr.contains(source))
            .max_by_key(|(cidr, _)| cidr.prefix())
            .map(|(_, c)| c.clone())
    }
}

/// A registry swapped whole when clients change (auth-gateway reloads from its
/// database and replaces the list); readers never wait on a query.
impl ClientRegistry for std::sync::RwLock<StaticClients> {
    fn lookup(&self, source: IpAddr) -> Option<RadiusClient> {
        self.read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .lookup(source)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn client(id: &str) -> RadiusClient {
        RadiusClient {
            id: id.into(),
            secret: SharedSecret::new("s"),
        }
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let host: Cidr = "2001:db8::1".parse().unwrap();
        assert_eq!(host.prefix(), 128);
        assert!(host.contains("2001:db8::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
    }

    #[test]
    fn most_specific_client_wins_and_unknown_is_none() {
        let reg = StaticClients::new()
            .with("10.0.0.0/8".parse().unwrap(), client("wide"))
            .with("10.0.0.7".parse().unwrap(), client("narrow"));
        assert_eq!(reg.lookup("10.0.0.7".parse().unwrap()).unwrap().id, "narrow");
        assert_eq!(reg.lookup("10.9.9.9".parse().unwrap()).unwrap().id, "wide");
        assert!(reg.lookup("192.0.2.1".parse().unwrap()).is_none());
    }

    #[test]
    fn reloadable_registry() {
        let reg = std::sync::RwLock::new(StaticClients::new());
        assert!(reg.lookup("10.0.0.1".parse().unwrap()).is_none());
        *reg.write().unwrap() = StaticClients::new().with("10.0.0.0/8".parse().unwrap(), client("new"));
        assert_eq!(reg.lookup("10.0.0.1".parse().unwrap()).unwrap().id, "new");
    }

    #[test]
    fn secret_is_not_printed() {
        assert_eq!(
            format!("{:?}", SharedSecret::new("hunter2")),
            "SharedSecret(<redacted>)"
        );
    }
}

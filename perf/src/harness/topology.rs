//! The networks the systems run on: namespaces A and B (and relay R between them) joined
//! by veth pairs, with addresses that exist only inside those namespaces.

use std::net::Ipv4Addr;

use super::netns::Netns;
use super::shell::Shell;

/// How the nodes are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Shape {
    /// A ↔ B over one veth pair.
    Pair,
    /// A ↔ R ↔ B over two veth pairs; R does not route IP between them.
    Relay,
}

/// Overlay (tunnel-inside) address of node A; every tunnel uses 10.98.0.0/24.
pub const OVERLAY_A: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
/// Overlay address of node B.
pub const OVERLAY_B: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 2);
/// Overlay prefix length.
pub const OVERLAY_PREFIX: u8 = 24;

/// One end of a veth pair: its namespace's interface and address (/24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Interface name inside the namespace.
    pub iface: &'static str,
    /// The interface's address.
    pub addr: Ipv4Addr,
}

/// A freshly made network of namespaces; dropping it removes them and all inside.
#[derive(Debug)]
pub struct Topology {
    /// How the nodes are joined.
    pub shape: Shape,
    /// The sending node (iperf3 and ping clients run here).
    pub a: Netns,
    /// The receiving node (iperf3 server).
    pub b: Netns,
    /// The relay, for [`Shape::Relay`].
    pub r: Option<Netns>,
}

impl Topology {
    /// A's veth end (towards B, or towards R for a relay).
    pub fn a_link(&self) -> Link {
        match self.shape {
            Shape::Pair => link("eth0", [10, 99, 0, 1]),
            Shape::Relay => link("eth0", [10, 99, 1, 1]),
        }
    }

    /// B's veth end (towards A, or towards R for a relay).
    pub fn b_link(&self) -> Link {
        match self.shape {
            Shape::Pair => link("eth0", [10, 99, 0, 2]),
            Shape::Relay => link("eth0", [10, 99, 2, 1]),
        }
    }

    /// R's ends towards A and towards B.
    pub fn r_links(&self) -> Option<(Link, Link)> {
        (self.shape == Shape::Relay)
            .then(|| (link("eth0", [10, 99, 1, 2]), link("eth1", [10, 99, 2, 2])))
    }

    /// Creates the namespaces `<tag>-a`, `<tag>-b` (and `<tag>-r`) and their links.
    pub fn create(shape: Shape, tag: &str, sh: &mut Shell) -> anyhow::Result<Self> {
        let a = Netns::create(&format!("{tag}-a"), sh)?;
        let b = Netns::create(&format!("{tag}-b"), sh)?;
        let r = match shape {
            Shape::Pair => None,
            Shape::Relay => Some(Netns::create(&format!("{tag}-r"), sh)?),
        };
        let topo = Self { shape, a, b, r };
        match &topo.r {
            None => veth(sh, (&topo.a, topo.a_link()), (&topo.b, topo.b_link()))?,
            Some(r) => {
                let (ra, rb) = topo.r_links().expect("a relay topology has R's links");
                veth(sh, (&topo.a, topo.a_link()), (r, ra))?;
                veth(sh, (r, rb), (&topo.b, topo.b_link()))?;
            }
        }
        Ok(topo)
    }

    /// Every namespace of this topology.
    pub fn namespaces(&self) -> impl Iterator<Item = (&'static str, &Netns)> {
        [
            ("A", Some(&self.a)),
            ("R", self.r.as_ref()),
            ("B", Some(&self.b)),
        ]
        .into_iter()
        .filter_map(|(n, ns)| ns.map(|ns| (n, ns)))
    }
}

fn link(iface: &'static str, a: [u8; 4]) -> Link {
    Link {
        iface,
        addr: Ipv4Addr::from(a),
    }
}

/// Creates a veth pair with its ends directly inside the two namespaces (so the names
/// never meet in the root namespace), addresses them and brings them up.
fn veth(sh: &mut Shell, (x, lx): (&Netns, Link), (y, ly): (&Netns, Link)) -> anyhow::Result<()> {
    x.ip(
        sh,
        &[
            "link",
            "add",
            lx.iface,
            "type",
            "veth",
            "peer",
            "name",
            ly.iface,
            "netns",
            y.name(),
        ],
    )?;
    for (ns, l) in [(x, lx), (y, ly)] {
        ns.ip(
            sh,
            &["addr", "add", &format!("{}/24", l.addr), "dev", l.iface],
        )?;
        ns.ip(sh, &["link", "set", l.iface, "up"])?;
    }
    Ok(())
}

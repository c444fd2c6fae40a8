//! The bare veth path: no tunnel, the ceiling every tunnel is held against.

use std::path::Path;

use super::{Env, Role, System, Tunnel};
use crate::harness::shell::Shell;
use crate::harness::topology::Topology;

/// Traffic straight over the veth pair.
#[derive(Debug, Clone, Copy)]
pub struct BareVeth;

impl System for BareVeth {
    fn name(&self) -> String {
        "bare veth".into()
    }

    fn role(&self) -> Role {
        Role::Ceiling
    }

    fn check(&self, _env: &Env) -> Result<String, String> {
        Ok("kernel veth".into())
    }

    fn start(&self, topo: &Topology, _: &Env, _: &Path, _: &mut Shell) -> anyhow::Result<Tunnel> {
        Ok(Tunnel {
            target: topo.b_link().addr,
            daemons: Vec::new(),
        })
    }
}

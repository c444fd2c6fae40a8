//! Side-by-side harness: Conflux, the bare veth path and other tunnels measured on the
//! same network-namespace topology in one run.

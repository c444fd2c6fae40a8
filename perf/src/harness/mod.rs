//! Side-by-side harness: Conflux, the bare veth path and the tunnels users would pick
//! instead, measured on the same network-namespace topology in one run.
//!
//! [`run::run`] checks which [`systems`] can run here, then measures each in turn,
//! repetition by repetition ([`measure::repetition`]: fresh namespaces, the tunnel, iperf3
//! and ping traffic, CPU and memory from `/proc`), and returns a [`results::RunResult`].
//! [`report`] writes it into `RESULTS.md` and [`charts`] draws the PNGs. Namespaces are
//! removed on every exit path ([`netns::install_cleanup`]). [`scale`] measures Conflux
//! alone at scale: memory per installed stream and control-plane mesh convergence.

pub mod charts;
pub mod daemon;
pub mod iperf;
pub mod machine;
pub mod measure;
pub mod netns;
pub mod ping;
pub mod procfs;
pub mod report;
pub mod results;
pub mod run;
pub mod scale;
pub mod shell;
pub mod stats;
pub mod systems;
pub mod topology;

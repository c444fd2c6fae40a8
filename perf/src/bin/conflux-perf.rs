//! `conflux-perf`: the side-by-side harness behind `perf/run`.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

//! Topologies: generated (grids with holes, random geometric graphs) or read from an
//! edge-list file, with link latencies, capacities and node regions.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Latency of a link when an edge-list line gives none, milliseconds.
pub const DEFAULT_LATENCY_MS: f64 = 10.0;
/// Capacity of a link when an edge-list line gives none, packets per second each way.
pub const DEFAULT_CAPACITY_PPS: f64 = 1000.0;
/// The regions generated topologies are split into, west to east.
pub const REGIONS: [&str; 3] = ["west", "central", "east"];

/// One bidirectional link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSpec {
    /// One end.
    pub a: usize,
    /// The other end.
    pub b: usize,
    /// One-way propagation latency, microseconds.
    pub latency_us: u64,
    /// Packets per second in each direction.
    pub capacity_pps: f64,
}

/// A network to simulate.
#[derive(Debug, Clone)]
pub struct Topology {
    /// What it is, for reports.
    pub name: String,
    /// Node names (an index is a node).
    pub names: Vec<String>,
    /// Region of each node.
    pub regions: Vec<String>,
    /// The links.
    pub links: Vec<LinkSpec>,
}

/// Why an edge-list file was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EdgeListError {
    /// A line that does not parse.
    #[error("line {line}: {what}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// The file names no link.
    #[error("the edge list has no link")]
    Empty,
    /// The graph falls apart.
    #[error("the graph is not connected ({0} components)")]
    Disconnected(usize),
    /// The file cannot be read.
    #[error("cannot read the edge list: {0}")]
    Io(String),
}

/// Why a topology description was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    /// Not `grid:WxH[:holes]`, `rgg:N[:radius]` or a file path.
    #[error("topology `{0}`: want grid:WxH[:holes], rgg:N[:radius] or an edge-list file")]
    Syntax(String),
    /// Out of range.
    #[error("topology `{0}`: {1}")]
    Range(String, &'static str),
    /// The file was refused.
    #[error(transparent)]
    EdgeList(#[from] EdgeListError),
}

impl Topology {
    /// Builds a topology from `grid:WxH[:holes]`, `rgg:N[:radius]` or an edge-list path.
    pub fn from_spec(spec: &str, seed: u64) -> Result<Self, SpecError> {
        let syntax = || SpecError::Syntax(spec.to_string());
        let range = |what| SpecError::Range(spec.to_string(), what);
        let parts: Vec<&str> = spec.split(':').collect();
        match parts[0] {
            "grid" => {
                let (w, h) = parts
                    .get(1)
                    .and_then(|s| s.split_once('x'))
                    .ok_or_else(syntax)?;
                let w: usize = w.parse().map_err(|_| syntax())?;
                let h: usize = h.parse().map_err(|_| syntax())?;
                let holes: f64 = parts
                    .get(2)
                    .map_or(Ok(0.1), |s| s.parse())
                    .map_err(|_| syntax())?;
                if !(2..=100).contains(&w) || !(2..=100).contains(&h) {
                    return Err(range("sides must be 2 to 100"));
                }
                if !(0.0..0.5).contains(&holes) {
                    return Err(range("holes must be a fraction under 0.5"));
                }
                Ok(Self::grid(w, h, holes, seed))
            }
            "rgg" => {
                let n: usize = parts
                    .get(1)
                    .ok_or_else(syntax)?
                    .parse()
                    .map_err(|_| syntax())?;
                if !(2..=1000).contains(&n) {
                    return Err(range("nodes must be 2 to 1000"));
                }
                let radius = match parts.get(2) {
                    Some(s) => Some(s.parse::<f64>().map_err(|_| syntax())?),
                    None => None,
                };
                if radius.is_some_and(|r| !(r > 0.0 && r <= 1.5)) {
                    return Err(range("radius must be in (0, 1.5]"));
                }
                Ok(Self::random_geometric(n, radius, seed))
            }
            _ if parts.len() == 1 => Ok(Self::from_file(Path::new(spec))?),
            _ => Err(syntax()),
        }
    }

    /// A `w`×`h` grid of 5 ms links with a fraction `holes` of its nodes removed at random,
    /// keeping it connected. Regions are thirds of the columns.
    pub fn grid(w: usize, h: usize, holes: f64, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let idx = |x: usize, y: usize| y * w + x;
        let mut present = vec![true; w * h];
        let edges_of = |present: &[bool]| {
            let mut e = Vec::new();
            for y in 0..h {
                for x in 0..w {
                    if !present[idx(x, y)] {
                        continue;
                    }
                    if x + 1 < w && present[idx(x + 1, y)] {
                        e.push((idx(x, y), idx(x + 1, y)));
                    }
                    if y + 1 < h && present[idx(x, y + 1)] {
                        e.push((idx(x, y), idx(x, y + 1)));
                    }
                }
            }
            e
        };
        let target = (holes * (w * h) as f64).round() as usize;
        let mut removed = 0;
        let mut tries = 0;
        while removed < target && tries < 20 * w * h {
            tries += 1;
            let v = rng.random_range(0..w * h);
            if !present[v] {
                continue;
            }
            present[v] = false;
            let alive: Vec<usize> = (0..w * h).filter(|&i| present[i]).collect();
            if components(&alive, &edges_of(&present)) == 1 {
                removed += 1;
            } else {
                present[v] = true;
            }
        }
        let keep: Vec<usize> = (0..w * h).filter(|&i| present[i]).collect();
        let new_index: BTreeMap<usize, usize> =
            keep.iter().enumerate().map(|(n, &o)| (o, n)).collect();
        let links = edges_of(&present)
            .into_iter()
            .map(|(a, b)| LinkSpec {
                a: new_index[&a],
                b: new_index[&b],
                latency_us: 5_000,
                capacity_pps: DEFAULT_CAPACITY_PPS,
            })
            .collect();
        Self {
            name: format!("grid {w}x{h}, {} holes", w * h - keep.len()),
            names: keep
                .iter()
                .map(|o| format!("{}.{}", o % w, o / w))
                .collect(),
            regions: keep
                .iter()
                .map(|o| region_of((o % w) as f64 / w as f64))
                .collect(),
            links,
        }
    }

    /// `n` nodes placed uniformly in the unit square, linked when closer than `radius`
    /// (default: mean degree about 6), then joined into one component by the shortest
    /// missing links. Latency is 1 ms plus 40 ms per unit of distance. Regions are thirds of
    /// the square from west to east.
    pub fn random_geometric(n: usize, radius: Option<f64>, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pts: Vec<(f64, f64)> = (0..n).map(|_| (rng.random(), rng.random())).collect();
        let r = radius.unwrap_or_else(|| (6.0 / (std::f64::consts::PI * n as f64)).sqrt());
        let dist = |a: usize, b: usize| (pts[a].0 - pts[b].0).hypot(pts[a].1 - pts[b].1);
        let mut edges: Vec<(usize, usize)> = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                if dist(a, b) <= r {
                    edges.push((a, b));
                }
            }
        }
        // Join components: repeatedly link the closest pair of nodes in different ones.
        loop {
            let comp = component_ids(n, &edges);
            if comp.iter().all(|&c| c == comp[0]) {
                break;
            }
            let mut best = (f64::INFINITY, 0, 0);
            for a in 0..n {
                for b in a + 1..n {
                    if comp[a] != comp[b] && dist(a, b) < best.0 {
                        best = (dist(a, b), a, b);
                    }
                }
            }
            edges.push((best.1, best.2));
        }
        let links = edges
            .into_iter()
            .map(|(a, b)| LinkSpec {
                a,
                b,
                latency_us: 1_000 + (dist(a, b) * 40_000.0) as u64,
                capacity_pps: DEFAULT_CAPACITY_PPS,
            })
            .collect();
        Self {
            name: format!("random geometric graph, {n} nodes"),
            names: (0..n).map(|i| i.to_string()).collect(),
            regions: pts.iter().map(|p| region_of(p.0)).collect(),
            links,
        }
    }

    /// Reads an edge list: one `u v [latency_ms] [capacity_pps]` line per link, `#` starts
    /// a comment. Node names are any tokens; regions are taken in turn from [`REGIONS`].
    pub fn from_file(path: &Path) -> Result<Self, EdgeListError> {
        let text = std::fs::read_to_string(path).map_err(|e| EdgeListError::Io(e.to_string()))?;
        let mut t = Self::parse_edge_list(&text)?;
        t.name = path.display().to_string();
        Ok(t)
    }

    /// Parses edge-list text (see [`Topology::from_file`]).
    pub fn parse_edge_list(text: &str) -> Result<Self, EdgeListError> {
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut names = Vec::new();
        let mut links = Vec::new();
        let mut seen = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |what: String| EdgeListError::Line { line, what };
            let body = raw.split('#').next().unwrap_or("").trim();
            if body.is_empty() {
                continue;
            }
            let f: Vec<&str> = body.split_whitespace().collect();
            if f.len() < 2 || f.len() > 4 {
                return Err(err(format!(
                    "want `u v [latency_ms] [capacity_pps]`, found {} fields",
                    f.len()
                )));
            }
            if f[0] == f[1] {
                return Err(err(format!("link from `{}` to itself", f[0])));
            }
            let number = |k: usize, what: &str, default: f64| -> Result<f64, EdgeListError> {
                match f.get(k) {
                    None => Ok(default),
                    Some(s) => match s.parse::<f64>() {
                        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                        _ => Err(err(format!("{what} `{s}` is not a positive number"))),
                    },
                }
            };
            let latency_ms = number(2, "latency", DEFAULT_LATENCY_MS)?;
            let capacity_pps = number(3, "capacity", DEFAULT_CAPACITY_PPS)?;
            let mut node = |name: &str| {
                *index.entry(name.to_string()).or_insert_with(|| {
                    names.push(name.to_string());
                    names.len() - 1
                })
            };
            let (a, b) = (node(f[0]), node(f[1]));
            if let Some(first) = seen.insert((a.min(b), a.max(b)), line) {
                return Err(err(format!(
                    "link {} {} already given on line {first}",
                    f[0], f[1]
                )));
            }
            links.push(LinkSpec {
                a,
                b,
                latency_us: (latency_ms * 1000.0).round().max(1.0) as u64,
                capacity_pps,
            });
        }
        if links.is_empty() {
            return Err(EdgeListError::Empty);
        }
        let pairs: Vec<(usize, usize)> = links.iter().map(|l| (l.a, l.b)).collect();
        let all: Vec<usize> = (0..names.len()).collect();
        let parts = components(&all, &pairs);
        if parts != 1 {
            return Err(EdgeListError::Disconnected(parts));
        }
        Ok(Self {
            name: "edge list".into(),
            regions: (0..names.len())
                .map(|i| REGIONS[i % REGIONS.len()].to_string())
                .collect(),
            names,
            links,
        })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Per node, `(neighbour, link index)`.
    pub fn adjacency(&self) -> Vec<Vec<(usize, usize)>> {
        let mut adj = vec![Vec::new(); self.len()];
        for (i, l) in self.links.iter().enumerate() {
            adj[l.a].push((l.b, i));
            adj[l.b].push((l.a, i));
        }
        adj
    }

    /// Shortest paths by static latency from `src` over links marked up, with relays
    /// restricted to nodes for which `may_relay` holds: per destination, the hops after
    /// `src` (empty for `src` itself and for the unreachable).
    pub fn shortest_paths(
        &self,
        adj: &[Vec<(usize, usize)>],
        src: usize,
        up: &[bool],
        may_relay: &dyn Fn(usize) -> bool,
    ) -> Vec<Vec<usize>> {
        let n = self.len();
        let mut dist = vec![u64::MAX; n];
        let mut prev = vec![usize::MAX; n];
        let mut heap = BinaryHeap::new();
        dist[src] = 0;
        heap.push(Reverse((0u64, src)));
        while let Some(Reverse((d, u))) = heap.pop() {
            if d > dist[u] || (u != src && !may_relay(u)) {
                continue;
            }
            for &(v, li) in &adj[u] {
                if !up[li] {
                    continue;
                }
                let nd = d + self.links[li].latency_us;
                if nd < dist[v] || (nd == dist[v] && u < prev[v]) {
                    dist[v] = nd;
                    prev[v] = u;
                    heap.push(Reverse((nd, v)));
                }
            }
        }
        (0..n)
            .map(|d| {
                if d == src || dist[d] == u64::MAX {
                    return Vec::new();
                }
                let mut path = vec![d];
                let mut at = d;
                while prev[at] != src {
                    at = prev[at];
                    path.push(at);
                }
                path.reverse();
                path
            })
            .collect()
    }

    /// The link that most shortest paths cross and whose loss keeps the graph connected:
    /// where a cut hurts most.
    pub fn busiest_link(&self) -> Option<usize> {
        let adj = self.adjacency();
        let up = vec![true; self.links.len()];
        let mut count = vec![0usize; self.links.len()];
        for s in 0..self.len() {
            for path in self.shortest_paths(&adj, s, &up, &|_| true) {
                let mut at = s;
                for &h in &path {
                    if let Some(&(_, li)) = adj[at].iter().find(|x| x.0 == h) {
                        count[li] += 1;
                    }
                    at = h;
                }
            }
        }
        let all: Vec<usize> = (0..self.len()).collect();
        let mut order: Vec<usize> = (0..self.links.len()).collect();
        order.sort_by_key(|&i| (Reverse(count[i]), i));
        order.into_iter().find(|&cut| {
            let rest: Vec<(usize, usize)> = (self.links.iter().enumerate())
                .filter(|(i, _)| *i != cut)
                .map(|(_, l)| (l.a, l.b))
                .collect();
            components(&all, &rest) == 1
        })
    }
}

fn region_of(x: f64) -> String {
    let i = ((x * REGIONS.len() as f64) as usize).min(REGIONS.len() - 1);
    REGIONS[i].to_string()
}

/// Component id per node of `0..n`.
fn component_ids(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for &(a, b) in edges {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        parent[ra] = rb;
    }
    (0..n).map(|x| find(&mut parent, x)).collect()
}

/// Number of connected components among `nodes`.
fn components(nodes: &[usize], edges: &[(usize, usize)]) -> usize {
    let n = nodes.iter().max().map_or(0, |m| m + 1);
    let ids = component_ids(n, edges);
    let mut roots: Vec<usize> = nodes.iter().map(|&v| ids[v]).collect();
    roots.sort_unstable();
    roots.dedup();
    roots.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_list_reads_names_defaults_and_comments() {
        let t =
            Topology::parse_edge_list("# a triangle\nA B 5 2000\nB C   # defaults\n\nC A 2.5\n")
                .unwrap();
        assert_eq!(t.names, ["A", "B", "C"]);
        assert_eq!(
            t.links[0],
            LinkSpec {
                a: 0,
                b: 1,
                latency_us: 5000,
                capacity_pps: 2000.0
            }
        );
        assert_eq!(t.links[1].latency_us, 10_000);
        assert_eq!(t.links[1].capacity_pps, DEFAULT_CAPACITY_PPS);
        assert_eq!(t.links[2].latency_us, 2500);
    }

    #[test]
    fn bad_edge_lists_are_refused_with_the_line_number() {
        let line = |text: &str| match Topology::parse_edge_list(text) {
            Err(EdgeListError::Line { line, what }) => (line, what),
            other => panic!("{text:?} gave {other:?}"),
        };
        assert_eq!(line("a b\nc\n").0, 2);
        assert_eq!(line("a b\n# x\na a\n").0, 3);
        assert!(line("a b x\n").1.contains("latency `x`"));
        assert!(line("a b 1 -3\n").1.contains("capacity `-3`"));
        assert!(line("a b 1 1 1\n").1.contains("5 fields"));
        assert!(line("a b 0\n").1.contains("positive"));
        assert!(line("a b\nb a\n").1.contains("already given on line 1"));
        assert_eq!(
            Topology::parse_edge_list("# nothing\n").unwrap_err(),
            EdgeListError::Empty
        );
        assert_eq!(
            Topology::parse_edge_list("a b\nc d\n").unwrap_err(),
            EdgeListError::Disconnected(2)
        );
    }

    #[test]
    fn generated_topologies_are_connected_and_deterministic() {
        for spec in ["grid:8x8:0.2", "rgg:60", "rgg:150"] {
            let t = Topology::from_spec(spec, 7).unwrap();
            let all: Vec<usize> = (0..t.len()).collect();
            let e: Vec<(usize, usize)> = t.links.iter().map(|l| (l.a, l.b)).collect();
            assert_eq!(components(&all, &e), 1, "{spec}");
            let again = Topology::from_spec(spec, 7).unwrap();
            assert_eq!(t.links, again.links, "{spec}");
        }
        assert_eq!(
            Topology::from_spec("grid:8x8:0.2", 1).unwrap().len(),
            64 - 13
        );
        assert!(Topology::from_spec("grid:8", 1).is_err());
        assert!(Topology::from_spec("rgg:1", 1).is_err());
    }

    #[test]
    fn shortest_paths_avoid_nodes_that_may_not_relay() {
        let t = Topology::parse_edge_list("a b 1\nb d 1\na c 5\nc d 5\n").unwrap();
        let adj = t.adjacency();
        let up = vec![true; t.links.len()];
        assert_eq!(t.shortest_paths(&adj, 0, &up, &|_| true)[2], [1, 2]);
        assert_eq!(t.shortest_paths(&adj, 0, &up, &|n| n != 1)[2], [3, 2]);
        assert_eq!(t.shortest_paths(&adj, 0, &up, &|n| n != 1)[1], [1]);
    }
}

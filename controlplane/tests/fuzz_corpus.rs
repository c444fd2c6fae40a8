//! Replays the checked-in corpus of the router's wire decoder fuzz target
//! (`controlplane/fuzz`, target `route_exchange`) through the same entry, as an ordinary
//! test. Every file must run without a panic; files named `valid-*` are well-formed
//! estimates and must also be accepted.

use std::fs;
use std::path::{Path, PathBuf};

use conflux_controlplane::route::exchange::{self, Entry, Estimates, Want};
use conflux_shared::id::NodeId;

#[path = "../fuzz/entry.rs"]
mod entry;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/route_exchange")
}

fn id(n: u8) -> NodeId {
    NodeId([n; 16])
}

/// Well-formed messages of each shape the router publishes.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let full = Estimates {
        sender: id(1),
        sequence: 1_764_000_000_000,
        full: true,
        entries: vec![
            Entry {
                destination: id(2),
                cost_us: Some(800),
                confidence: 1000,
                path: vec![id(2)],
            },
            Entry {
                destination: id(4),
                cost_us: Some(12_500),
                confidence: 640,
                path: vec![id(2), id(3), id(4)],
            },
            Entry {
                destination: id(5),
                cost_us: None,
                confidence: 0,
                path: vec![],
            },
        ],
        wants: vec![Want {
            destination: id(6),
            radius: 3,
        }],
    };
    let update = Estimates {
        sender: id(7),
        sequence: 42,
        full: false,
        entries: vec![Entry {
            destination: id(8),
            cost_us: Some(0),
            confidence: 1,
            path: (9..20).map(id).chain([id(8)]).collect(),
        }],
        wants: vec![],
    };
    let empty = Estimates {
        sender: id(9),
        sequence: 0,
        full: true,
        entries: vec![],
        wants: vec![],
    };
    vec![
        ("valid-full", exchange::encode(&full)),
        ("valid-update", exchange::encode(&update)),
        ("valid-empty", exchange::encode(&empty)),
    ]
}

#[test]
fn route_exchange_corpus_replays() {
    let mut files: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .unwrap_or_else(|e| panic!("corpus {}: {e}", corpus_dir().display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        (1..=100).contains(&files.len()),
        "{} corpus files: keep between 1 and 100 (cargo fuzz cmin)",
        files.len()
    );
    let mut valid = 0;
    for path in &files {
        let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let accepted = entry::route_exchange(&data);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("valid-") {
            assert!(accepted, "{} is valid but was refused", path.display());
            valid += 1;
        }
    }
    assert!(valid > 0, "the corpus has no valid-* message");
}

#[test]
fn seeds_are_accepted_and_checked_in() {
    for (name, bytes) in seeds() {
        assert!(entry::route_exchange(&bytes), "seed {name} refused");
        let stored = fs::read(corpus_dir().join(name))
            .unwrap_or_else(|e| panic!("seed {name} is not in the corpus: {e}"));
        assert_eq!(
            stored, bytes,
            "seed {name} differs from the checked-in file"
        );
    }
}

/// Writes the seeds into the corpus (after a format change:
/// `cargo test -p conflux-controlplane --test fuzz_corpus -- --ignored write_seeds`).
#[test]
#[ignore = "writes into the source tree"]
fn write_seeds() {
    fs::create_dir_all(corpus_dir()).expect("corpus directory");
    for (name, bytes) in seeds() {
        fs::write(corpus_dir().join(name), bytes).expect("write seed");
    }
}

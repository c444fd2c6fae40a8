//! Replays every checked-in fuzz corpus file through its fuzz entry as an ordinary test.
//!
//! A corpus lives at `shared/fuzz/corpus/<target>/`, one directory per entry of
//! [`conflux_shared::fuzz::TARGETS`]. Every file must run without a panic; files named
//! `valid-*` are well-formed messages and must also be accepted.

use std::fs;
use std::path::{Path, PathBuf};

use conflux_shared::fuzz::{TARGETS, seeds};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "fuzz corpus directory {} for target {target} is missing ({e}); see shared/fuzz/README.md",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable corpus directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "fuzz corpus directory {} for target {target} is empty; see shared/fuzz/README.md",
        dir.display()
    );
    files
}

#[test]
fn every_corpus_file_replays_through_its_entry() {
    for &(target, entry) in TARGETS {
        let files = corpus_files(target);
        let mut valid = 0;
        for path in &files {
            let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let accepted = entry(&data);
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with("valid-") {
                assert!(
                    accepted,
                    "{target}: {} is a valid message but was rejected",
                    path.display()
                );
                valid += 1;
            }
        }
        assert!(valid > 0, "{target}: the corpus has no valid-* message");
        assert!(
            files.len() <= 100,
            "{target}: {} corpus files; minimize it (cargo fuzz cmin)",
            files.len()
        );
    }
}

#[test]
fn every_seed_is_accepted_and_checked_in() {
    let names: Vec<&str> = TARGETS.iter().map(|t| t.0).collect();
    for (target, name, bytes) in seeds() {
        let (_, entry) = TARGETS
            .iter()
            .find(|t| t.0 == target)
            .unwrap_or_else(|| panic!("seed for unknown target {target}; targets: {names:?}"));
        assert!(entry(&bytes), "{target}: seed {name} rejected");
        let path = corpus_dir(target).join(&name);
        let stored = fs::read(&path)
            .unwrap_or_else(|e| panic!("seed {} not in the corpus: {e}", path.display()));
        assert_eq!(
            stored,
            bytes,
            "{} differs from the seed the code makes",
            path.display()
        );
    }
}

/// Writes the valid seeds into the corpus directories (run once after a format change:
/// `cargo test -p conflux-shared --test fuzz_corpus -- --ignored write_seeds`).
#[test]
#[ignore = "writes into the source tree"]
fn write_seeds() {
    for (target, name, bytes) in seeds() {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).expect("create corpus directory");
        fs::write(dir.join(name), bytes).expect("write seed");
    }
}

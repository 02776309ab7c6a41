//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) and every saved crash (`fuzz/artifacts/`) through
//! the same checks the `cargo fuzz` targets run (each beside its parser: `domain::segment::fuzz_compile`, ...), so CI holds the corpora without fuzzing.

use std::path::Path;

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 4] = [
    ("segment_filter", domain::segment::fuzz_compile),
    ("config", hattrick::config::fuzz_from_toml),
    ("badge_condition", domain::conditions::fuzz_parse),
    ("fcm_response", push::outcome::fuzz_classify),
];

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_keeps_its_targets_properties() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    for (target, check) in TARGETS {
        let corpus = inputs(&fuzz.join("corpus").join(target));
        assert!(!corpus.is_empty(), "fuzz/corpus/{target} is empty");
        let crashes = inputs(&fuzz.join("artifacts").join(target));
        for file in corpus.iter().chain(&crashes) {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: {} breaks a property", file.display());
        }
        eprintln!("{target}: {} corpus inputs, {} saved crashes replayed", corpus.len(), crashes.len());
    }
}

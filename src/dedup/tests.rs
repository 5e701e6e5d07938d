use super::corpus::{self, CorpusSpec};
use super::*;
use rand::{Rng, SeedableRng};

fn items(texts: &[String]) -> Vec<Item> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| Item {
            id: format!("r{i}"),
            text: t.clone(),
            score: None,
        })
        .collect()
}

#[test]
fn exact_normalizes_nfkc_case_and_space() {
    let its = items(&[
        "Hello  World".into(),
        "ｈｅｌｌｏ world".into(), // full-width letters
        "hello\tworld ".into(),
        "hello, world".into(), // punctuation differs: not exact
        "   ".into(),
    ]);
    let mut out = vec![None; its.len()];
    exact(&its, &mut out);
    assert_eq!(out[0], None);
    assert_eq!(out[1], Some(Reason::Exact { of: "r0".into() }));
    assert_eq!(out[2], Some(Reason::Exact { of: "r0".into() }));
    assert_eq!(out[3], None);
    assert_eq!(out[4], Some(Reason::Empty));
    assert_eq!(out[1].as_ref().unwrap().to_string(), "dup_of:r0 (exact)");
}

#[test]
fn best_scored_duplicate_survives() {
    let mut its = items(&[
        "same text here".into(),
        "Same text here".into(),
        "same  text here".into(),
    ]);
    its[1].score = Some(4.0);
    its[2].score = Some(2.0);
    let mut out = vec![None; its.len()];
    exact(&its, &mut out);
    assert_eq!(out[1], None);
    assert_eq!(out[0], Some(Reason::Exact { of: "r1".into() }));
    assert_eq!(out[2], Some(Reason::Exact { of: "r1".into() }));
}

/// datasketch's MinHashLSH picks these for 128 permutations (same integrals).
#[test]
fn lsh_bands_match_datasketch() {
    assert_eq!(minhash::optimal_bands(0.8, 128), (9, 13));
    assert_eq!(minhash::optimal_bands(0.5, 128), (25, 5));
}

#[test]
fn minhash_estimate_tracks_exact_jaccard() {
    let c = corpus::build(CorpusSpec {
        bases: 50,
        ..Default::default()
    });
    let h = minhash::MinHasher::new(256, Shingle::Char(5), 3);
    let mut worst = 0f32;
    for i in 0..40 {
        for j in i + 1..40 {
            let (a, b) = (&c.texts[i], &c.texts[j]);
            let ex = minhash::jaccard(
                &text::shingle_hashes(a, h.shingle),
                &text::shingle_hashes(b, h.shingle),
            );
            let est = minhash::estimate(&h.signature(a).unwrap(), &h.signature(b).unwrap());
            worst = worst.max((ex - est).abs());
        }
    }
    // 256 permutations: standard error ≤ 0.032; 5 sigma.
    assert!(worst < 0.16, "estimate off by {worst}");
}

/// The quality bar: MinHash at 0.8 on edit-type near-duplicates (1, 3 and 5% of words
/// edited; hard-negative template siblings mixed in), F1 ≥ 0.95. Also: every pair whose
/// *true* shingle Jaccard is ≥ 0.8 is found (recall against the threshold's own definition).
#[test]
fn minhash_f1_on_seeded_corpus() {
    for rate in [0.01, 0.03, 0.05] {
        let c = corpus::build(CorpusSpec {
            bases: 800,
            edit_rate: rate,
            ..Default::default()
        });
        let its = items(&c.texts);
        let opts = MinHashOptions::default();
        let mut out = vec![None; its.len()];
        minhash(&its, &opts, &mut out);
        let cl = clusters(&its, &out);
        let s = corpus::score(&c.group, &cl);
        eprintln!("edit rate {rate}: {s:?}");
        assert!(s.precision >= 0.99, "edit rate {rate}: {s:?}");
        assert!(s.f1 >= 0.95, "edit rate {rate}: {s:?}");
        let sets: Vec<Vec<u64>> = c
            .texts
            .iter()
            .map(|t| text::shingle_hashes(t, opts.shingle))
            .collect();
        let (mut above, mut found) = (0, 0);
        for i in 0..its.len() {
            for j in i + 1..its.len() {
                if c.group[i] == c.group[j]
                    && minhash::jaccard(&sets[i], &sets[j]) >= opts.threshold
                {
                    above += 1;
                    found += (cl[i] == cl[j]) as usize;
                }
            }
        }
        let r = found as f64 / above as f64;
        eprintln!("  pairs with true Jaccard >= 0.8: {above}, found {found} ({r:.3})");
        assert!(r >= 0.97, "edit rate {rate}: recall vs true Jaccard {r}");
        // Confirming candidates with the exact shingle Jaccard meets the same bar.
        let mut ex = vec![None; its.len()];
        minhash(
            &its,
            &MinHashOptions {
                exact_jaccard: true,
                ..opts
            },
            &mut ex,
        );
        let se = corpus::score(&c.group, &clusters(&its, &ex));
        assert!(
            se.f1 >= 0.95 && se.precision >= 0.99,
            "exact Jaccard, edit rate {rate}: {se:?}"
        );
        // The test can fail: without dedup, recall is zero.
        let none = corpus::score(&c.group, &(0..its.len()).collect::<Vec<_>>());
        assert_eq!(none.recall, 0.0);
    }
}

fn random_unit(rng: &mut rand_chacha::ChaCha8Rng, n: usize, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n * dim).map(|_| rng.random::<f32>() - 0.5).collect();
    for r in v.chunks_exact_mut(dim) {
        crate::embed::normalize(r);
    }
    v
}

/// Tiled gemm + fused threshold finds exactly the pairs of the f64 textbook loop.
#[test]
fn semantic_tiles_match_reference() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let (n, dim) = (700, 48);
    let mut v = random_unit(&mut rng, n, dim);
    // Plant near-copies across tile boundaries.
    for (a, b) in [(3usize, 600usize), (255, 256), (10, 11), (400, 699)] {
        let src: Vec<f32> = v[a * dim..(a + 1) * dim].iter().map(|x| x + 0.01).collect();
        v[b * dim..(b + 1) * dim].copy_from_slice(&src);
        crate::embed::normalize(&mut v[b * dim..(b + 1) * dim]);
    }
    for t in [0.5f32, 0.9] {
        let got = semantic::self_pairs(&v, dim, t);
        let want = semantic::self_pairs_reference(&v, dim, t);
        // Pairs within 1e-5 of the threshold may land either side; there are none here.
        let key = |p: &[semantic::Pair]| p.iter().map(|p| (p.i, p.j)).collect::<Vec<_>>();
        assert_eq!(key(&got), key(&want), "threshold {t}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g.sim - w.sim).abs() < 1e-5);
        }
        if t == 0.9 {
            assert_eq!(got.len(), 4);
        }
    }
    // Cross pairs: a vs b halves.
    let cross = semantic::cross_pairs(&v[..300 * dim], &v[300 * dim..], dim, 0.9);
    assert_eq!(
        cross.iter().map(|p| (p.i, p.j + 300)).collect::<Vec<_>>(),
        vec![(3, 600)]
    );
}

/// The k-means path finds planted duplicates (they land in the same cluster).
#[test]
fn clustered_semantic_finds_planted_pairs() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let (n, dim) = (3000, 32);
    let mut v = random_unit(&mut rng, n, dim);
    let planted: Vec<(usize, usize)> = (0..50).map(|k| (k * 7, 1500 + k * 11)).collect();
    for &(a, b) in &planted {
        let src: Vec<f32> = v[a * dim..(a + 1) * dim]
            .iter()
            .map(|x| x * 1.001)
            .collect();
        v[b * dim..(b + 1) * dim].copy_from_slice(&src);
        crate::embed::normalize(&mut v[b * dim..(b + 1) * dim]);
    }
    let got = semantic::pairs_clustered(&v, dim, 0.95, 300, 1);
    let keys: std::collections::HashSet<(u32, u32)> = got.iter().map(|p| (p.i, p.j)).collect();
    for &(a, b) in &planted {
        assert!(
            keys.contains(&(a as u32, b as u32)),
            "missed planted pair {a},{b}"
        );
    }
    assert_eq!(got, semantic::self_pairs(&v, dim, 0.95));
}

#[test]
fn decontamination_flags_copied_eval_questions() {
    use decontam::{EvalIndex, EvalItem};
    let eval = vec![
        EvalItem {
            file: "gsm8k.jsonl".into(),
            id: "q7".into(),
            text: "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.".into(),
        },
        EvalItem {
            file: "short.txt".into(),
            id: "line 2".into(),
            text: "what is the boiling point of water".into(),
        },
        EvalItem {
            file: "tiny.txt".into(),
            id: "line 1".into(),
            text: "yes".into(),
        },
    ];
    let idx = EvalIndex::build(eval, 13);
    assert_eq!(idx.skipped, 1);
    let its = items(&[
        "Here is a problem: NATALIA sold clips to 48 of her friends in April, and then she sold half as many!".into(),
        "Natalia sold clips to friends in April.".into(),
        "Quick quiz — What is the boiling point of water? It is 100 C.".into(),
        "yes yes yes".into(),
    ]);
    let mut out = vec![None; its.len()];
    decontaminate(&its, &idx, &mut out);
    assert_eq!(
        out[0].as_ref().map(|r| r.to_string()).as_deref(),
        Some("contaminated:gsm8k.jsonl:q7")
    );
    assert_eq!(out[1], None);
    assert_eq!(
        out[2].as_ref().map(|r| r.to_string()).as_deref(),
        Some("contaminated:short.txt:line 2")
    );
    assert_eq!(out[3], None);
}

#[test]
fn semantic_rejects_nan_vectors_with_a_reason() {
    let its = items(&["a".into(), "b".into(), "c".into()]);
    let v = vec![vec![1.0, 0.0], vec![f32::NAN, 0.0], vec![1.0, 0.0]];
    let mut out = vec![None; 3];
    semantic(&its, &v, &SemanticOptions::default(), &mut out).unwrap();
    assert_eq!(out[0], None);
    assert_eq!(out[1], Some(Reason::BadEmbedding));
    assert!(matches!(&out[2], Some(Reason::Semantic { of, .. }) if of == "r0"));
}

#[test]
fn emoji_only_answers_are_not_empty() {
    let its = items(&["🎉🎉".into(), "🎉🎉".into(), "👍".into(), " \n ".into()]);
    let mut out = vec![None; its.len()];
    exact(&its, &mut out);
    assert_eq!(out[0], None, "an emoji answer is an answer");
    assert_eq!(out[1], Some(Reason::Exact { of: "r0".into() }));
    assert_eq!(out[2], None);
    assert_eq!(out[3], Some(Reason::Empty));
    // MinHash alone (exact off): no words to shingle, so no pairs, but not "empty".
    let mut out = vec![None; its.len()];
    minhash(&its, &MinHashOptions::default(), &mut out);
    assert_eq!(&out[..3], &[None, None, None]);
    assert_eq!(out[3], Some(Reason::Empty));
}

/// A duplicate deep in a bucket of colliding texts is still compared (it used to be cut
/// off after the bucket's first 16 members).
#[test]
fn lsh_compares_a_whole_bucket() {
    let sigs: Vec<Option<Vec<u32>>> = (0..41).map(|_| Some(vec![7u32; 8])).collect();
    let mut found = Vec::new();
    let mut checks = 0;
    minhash::candidate_pairs(&sigs, 2, 4, |a, b| {
        checks += 1;
        let dup = (a, b) == (30, 40);
        if dup {
            found.push((a, b));
        }
        dup
    });
    assert!(found.contains(&(30, 40)), "checked {checks} pairs");
}

/// Clusters chain (a ~ b ~ c while a ≁ c): the removed text names its cluster's survivor
/// and the similarity to that survivor, which can be below the threshold (README).
#[test]
fn chained_cluster_reports_similarity_to_its_survivor() {
    let its = items(&["a".into(), "b".into(), "c".into()]);
    let unit = |deg: f32| vec![deg.to_radians().cos(), deg.to_radians().sin()];
    let v = vec![unit(0.0), unit(22.0), unit(44.0)];
    let mut out = vec![None; 3];
    semantic(&its, &v, &SemanticOptions::default(), &mut out).unwrap();
    assert_eq!(out[0], None);
    let Some(Reason::Semantic { of, sim }) = &out[2] else {
        panic!("{:?}", out[2])
    };
    assert_eq!(of, "r0");
    assert!((sim - 44f32.to_radians().cos()).abs() < 1e-5, "{sim}");
    assert!(*sim < 0.92, "below the threshold, through b");
}

/// Records as a run holds them: ids, a text each, a few near copies and a bad line.
fn run_records(
    dir: &std::path::Path,
    name: &str,
    ids: std::ops::Range<usize>,
) -> std::path::PathBuf {
    let c = corpus::build(CorpusSpec {
        bases: 100,
        ..Default::default()
    });
    let mut s = String::new();
    for i in ids {
        let t = &c.texts[i % c.texts.len()];
        s.push_str(&serde_json::json!({"id": format!("r{i:03}"), "text": t}).to_string());
        s.push('\n');
    }
    let p = dir.join(name);
    std::fs::write(&p, s).unwrap();
    p
}

fn options() -> stage::DedupOptions {
    let mut o = stage::DedupOptions::from_spec(
        &Default::default(),
        &Default::default(),
        std::path::Path::new("."),
    );
    o.field = "text".into();
    o.semantic = None;
    o
}

/// The index is used only for the bytes and settings it was made from, with its .bin
/// whole; anything else reads as stale (made again), never as data.
#[test]
fn index_is_fresh_only_for_its_source_settings_and_bytes() {
    use index::{Part, Signatures};
    let d = tempfile::tempdir().unwrap();
    let src = run_records(d.path(), "a.jsonl", 0..60);
    let sha = crate::models::checksum::sha256_stream(&src).unwrap();
    let o = options();
    let st = stage::sig_settings(&o);
    let dir = d.path().join("index");
    let m = index::build_signatures(&src, &dir, &st, false).unwrap();
    assert_eq!((m.rows, m.source_sha256.as_str()), (60, sha.as_str()));
    let s = Signatures::fresh(&dir, &sha, &st).unwrap().expect("fresh");
    assert_eq!(s.rows(), 60);
    assert!(s.sig(0).is_some_and(|x| x.len() == st.num_perm) && s.exact(0).is_some());
    assert!(
        Signatures::fresh(&dir, "0", &st).unwrap().is_none(),
        "other bytes"
    );
    let other = index::SigSettings {
        num_perm: 64,
        ..st.clone()
    };
    assert!(
        Signatures::fresh(&dir, &sha, &other).unwrap().is_none(),
        "other settings"
    );
    // One flipped byte in the .bin, same length: stale.
    let bin = Part::Signatures.bin(&dir);
    let mut b = std::fs::read(&bin).unwrap();
    b[100] ^= 1;
    std::fs::write(&bin, &b).unwrap();
    assert!(
        Signatures::fresh(&dir, &sha, &st).unwrap().is_none(),
        "damaged"
    );
    // Cut short: stale.
    std::fs::write(&bin, &b[..b.len() - 4]).unwrap();
    assert!(
        Signatures::fresh(&dir, &sha, &st).unwrap().is_none(),
        "short"
    );
}

/// Two shards' indexes joined give the same dedup as an index of the joined records made
/// in one go; a stale shard index is left out with a note, and dedup makes its own.
#[test]
fn joined_shard_indexes_dedup_like_one_index() {
    let d = tempfile::tempdir().unwrap();
    let a = run_records(d.path(), "a.jsonl", 0..70);
    let b = run_records(d.path(), "b.jsonl", 70..150);
    let whole = d.path().join("whole.jsonl");
    let joined_bytes = [std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()].concat();
    std::fs::write(&whole, &joined_bytes).unwrap();
    let o = options();
    let st = stage::sig_settings(&o);
    let mut parts = Vec::new();
    for (p, name) in [(&a, "ia"), (&b, "ib")] {
        let m = index::build_signatures(p, &d.path().join(name), &st, false).unwrap();
        parts.push((d.path().join(name), m.source_sha256));
    }
    let sha = crate::models::checksum::sha256_stream(&whole).unwrap();
    let notes = index::join(&parts, &d.path().join("joined"), &sha).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let joined = index::Signatures::fresh(&d.path().join("joined"), &sha, &st)
        .unwrap()
        .expect("joined index is fresh for the joined records");
    assert_eq!(joined.rows(), 150);
    let run = |idx: &str, tag: &str| {
        let (k, r) = (
            d.path().join(format!("k{tag}")),
            d.path().join(format!("r{tag}")),
        );
        let s = stage::run_indexed(&whole, &d.path().join(idx), &k, &r, &o).unwrap();
        (s.kept, std::fs::read(k).unwrap(), std::fs::read(r).unwrap())
    };
    let from_shards = run("joined", "1");
    let fresh = run("fresh", "2");
    assert!(
        from_shards.0 < 150,
        "near copies removed: {}",
        from_shards.0
    );
    assert_eq!(from_shards, fresh);
    // Shard b's records changed after its index was made: no join, a note, same result.
    std::fs::write(
        &b,
        [
            std::fs::read(&b).unwrap(),
            b"{\"id\":\"x\",\"text\":\"y\"}\n".to_vec(),
        ]
        .concat(),
    )
    .unwrap();
    parts[1].1 = crate::models::checksum::sha256_stream(&b).unwrap();
    let notes = index::join(&parts, &d.path().join("joined"), &sha).unwrap();
    assert!(
        notes.len() == 1 && notes[0].contains("other records than it now holds"),
        "{notes:?}"
    );
    assert!(!index::Part::Signatures
        .meta(&d.path().join("joined"))
        .exists());
    // An index whose rows belong to other records of the same count is made again.
    let c = run_records(d.path(), "c.jsonl", 500..650);
    let sha_c = crate::models::checksum::sha256_stream(&c).unwrap();
    let m = index::build_signatures(&c, &d.path().join("lying"), &st, false).unwrap();
    let meta_path = index::Part::Signatures.meta(&d.path().join("lying"));
    let lie = std::fs::read_to_string(&meta_path)
        .unwrap()
        .replace(&sha_c, &sha);
    assert_eq!(m.rows, 150);
    std::fs::write(&meta_path, lie).unwrap();
    assert_eq!(run("lying", "3"), fresh);
}

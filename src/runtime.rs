//! Models loaded once per process (per thread: the stages run on one). `flywheel run`
//! needs the embedder in dedup, audit and report, and the teacher in generate and again
//! for the canary test; the judge is often the teacher's own weights. Loading each of them once saves seconds on the CPU and, on a
//! GPU, keeps one copy of the weights in device memory instead of three.

use crate::embed::Embedder;
use crate::engine::{device, Llm, Precision};
use crate::error::Result;
use crate::models::chat::ChatTemplate;
use crate::models::ResolvedModel;
use candle_core::Device;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// (weights path, sha256, device, precision, chat template).
type LlmKey = (String, String, String, &'static str, String);
/// (embedder id or folder, device).
type EmbedderKey = (String, String);
type Cache<K, V> = RefCell<HashMap<K, Rc<V>>>;

// Per thread: the stages run one after another on the calling thread, and a thread-local
// cache asks nothing of the models' types (no Send/Sync bound on any backend).
thread_local! {
    static LLMS: Cache<LlmKey, Llm> = RefCell::new(HashMap::new());
    static EMBEDDERS: Cache<EmbedderKey, Embedder> = RefCell::new(HashMap::new());
}
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
) -> Result<Rc<Llm>> {
    let f = m.main_file();
    let key = (
        f.path.display().to_string(),
        f.sha256.clone(),
        device::name(dev),
        precision.name(),
        format!("{template:?}"),
    );
    if let Some(l) = LLMS.with(|c| c.borrow().get(&key).cloned()) {
        tracing::info!("model {} reused (already loaded)", m.id);
        return Ok(l);
    }
    tracing::info!("loading model {} on {}", m.id, key.2);
    let l = Rc::new(Llm::load(m, dev, precision, template)?);
    LOADS.fetch_add(1, Ordering::SeqCst);
    LLMS.with(|c| c.borrow_mut().insert(key, l.clone()));
    Ok(l)
}

/// The sentence embedder `id_or_dir` on `dev`, loaded on first use.
pub fn embedder(
    id_or_dir: &str,
    policy: crate::models::FetchPolicy,
    dev: &Device,
) -> Result<Rc<Embedder>> {
    let key = (id_or_dir.to_string(), device::name(dev));
    if let Some(e) = EMBEDDERS.with(|c| c.borrow().get(&key).cloned()) {
        tracing::info!("embedder {id_or_dir} reused (already loaded)");
        return Ok(e);
    }
    tracing::info!("loading embedder {id_or_dir} on {}", key.1);
    let e = Rc::new(Embedder::load(id_or_dir, policy, dev)?);
    LOADS.fetch_add(1, Ordering::SeqCst);
    EMBEDDERS.with(|c| c.borrow_mut().insert(key, e.clone()));
    Ok(e)
}

//! PLACEHOLDER until the report2 branch lands (its version replaces this file).
use crate::spec::EvolveOp;
use rand::SeedableRng;

pub fn prompt(op: EvolveOp, instruction: &str) -> String {
    format!(
        "Rewrite this instruction to be harder ({}):\n{instruction}",
        op.name()
    )
}

pub fn clean(output: &str) -> String {
    output.trim().to_string()
}

pub fn check(_op: EvolveOp, parent: &str, child: &str) -> Result<(), &'static str> {
    if child.is_empty() {
        return Err("empty");
    }
    if child == parent {
        return Err("copies_parent");
    }
    Ok(())
}

pub fn copies_example(text: &str, examples: &[String], _threshold: f64) -> Option<usize> {
    examples.iter().position(|e| e.trim() == text.trim())
}

pub fn examples_block(examples: &[String], k: usize, seed: u64) -> String {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rand::seq::index::sample(&mut rng, examples.len(), k.min(examples.len()))
        .into_iter()
        .enumerate()
        .map(|(n, i)| format!("{}. {}", n + 1, examples[i]))
        .collect::<Vec<_>>()
        .join("\n")
}

//! `cargo bench --bench generate`: `flywheel bench generate` with its default settings
//! (its flags belong to the binary: see `flywheel bench generate --help`).

fn main() -> flywheel::Result<()> {
    let settings = flywheel::bench::GenerateBench {
        model: "smollm2-135m-instruct".into(),
        runtime: flywheel::engine::Runtime::parse("auto", "auto")?,
        batch_sizes: vec![1, 4, 16, 32],
        tokens: 48,
        prompt_tokens: 128,
        runs: 3,
        llama_cpp: None,
        multi_step: Some(flywheel::bench::MultiStep {
            records: 16,
            batch: 8,
            tokens: 64,
        }),
    };
    println!("{}", flywheel::bench::generate(&settings)?);
    Ok(())
}

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
        end_to_end: Some(flywheel::bench::EndToEnd {
            records: 16,
            tokens: 128,
            batch_sizes: vec![1, 16],
        }),
        multi_step: Some(flywheel::bench::MultiStep {
            records: 16,
            batch: 8,
            tokens: 64,
        }),
        // The shipped ticket schema, with and without the constraint.
        constraint: Some(flywheel::bench::ConstraintCase {
            constraint: flywheel::constrain::Constraint::JsonSchema(
                serde_json::from_str(include_str!("../configs/schemas/ticket.json"))
                    .map_err(|e| flywheel::Error::Internal(format!("ticket.json: {e}")))?,
            ),
            file: "configs/schemas/ticket.json".into(),
            records: 16,
            tokens: 128,
        }),
    };
    println!("{}", flywheel::bench::generate(&settings)?);
    Ok(())
}

//! `cargo bench --bench generate`: the same measurement as `flywheel bench generate`.
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    inner: flywheel::bench::GenerateBenchArgs,
    /// Ignored (cargo bench passes it).
    #[arg(long)]
    bench: bool,
}

fn main() -> flywheel::Result<()> {
    let args = Args::parse();
    flywheel::bench::generate(&args.inner, false)
}

//! Progress bars for long stages (indicatif), hidden off a terminal or with --quiet.

/// A progress bar for a stage: records done/planned, a rate message, elapsed and ETA.
/// Hidden when `show` is false (not a terminal, or --quiet).
pub fn bar(len: usize, show: bool, stage: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{stage} [{{bar:30}}] {{pos}}/{{len}} records · {{msg}} · {{elapsed}} elapsed, ETA {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb
}

/// A counter for work of unknown length (lines of a file read as it streams): records
/// done, rate, elapsed. Hidden when `show` is false.
pub fn spinner(show: bool, stage: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{stage} {{spinner}} {{pos}} records · {{per_sec}} · {{elapsed}} elapsed"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    pb
}

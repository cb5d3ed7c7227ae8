//! Progress of a followed job: a redrawn bar on a terminal, plain lines otherwise (a CI
//! log gets one line per change, never carriage returns).

use std::io::{IsTerminal, Write};
use std::time::Duration;

/// How progress is shown (on stderr, so stdout stays the answer alone).
pub struct Progress {
    terminal: bool,
    last: Option<(String, u64, u64)>,
    drawn: bool,
}

const WIDTH: u64 = 30;

impl Progress {
    /// The bar when the user watches a terminal (stdout and stderr both are one); plain
    /// lines when either is redirected, so a CI log or a file never gets control codes.
    pub fn detect() -> Progress {
        Progress::new(std::io::stdout().is_terminal() && std::io::stderr().is_terminal())
    }

    /// A bar (`terminal`) or plain lines.
    pub fn new(terminal: bool) -> Progress {
        Progress {
            terminal,
            last: None,
            drawn: false,
        }
    }

    /// Time left at the pace so far: `elapsed` for `done` steps, `total − done` to go. None
    /// before the first step (no pace yet) and once done. An adaptive autotune's `total` is
    /// its `max_trials`, which its budget may cut short: there this is an upper bound.
    pub fn eta(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
        if done == 0 || done >= total {
            return None;
        }
        Some(elapsed.mul_f64((total - done) as f64 / done as f64))
    }

    /// The line for a job of `kind` in `state` with `done` of `total` steps, `elapsed` since
    /// it started, and the time left at that pace once there is one.
    pub fn line(kind: &str, state: &str, done: u64, total: u64, elapsed: Duration, bar: bool) -> String {
        let secs = elapsed.as_secs_f64();
        let eta = Progress::eta(done, total, elapsed).map(|d| d.as_secs_f64().round());
        if !bar {
            return match eta {
                Some(e) => format!("{kind} {state}: {done}/{total} ({secs:.1} s, eta {e:.0} s)"),
                None => format!("{kind} {state}: {done}/{total} ({secs:.1} s)"),
            };
        }
        let filled = (done * WIDTH).checked_div(total).unwrap_or(0).min(WIDTH);
        format!(
            "{kind} {state:<9} [{}{}] {done}/{total}  {secs:.1} s{}",
            "#".repeat(filled as usize),
            "-".repeat((WIDTH - filled) as usize),
            eta.map_or(String::new(), |e| format!("  eta {e:.0} s"))
        )
    }

    /// Shows the job now: redraws the bar, or prints a line when something changed.
    pub fn show(&mut self, kind: &str, state: &str, done: u64, total: u64, elapsed: Duration) {
        let now = (state.to_string(), done, total);
        let mut err = std::io::stderr();
        if self.terminal {
            let _ = write!(
                err,
                "\r\x1b[2K{}",
                Progress::line(kind, state, done, total, elapsed, true)
            );
            let _ = err.flush();
            self.drawn = true;
        } else if self.last.as_ref() != Some(&now) {
            let _ = writeln!(
                err,
                "{}",
                Progress::line(kind, state, done, total, elapsed, false)
            );
        }
        self.last = Some(now);
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.terminal && self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_in_proportion_and_plain_lines_carry_no_control_codes() {
        let half = Progress::line("autotune", "running", 5, 10, Duration::from_secs(2), true);
        assert!(
            half.contains(&format!("[{}{}] 5/10", "#".repeat(15), "-".repeat(15))),
            "{half}"
        );
        let none = Progress::line("autotune", "queued", 0, 0, Duration::ZERO, true);
        assert!(none.contains(&format!("[{}]", "-".repeat(30))), "{none}");
        let over = Progress::line("autotune", "running", 12, 10, Duration::ZERO, true);
        assert!(over.contains(&"#".repeat(30)), "{over}");
        let plain = Progress::line("activate", "running", 0, 1, Duration::from_millis(1500), false);
        assert_eq!(plain, "activate running: 0/1 (1.5 s)");
    }

    /// The time left follows the pace so far, once there is one, and is gone when done.
    #[test]
    fn the_eta_is_the_pace_so_far_times_what_is_left() {
        let ten = Duration::from_secs(10);
        assert_eq!(Progress::eta(2, 8, ten), Some(Duration::from_secs(30)));
        assert_eq!(Progress::eta(0, 8, ten), None);
        assert_eq!(Progress::eta(8, 8, ten), None);
        assert_eq!(
            Progress::line("autotune", "running", 2, 8, ten, false),
            "autotune running: 2/8 (10.0 s, eta 30 s)"
        );
        assert!(Progress::line("autotune", "running", 5, 10, ten, true).ends_with("10.0 s  eta 10 s"));
    }
}

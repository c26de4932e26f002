//! The exit statuses vmm's programs choose themselves, the same in every one of them:
//! `vmm` and its subcommands, `vmm-runc`, `vmm-agent` (in test mode; as PID 1 it never
//! exits), `vmm-probe`, and a runtime child that fails before its exec.
//!
//! A workload's or a guest's own status is passed through as it is; these are for what the
//! program itself decides. Use them instead of literals (`tests/exit_codes.rs` finds literal
//! statuses), so that "2 is bad input" is true everywhere at once.

/// Done: the program did what it was asked.
pub const SUCCESS: u8 = 0;
/// The VM, the runtime, a measurement or the host failed; one line on stderr says what.
pub const FAILED: u8 = 1;
/// The input cannot work (bad usage, a bad option, a rootfs that is not one); one line on
/// stderr names the problem. Retrying the same input gives the same answer.
pub const BAD_INPUT: u8 = 2;

/// 128 + `signal`: the status a shell reports for a process ended by that signal, and the
/// one vmm exits with when a signal ends it in an orderly way (130 for SIGINT).
pub const fn signalled(signal: i32) -> u8 {
    // Signal numbers are 1..=64 on Linux; a larger value must not wrap to a small status.
    if !matches!(signal, 0..=127) {
        return u8::MAX;
    }
    128 + signal as u8
}

/// The status of an error that knows whether the input was at fault: [`BAD_INPUT`] when
/// it was, else [`FAILED`]. Every error type of vmm makes that split (`is_bad_input`).
pub const fn of_error(bad_input: bool) -> u8 {
    if bad_input {
        BAD_INPUT
    } else {
        FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signalled_is_128_plus_the_signal_as_a_shell_reports_it() {
        assert_eq!(signalled(2), 130);
        assert_eq!(signalled(9), 137);
        assert_eq!(signalled(15), 143);
    }

    #[test]
    fn signalled_does_not_wrap_for_a_number_that_is_no_signal() {
        assert_eq!(signalled(200), u8::MAX);
        assert_eq!(signalled(-1), u8::MAX);
    }

    #[test]
    fn of_error_separates_bad_input_from_failure() {
        assert_eq!(of_error(true), BAD_INPUT);
        assert_eq!(of_error(false), FAILED);
    }
}

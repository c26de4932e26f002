//! Raw mode for an interactive console: the guest, not the host's line discipline, sees
//! every key (Ctrl-C included). The previous settings are restored when the guard drops,
//! which every exit path of `vmm` goes through (errors and signals included).

use std::os::fd::RawFd;

const STDIN: RawFd = 0;

pub struct RawModeGuard {
    saved: libc::termios,
}

impl RawModeGuard {
    /// Puts stdin in raw mode if it is a terminal; `None` otherwise (pipes, files).
    pub fn enter() -> Option<Self> {
        // SAFETY: isatty only inspects the fd.
        if unsafe { libc::isatty(STDIN) } != 1 {
            return None;
        }
        // SAFETY: a zeroed termios is a valid value for tcgetattr to overwrite.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid termios to write into; fd 0 is a terminal.
        if unsafe { libc::tcgetattr(STDIN, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // Keep output processing (OPOST) so the host terminal still maps \n; the guest's
        // console driver expects to be talking to one.
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
        raw.c_iflag &= !(libc::IXON | libc::ICRNL);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: `raw` is a valid termios derived from the current one.
        if unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(Self { saved })
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enter` on the same terminal fd.
        unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, &self.saved) };
    }
}

//! What a disallowed system call does: the filter traps it (SIGSYS), and this handler
//! says which thread made which call, then ends the VMM with status 128 + SIGSYS. Only
//! async-signal-safe steps: the message is put together in a buffer on the stack and
//! written with write(2), which every filter allows.

use std::cell::Cell;
use std::sync::Once;

use super::ThreadKind;

/// The exit status after a disallowed system call, as a shell shows a death by SIGSYS.
pub const EXIT_STATUS: i32 = edge::exit_code::signalled(libc::SIGSYS) as i32;

thread_local! {
    /// The kind of the calling thread, once it is confined (read by the handler).
    static KIND: Cell<Option<ThreadKind>> = const { Cell::new(None) };
}

static HANDLER: Once = Once::new();

/// Records the calling thread's kind for the report, and installs the process's SIGSYS
/// handler the first time.
pub fn install(kind: ThreadKind) {
    KIND.with(|k| k.set(Some(kind)));
    HANDLER.call_once(|| {
        // SAFETY: sigaction is plain data; every field used is set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO;
        // SAFETY: a valid action for SIGSYS, whose handler only takes async-signal-safe
        // steps; the old action is not wanted.
        unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) };
    });
}

/// Whether the calling thread runs under its filter.
pub fn is_confined() -> bool {
    KIND.with(Cell::get).is_some()
}

static PANIC_HOOK: Once = Once::new();

/// Once per process: a panic on a confined thread is reported without a backtrace (which
/// would need files the filter does not let it open: the report would be a SIGSYS
/// instead of the panic), after the terminal gets its settings back; other threads' go
/// to the hook that was there.
pub fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !is_confined() {
                return previous(info);
            }
            crate::terminal::restore_for_panic();
            let thread = std::thread::current();
            eprintln!(
                "\nthread '{}' {info}\nnote: no backtrace: the thread runs under its seccomp filter (--no-seccomp gives one)",
                thread.name().unwrap_or("?")
            );
        }));
    });
}

/// The number of the system call that trapped: `si_syscall` of the SIGSYS siginfo, after
/// si_signo, si_errno, si_code (and padding) and si_call_addr on x86_64.
const SI_SYSCALL_OFFSET: usize = 24;

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler; for SIGSYS it
    // holds si_syscall at this offset (include/uapi/asm-generic/siginfo.h).
    let nr =
        unsafe { std::ptr::read_unaligned(info.cast::<u8>().add(SI_SYSCALL_OFFSET).cast::<i32>()) };
    let kind = KIND.with(Cell::get).map_or("?", ThreadKind::name);
    let mut message = Message::new();
    message.push(b"vmm: error: thread ");
    message.push(kind.as_bytes());
    message.push(b" made system call ");
    message.push_number(nr);
    message.push(b", which its seccomp filter does not allow; the VMM stops (--no-seccomp turns the filters off)\n");
    // SAFETY: write and _exit are async-signal-safe; the buffer outlives the write.
    unsafe {
        libc::write(2, message.bytes().as_ptr().cast(), message.bytes().len());
        libc::_exit(EXIT_STATUS);
    }
}

/// A message built without allocating.
struct Message {
    buf: [u8; 256],
    len: usize,
}

impl Message {
    fn new() -> Self {
        Self {
            buf: [0; 256],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = self.buf.len() - self.len;
        let n = bytes.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_number(&mut self, n: i32) {
        let mut digits = [0u8; 12];
        let mut at = digits.len();
        let mut value = i64::from(n).unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        if n < 0 {
            at -= 1;
            digits[at] = b'-';
        }
        self.push(&digits[at..]);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
pub(super) fn format_for_test(n: i32) -> String {
    let mut m = Message::new();
    m.push_number(n);
    String::from_utf8_lossy(m.bytes()).into_owned()
}

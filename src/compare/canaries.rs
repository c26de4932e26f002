//! The host's canaries: things that exist only on the host, for the duration of one
//! comparison, that the probe looks for from inside each level. Each is removed when
//! [`Planted`] is dropped, so a failed comparison leaves nothing behind.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use probe::report::Canaries;

/// Planting a canary failed.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error("cannot give the comparison its own UTS namespace (vmm compare needs root)")]
    Unshare(#[source] std::io::Error),
    #[error("cannot plant the {what} canary")]
    Plant {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn plant_error(what: &'static str) -> impl FnOnce(std::io::Error) -> CanaryError {
    move |source| CanaryError::Plant { what, source }
}

/// The canaries, alive until dropped.
pub struct Planted {
    pub canaries: Canaries,
    process: Child,
    shm_id: i32,
    msg_id: i32,
    tmp_file: PathBuf,
    _abstract_socket: UnixListener,
    _tcp: TcpListener,
}

/// Gives this process (and every child it starts later) a UTS namespace of its own, so
/// that the hostname canary does not rename the host. Call before starting any thread:
/// threads made after it share the new namespace.
pub fn enter_own_uts_namespace() -> Result<(), CanaryError> {
    // SAFETY: unshare(2) with CLONE_NEWUTS only changes this thread's namespace set.
    if unsafe { libc::unshare(libc::CLONE_NEWUTS) } != 0 {
        return Err(CanaryError::Unshare(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Plants every canary. `probe` is the probe binary (its `hold` mode is the canary
/// process). The UTS namespace must already be the comparison's own.
pub fn plant(probe: &Path) -> Result<Planted, CanaryError> {
    let tag = unique_tag();
    let hostname = format!("vmm-canary-{tag}");
    set_hostname(&hostname).map_err(plant_error("hostname"))?;

    let process_name = format!("vmmcanary{}", &tag[..6]);
    let mut process = start_hold_process(probe, &process_name).map_err(plant_error("process"))?;
    let mut planted = PartialPlant {
        process: Some(&mut process),
        shm_id: None,
        msg_id: None,
        tmp_file: None,
    };

    let key_base = i32::from_str_radix(&tag[..7], 16).unwrap_or(0x5eed) | 0x1000_0000;
    let shm_key = key_base;
    let shm_id = shm_create(shm_key).map_err(plant_error("shared memory"))?;
    planted.shm_id = Some(shm_id);
    let msg_key = key_base ^ 0x0100_0000;
    let msg_id = msg_create(msg_key).map_err(plant_error("message queue"))?;
    planted.msg_id = Some(msg_id);

    let tmp_file = PathBuf::from(format!("/tmp/vmm-canary-{tag}"));
    fs::write(&tmp_file, b"a file only the host has\n").map_err(plant_error("/tmp file"))?;
    planted.tmp_file = Some(tmp_file.clone());

    let abstract_name = format!("vmm-canary-{tag}");
    let abstract_socket = SocketAddr::from_abstract_name(abstract_name.as_bytes())
        .and_then(|addr| UnixListener::bind_addr(&addr))
        .map_err(plant_error("abstract socket"))?;
    let tcp = TcpListener::bind("127.0.0.1:0").map_err(plant_error("TCP port"))?;
    let tcp_port = tcp.local_addr().map_err(plant_error("TCP port"))?.port();

    // Everything is planted: `Planted` removes it from now on.
    planted.disarm();
    Ok(Planted {
        canaries: Canaries {
            process_name,
            shm_key,
            msg_key,
            hostname,
            tmp_file: tmp_file.to_string_lossy().into_owned(),
            abstract_socket: abstract_name,
            tcp_port,
        },
        process,
        shm_id,
        msg_id,
        tmp_file,
        _abstract_socket: abstract_socket,
        _tcp: tcp,
    })
}

/// What was planted so far: removed again if a later canary fails.
struct PartialPlant<'a> {
    process: Option<&'a mut Child>,
    shm_id: Option<i32>,
    msg_id: Option<i32>,
    tmp_file: Option<PathBuf>,
}

impl PartialPlant<'_> {
    /// Forgets everything, so that dropping removes nothing.
    fn disarm(mut self) {
        self.process = None;
        self.shm_id = None;
        self.msg_id = None;
        self.tmp_file = None;
    }
}

impl Drop for PartialPlant<'_> {
    fn drop(&mut self) {
        remove(
            self.process.as_deref_mut(),
            self.shm_id,
            self.msg_id,
            self.tmp_file.as_deref(),
        );
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        remove(
            Some(&mut self.process),
            Some(self.shm_id),
            Some(self.msg_id),
            Some(&self.tmp_file),
        );
    }
}

fn remove(process: Option<&mut Child>, shm: Option<i32>, msg: Option<i32>, file: Option<&Path>) {
    if let Some(child) = process {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some(id) = shm {
        // SAFETY: IPC_RMID takes no buffer; `id` is the segment this comparison made.
        unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
    if let Some(id) = msg {
        // SAFETY: IPC_RMID takes no buffer; `id` is the queue this comparison made.
        unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
    if let Some(path) = file {
        let _ = fs::remove_file(path);
    }
}

/// 12 hex digits from the clock and the PID: unique among comparisons on one host.
fn unique_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
    format!("{:012x}", mixed & 0xffff_ffff_ffff)
}

fn set_hostname(name: &str) -> std::io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Starts `probe hold NAME` and waits until it has renamed itself.
fn start_hold_process(probe: &Path, name: &str) -> std::io::Result<Child> {
    let mut child = Command::new(probe)
        .args(["hold", name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::other("its stdout is not a pipe"));
    };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "holding" {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::other(format!(
            "`{} hold` did not start (said {line:?})",
            probe.display()
        )));
    }
    Ok(child)
}

fn shm_create(key: i32) -> std::io::Result<i32> {
    // SAFETY: shmget takes plain integers.
    let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    if id < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(id)
    }
}

fn msg_create(key: i32) -> std::io::Result<i32> {
    // SAFETY: msgget takes plain integers.
    let id = unsafe { libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    if id < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_tags_are_twelve_hex_digits() {
        let tag = unique_tag();
        assert_eq!(tag.len(), 12);
        assert!(tag.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn shm_and_msg_canaries_are_created_and_removed() {
        let key = 0x1eed_0000 | (std::process::id() as i32 & 0xffff);
        let (Ok(shm), Ok(msg)) = (shm_create(key), msg_create(key)) else {
            eprintln!("SKIP shm_and_msg_canaries_are_created_and_removed: SysV IPC refused here");
            return;
        };
        remove(None, Some(shm), Some(msg), None);
        // SAFETY: shmget/msgget take plain integers.
        let (shm_after, msg_after) = unsafe { (libc::shmget(key, 0, 0), libc::msgget(key, 0)) };
        assert_eq!(
            (shm_after, msg_after),
            (-1, -1),
            "the canaries outlived removal"
        );
    }
}

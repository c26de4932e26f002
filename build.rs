//! Builds the freestanding test guest (`tests/guest/`, C + GNU asm) into
//! `$OUT_DIR/vmm-test-guest.elf` with the system C compiler, and exports its path as the
//! compile-time env var `VMM_TEST_GUEST` (used by `vmm demo` and the integration tests).
//!
//! The guest is ring-0 code that the PVM emulator on this host runs instruction by
//! instruction, and the emulator kills the VM on SSE, xsave, popcnt and friends: hence
//! `-mgeneral-regs-only` and no `-march`. `tests/guest_instructions.rs` checks the result.

// A build script fails the build by panicking: cargo shows the message and stops.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest sources relative to the package root; every one is compiled and linked.
const GUEST_DIR: &str = "tests/guest";
/// Linker script: PT_LOAD segments from 1 MiB up, as linux-loader wants for a vmlinux.
const LINKER_SCRIPT: &str = "tests/guest/guest.ld";
/// File name of the built guest inside `OUT_DIR`.
const GUEST_ELF: &str = "vmm-test-guest.elf";

/// Freestanding, no SSE/x87 registers, no red zone (interrupts use the stack), absolute
/// addressing (linked at its physical load address), no unwind tables or stack canaries.
const CFLAGS: &[&str] = &[
    "-std=gnu11",
    "-ffreestanding",
    "-nostdlib",
    "-mgeneral-regs-only",
    "-mno-red-zone",
    "-fno-pie",
    "-no-pie",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-builtin",
    // Keeps GCC from turning memset's own loop into a call to memset.
    "-fno-tree-loop-distribute-patterns",
    "-O2",
    "-static",
    "-Wall",
    "-Wextra",
];

const LDFLAGS: &[&str] = &[
    "-Wl,--build-id=none",
    "-Wl,-z,noexecstack",
    "-Wl,-z,max-page-size=4096",
];

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let guest_dir = root.join(GUEST_DIR);
    embed_labs(&root, &out_dir);

    println!("cargo:rerun-if-changed={GUEST_DIR}");
    println!("cargo:rerun-if-env-changed=GUEST_CC");
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&guest_dir)
        .unwrap_or_else(|e| panic!("cannot list the guest sources in {guest_dir:?}: {e}"))
    {
        let path = entry.expect("guest source directory entry").path();
        println!("cargo:rerun-if-changed={}", path.display());
        if matches!(path.extension().and_then(|e| e.to_str()), Some("c" | "S")) {
            sources.push(path);
        }
    }
    sources.sort();
    assert!(
        !sources.is_empty(),
        "no guest sources (*.c, *.S) in {guest_dir:?}"
    );

    let elf = out_dir.join(GUEST_ELF);
    build_guest(&guest_dir, &root.join(LINKER_SCRIPT), &sources, &elf);
    println!("cargo:rustc-env=VMM_TEST_GUEST={}", elf.display());
}

/// Compiles and links the guest in one compiler invocation; panics with the compiler's
/// output if it fails, so a broken guest breaks the build loudly.
fn build_guest(include_dir: &Path, linker_script: &Path, sources: &[PathBuf], elf: &Path) {
    let cc = std::env::var("GUEST_CC").unwrap_or_else(|_| "cc".to_string());
    let mut cmd = Command::new(&cc);
    cmd.args(CFLAGS)
        .arg("-I")
        .arg(include_dir)
        .arg("-T")
        .arg(linker_script)
        .args(LDFLAGS)
        .args(sources)
        .arg("-o")
        .arg(elf);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}` for the test guest: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        panic!(
            "building the test guest failed ({}):\n{cmd:?}\n{stderr}",
            output.status
        );
    }
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        println!("cargo:warning=test guest: {line}");
    }
}

/// The teaching labs (`resources/labs/NN-*.md`) are compiled into `vmm`, so `vmm lab`
/// works from the one binary: `$OUT_DIR/labs.rs` is a list of (file name, text) pairs,
/// sorted by name.
fn embed_labs(root: &Path, out_dir: &Path) {
    const LABS_DIR: &str = "resources/labs";
    println!("cargo:rerun-if-changed={LABS_DIR}");
    let mut files: Vec<String> = std::fs::read_dir(root.join(LABS_DIR))
        .unwrap_or_else(|e| panic!("cannot list {LABS_DIR}: {e}"))
        .map(|entry| {
            entry
                .expect("labs directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".md") && name.as_bytes()[0].is_ascii_digit())
        .collect();
    files.sort();
    let mut code = String::from("&[\n");
    for name in &files {
        println!("cargo:rerun-if-changed={LABS_DIR}/{name}");
        let path = root.join(LABS_DIR).join(name);
        code.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("]\n");
    std::fs::write(out_dir.join("labs.rs"), code).expect("write labs.rs");
}

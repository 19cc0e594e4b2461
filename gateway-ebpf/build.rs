//! Rebuild the XDP object when bpf-linker changes (it is the linker, so cargo
//! does not track it by itself).
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}

//! Sets the SONAME of `libdlm.so` to `libdlm.so.3` (cargo sets
//! none) and links it with BIND_NOW, like Debian's build, and NODELETE:
//! a `dlclose` must not unmap Rust code whose threads, thread-local
//! destructors or process-lifetime state (the control connection) may
//! still be in use.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libdlm.so.3");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}

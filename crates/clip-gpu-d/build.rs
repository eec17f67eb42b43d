//! Link-time fixes for libtorch from a PyPI torch wheel (verified-toolchain.md, external-interfaces.md §6.2).
//!
//! torch-sys links `libtorch_cuda.so` only if nothing drops it: with the default `--as-needed`
//! the linker removes it because no symbol of it is referenced, and CUDA becomes invisible.
//! torch-sys also gives the final binary no rpath, so we add one to the torch lib folder.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib_dir) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        println!(
            "cargo:warning=DEP_TCH_LIBTORCH_LIB is not set; the binary gets no rpath to libtorch"
        );
        return;
    };
    // The rpath covers the binary, the tests and the examples, so none needs LD_LIBRARY_PATH.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    if lib_dir.join("libtorch_cuda.so").is_file() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

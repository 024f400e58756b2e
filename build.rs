//! Records how omen was compiled, so `omen --version`, `omen bench` and the
//! benchmarks can say whether they measure an optimised build.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let opt_level = std::env::var("OPT_LEVEL").unwrap_or_else(|_| "?".into());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "?".into());
    println!("cargo:rustc-env=OMEN_BUILD=opt-level {opt_level}, {profile} profile");
}

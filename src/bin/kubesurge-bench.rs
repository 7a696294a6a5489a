//! `kubesurge-bench`: the benchmark of design §12, run as
//! `cargo run --release --bin kubesurge-bench -- [--scenario NxS]…`.
//! It needs the test world, so it does its work only with the `sandbox`
//! feature (on by default).

#[cfg(feature = "sandbox")]
mod kubesurge_bench;

#[cfg(feature = "sandbox")]
fn main() -> std::process::ExitCode {
    kubesurge_bench::main()
}

#[cfg(not(feature = "sandbox"))]
fn main() -> std::process::ExitCode {
    eprintln!("kubesurge-bench needs the test world: build it with the `sandbox` feature");
    std::process::ExitCode::from(2)
}

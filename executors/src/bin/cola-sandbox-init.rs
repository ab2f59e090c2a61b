//! A sandbox's PID 1 on its own (the `cola` binary serves as one too): for the executor's
//! tests and examples, which are not `cola`.

#![forbid(unsafe_code)]

fn main() {
    cola_executors::sandbox::init::run_if_requested();
    eprintln!(
        "usage: cola-sandbox-init {} <control-fd> (started by the executor, inside bubblewrap)",
        cola_executors::sandbox::init::INIT_ARG
    );
    std::process::exit(2);
}

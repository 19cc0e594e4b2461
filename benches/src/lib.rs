//! Benchmarks live in `benches/`: `cargo bench -p benches` (as root: the XDP
//! benchmark loads the real program into the kernel).

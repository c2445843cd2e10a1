//! Measures how long loading (parse + schema + defaults + rules) one manifest takes.
//!
//! `cargo run --release --example parse_time -- pods/web.yaml [ITERATIONS]`

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: parse_time FILE [ITERATIONS]");
    let n: u32 = args
        .next()
        .map_or(20_000, |s| s.parse().expect("iterations"));
    let bytes = std::fs::read(&path).expect("read manifest");
    // Warm up, and make sure the file is valid.
    let pods = podsup::manifest::load_bytes(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let mut samples = Vec::with_capacity(10);
    for _ in 0..10 {
        let start = Instant::now();
        for _ in 0..n / 10 {
            std::hint::black_box(
                podsup::manifest::load_bytes(&path, std::hint::black_box(&bytes)).ok(),
            );
        }
        samples.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(n / 10));
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "{path}: {} bytes, {} pod(s): median {:.1} µs per load (min {:.1}, max {:.1}; {n} loads)",
        bytes.len(),
        pods.len(),
        samples[5],
        samples[0],
        samples[9]
    );
}

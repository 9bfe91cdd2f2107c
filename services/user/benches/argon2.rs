//! Argon2id hashes per second on one core at the configured parameters (the OWASP minimum,
//! m = 19 MiB, t = 2, p = 1, and one step up), which bounds logins and registrations per core.
//!
//! `cargo bench -p mirai-user --bench argon2`

use criterion::{Criterion, criterion_group, criterion_main};
use mirai_user::config::Argon2Config;
use mirai_user::password::hash_now;

fn argon2(c: &mut Criterion) {
    let mut group = c.benchmark_group("argon2id");
    group.sample_size(20);
    for (name, config) in [
        ("m19MiB_t2_p1", Argon2Config::MINIMUM),
        (
            "m46MiB_t1_p1",
            Argon2Config {
                memory_kib: 46 * 1024,
                iterations: 1,
                parallelism: 1,
            },
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| hash_now(config, b"correct horse battery staple").unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, argon2);
criterion_main!(benches);

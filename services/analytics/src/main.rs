use mirai_platform::bootstrap;

// glibc's malloc was about 15 % of the gateway's CPU on the quote route; mimalloc's
// thread-local free lists suit many short-lived per-request allocations (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    bootstrap::run_service(
        mirai_analytics::config::from_env,
        |config| &config.service,
        &mirai_analytics::startup::MIGRATIONS,
        |config, shutdown| async move {
            let app = mirai_analytics::startup::build_with(&config).await?;
            Ok(app.run_until_stopped(shutdown).await?)
        },
    )
}

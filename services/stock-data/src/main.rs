use mirai_platform::bootstrap;

// glibc's malloc was about 15 % of the gateway's CPU on the quote route; mimalloc's
// thread-local free lists suit many short-lived per-request allocations (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    bootstrap::run_service(
        mirai_stock_data::config::from_env,
        |config| &config.service,
        &mirai_stock_data::startup::MIGRATIONS,
        |config, shutdown| async move {
            let app = mirai_stock_data::startup::build_with(&config).await?;
            if config.sample_data {
                let loaded =
                    mirai_stock_data::bars::load_sample_with(app.pool(), &config.quality).await?;
                tracing::info!(message = "Sample data loaded.", new_bars = loaded);
            }
            Ok(app.run_until_stopped(shutdown).await?)
        },
    )
}

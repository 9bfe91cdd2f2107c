use mirai_platform::bootstrap;

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

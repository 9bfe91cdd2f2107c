use mirai_platform::bootstrap;

fn main() -> std::process::ExitCode {
    bootstrap::run_service(
        mirai_prediction::config::from_env,
        |config| &config.service,
        &mirai_prediction::startup::MIGRATIONS,
        |config, shutdown| async move {
            let app = mirai_prediction::startup::build_with(&config).await?.app;
            Ok(app.run_until_stopped(shutdown).await?)
        },
    )
}

use mirai_platform::bootstrap;

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

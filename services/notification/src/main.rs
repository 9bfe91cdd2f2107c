use mirai_platform::bootstrap;

fn main() -> std::process::ExitCode {
    bootstrap::run_service(
        mirai_notification::config::from_env,
        |config| &config.service,
        &mirai_notification::startup::MIGRATIONS,
        |config, shutdown| async move {
            let app = mirai_notification::startup::build_with(&config).await?;
            Ok(app.service.run_until_stopped(shutdown).await?)
        },
    )
}

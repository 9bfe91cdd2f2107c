use mirai_platform::bootstrap;

fn main() -> std::process::ExitCode {
    bootstrap::run_service(
        mirai_user::config::from_env,
        |config| &config.service,
        &mirai_user::startup::MIGRATIONS,
        |config, shutdown| async move {
            let app = mirai_user::startup::build_with(&config.service, &config.auth).await?;
            Ok(app.run_until_stopped(shutdown).await?)
        },
    )
}

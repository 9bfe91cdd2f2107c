use mirai_platform::bootstrap;

fn main() -> std::process::ExitCode {
    bootstrap::run(
        mirai_gateway::config::Config::from_env,
        |config, shutdown| async move {
            let app = mirai_gateway::startup::Application::build(config).await?;
            Ok(app.run_until_stopped(shutdown).await?)
        },
    )
}

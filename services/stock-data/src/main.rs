use mirai_platform::bootstrap;

fn main() -> std::process::ExitCode {
    bootstrap::run(
        mirai_stock_data::config::from_env,
        |config, shutdown| async move {
            let app = mirai_stock_data::startup::build(&config).await?;
            Ok(app.run_until_stopped(shutdown).await?)
        },
    )
}

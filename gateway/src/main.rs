use mirai_platform::bootstrap;

// glibc's malloc was about 15 % of the gateway's CPU on the quote route; mimalloc's
// thread-local free lists suit many short-lived per-request allocations (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    bootstrap::run(
        mirai_gateway::config::Config::from_env,
        |config, shutdown| async move {
            let app = mirai_gateway::startup::Application::build(config).await?;
            Ok(app.run_until_stopped(shutdown).await?)
        },
    )
}

//! Redis over TLS, as Memorystore's in-transit encryption serves it: a `rediss://` URL with the
//! AUTH string, and the instance's CA in `MIRAI_REDIS_CA_CERT`. The server is a real
//! `redis-server` with TLS on a free port, its certificate signed by a CA made for the test.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mirai_gateway::startup::{Application, StartupError};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::edge::two_gateways_share_a_limit;
use crate::helpers::Platform;

const PASSWORD: &str = "an-auth-string";

/// A CA that signs certificates (PEM).
fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// `redis-server` serving TLS only, on 127.0.0.1, with a password; stopped on drop.
struct TlsRedis {
    process: Child,
    port: u16,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = certificate_authority("Mirai test Redis CA");
        let key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let cert = write("server.pem", server.pem());
        let key = write("server.key", key.serialize_pem());
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let arg = |path: &Path| path.to_str().unwrap().to_owned();
        let process = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
            .args(["--tls-cert-file", &arg(&cert), "--tls-key-file", &arg(&key)])
            .args(["--requirepass", PASSWORD, "--dir", &arg(dir.path())])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package, built with TLS) is installed");
        let redis = Self {
            process,
            port,
            ca_pem: ca.pem(),
            _dir: dir,
        };
        redis.wait_ready().await;
        redis
    }

    fn url(&self) -> String {
        format!("rediss://:{PASSWORD}@127.0.0.1:{}/0", self.port)
    }

    async fn wait_ready(&self) {
        let client = redis::Client::build_with_tls(
            self.url(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(self.ca_pem.clone().into_bytes()),
            },
        )
        .unwrap();
        for _ in 0..100 {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("redis-server with TLS did not answer on port {}", self.port);
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test]
async fn two_gateways_share_their_limits_through_redis_over_tls() {
    let platform = Platform::start().await;
    let redis = TlsRedis::start().await;
    two_gateways_share_a_limit(|| {
        let mut config = platform.gateway_config();
        config.redis_url = Some(redis.url());
        config.redis_ca_cert = Some(redis.ca_pem.clone().into_bytes());
        config
    })
    .await;
}

#[tokio::test]
async fn a_gateway_does_not_start_against_a_redis_certificate_it_does_not_trust() {
    let platform = Platform::start().await;
    let redis = TlsRedis::start().await;
    let other_ca = certificate_authority("Someone else's CA");
    let mut config = platform.gateway_config();
    config.redis_url = Some(redis.url());
    config.redis_ca_cert = Some(other_ca.pem().into_bytes());
    let error = match Application::build(config).await {
        Ok(_) => panic!("the gateway started against a Redis it cannot authenticate"),
        Err(error) => error,
    };
    assert!(matches!(error, StartupError::Redis(_)), "{error}");
    let message = error.to_string();
    assert!(message.contains("certificate"), "{message}");
    assert!(
        !message.contains(PASSWORD),
        "the AUTH string leaked: {message}"
    );
}

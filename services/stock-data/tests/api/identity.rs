//! Internal identity at a service: the confirmed finding of issue 17 (a forged
//! `x-mirai-roles: admin` header straight to the admin RPC `ListReplays` was accepted), and
//! every other way of claiming a caller without a valid signed token.

use mirai_platform::auth::{Principal, Role};
use mirai_platform::config::Env;
use mirai_platform::grpc::identity::{IDENTITY_HEADER, Identity, Signer, test_signing_key};
use mirai_proto::stock::v1::ListReplaysRequest;
use mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient;

use crate::helpers::spawn;

fn admin() -> Principal {
    Principal {
        user_id: "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        roles: [Role::User, Role::Admin].into(),
        api_key_id: None,
    }
}

/// `ListReplays` carrying exactly `metadata`, over a channel that adds nothing.
async fn list_replays(
    addr: std::net::SocketAddr,
    metadata: &[(&'static str, String)],
) -> Result<(), tonic::Status> {
    let mut client = StockDataServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut request = tonic::Request::new(ListReplaysRequest {});
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, value.parse().unwrap());
    }
    client.list_replays(request).await.map(|_| ())
}

fn forged_headers() -> Vec<(&'static str, String)> {
    vec![
        ("x-mirai-user-id", admin().user_id),
        ("x-mirai-roles", "user,admin".to_owned()),
    ]
}

#[tokio::test]
async fn a_forged_admin_header_straight_to_list_replays_is_refused() {
    let app = spawn().await;
    let refused = list_replays(app.addr, &forged_headers()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused.message().contains(IDENTITY_HEADER),
        "{}",
        refused.message()
    );
    // With a valid token for an anonymous caller, the headers still make nobody an admin.
    let gateway = Signer::new("mirai-gateway", &test_signing_key());
    let mut metadata = forged_headers();
    metadata.push((IDENTITY_HEADER, gateway.sign(&["mirai-stock-data"], None)));
    let refused = list_replays(app.addr, &metadata).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(refused.message(), "authentication required");
    // A token acting for an admin is what it takes.
    let token = gateway.sign(&["mirai-stock-data"], Some(&admin()));
    list_replays(app.addr, &[(IDENTITY_HEADER, token)])
        .await
        .expect("a signed admin call is accepted");
}

#[tokio::test]
async fn tokens_for_another_audience_or_from_an_untrusted_key_are_refused() {
    let app = spawn().await;
    let gateway = Signer::new("mirai-gateway", &test_signing_key());
    // Minted for the user service: not usable at stock-data.
    let elsewhere = gateway.sign(&["mirai-user"], Some(&admin()));
    let refused = list_replays(app.addr, &[(IDENTITY_HEADER, elsewhere)])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused.message().contains("Audience"),
        "{}",
        refused.message()
    );
    // Signed by a key stock-data does not trust (a process with its own ephemeral key).
    let stranger = Identity::from_env(&Env::default(), "mirai-gateway").unwrap();
    let token = stranger.signer.sign(&["mirai-stock-data"], Some(&admin()));
    let refused = list_replays(app.addr, &[(IDENTITY_HEADER, token)])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused.message().contains("unknown key"),
        "{}",
        refused.message()
    );
    // A token that is not one.
    let refused = list_replays(app.addr, &[(IDENTITY_HEADER, "e30.e30.e30".to_owned())])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    // Health answers without any token.
    let health = mirai_platform::testing::grpc_health(app.addr).await;
    assert_eq!(health.map(|status| status as i32), Some(1), "SERVING");
}

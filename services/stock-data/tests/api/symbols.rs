//! UpdateSymbol: admin only, masked fields, `symbol.updated` through the outbox.

use mirai_platform::auth::Role;
use mirai_proto::events::v1::SymbolUpdated;
use mirai_proto::stock::v1::{AssetType, Symbol, UpdateSymbolRequest};
use prost::Message as _;

use crate::helpers::spawn;

fn as_role(role: Role, message: UpdateSymbolRequest) -> tonic::Request<UpdateSymbolRequest> {
    mirai_platform::testing::request_as("admin-1", &[role], message)
}

fn update(fields: &[&str], symbol: Symbol) -> UpdateSymbolRequest {
    UpdateSymbolRequest {
        symbol: Some(symbol),
        update_mask: Some(prost_types::FieldMask {
            paths: fields.iter().map(|f| f.to_string()).collect(),
        }),
        actor_user_id: "admin-1".into(),
    }
}

#[tokio::test]
async fn an_admin_updates_masked_fields_and_symbol_updated_is_emitted() {
    let mut app = spawn().await;
    app.list("ACME", "XNAS", AssetType::Equity).await;
    let renamed = Symbol {
        symbol: "acme".into(),
        name: "Acme Holdings".into(),
        exchange_mic: "IGNORED-NOT-IN-MASK".into(),
        ..Default::default()
    };
    let response = app
        .client
        .update_symbol(as_role(Role::Admin, update(&["name"], renamed.clone())))
        .await
        .unwrap()
        .into_inner()
        .symbol
        .unwrap();
    assert_eq!(
        (response.name.as_str(), response.exchange_mic.as_str()),
        ("Acme Holdings", "XNAS"),
        "only masked fields change"
    );
    assert!(response.updated_at.unwrap().seconds >= response.listed_at.unwrap().seconds);
    let events: Vec<SymbolUpdated> = app
        .outbox("mirai.symbol.updated.v1")
        .await
        .iter()
        .map(|p| SymbolUpdated::decode(p.as_slice()).unwrap())
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].name.as_str(),
            events[0].exchange_mic.as_str(),
            events[0].currency.as_str()
        ),
        ("Acme Holdings", "XNAS", "USD"),
        "the event carries the full metadata"
    );

    // The same values again, or an empty mask: nothing changes and nothing is emitted.
    app.client
        .update_symbol(as_role(Role::Admin, update(&["name"], renamed.clone())))
        .await
        .unwrap();
    app.client
        .update_symbol(as_role(Role::Admin, update(&[], renamed.clone())))
        .await
        .unwrap();
    assert_eq!(app.outbox("mirai.symbol.updated.v1").await.len(), 1);

    // Refusals.
    // (app.client adds an admin to calls without a caller; a plain client sends none.)
    let anonymous =
        mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient::connect(
            format!("http://{}", app.addr),
        )
        .await
        .unwrap()
        .update_symbol(update(&["name"], renamed.clone()))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let user = app
        .client
        .update_symbol(as_role(Role::User, update(&["name"], renamed.clone())))
        .await
        .unwrap_err();
    assert_eq!(user.code(), tonic::Code::PermissionDenied);
    let bad_path = app
        .client
        .update_symbol(as_role(Role::Admin, update(&["status"], renamed.clone())))
        .await
        .unwrap_err();
    assert_eq!(bad_path.code(), tonic::Code::InvalidArgument);
    assert!(
        bad_path.message().starts_with("update_mask:"),
        "{bad_path:?}"
    );
    let bad_value = app
        .client
        .update_symbol(as_role(
            Role::Admin,
            update(&["exchange_mic"], renamed.clone()),
        ))
        .await
        .unwrap_err();
    assert!(
        bad_value.message().starts_with("exchange_mic:"),
        "{bad_value:?}"
    );
    let unknown = app
        .client
        .update_symbol(as_role(
            Role::Admin,
            update(
                &["name"],
                Symbol {
                    symbol: "NOPE".into(),
                    name: "x".into(),
                    ..Default::default()
                },
            ),
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn admin_rpcs_refuse_anonymous_callers_and_plain_users() {
    use mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient;
    use mirai_proto::stock::v1::{AddSymbolRequest, ListReplaysRequest};

    let app = spawn().await;
    let mut plain = StockDataServiceClient::new(
        mirai_platform::testing::connect(format!("http://{}", app.addr)).await,
    );
    let listing = || AddSymbolRequest {
        symbol: Some(Symbol {
            symbol: "ACME".into(),
            name: "Acme".into(),
            exchange_mic: "XNAS".into(),
            currency: "USD".into(),
            asset_type: AssetType::Equity.into(),
            ..Default::default()
        }),
        actor_user_id: String::new(),
    };
    let anonymous = plain.add_symbol(listing()).await.unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let as_user =
        mirai_platform::testing::request_as("u1", &[Role::User, Role::Premium], listing());
    let denied = plain.add_symbol(as_user).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let denied = plain.list_replays(ListReplaysRequest {}).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
    // Reads stay open to every caller.
    plain
        .search_symbols(mirai_proto::stock::v1::SearchSymbolsRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn like_wildcards_in_a_search_match_literally() {
    let mut app = spawn().await;
    app.list("AB", "XNAS", AssetType::Equity).await;
    app.list("ABC", "XNAS", AssetType::Equity).await;
    let search = |query: &str| {
        let mut client = app.client.clone();
        let query = query.to_owned();
        async move {
            let found = client
                .search_symbols(mirai_proto::stock::v1::SearchSymbolsRequest {
                    query,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            found
                .symbols
                .into_iter()
                .map(|s| s.symbol)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("AB").await, ["AB", "ABC"]);
    // Before the fix `%` matched every symbol and `A_` every ticker of two letters or more.
    assert!(search("%").await.is_empty());
    assert!(search("A_").await.is_empty());
    assert!(search("AB%").await.is_empty());
}

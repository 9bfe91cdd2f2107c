//! Every RPC in the protos has a handler: each method of `mirai_proto::methods::ALL` (generated
//! from the descriptors, so a new RPC is in it at once) is called on its service with an empty
//! request, as an admin, and must answer anything but `UNIMPLEMENTED` — an empty request is
//! mostly `INVALID_ARGUMENT` or `NOT_FOUND`, which is the point: the call reached a handler.

use std::time::Duration;

use mirai_platform::auth::Role;
use mirai_proto::methods;

use crate::helpers::Platform;

/// The platform's service (index into `Platform::services`) that serves `path`.
fn service_of(path: &str) -> usize {
    let package = path
        .trim_start_matches('/')
        .split('.')
        .nth(1)
        .unwrap_or_default();
    match package {
        "user" => 0,
        "stock" => 1,
        "prediction" => 2,
        "analytics" => 3,
        "notification" => 4,
        other => panic!("{path}: no service serves package {other}"),
    }
}

/// `message` from an admin, with a 2 s deadline: a stream may stay open waiting for data, and
/// its first answer or this ends the call.
fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = mirai_platform::testing::request_as(
        uuid::Uuid::now_v7(),
        &[Role::User, Role::Admin],
        message,
    );
    request.set_timeout(Duration::from_secs(2));
    request
}

#[tokio::test]
async fn every_rpc_in_the_protos_reaches_a_handler() {
    let platform = Platform::start().await;
    let mut unimplemented = Vec::new();
    for method in methods::ALL {
        let addr = platform.services[service_of(method.path)].grpc_addr;
        let mut grpc = tonic::client::Grpc::new(
            mirai_platform::testing::connect(format!("http://{addr}")).await,
        );
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static(method.path);
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let code = if method.client_streaming {
            // One empty message, then the end of the stream.
            let messages = request(futures::stream::iter([()]));
            let answer = if method.server_streaming {
                match grpc.streaming(messages, path, codec).await {
                    Ok(mut stream) => stream.get_mut().message().await.map(|_| ()),
                    Err(status) => Err(status),
                }
            } else {
                grpc.client_streaming(messages, path, codec)
                    .await
                    .map(|_| ())
            };
            answer.map_or_else(|status| status.code(), |()| tonic::Code::Ok)
        } else if method.server_streaming {
            match grpc.server_streaming(request(()), path, codec).await {
                Ok(mut stream) => match stream.get_mut().message().await {
                    Ok(_) => tonic::Code::Ok,
                    Err(status) => status.code(),
                },
                Err(status) => status.code(),
            }
        } else {
            match grpc.unary(request(()), path, codec).await {
                Ok(_) => tonic::Code::Ok,
                Err(status) => status.code(),
            }
        };
        if code == tonic::Code::Unimplemented {
            unimplemented.push(method.path);
        }
    }
    assert!(
        methods::ALL.len() > 60,
        "the method table is filled ({} methods)",
        methods::ALL.len()
    );
    assert!(
        unimplemented.is_empty(),
        "answered UNIMPLEMENTED: {unimplemented:?}"
    );
}

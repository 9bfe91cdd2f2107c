//! The `NotificationService` gRPC API. RPCs not implemented yet answer `UNIMPLEMENTED`.

use mirai_proto::notification::v1 as pb;
use mirai_proto::notification::v1::notification_service_server::NotificationService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::symbols;

pub struct Api {
    pool: PgPool,
}

impl Api {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl NotificationService for Api {
    async fn list_known_symbols(
        &self,
        request: Request<pb::ListKnownSymbolsRequest>,
    ) -> Result<Response<pb::ListKnownSymbolsResponse>, Status> {
        symbols::list(&self.pool, request.get_ref())
            .await
            .map(Response::new)
    }
}

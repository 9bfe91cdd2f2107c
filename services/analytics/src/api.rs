//! The `AnalyticsService` gRPC API. RPCs not implemented yet answer `UNIMPLEMENTED`.

use mirai_proto::analytics::v1 as pb;
use mirai_proto::analytics::v1::analytics_service_server::AnalyticsService;
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
impl AnalyticsService for Api {
    async fn list_symbols(
        &self,
        request: Request<pb::ListSymbolsRequest>,
    ) -> Result<Response<pb::ListSymbolsResponse>, Status> {
        symbols::list(&self.pool, request.get_ref())
            .await
            .map(Response::new)
    }
}

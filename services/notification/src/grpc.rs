//! The `NotificationService` gRPC API: checks the caller, translates, calls one function of the
//! module that does the work, and turns its error into a `Status`. No rules live here. Every
//! RPC names its user; the caller (the principal the gateway forwards) must be that user or
//! an admin.

use futures::StreamExt as _;
use mirai_platform::auth::{self, Principal, Role};
use mirai_platform::wire;
use mirai_proto::notification::v1 as pb;
use mirai_proto::notification::v1::notification_service_server::NotificationService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::context::Shared;
use crate::error::parse_id;
use crate::{alerts, deliveries, devices, inbox, preferences, symbols, verify, webhooks};

pub struct Api {
    ctx: Shared,
}

impl Api {
    pub fn new(ctx: Shared) -> Self {
        Self { ctx }
    }
}

/// The caller, who must be `user_id` or an admin; returns the user's id.
fn caller<T>(request: &Request<T>, user_id: &str) -> Result<(Uuid, Principal), Status> {
    let principal = auth::require(request, &[])?;
    if principal.user_id != user_id && !principal.has(Role::Admin) {
        return Err(Status::permission_denied("may only act for the caller"));
    }
    let id = user_id
        .parse()
        .map_err(|_| mirai_platform::error::invalid_argument("user_id", "not a UUID"))?;
    Ok((id, principal))
}

fn limit(requested: u32) -> Result<i64, Status> {
    Ok(i64::from(wire::page_size(requested, 50, 200)?))
}

type NotificationStream =
    futures::stream::BoxStream<'static, Result<pb::StreamNotificationsResponse, Status>>;

#[tonic::async_trait]
impl NotificationService for Api {
    #[tracing::instrument(skip_all)]
    async fn create_alert(
        &self,
        request: Request<pb::CreateAlertRequest>,
    ) -> Result<Response<pb::CreateAlertResponse>, Status> {
        let (user_id, principal) = caller(&request, &request.get_ref().user_id)?;
        let alert = request.into_inner().alert.unwrap_or_default();
        let alert = alerts::create(&self.ctx, user_id, &principal, alert).await?;
        Ok(Response::new(pb::CreateAlertResponse {
            alert: Some(alert),
        }))
    }

    async fn get_alert(
        &self,
        request: Request<pb::GetAlertRequest>,
    ) -> Result<Response<pb::GetAlertResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let id = parse_id("alert_id", &request.get_ref().alert_id)?;
        let alert = alerts::get(&self.ctx, user_id, id).await?;
        Ok(Response::new(pb::GetAlertResponse { alert: Some(alert) }))
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let r = request.into_inner();
        let limit = limit(r.page_size)?;
        let before = wire::page_after_id(&r.page_token)?;
        Ok(Response::new(
            alerts::list(&self.ctx, user_id, &r, limit, before).await?,
        ))
    }

    async fn update_alert(
        &self,
        request: Request<pb::UpdateAlertRequest>,
    ) -> Result<Response<pb::UpdateAlertResponse>, Status> {
        let (user_id, principal) = caller(&request, &request.get_ref().user_id)?;
        let r = request.into_inner();
        let alert = r.alert.unwrap_or_default();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let alert = alerts::update(&self.ctx, user_id, &principal, alert, paths).await?;
        Ok(Response::new(pb::UpdateAlertResponse {
            alert: Some(alert),
        }))
    }

    async fn delete_alert(
        &self,
        request: Request<pb::DeleteAlertRequest>,
    ) -> Result<Response<()>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        alerts::delete(&self.ctx, user_id, &request.get_ref().alert_id).await?;
        Ok(Response::new(()))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let r = request.into_inner();
        let limit = limit(r.page_size)?;
        let before = wire::page_after_id(&r.page_token)?;
        Ok(Response::new(
            inbox::list(&self.ctx, user_id, &r, limit, before).await?,
        ))
    }

    async fn mark_notifications(
        &self,
        request: Request<pb::MarkNotificationsRequest>,
    ) -> Result<Response<pb::MarkNotificationsResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        Ok(Response::new(
            inbox::mark(&self.ctx, user_id, request.into_inner()).await?,
        ))
    }

    async fn get_unread_count(
        &self,
        request: Request<pb::GetUnreadCountRequest>,
    ) -> Result<Response<pb::GetUnreadCountResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        Ok(Response::new(
            inbox::unread_count(&self.ctx, user_id).await?,
        ))
    }

    async fn stream_notifications(
        &self,
        request: Request<pb::StreamNotificationsRequest>,
    ) -> Result<Response<NotificationStream>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let after = match request.get_ref().after_notification_id.as_str() {
            "" => None,
            id => Some(parse_id("after_notification_id", id)?),
        };
        let live = inbox::stream(&self.ctx, user_id, after).await?;
        Ok(Response::new(live.map(Ok).boxed()))
    }

    async fn create_webhook_endpoint(
        &self,
        request: Request<pb::CreateWebhookEndpointRequest>,
    ) -> Result<Response<pb::CreateWebhookEndpointResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        Ok(Response::new(
            webhooks::create(&self.ctx, user_id, request.into_inner()).await?,
        ))
    }

    async fn get_webhook_endpoint(
        &self,
        request: Request<pb::GetWebhookEndpointRequest>,
    ) -> Result<Response<pb::GetWebhookEndpointResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        Ok(Response::new(
            webhooks::get(&self.ctx, user_id, request.get_ref()).await?,
        ))
    }

    async fn list_webhook_endpoints(
        &self,
        request: Request<pb::ListWebhookEndpointsRequest>,
    ) -> Result<Response<pb::ListWebhookEndpointsResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        Ok(Response::new(webhooks::list(&self.ctx, user_id).await?))
    }

    async fn update_webhook_endpoint(
        &self,
        request: Request<pb::UpdateWebhookEndpointRequest>,
    ) -> Result<Response<pb::UpdateWebhookEndpointResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        Ok(Response::new(
            webhooks::update(&self.ctx, user_id, request.into_inner()).await?,
        ))
    }

    async fn delete_webhook_endpoint(
        &self,
        request: Request<pb::DeleteWebhookEndpointRequest>,
    ) -> Result<Response<()>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        webhooks::delete(&self.ctx, user_id, request.get_ref()).await?;
        Ok(Response::new(()))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::RotateWebhookSecretResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        Ok(Response::new(
            webhooks::rotate_secret(&self.ctx, user_id, request.into_inner()).await?,
        ))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let r = request.into_inner();
        let limit = limit(r.page_size)?;
        let before = wire::page_after_id(&r.page_token)?;
        Ok(Response::new(
            deliveries::list(&self.ctx, user_id, &r, limit, before).await?,
        ))
    }

    async fn resend_delivery(
        &self,
        request: Request<pb::ResendDeliveryRequest>,
    ) -> Result<Response<pb::ResendDeliveryResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        Ok(Response::new(
            deliveries::resend(&self.ctx, user_id, request.get_ref()).await?,
        ))
    }

    async fn register_push_device(
        &self,
        request: Request<pb::RegisterPushDeviceRequest>,
    ) -> Result<Response<pb::RegisterPushDeviceResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        Ok(Response::new(
            devices::register(&self.ctx, user_id, request.into_inner()).await?,
        ))
    }

    async fn list_push_devices(
        &self,
        request: Request<pb::ListPushDevicesRequest>,
    ) -> Result<Response<pb::ListPushDevicesResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        Ok(Response::new(devices::list(&self.ctx, user_id).await?))
    }

    async fn unregister_push_device(
        &self,
        request: Request<pb::UnregisterPushDeviceRequest>,
    ) -> Result<Response<()>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        devices::unregister(&self.ctx, user_id, request.get_ref()).await?;
        Ok(Response::new(()))
    }

    async fn get_preferences(
        &self,
        request: Request<pb::GetPreferencesRequest>,
    ) -> Result<Response<pb::GetPreferencesResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        Ok(Response::new(preferences::get(&self.ctx, user_id).await?))
    }

    async fn update_preferences(
        &self,
        request: Request<pb::UpdatePreferencesRequest>,
    ) -> Result<Response<pb::UpdatePreferencesResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        Ok(Response::new(
            preferences::update(&self.ctx, user_id, request.into_inner()).await?,
        ))
    }

    async fn confirm_email_address(
        &self,
        request: Request<pb::ConfirmEmailAddressRequest>,
    ) -> Result<Response<pb::ConfirmEmailAddressResponse>, Status> {
        // The signed token is the credential: no principal is required.
        let email = verify::confirm(&self.ctx, &request.get_ref().token).await?;
        Ok(Response::new(pb::ConfirmEmailAddressResponse { email }))
    }

    async fn resend_email_verification(
        &self,
        request: Request<pb::ResendEmailVerificationRequest>,
    ) -> Result<Response<pb::ResendEmailVerificationResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        Ok(Response::new(
            preferences::resend_verification(&self.ctx, user_id).await?,
        ))
    }

    async fn list_known_symbols(
        &self,
        request: Request<pb::ListKnownSymbolsRequest>,
    ) -> Result<Response<pb::ListKnownSymbolsResponse>, Status> {
        symbols::list(&self.ctx.pool, request.get_ref())
            .await
            .map(Response::new)
    }
}

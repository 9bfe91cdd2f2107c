//! The `UserService` gRPC API: checks the caller, translates, calls the one function that does
//! the work (sign-up and sessions in [`crate::sessions`], lockouts in [`crate::lockout`], the
//! profile in [`crate::profile`], API keys in [`crate::api_keys`], administration in
//! [`crate::admin`], the deletion saga in [`crate::deletion`], keys and discovery in
//! [`crate::discovery`]) and converts its error once. No rules live here.

use mirai_platform::wire;
use mirai_proto::user::v1 as pb;
use mirai_proto::user::v1::user_service_server::UserService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::context::Context;
use crate::domain::user_id;
use crate::error::Error;
use crate::principal;
use crate::{admin, api_keys, discovery, lockout, profile, sessions};

pub struct Api {
    context: Context,
}

impl Api {
    pub fn new(context: Context) -> Self {
        Self { context }
    }
}

#[tonic::async_trait]
impl UserService for Api {
    // === Sign-up and sessions ===

    #[tracing::instrument(skip_all)]
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        Ok(Response::new(
            sessions::register(&self.context, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        Ok(Response::new(
            sessions::login(&self.context, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn unlock_with_link(
        &self,
        request: Request<pb::UnlockWithLinkRequest>,
    ) -> Result<Response<pb::UnlockWithLinkResponse>, Status> {
        Ok(Response::new(
            lockout::unlock_with_link(&self.context, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        Ok(Response::new(
            sessions::refresh(&self.context, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        Ok(Response::new(
            sessions::logout(&self.context, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn logout_everywhere(
        &self,
        request: Request<pb::LogoutEverywhereRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self(&request, &id.to_string(), true)?;
        Ok(Response::new(
            sessions::logout_everywhere(&self.context, id, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self_session(&request, &id.to_string())?;
        Ok(Response::new(
            sessions::change_password(&self.context, id, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn introspect_token(
        &self,
        request: Request<pb::IntrospectTokenRequest>,
    ) -> Result<Response<pb::IntrospectTokenResponse>, Status> {
        Ok(Response::new(
            sessions::introspect_token(&self.context, request.into_inner()).await?,
        ))
    }

    // === Signing keys and discovery ===

    async fn get_jwks(
        &self,
        _request: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        Ok(Response::new(discovery::jwks(&self.context)))
    }

    async fn get_discovery_document(
        &self,
        request: Request<pb::GetDiscoveryDocumentRequest>,
    ) -> Result<Response<pb::GetDiscoveryDocumentResponse>, Status> {
        Ok(Response::new(discovery::discovery_document(
            &self.context,
            request.into_inner().public_base_url,
        )?))
    }

    // === Profile ===

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self(&request, &id.to_string(), true)?;
        Ok(Response::new(pb::GetProfileResponse {
            user: Some(self.context.load_user(id).await?.into()),
        }))
    }

    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self(&request, &id.to_string(), false)?;
        Ok(Response::new(
            profile::update_profile(&self.context, id, request.into_inner()).await?,
        ))
    }

    // === Account deletion saga ===

    #[tracing::instrument(skip_all)]
    async fn request_account_deletion(
        &self,
        request: Request<pb::RequestAccountDeletionRequest>,
    ) -> Result<Response<pb::RequestAccountDeletionResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        // The account itself with a session (a leaked script key must not delete it), or an
        // admin acting on it.
        let caller = principal::require_self(&request, &id.to_string(), true)?;
        if caller.user_id == id.to_string() && caller.api_key_id.is_some() {
            return Err(Error::PermissionDenied(
                "not allowed with an API key; sign in with your password".into(),
            )
            .into());
        }
        let actor = Uuid::parse_str(&caller.user_id).ok();
        let request = request.into_inner();
        let status = crate::deletion::request(
            &self.context.pool,
            &self.context.config.deletion,
            id,
            actor,
            request.client.as_ref(),
        )
        .await?;
        Ok(Response::new(pb::RequestAccountDeletionResponse {
            status: Some(status),
        }))
    }

    async fn get_deletion_status(
        &self,
        request: Request<pb::GetDeletionStatusRequest>,
    ) -> Result<Response<pb::GetDeletionStatusResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self(&request, &id.to_string(), true)?;
        Ok(Response::new(pb::GetDeletionStatusResponse {
            status: Some(crate::deletion::status(&self.context.pool, id).await?),
        }))
    }

    // === Personal API keys ===

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self_session(&request, &id.to_string())?;
        Ok(Response::new(
            api_keys::create(&self.context, id, request.into_inner()).await?,
        ))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self(&request, &id.to_string(), true)?;
        let request = request.into_inner();
        let size = wire::page_size(request.page_size, 50, 100)?;
        let after = wire::page_after_id(&request.page_token)?;
        Ok(Response::new(
            api_keys::list(&self.context, id, request, size, after).await?,
        ))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        let caller = principal::require_self(&request, &id.to_string(), true)?;
        Ok(Response::new(
            api_keys::revoke(&self.context, id, &caller, request.into_inner()).await?,
        ))
    }

    async fn authenticate_api_key(
        &self,
        request: Request<pb::AuthenticateApiKeyRequest>,
    ) -> Result<Response<pb::AuthenticateApiKeyResponse>, Status> {
        Ok(Response::new(
            api_keys::authenticate(&self.context, request.into_inner()).await?,
        ))
    }

    // === Administration ===

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        principal::require_admin(&request)?;
        let request = request.into_inner();
        let size = wire::page_size(request.page_size, 50, 500)?;
        let after = wire::page_after_id(&request.page_token)?;
        Ok(Response::new(
            admin::list_users(&self.context, request, size, after).await?,
        ))
    }

    async fn grant_role(
        &self,
        request: Request<pb::GrantRoleRequest>,
    ) -> Result<Response<pb::GrantRoleResponse>, Status> {
        let admin = principal::require_admin(&request)?;
        let r = request.into_inner();
        let change = (r.user_id, r.role, r.reason, r.client);
        let (user, changed) = admin::change_role(&self.context, &admin, change, true).await?;
        Ok(Response::new(pb::GrantRoleResponse {
            user: Some(user),
            changed,
        }))
    }

    async fn revoke_role(
        &self,
        request: Request<pb::RevokeRoleRequest>,
    ) -> Result<Response<pb::RevokeRoleResponse>, Status> {
        let admin = principal::require_admin(&request)?;
        let r = request.into_inner();
        let change = (r.user_id, r.role, r.reason, r.client);
        let (user, changed) = admin::change_role(&self.context, &admin, change, false).await?;
        Ok(Response::new(pb::RevokeRoleResponse {
            user: Some(user),
            changed,
        }))
    }

    async fn unlock_account(
        &self,
        request: Request<pb::UnlockAccountRequest>,
    ) -> Result<Response<pb::UnlockAccountResponse>, Status> {
        let admin = principal::require_admin(&request)?;
        let actor = user_id(&admin.user_id, "actor_user_id")?;
        Ok(Response::new(
            admin::unlock_account(&self.context, actor, request.into_inner()).await?,
        ))
    }

    async fn query_audit_log(
        &self,
        request: Request<pb::QueryAuditLogRequest>,
    ) -> Result<Response<pb::QueryAuditLogResponse>, Status> {
        principal::require_admin(&request)?;
        let request = request.into_inner();
        let size = wire::page_size(request.page_size, 100, 1000)?;
        let after = wire::page_after_id(&request.page_token)?;
        Ok(Response::new(
            admin::query_audit_log(&self.context, request, size, after).await?,
        ))
    }
}

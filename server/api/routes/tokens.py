from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy import select

from edgefleet.server import tokens
from edgefleet.server.api.deps import Admin, ServicesDep, SessionDep
from edgefleet.server.api.schemas import TokenCreate, TokenCreated, TokenPublic
from edgefleet.server.db.models import ApiToken

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.get("", response_model=list[TokenPublic])
def list_tokens(session: SessionDep, _: Admin) -> list[TokenPublic]:
    rows = session.scalars(select(ApiToken).order_by(ApiToken.name)).all()
    return [TokenPublic.model_validate(t) for t in rows]


@router.post("", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(
    body: TokenCreate, session: SessionDep, services: ServicesDep, principal: Admin
) -> TokenCreated:
    token, secret = tokens.create_token(
        session=session,
        name=body.name,
        role=body.role,
        actor=principal.name,
        now=services.clock(),
        expires_at=body.expires_at,
    )
    session.commit()
    return TokenCreated(token=TokenPublic.model_validate(token), secret=secret)


@router.post("/{name}/revoke", response_model=TokenPublic)
def revoke_token(
    name: str, session: SessionDep, services: ServicesDep, principal: Admin
) -> TokenPublic:
    token, _ = tokens.revoke_token(
        session=session, name=name, actor=principal.name, now=services.clock()
    )
    session.commit()
    return TokenPublic.model_validate(token)

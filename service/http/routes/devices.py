"""HTTP: the caller's devices and their push addresses."""

from __future__ import annotations

import msgspec
from litestar import delete, get, put
from litestar.params import JSONBody, Parameter

from schemas.auth import (
    ApnsAddress,
    DevicesResponse,
    PushTokenRequest,
    WebPushAddress,
)
from schemas.common import ID_PATTERN
from service.errors import Code, NotFound
from service.http.deps import AccountsDep, CallerDep, PoolDep, SignedIn
from service.http.openapi import operation
from service.store import accounts as store

__all__ = ["DeviceController"]

DeviceId = Parameter(pattern=ID_PATTERN, description="A device id of the caller's")


class DeviceController(SignedIn):
    path = "/v1/devices"
    tags = ["devices"]

    @operation(get, "/", "List my signed-in devices")
    async def list_devices(self, caller: CallerDep, pool: PoolDep) -> DevicesResponse:
        return DevicesResponse(await store.list_devices(pool, caller.user_id, caller.device_id))

    @operation(
        put,
        "/{device_id:str}/push-token",
        "Register a push address",
        Code.NOT_FOUND,
        status_code=204,
    )
    async def put_push_token(
        self,
        caller: CallerDep,
        pool: PoolDep,
        data: JSONBody[PushTokenRequest],
        device_id: str = DeviceId,
    ) -> None:
        # Each variant carries only what its provider uses, so the sender never reads a
        # stray value.
        apns = data if isinstance(data, ApnsAddress) else None
        webpush = data if isinstance(data, WebPushAddress) else None
        keys = msgspec.json.encode(webpush.keys).decode() if webpush is not None else None
        async with pool.acquire() as conn, conn.transaction():
            ok = await store.set_push_token(
                conn,
                user_id=caller.user_id,
                device_id=device_id,
                provider=str(type(data).__struct_config__.tag),  # the variant's tag
                token=data.token,
                environment=apns.environment if apns is not None else None,
                topic=apns.topic if apns is not None else None,
                keys_json=keys,
            )
        if not ok:
            raise NotFound("no device of yours has this id")

    @operation(
        delete,
        "/{device_id:str}",
        "Sign a device out and forget it",
        Code.NOT_FOUND,
        status_code=204,
    )
    async def revoke(
        self, caller: CallerDep, pool: PoolDep, accounts: AccountsDep, device_id: str = DeviceId
    ) -> None:
        async with pool.acquire() as conn, conn.transaction():
            ok = await store.revoke_device(conn, user_id=caller.user_id, device_id=device_id)
        if not ok:
            raise NotFound("no device of yours has this id")
        await accounts.device_signed_out(caller.user_id, device_id)  # caches, open streams

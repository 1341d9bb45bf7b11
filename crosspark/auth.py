"""Who is calling: bearer tokens checked by a server interceptor against each RPC's ``access``
option (declared in the protos), so every server enforces the same rules.

* ``ACCESS_ADMIN``: the operator's admin token.
* ``ACCESS_LOT``: a lot's token (the lot may act only as itself, see ``require_lot``) or admin.
* ``ACCESS_GATE``: the lot node's gate token (when one is configured) .
* No option (health checking, reflection): open, so probes and ``grpcurl`` work.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from google.protobuf import descriptor_pool

from crosspark.errors import PermissionDenied
from crosspark.v1 import common_pb2


class Role(enum.Enum):
    ADMIN = "admin"
    LOT = "lot"
    GATE = "gate"


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    lot_id: str = ""


ADMIN = Principal(Role.ADMIN)
GATE = Principal(Role.GATE)


@cache
def method_access(full_method: str) -> int | None:
    """The ``access`` option of ``/package.Service/Method``; None for methods outside crosspark
    (health, reflection), ``ACCESS_UNSPECIFIED`` for a crosspark method that forgot it."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    if not service.startswith("crosspark."):
        return None
    try:
        descriptor = descriptor_pool.Default().FindMethodByName(f"{service}.{method}")
    except KeyError:
        return None
    return int(descriptor.GetOptions().Extensions[common_pb2.access])  # type: ignore[index]


class TokenAuthenticator:
    """Maps a bearer token to a principal: the admin token, the gate token, or a lot's token
    (looked up through ``lot_lookup``, which sees only hashes)."""

    def __init__(
        self,
        *,
        admin_token: str | None = None,
        gate_token: str | None = None,
        lot_lookup: Callable[[str], str | None] | None = None,
    ) -> None:
        self._admin = admin_token.encode() if admin_token else None
        self._gate = gate_token.encode() if gate_token else None
        self._lot_lookup = lot_lookup

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        raw = token.encode()
        if self._admin is not None and hmac.compare_digest(raw, self._admin):
            return ADMIN
        if self._gate is not None and hmac.compare_digest(raw, self._gate):
            return GATE
        if self._lot_lookup is not None:
            lot_id = self._lot_lookup(token)
            if lot_id:
                return Principal(Role.LOT, lot_id)
        return None

    @property
    def gate_open(self) -> bool:
        """With no gate token configured, gate RPCs need no credential (loopback deployments)."""
        return self._gate is None


def allowed(access: int, principal: Principal | None, *, gate_open: bool = False) -> bool | None:
    """True if allowed, False if authenticated but not allowed, None if a credential is needed."""
    if access == common_pb2.ACCESS_GATE and gate_open:
        return True
    if principal is None:
        return None
    if principal.role is Role.ADMIN:
        return access in (common_pb2.ACCESS_ADMIN, common_pb2.ACCESS_LOT, common_pb2.ACCESS_GATE)
    if principal.role is Role.LOT:
        return access == common_pb2.ACCESS_LOT
    return access == common_pb2.ACCESS_GATE


def bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def require_lot(principal: Principal, lot_id: str) -> None:
    """A lot acts only as itself; the admin may act for any lot."""
    if principal.role is Role.ADMIN:
        return
    if principal.role is not Role.LOT or principal.lot_id != lot_id:
        raise PermissionDenied(f"lot {principal.lot_id or '?'} may not act for lot {lot_id!r}")

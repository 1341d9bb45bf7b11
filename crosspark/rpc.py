"""gRPC plumbing shared by every server: one interceptor that authenticates, authorises, maps
domain errors to status codes and counts calls, so servicers stay thin."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from prometheus_client import Counter, Histogram

from crosspark.auth import Principal, TokenAuthenticator, allowed, bearer, method_access
from crosspark.errors import CrossparkError, InvalidArgument

log = structlog.get_logger("crosspark.rpc")

RPC_TOTAL = Counter("crosspark_rpc_total", "RPCs handled", ["method", "code"])
RPC_SECONDS = Histogram(
    "crosspark_rpc_seconds",
    "RPC handling time (unary: whole call; streams: until the handler returns)",
    ["method"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)


class CallContext:
    """The servicer's context: the real gRPC context plus the authenticated principal."""

    __slots__ = ("_context", "principal")

    def __init__(self, context: grpc.ServicerContext, principal: Principal | None) -> None:
        self._context = context
        self.principal = principal

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def principal_of(context: Any) -> Principal:
    """The caller of an authenticated RPC (servicers call this)."""
    principal = getattr(context, "principal", None)
    if principal is None:
        raise RuntimeError("RPC reached a servicer without an authenticated principal")
    return principal


def status_for(error: CrossparkError) -> grpc.Status:
    code = getattr(code_pb2, error.code, code_pb2.INTERNAL)
    status = status_pb2.Status(code=code, message=error.message)
    if isinstance(error, InvalidArgument) and error.violations:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in error.violations
                ]
            )
        )
        status.details.append(detail)
    return rpc_status.to_status(status)


def _abort(context: grpc.ServicerContext, error: CrossparkError) -> None:
    context.abort_with_status(status_for(error))


def _handler_factory(handler: grpc.RpcMethodHandler) -> Callable[..., grpc.RpcMethodHandler]:
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler
    return grpc.stream_stream_rpc_method_handler


def _behavior(handler: grpc.RpcMethodHandler) -> Callable[..., Any]:
    return handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream


class ServerInterceptor(grpc.ServerInterceptor):
    """Authentication and authorisation from each method's ``access`` option; domain errors to
    status codes (with ``BadRequest`` details); per-method metrics.

    The wrapped handler of a (method, principal) pair is built once and kept: a membership check
    a millisecond should not pay for new closures, handler objects and metric label lookups."""

    #: Wrapped handlers kept at most (methods × principals: a platform with thousands of lots).
    MAX_KEPT = 65_536

    def __init__(self, authenticator: TokenAuthenticator) -> None:
        self._auth = authenticator
        self._kept: dict[tuple[str, Principal], grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        method = handler_call_details.method
        access = _access(method)
        if access is None:  # health checking, reflection
            return continuation(handler_call_details)
        principal = self._auth.authenticate(bearer(handler_call_details.invocation_metadata))
        verdict = allowed(access, principal, gate_open=self._auth.gate_open)
        if verdict is None:
            return self._refuse(
                continuation(handler_call_details),
                method,
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or invalid bearer token",
            )
        assert principal is not None
        if verdict is False:
            return self._refuse(
                continuation(handler_call_details),
                method,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{principal.role.value} credential may not call {method}",
            )
        handler = self._kept.get((method, principal))
        if handler is None:
            original = continuation(handler_call_details)
            if original is None:
                return None
            handler = self._wrap(original, method, principal)
            if len(self._kept) >= self.MAX_KEPT:
                self._kept.clear()
            self._kept[(method, principal)] = handler
        return handler

    def _refuse(self, handler, method: str, code: grpc.StatusCode, message: str):  # type: ignore[no-untyped-def]
        if handler is None:
            return None

        def refuse(_request, context):  # type: ignore[no-untyped-def]
            RPC_TOTAL.labels(method, code.name).inc()
            context.abort(code, message)

        return _handler_factory(handler)(
            refuse, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )

    def _wrap(self, handler, method: str, principal: Principal | None):  # type: ignore[no-untyped-def]
        behavior = _behavior(handler)
        streaming_response = bool(handler.unary_stream or handler.stream_stream)
        seconds = RPC_SECONDS.labels(method)
        succeeded = RPC_TOTAL.labels(method, "OK")

        def done(started: float, code: str) -> None:
            seconds.observe(time.perf_counter() - started)
            (succeeded if code == "OK" else RPC_TOTAL.labels(method, code)).inc()

        if streaming_response:

            def call(request, context):  # type: ignore[no-untyped-def]
                started = time.perf_counter()
                code = "OK"
                try:
                    yield from behavior(request, CallContext(context, principal))
                except CrossparkError as error:
                    code = error.code
                    _abort(context, error)
                except Exception:
                    code = context.code().name if context.code() else "INTERNAL"  # aborted or crashed
                    raise
                finally:
                    done(started, code)

        else:

            def call(request, context):  # type: ignore[no-untyped-def]
                started = time.perf_counter()
                code = "OK"
                try:
                    return behavior(request, CallContext(context, principal))
                except CrossparkError as error:
                    code = error.code
                    _abort(context, error)
                except Exception:
                    code = context.code().name if context.code() else "INTERNAL"
                    raise
                finally:
                    done(started, code)

        return _handler_factory(handler)(
            call, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


@functools.lru_cache(maxsize=1024)
def _access(method: str) -> int | None:
    """``method_access`` of a method, looked up in the descriptor pool once."""
    return method_access(method)


class BearerClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details):  # type: ignore[no-untyped-def]
        metadata = [*(details.metadata or ()), self._header]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request_iterator)


def bad_request_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """The ``BadRequest`` field violations of a failed call (clients and tests)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return []
    found: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend((v.field, v.description) for v in bad.field_violations)
    return found

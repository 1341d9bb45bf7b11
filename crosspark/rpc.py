"""gRPC plumbing shared by every server: one interceptor that authenticates, authorises, maps
domain errors to status codes and counts calls, so servicers stay thin."""

from __future__ import annotations

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

    gRPC runs ``intercept_service`` on the server's one serving thread, which also moves every
    call's events: anything slow there delays every call behind it. So it only hands out the
    method's handler, worked out once per method (wrapped, or as it is for health checking and
    reflection); the caller is authenticated in the wrapped handler, on the worker thread that runs
    the call."""

    def __init__(self, authenticator: TokenAuthenticator) -> None:
        self._auth = authenticator
        self._kept: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        method = handler_call_details.method
        handler = self._kept.get(method)
        if handler is not None:
            return handler
        handler = continuation(handler_call_details)
        if handler is None:  # an unknown method: gRPC answers UNIMPLEMENTED
            return None
        access = method_access(method)
        if access is not None:  # health checking and reflection have none: passed as they are
            handler = self._wrap(handler, method, access)
        self._kept[method] = handler
        return handler

    def _principal(self, context: grpc.ServicerContext, method: str, access: int) -> Principal | None:
        """The authenticated caller allowed to call ``method`` (None for a gate call where gate calls
        need no credential); aborts the call otherwise."""
        principal = self._auth.authenticate(bearer(context.invocation_metadata()))  # type: ignore[arg-type]
        verdict = allowed(access, principal, gate_open=self._auth.gate_open)
        if verdict is None:
            code, message = grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token"
        elif verdict is False:
            assert principal is not None
            code = grpc.StatusCode.PERMISSION_DENIED
            message = f"{principal.role.value} credential may not call {method}"
        else:
            return principal  # None only for a gate call with no gate credential configured
        RPC_TOTAL.labels(method, code.name).inc()
        context.abort(code, message)
        raise AssertionError("abort returned")  # abort raises

    def _wrap(self, handler, method: str, access: int):  # type: ignore[no-untyped-def]
        behavior = _behavior(handler)
        streaming_response = bool(handler.unary_stream or handler.stream_stream)
        seconds = RPC_SECONDS.labels(method)
        succeeded = RPC_TOTAL.labels(method, "OK")
        principal_for = self._principal

        def done(started: float, code: str) -> None:
            seconds.observe(time.perf_counter() - started)
            (succeeded if code == "OK" else RPC_TOTAL.labels(method, code)).inc()

        if streaming_response:

            def call(request, context):  # type: ignore[no-untyped-def]
                principal = principal_for(context, method, access)
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
                principal = principal_for(context, method, access)
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

"""MONAI Label's web app with inference off the event loop, so that one server answers several annotators at once.

MONAI Label 0.8.5 declares its ``POST /infer/{model}`` endpoint ``async`` and runs the model inside it: while one
request is inferred the server's event loop is blocked, concurrent requests wait for the whole burst and ``/info/``
does not answer. Its ``MONAI_LABEL_INFER_CONCURRENCY`` thread pool does not change that (the endpoint waits for the
pool's result on the loop), and ``--workers`` processes each load their own copy of every model and take connections
unevenly (a free worker accepts every waiting connection at once). Here the same endpoint is a plain function,
which FastAPI runs in its thread pool: the loop keeps answering, and ``MONAI_LABEL_INFER_CONCURRENCY`` bounds how
many inferences share the one model copy at a time. Serve it with
``monailabel start_server ... --uvicorn_app samzoo.monailabel_app:app`` (docs/monailabel.md).
"""

from __future__ import annotations

import inspect

from fastapi.routing import APIRoute
from monailabel.app import app
from monailabel.endpoints import infer

__all__ = ["app"]


def _infer_in_thread(**request: object) -> object:
    """MONAI Label's infer endpoint, run by FastAPI in a worker thread because it is not a coroutine."""
    request.pop("user")  # checked by the route's RBAC dependency; run_inference does not take it
    return infer.run_inference(**request)


_infer_in_thread.__signature__ = inspect.signature(infer.api_run_inference)  # type: ignore[attr-defined]


def _thread_infer_route() -> None:
    for index, route in enumerate(infer.router.routes):  # the app includes this router
        if isinstance(route, APIRoute) and route.endpoint is infer.api_run_inference:
            infer.router.routes[index] = APIRoute(
                route.path, _infer_in_thread, methods=list(route.methods), summary=route.summary, name=route.name
            )
            return
    raise RuntimeError("MONAI Label's app has no /infer/{model} route; samzoo.monailabel_app fits monailabel 0.8.5")


_thread_infer_route()

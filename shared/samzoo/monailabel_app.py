"""MONAI Label's web app with inference off the event loop, so that one server keeps answering several annotators.

MONAI Label 0.8.5 declares its ``POST /infer/{model}`` endpoint ``async`` and runs the model inside it: while one
request is inferred the server's event loop is blocked, so every request of a burst waits for the whole burst and
``/info/`` (and the datastore, the label uploads) does not answer. Its ``MONAI_LABEL_INFER_CONCURRENCY`` thread pool
does not change that (the endpoint waits for the pool's result on the loop). Here the same endpoint is a plain
function, which FastAPI runs in its thread pool, so the loop stays free and each request is answered as soon as its
own inference ends.

Inferences still run one at a time, in MONAI Label's single ``INFER`` thread: its bundle task keeps one parsed config
per model, rewrites it with each request's options (cmr2dt_sam's ``view``), re-parses it (``Invertd`` then finds
other transform objects than the ones that cropped) and re-imports the bundle's ``scripts`` on every call, so two
inferences of one model at once would mix their options and fail. Serve it with
``monailabel start_server ... --uvicorn_app samzoo.monailabel_app:app`` (docs/monailabel.md).
"""

from __future__ import annotations

import inspect

from fastapi.routing import APIRoute
from monailabel.app import app
from monailabel.config import settings
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


def _one_inference_at_a_time() -> None:
    """Route every inference through MONAI Label's INFER pool with one thread (read when the app instance starts)."""
    if settings.MONAI_LABEL_INFER_CONCURRENCY > 1:
        raise ValueError(
            f"MONAI_LABEL_INFER_CONCURRENCY={settings.MONAI_LABEL_INFER_CONCURRENCY}: MONAI Label's bundle tasks are "
            "not thread-safe, so samzoo.monailabel_app runs one inference at a time; unset it or set it to 1"
        )
    settings.MONAI_LABEL_INFER_CONCURRENCY = 1


_thread_infer_route()
_one_inference_at_a_time()
